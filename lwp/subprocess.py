"""Cooperative child processes: a drop-in for the :mod:`subprocess` module.

Every name of the standard :mod:`subprocess` module is here
(:class:`CalledProcessError`, :class:`TimeoutExpired`, :data:`PIPE`,
:data:`DEVNULL`, :data:`STDOUT`, :class:`CompletedProcess`...).  In a green
thread, waiting for a child parks the thread and its LWP runs others:

* :class:`Popen`, a subclass of :class:`subprocess.Popen`: ``wait(timeout)``
  parks on a pidfd (``os.pidfd_open``, Linux >= 5.3) until the child exits,
  or polls with growing sleeps where pidfds are missing; ``communicate(input,
  timeout)`` writes stdin and reads stdout and stderr together, parking on one
  epoll descriptor for the three pipes; the pipe objects ``stdin``, ``stdout``
  and ``stderr`` themselves read and write cooperatively (``for line in
  p.stdout``, ``p.stdin.write``).
* :func:`run`, :func:`call`, :func:`check_call`, :func:`check_output`,
  :func:`getoutput`, :func:`getstatusoutput` are built on it.  A thread
  cancelled while it waits kills the child (as the standard functions do on
  any exception) and leaves no descriptor open.

Timeouts raise :class:`TimeoutExpired` as in the standard library; after one,
``communicate`` can be called again to go on.  In a plain OS thread everything
behaves exactly as the standard module.

Starting the child (``fork``/``exec``, a ``preexec_fn``, and the wait for the
child's exec status) runs on an activation thread (:func:`lwp.blocking`), so
the LWP runs its other threads meanwhile; errors are raised in the caller as
usual.  One part still holds every thread up: when a real ``fork`` is needed
(with a ``preexec_fn``, where CPython cannot use ``vfork``), CPython keeps
the interpreter lock across the copy of the page tables.  Since another kernel thread forks, a ``preexec_fn`` sees that thread's
thread-local state, not the caller's; it runs in the child, where lwp has no
scheduler.  A thread cancelled during the spawn raises
:class:`lwp.Cancelled` and its child, if one was started, is killed and
reaped.  Known limit: the flush of data written to ``stdin`` beforehand in
text or buffered mode by a plain OS thread runs on the LWP.
"""

import io as _io
import os as _os
import subprocess as _std
from _thread import allocate_lock as _allocate_lock
from select import PIPE_BUF as _PIPE_BUF
from select import POLLIN as _POLLIN
from subprocess import *  # noqa: F401,F403 - the drop-in re-exports the standard module
from time import monotonic as _monotonic

from . import os as _los
from . import selectors as _selectors
from ._core.activation import blocking as _blocking
from ._core.park import current as _current
from ._core.park import fd_closing as _fd_closing
from ._core.park import wait_readable as _wait_readable
from ._core.timeout import sleep as _sleep
from .monkey import get_original as _get_original

__all__ = list(_std.__all__)

_StdPopen = _get_original("subprocess", "Popen")
_std_read = _get_original("os", "read")
_std_write = _get_original("os", "write")
_pidfd_open = getattr(_os, "pidfd_open", None)


class _PipeIO(_io.RawIOBase):
    """Raw I/O on one end of a pipe to the child, cooperative in green threads."""

    def __init__(self, fd, readable):
        self._fd = fd
        self._readable = readable
        self.name = fd
        self.mode = "rb" if readable else "wb"

    def __repr__(self):
        return f"<lwp.subprocess pipe fd={self._fd} mode={self.mode!r}>"

    def fileno(self):
        self._checkClosed()
        return self._fd

    def readable(self):
        self._checkClosed()
        return self._readable

    def writable(self):
        self._checkClosed()
        return not self._readable

    def readinto(self, b):
        fd = self.fileno()
        if _current() is not None and _os.get_blocking(fd):
            while not _los._ready(fd, _POLLIN):
                _wait_readable(fd)
        return _os.readv(fd, [b])

    def write(self, b):
        return _los.write(self.fileno(), b)

    def close(self):
        if not self.closed:
            try:
                super().close()
            finally:
                _fd_closing(self._fd)
                _os.close(self._fd)


def _cooperative(f, readable, bufsize):
    """A pipe file object like ``f`` (as Popen built it) over a _PipeIO; closes ``f``."""
    text = isinstance(f, _io.TextIOWrapper)
    raw = _PipeIO(_os.dup(f.fileno()), readable)
    try:
        if bufsize == 0:
            buf = raw
        else:
            size = _io.DEFAULT_BUFFER_SIZE if bufsize is None or bufsize < 2 else bufsize
            buf = (_io.BufferedReader if readable else _io.BufferedWriter)(raw, size)
        new = buf
        if text:
            new = _io.TextIOWrapper(buf, encoding=f.encoding, errors=f.errors,
                                    line_buffering=f.line_buffering,
                                    write_through=f.write_through)
    except BaseException:
        raw.close()
        raise
    f.close()
    return new


class Popen(_StdPopen):
    """:class:`subprocess.Popen` whose waits park the green thread (see the module doc).

    Same constructor, attributes and methods.
    """

    def __init__(self, *args, **kwargs):
        if _current() is None:
            super().__init__(*args, **kwargs)
        else:
            self._spawn_off_the_lwp(args, kwargs)
        bufsize = kwargs.get("bufsize", args[1] if len(args) > 1 else -1)
        try:
            if self.stdin is not None:
                self.stdin = _cooperative(self.stdin, False, bufsize)
            if self.stdout is not None:
                self.stdout = _cooperative(self.stdout, True, bufsize)
            if self.stderr is not None:
                self.stderr = _cooperative(self.stderr, True, bufsize)
        except BaseException:
            for f in (self.stdin, self.stdout, self.stderr):
                if f is not None:
                    f.close()
            self.kill()
            self.wait()
            raise

    def _spawn_off_the_lwp(self, args, kwargs):
        """The standard constructor, run on an activation thread.

        ``fork``/``exec`` and the wait for the child's exec status take the
        time of a page-table copy (milliseconds with a big heap) or of a slow
        ``preexec_fn``: the LWP runs its other threads meanwhile.  Errors
        (``FileNotFoundError``...) are raised here, as by the standard module.
        If the caller gives up (cancelled) while the spawn is in flight, whoever
        finishes last of the two kills the child, closes its pipes and reaps it.
        """
        handoff = _allocate_lock()
        state = ["spawning"]

        def spawn():
            _StdPopen.__init__(self, *args, **kwargs)
            with handoff:
                abandoned, state[0] = state[0] == "abandoned", "spawned"
            if abandoned:
                self._discard_child()

        try:
            _blocking(spawn)
        except BaseException:
            with handoff:
                spawned, state[0] = state[0] == "spawned", "abandoned"
            if spawned:
                self._discard_child()
            raise

    def _discard_child(self):
        """Kill, close and reap a child nobody will ever see (its spawner gave up)."""
        self.kill()
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                f.close()
        self.wait()

    # -- wait -------------------------------------------------------------------------------

    def _wait(self, timeout):
        """Park until the child exits (or ``timeout`` passes: TimeoutExpired)."""
        if _current() is None:
            return super()._wait(timeout)
        if self.returncode is not None:
            return self.returncode
        deadline = None if timeout is None else _monotonic() + timeout
        pidfd = None
        delay = 0.0005
        try:
            while True:
                mine = self._waitpid_lock.acquire(False)  # else an OS thread is reaping
                if mine:
                    try:
                        if self.returncode is not None:
                            break  # another thread reaped it
                        pid, sts = self._try_wait(_os.WNOHANG)
                        if pid == self.pid:
                            self._handle_exitstatus(sts)
                            break
                    finally:
                        self._waitpid_lock.release()
                    if pidfd is None:
                        pidfd = self._open_pidfd()
                remaining = None if deadline is None else deadline - _monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutExpired(self.args, timeout)
                if mine and pidfd >= 0:
                    _wait_readable(pidfd, remaining)  # readable once the child has exited
                else:
                    delay = min(delay * 2, 0.05)
                    _sleep(delay if remaining is None else min(delay, remaining))
        finally:
            if pidfd is not None and pidfd >= 0:
                _fd_closing(pidfd)
                _os.close(pidfd)
        return self.returncode

    def _open_pidfd(self):
        if _pidfd_open is None:
            return -1
        try:
            return _pidfd_open(self.pid)
        except OSError:  # kernel without pidfds, or already reaped by someone else
            return -1

    # -- communicate -------------------------------------------------------------------------

    def communicate(self, input=None, timeout=None):
        """Send ``input``, read stdout and stderr to the end, wait; ``(stdout, stderr)``.

        As :meth:`subprocess.Popen.communicate`; the three pipes are served
        together, so a child that writes a lot before it reads cannot
        deadlock with its parent.
        """
        if _current() is None:
            return super().communicate(input, timeout)
        if self._communication_started and input:
            raise ValueError("Cannot send input after starting communication")
        endtime = None if timeout is None else _monotonic() + timeout
        try:
            stdout, stderr = self._communicate(input, endtime, timeout)
        finally:
            self._communication_started = True
        self.wait(timeout=self._remaining_time(endtime))
        return stdout, stderr

    def _timeout_expired(self, timeout, stdout, stderr):
        return TimeoutExpired(self.args, timeout,
                              output=b"".join(stdout) if stdout else None,
                              stderr=b"".join(stderr) if stderr else None)

    def _communicate(self, input, endtime, orig_timeout):
        if _current() is None:
            return super()._communicate(input, endtime, orig_timeout)
        if self.stdin and not self._communication_started:
            try:
                self.stdin.flush()  # cooperative: the pipe objects are lwp's
            except BrokenPipeError:
                pass
            if not input:
                try:
                    self.stdin.close()
                except BrokenPipeError:
                    pass
        if not self._communication_started:
            self._fileobj2output = {}
            if self.stdout:
                self._fileobj2output[self.stdout] = []
            if self.stderr:
                self._fileobj2output[self.stderr] = []
        stdout = self._fileobj2output[self.stdout] if self.stdout else None
        stderr = self._fileobj2output[self.stderr] if self.stderr else None
        self._save_input(input)
        to_send = memoryview(self._input) if self._input else None
        with _selectors.EpollSelector() as selector:
            if (self.stdin and not self.stdin.closed and to_send is not None
                    and self._input_offset < len(to_send)):
                selector.register(self.stdin, _selectors.EVENT_WRITE)
            for f in (self.stdout, self.stderr):
                if f and not f.closed:
                    selector.register(f, _selectors.EVENT_READ)
            while selector.get_map():
                remaining = self._remaining_time(endtime)
                if remaining is not None and remaining < 0:
                    raise self._timeout_expired(orig_timeout, stdout, stderr)
                ready = selector.select(remaining)
                if endtime is not None and _monotonic() > endtime:
                    raise self._timeout_expired(orig_timeout, stdout, stderr)
                for key, _events in ready:
                    if key.fileobj is self.stdin:
                        chunk = to_send[self._input_offset:self._input_offset + _PIPE_BUF]
                        try:
                            self._input_offset += _std_write(key.fd, chunk)  # ready: room
                        except BrokenPipeError:
                            selector.unregister(key.fileobj)
                            key.fileobj.close()
                        else:
                            if self._input_offset >= len(to_send):
                                selector.unregister(key.fileobj)
                                key.fileobj.close()
                    else:
                        data = _std_read(key.fd, 32768)  # ready: returns what is there
                        if not data:
                            selector.unregister(key.fileobj)
                            key.fileobj.close()
                        self._fileobj2output[key.fileobj].append(data)
        self.wait(timeout=self._remaining_time(endtime))
        if stdout is not None:
            stdout = b"".join(stdout)
        if stderr is not None:
            stderr = b"".join(stderr)
        if self.text_mode:
            if stdout is not None:
                stdout = self._translate_newlines(stdout, self.stdout.encoding,
                                                  self.stdout.errors)
            if stderr is not None:
                stderr = self._translate_newlines(stderr, self.stderr.encoding,
                                                  self.stderr.errors)
        return stdout, stderr


# -- the convenience functions, on lwp's Popen -------------------------------------------------

def run(*popenargs, input=None, capture_output=False, timeout=None, check=False, **kwargs):
    """Run a command and return a :class:`CompletedProcess`; like :func:`subprocess.run`.

    On a timeout, or any exception (a cancellation included), the child is killed.
    """
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = PIPE
        kwargs["stderr"] = PIPE
    with Popen(*popenargs, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except TimeoutExpired:
            process.kill()
            process.wait()
            raise
        except BaseException:
            process.kill()
            raise
        retcode = process.poll()
        if check and retcode:
            raise CalledProcessError(retcode, process.args, output=stdout, stderr=stderr)
    return CompletedProcess(process.args, retcode, stdout, stderr)


def call(*popenargs, timeout=None, **kwargs):
    """Run a command, wait, return its exit code; like :func:`subprocess.call`."""
    with Popen(*popenargs, **kwargs) as p:
        try:
            return p.wait(timeout=timeout)
        except BaseException:
            p.kill()
            raise


def check_call(*popenargs, **kwargs):
    """Like :func:`call`, raising :class:`CalledProcessError` on a non-zero exit code."""
    retcode = call(*popenargs, **kwargs)
    if retcode:
        cmd = kwargs.get("args")
        if cmd is None:
            cmd = popenargs[0]
        raise CalledProcessError(retcode, cmd)
    return 0


def check_output(*popenargs, timeout=None, **kwargs):
    """Run a command and return its output; like :func:`subprocess.check_output`."""
    for kw in ("stdout", "check"):
        if kw in kwargs:
            raise ValueError(f"{kw} argument not allowed, it will be overridden.")
    if "input" in kwargs and kwargs["input"] is None:
        # As the standard library: input=None means empty input here.
        text = (kwargs.get("universal_newlines") or kwargs.get("text")
                or kwargs.get("encoding") or kwargs.get("errors"))
        kwargs["input"] = "" if text else b""
    return run(*popenargs, stdout=PIPE, timeout=timeout, check=True, **kwargs).stdout


def getstatusoutput(cmd, *, encoding=None, errors=None):
    """``(exit code, output)`` of a shell command; like :func:`subprocess.getstatusoutput`."""
    try:
        data = check_output(cmd, shell=True, text=True, stderr=STDOUT, encoding=encoding,
                            errors=errors)
        exitcode = 0
    except CalledProcessError as ex:
        data = ex.output
        exitcode = ex.returncode
    if data[-1:] == "\n":
        data = data[:-1]
    return exitcode, data


def getoutput(cmd, *, encoding=None, errors=None):
    """The output of a shell command; like :func:`subprocess.getoutput`."""
    return getstatusoutput(cmd, encoding=encoding, errors=errors)[1]
