"""lwp.os: cooperative read/write on pipes, sockets and terminals."""

import os
import tempfile
import threading

import pytest

from helpers import N_TICKS, progress_while, settle
import lwp
import lwp.os as los
import lwp.socket as socket


@pytest.fixture
def pipe():
    r, w = los.pipe()
    fds = [r, w]
    yield fds
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def test_names():
    assert los.__all__ == ["read", "write", "pipe"]
    assert los.pipe is os.pipe


def test_read_parks_on_an_empty_pipe(pipe):
    r, w = pipe

    def main():
        data, seen = progress_while(lambda: los.read(r, 100), lambda: os.write(w, b"data"))
        assert data == b"data"
        return seen

    assert lwp.run(main, lwps=1) >= N_TICKS
    assert os.get_blocking(r)  # the descriptor's mode is left alone


def test_write_parks_on_a_full_pipe_and_writes_everything(pipe):
    r, w = pipe
    payload = os.urandom(1 << 20)
    got = []

    def drain():
        out = bytearray()
        while len(out) < len(payload):
            out += os.read(r, 1 << 16)
        got.append(bytes(out))

    def main():
        n, seen = progress_while(lambda: los.write(w, payload), drain)
        assert n == len(payload)
        return seen

    assert lwp.run(main, lwps=1) >= N_TICKS
    assert got == [payload]


def test_green_reader_and_writer_on_one_lwp(pipe):
    r, w = pipe
    payload = os.urandom(3 << 20)

    def main():
        def reader():
            out = bytearray()
            while True:
                chunk = los.read(r, 1 << 16)
                if not chunk:
                    return bytes(out)
                out += chunk

        t = lwp.spawn(reader)
        assert los.write(w, payload) == len(payload)
        os.close(w)
        return t.join(10)

    assert lwp.run(main, lwps=1) == payload
    pipe.remove(w)


def test_eof_and_broken_pipe(pipe):
    r, w = pipe

    def main():
        os.close(w)
        assert los.read(r, 10) == b""
        r2, w2 = los.pipe()
        os.close(r2)
        try:
            with pytest.raises(BrokenPipeError):
                los.write(w2, b"x")
        finally:
            os.close(w2)

    lwp.run(main, lwps=1)
    pipe.remove(w)


def test_nonblocking_descriptors_keep_their_semantics(pipe):
    r, w = pipe
    os.set_blocking(r, False)
    os.set_blocking(w, False)

    def main():
        with pytest.raises(BlockingIOError):
            los.read(r, 10)
        n = 0
        with pytest.raises(BlockingIOError):
            while True:
                n += los.write(w, b"x" * 65536)
        assert n > 0

    lwp.run(main, lwps=1)


def test_regular_files_pass_straight_through():
    def main():
        with tempfile.TemporaryFile() as f:
            fd = f.fileno()
            assert los.write(fd, b"hello" * 10_000) == 50_000  # no chunking
            os.lseek(fd, 0, os.SEEK_SET)
            assert los.read(fd, 5) == b"hello"
            os.lseek(fd, 0, os.SEEK_END)
            assert los.read(fd, 5) == b""
            assert los.write(fd, b"") == 0

    lwp.run(main, lwps=1)


def test_sockets(pipe):
    def main():
        a, b = socket.socketpair()
        a.setblocking(True)
        import socket as std

        raw = std.socket(fileno=os.dup(a.fileno()))
        raw.setblocking(True)  # a blocking descriptor (shared with ``a``)
        with a, b, raw:
            data, seen = progress_while(lambda: los.read(raw.fileno(), 10),
                                        lambda: b.send(b"sock"))
            assert data == b"sock"
            assert los.write(raw.fileno(), b"back") == 4
            b.settimeout(5)
            assert b.recv(10) == b"back"
            return seen

    assert lwp.run(main, lwps=1) >= N_TICKS


def test_cancel_a_parked_read(pipe):
    r, w = pipe

    def main():
        t = lwp.spawn(los.read, r, 10)
        settle()
        assert not t.done()
        t.cancel()
        with pytest.raises(lwp.Cancelled):
            t.join(5)
        os.write(w, b"still works")
        assert los.read(r, 100) == b"still works"

    lwp.run(main, lwps=1)


def test_plain_os_thread(pipe):
    r, w = pipe
    threading.Timer(0.01, os.write, (w, b"later")).start()
    assert los.read(r, 10) == b"later"
    assert los.write(w, b"now") == 3
    assert os.read(r, 10) == b"now"


def test_bad_descriptor():
    def main():
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        with pytest.raises(OSError):
            los.read(r, 1)
        with pytest.raises(OSError):
            los.write(w, b"x")

    lwp.run(main, lwps=1)
