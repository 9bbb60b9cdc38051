"""lwp.open: like the built-in open, with I/O on native activations."""

import gc
import io
import os

import pytest

import lwp


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "data.txt")


def test_text_round_trip_and_modes(path):
    def main():
        with lwp.open(path, "w", encoding="utf-8") as f:
            assert isinstance(f, io.TextIOWrapper)
            f.write("héllo\nworld\n")
        with lwp.open(path, encoding="utf-8") as f:
            lines = f.readlines()
        with lwp.open(path, "a", encoding="utf-8") as f:
            f.write("more\n")
        with lwp.open(path, "r+b") as f:
            assert isinstance(f, io.BufferedRandom)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(0)
            first = f.read(6)
            f.seek(-5, os.SEEK_END)
            last = f.read()
        return lines, size, first, last

    lines, size, first, last = lwp.run(main)
    assert lines == ["héllo\n", "world\n"]
    assert size == len("héllo\nworld\nmore\n".encode())
    assert first == "héllo".encode()[:6] and last == b"more\n"
    with open(path, encoding="utf-8") as f:
        assert f.read() == "héllo\nworld\nmore\n"


def test_binary_unbuffered_large_file(path):
    data = os.urandom(3 * 1024 * 1024 + 17)

    def main():
        with lwp.open(path, "wb", buffering=0) as f:
            assert isinstance(f, lwp.files.FileIO)
            view = memoryview(data)
            while view:
                view = view[f.write(view):]
            f.fsync()
        with lwp.open(path, "rb") as f:
            return f.read()

    assert lwp.run(main) == data


def test_errors_match_builtin_open(path, tmp_path):
    def main():
        with pytest.raises(FileNotFoundError):
            lwp.open(path + ".missing")
        with pytest.raises(IsADirectoryError):
            lwp.open(str(tmp_path))
        with pytest.raises(ValueError):
            lwp.open(path, "rw")
        with pytest.raises(ValueError):
            lwp.open(path, "wb", encoding="utf-8")
        with pytest.raises(ValueError):
            lwp.open(path, "w", buffering=0)
        with lwp.open(path, "w") as f:
            f.write("x")
        with pytest.raises(FileExistsError):
            lwp.open(path, "x")
        with lwp.open(path, "rb") as f:
            with pytest.raises(io.UnsupportedOperation):
                f.write(b"no")
        with lwp.open(path, "rb", buffering=0) as f:
            with pytest.raises(OSError):
                f.seek(-1)
            with pytest.raises(ValueError):
                f.seek(0, 7)
        f.close()
        with pytest.raises(ValueError):
            f.read()

    lwp.run(main)


def test_failed_open_does_not_close_the_descriptor_again(tmp_path):
    # Opening a directory opens a descriptor, finds a directory and closes it.
    # The half-built file object must not close that number once more when it
    # is finalized: by then it may be another file's descriptor.
    def main():
        try:
            lwp.open(str(tmp_path))
        except IsADirectoryError as e:
            err = e  # its traceback keeps the half-built FileIO alive
        fd = os.open(os.devnull, os.O_RDONLY)  # the lowest free number: the one just closed
        try:
            del err
            gc.collect()  # finalizes the half-built FileIO
            os.fstat(fd)  # raises EBADF if it was closed behind our back
        finally:
            os.close(fd)

    lwp.run(main)


def test_file_reads_let_other_threads_run(path):
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20))

    def main():
        counter, stop = [0], lwp.Event()

        def tick():
            while not stop.is_set():
                counter[0] += 1
                lwp.sleep(0)

        t = lwp.spawn(tick)
        with lwp.open(path, "rb", buffering=0) as f:
            while f.read(4096):
                pass
        stop.set()
        t.join(5)
        return counter[0]

    assert lwp.run(main, lwps=1) > 100  # one tick per read at least


def test_from_plain_thread_is_builtin_open(path):
    with lwp.open(path, "w") as f:
        assert type(f) is io.TextIOWrapper and type(f.buffer.raw) is io.FileIO


def test_cancelled_open_leaks_no_fd(path):
    with open(path, "w") as f:
        f.write("x")

    def main():
        for _ in range(20):
            t = lwp.spawn(lwp.open, path)
            lwp.checkpoint()
            t.cancel()
            try:
                t.join(5).close()
            except lwp.Cancelled:
                pass

    lwp.run(main, lwps=1)  # conftest checks that no fd is left


def test_late_open_completion_at_shutdown_leaks_no_fd(tmp_path):
    """An open that completes after its thread was cancelled, as the LWP exits."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)

    def main():
        reader = lwp.spawn(lwp.open, fifo, "rb")  # blocks in the activation until a writer comes
        lwp.sleep(0.05)
        reader.cancel()
        with pytest.raises(lwp.Cancelled):
            reader.join(5)
        fd = os.open(fifo, os.O_WRONLY)  # completes the reader's open on its C thread
        os.close(fd)
        # return at once: the completion arrives while the scheduler shuts down

    for _ in range(5):
        lwp.run(main, lwps=1)  # conftest: no fd may be left open
