"""Cooperative regular files: ``lwp.open``.

epoll cannot wait for a regular file (it is always "ready", and a read may
still wait for the disk), so a green thread's file I/O runs on native
activations: C threads that call ``open``/``pread``/``pwrite``/``fsync``/
``fstat``/``close`` without the GIL, while the thread's LWP runs others.

``lwp.open`` takes the arguments of the built-in :func:`open` and returns the
same kinds of object (a ``BufferedReader``/``BufferedWriter``/
``BufferedRandom`` or a ``TextIOWrapper`` over them) built on :class:`FileIO`,
a raw file whose reads and writes are activations.  Called from a plain OS
thread it is the built-in ``open``.
"""

import builtins
import io
import os

from ._core.activation import native_call
from ._core.park import current

__all__ = ["open", "FileIO"]


def _flags(mode):
    """Parse a raw mode ('r', 'w', 'a', 'x', optional '+') into os.open flags."""
    kinds = [c for c in mode if c in "rwax"]
    if len(kinds) != 1 or len(set(mode)) != len(mode) or set(mode) - set("rwax+"):
        raise ValueError(f"invalid mode: {mode!r}")
    plus = "+" in mode
    flags = {"r": 0, "w": os.O_CREAT | os.O_TRUNC, "a": os.O_CREAT | os.O_APPEND,
             "x": os.O_CREAT | os.O_EXCL}[kinds[0]]
    if plus:
        flags |= os.O_RDWR
    else:
        flags |= os.O_RDONLY if kinds[0] == "r" else os.O_WRONLY
    return flags | os.O_CLOEXEC, kinds[0] == "r" or plus, kinds[0] != "r" or plus, kinds[0] == "a"


class FileIO(io.RawIOBase):
    """A raw regular file whose I/O runs on native activations.

    Like :class:`io.FileIO` (``mode`` is 'r', 'w', 'a' or 'x' with an optional
    '+'), but keeps its own position and uses ``pread``/``pwrite``, so each call
    is one activation and the kernel file offset is never shared state.
    Must be used from green threads of the scheduler that opened it.
    """

    def __init__(self, file, mode="r", closefd=True, opener=None):
        super().__init__()
        # Until a descriptor is ours, the finalizer of a failed __init__ has nothing to close.
        self._fd, self._closefd, self.name = -1, False, file
        flags, self._readable, self._writable, self._append = _flags(mode.replace("b", ""))
        self.mode = mode.replace("b", "") + "b" if "b" not in mode else mode
        if isinstance(file, int):
            if file < 0:
                raise ValueError("negative file descriptor")
            self._fd, self._closefd = file, closefd
        else:
            if not closefd:
                raise ValueError("Cannot use closefd=False with file name")
            path = os.fspath(file)
            self._fd = (opener(path, flags) if opener is not None
                        else native_call("open", path, flags, 0o666))
            self._closefd = True
        try:
            st = self._stat()
            if (st.st_mode & 0o170000) == 0o040000:
                raise IsADirectoryError(21, "Is a directory", file)
            self._pos = st.st_size if self._append else 0
        except BaseException:
            if self._closefd:
                self._closefd = False  # closed here, never again: the number may be reused at once
                os.close(self._fd)
            raise

    def __repr__(self):
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<lwp.files.FileIO name={self.name!r} mode={self.mode!r} {state}>"

    def _stat(self):
        return native_call("fstat", self._fd)

    def fileno(self):
        self._checkClosed()
        return self._fd

    def readable(self):
        self._checkClosed()
        return self._readable

    def writable(self):
        self._checkClosed()
        return self._writable

    def seekable(self):
        self._checkClosed()
        return True

    def readinto(self, buffer):
        self._checkClosed()
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        view = memoryview(buffer).cast("B")
        data = native_call("pread", self._fd, len(view), self._pos)
        n = len(data)
        view[:n] = data
        self._pos += n
        return n

    def readall(self):
        chunks = []
        while True:
            chunk = self.read(max(io.DEFAULT_BUFFER_SIZE, 256 * 1024))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def write(self, data):
        self._checkClosed()
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        data = bytes(data)
        if self._append:
            self._pos = self._stat().st_size
        n = native_call("pwrite", self._fd, data, self._pos)
        self._pos += n
        return n

    def seek(self, offset, whence=os.SEEK_SET):
        self._checkClosed()
        if whence == os.SEEK_SET:
            base = 0
        elif whence == os.SEEK_CUR:
            base = self._pos
        elif whence == os.SEEK_END:
            base = self._stat().st_size
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if base + offset < 0:
            raise OSError(22, "Invalid argument")
        self._pos = base + offset
        return self._pos

    def tell(self):
        self._checkClosed()
        return self._pos

    def truncate(self, size=None):
        self._checkClosed()
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        size = self._pos if size is None else size
        os.ftruncate(self._fd, size)  # metadata only: does not wait for the disk
        return size

    def fsync(self):
        """Flush the file to stable storage (``fsync(2)``) on an activation."""
        self._checkClosed()
        native_call("fsync", self._fd)

    def close(self):
        if not self.closed:
            try:
                super().close()
            finally:
                if self._closefd:
                    native_call("close_fd", self._fd)


def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
         closefd=True, opener=None):
    """Open a file like the built-in :func:`open`, with cooperative I/O.

    In a green thread, every read, write, seek-to-end, ``fsync`` and the open
    and close themselves run on native activations.  In a plain OS thread this
    is the built-in ``open``.
    """
    if current() is None:
        return builtins.open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    if not isinstance(mode, str) or set(mode) - set("rwaxbt+") or ("b" in mode and "t" in mode):
        raise ValueError(f"invalid mode: {mode!r}")
    binary = "b" in mode
    if binary and (encoding is not None or errors is not None or newline is not None):
        raise ValueError("binary mode doesn't take an encoding, errors or newline argument")
    raw = FileIO(file, mode.replace("b", "").replace("t", ""), closefd, opener)
    try:
        if buffering == 1 and binary:
            buffering = -1
        line_buffering = buffering == 1
        if buffering in (-1, 1):
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("can't have unbuffered text I/O")
            return raw
        if raw.readable() and raw.writable():
            buffered = io.BufferedRandom(raw, buffering)
        elif raw.writable():
            buffered = io.BufferedWriter(raw, buffering)
        else:
            buffered = io.BufferedReader(raw, buffering)
        if binary:
            return buffered
        text = io.TextIOWrapper(buffered, encoding, errors, newline, line_buffering)
        text.mode = mode
        return text
    except BaseException:
        raw.close()
        raise
