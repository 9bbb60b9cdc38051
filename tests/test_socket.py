"""lwp.socket: cooperative sockets.

The key property, tested for each call that can wait: while a green thread
waits, another green thread *on the same LWP* (``lwps=1``) keeps running.  A
ticker thread counts its own steps; the waiting call is released by an OS
thread only once the ticker has advanced (or after 5 s, so that a broken call
fails the assertion instead of hanging).  No wall-clock thresholds.
"""

import errno
import hashlib
import os
import sys
import tempfile
import threading

import pytest

from helpers import N_TICKS, progress_while, run1, settle, wait_until
import lwp
import lwp.socket as socket


# -- helpers ----------------------------------------------------------------------------------

def pending_connect_target(extra=3):
    """A listener with backlog 0 whose queue is full: a further TCP connect to it
    stays in progress (SYNs are dropped).  Returns (listener, fillers)."""
    lst = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers = []
    for _ in range(extra):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(lst.getsockname())
        fillers.append(c)
    return lst, fillers


# -- the socket class -------------------------------------------------------------------------

def test_is_a_stdlib_socket_with_a_nonblocking_fd():
    with socket.socket() as s:
        assert isinstance(s, socket.socket) and isinstance(s, __import__("socket").socket)
        assert os.get_blocking(s.fileno()) is False
        assert s.gettimeout() is None and s.getblocking() and s.timeout is None
        assert s.type == socket.SOCK_STREAM and s.family == socket.AF_INET
        s.settimeout(2)
        assert s.gettimeout() == 2.0 and s.getblocking()
        s.setblocking(False)
        assert s.gettimeout() == 0.0 and not s.getblocking()
        s.setblocking(True)
        assert s.gettimeout() is None
        with pytest.raises(ValueError):
            s.settimeout(-1)
        with pytest.raises(TypeError):
            s.settimeout("1")
        assert os.get_blocking(s.fileno()) is False  # never changes


def test_default_timeout_applies_to_new_sockets():
    socket.setdefaulttimeout(1.5)
    try:
        with socket.socket() as s:
            assert s.gettimeout() == 1.5
    finally:
        socket.setdefaulttimeout(None)


def test_reexports_the_standard_module():
    import socket as std

    for name in std.__all__:
        assert hasattr(socket, name), name
    assert socket.timeout is TimeoutError and socket.error is OSError
    assert socket.SocketIO is std.SocketIO


# -- waiting parks the thread, others keep running -------------------------------------------

def test_recv_parks_while_other_threads_run():
    def main():
        a, b = socket.socketpair()
        with a, b:
            data, seen = progress_while(lambda: a.recv(10), lambda: b.sendall(b"hello"))
        assert data == b"hello"
        return seen

    assert run1(main) >= N_TICKS


def test_recv_into_recvfrom_parks():
    def main():
        a, b = socket.socketpair()
        with a, b:
            buf = bytearray(8)
            n, seen1 = progress_while(lambda: a.recv_into(buf), lambda: b.send(b"abc"))
            assert bytes(buf[:n]) == b"abc"
            (data, _addr), seen2 = progress_while(lambda: a.recvfrom(8), lambda: b.send(b"xyz"))
            assert data == b"xyz"
        return min(seen1, seen2)

    assert run1(main) >= N_TICKS


def test_accept_parks():
    def main():
        with socket.create_server(("127.0.0.1", 0)) as srv:
            port = srv.getsockname()[1]
            clients = []

            def connect():
                import socket as std

                clients.append(std.create_connection(("127.0.0.1", port), timeout=5))

            (conn, addr), seen = progress_while(srv.accept, connect)
            with conn:
                assert isinstance(conn, socket.socket) and addr[0] == "127.0.0.1"
                assert conn.gettimeout() is None and os.get_blocking(conn.fileno()) is False
            clients[0].close()
        return seen

    assert run1(main) >= N_TICKS


def test_connect_parks_until_the_handshake_completes():
    def main():
        lst, fillers = pending_connect_target(extra=1)
        accepted = []
        try:
            c = socket.socket()
            with c:
                c.settimeout(10)

                def drain():  # accepting makes room: the pending SYNs get through
                    import socket as std

                    raw = std.socket(fileno=os.dup(lst.fileno()))
                    raw.settimeout(5)
                    try:
                        for _ in range(len(fillers) + 1):
                            accepted.append(raw.accept()[0])
                    except OSError:
                        pass
                    raw.close()

                _, seen = progress_while(lambda: c.connect(lst.getsockname()), drain)
                assert c.getpeername() == lst.getsockname()
        finally:
            for s in fillers + accepted:
                s.close()
            lst.close()
        return seen

    assert run1(main) >= N_TICKS


def test_sendall_parks_when_the_buffer_is_full():
    def main():
        a, b = socket.socketpair()
        with a, b:
            payload = b"z" * (4 << 20)
            got = []

            def drain():
                b.settimeout(5)
                n = 0
                while n < len(payload):
                    chunk = b.recv(1 << 16)
                    if not chunk:
                        break
                    n += len(chunk)
                got.append(n)

            _, seen = progress_while(lambda: a.sendall(payload), drain)
            assert got == [len(payload)]
        return seen

    assert run1(main) >= N_TICKS


# -- timeouts ---------------------------------------------------------------------------------

def test_timeout_raises_and_the_socket_stays_usable():
    def main():
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(0.02)
            with pytest.raises(socket.timeout):
                a.recv(1)
            with pytest.raises(TimeoutError):
                a.recv_into(bytearray(1))
            b.sendall(b"after")
            assert a.recv(10) == b"after"
            a.settimeout(0)
            with pytest.raises(BlockingIOError):
                a.recv(1)
            b.sendall(b"x")
            assert a.recv(1) == b"x"

    run1(main)


def test_sendall_timeout_covers_the_whole_call():
    def main():
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(0.05)
            with pytest.raises(TimeoutError):
                a.sendall(b"q" * (16 << 20))  # nobody reads

    run1(main)


def test_nonblocking_send_raises_when_full():
    def main():
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            with pytest.raises(BlockingIOError):
                while True:
                    a.send(b"q" * 65536)
            with pytest.raises(BlockingIOError):
                a.sendall(b"q" * 65536)

    run1(main)


def test_accept_and_connect_timeouts():
    def main():
        with socket.create_server(("127.0.0.1", 0)) as srv:
            srv.settimeout(0.02)
            with pytest.raises(TimeoutError):
                srv.accept()
        lst, fillers = pending_connect_target()
        try:
            with socket.socket() as c:
                c.settimeout(0.05)
                with pytest.raises(TimeoutError):
                    c.connect(lst.getsockname())
            with socket.socket() as c:
                c.settimeout(0.05)
                assert c.connect_ex(lst.getsockname()) == errno.EAGAIN
            with socket.socket() as c:
                c.setblocking(False)
                with pytest.raises(BlockingIOError):
                    c.connect(lst.getsockname())
        finally:
            for s in fillers:
                s.close()
            lst.close()

    run1(main)


def test_unix_connect_to_a_full_backlog_retries_then_times_out():
    def main():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s")
            lst = socket.socket(socket.AF_UNIX)
            lst.bind(path)
            lst.listen(0)
            held = []
            try:
                while True:  # fill the backlog
                    c = socket.socket(socket.AF_UNIX)
                    c.setblocking(False)
                    held.append(c)
                    if c.connect_ex(path) != 0:
                        break
                c = socket.socket(socket.AF_UNIX)
                held.append(c)
                c.settimeout(0.05)
                with pytest.raises(TimeoutError):
                    c.connect(path)
                # Room appears: a waiting connect gets through.
                c2 = socket.socket(socket.AF_UNIX)
                held.append(c2)
                c2.settimeout(5)
                t = lwp.spawn(c2.connect, path)
                settle()
                conn, _ = lst.accept()
                held.append(conn)
                t.join(5)
            finally:
                for s in held:
                    s.close()
                lst.close()

    run1(main)


# -- cancellation and closing ------------------------------------------------------------------

@pytest.mark.parametrize("op", ["recv", "accept", "connect", "sendall"])
def test_cancel_a_parked_call(op):
    def main():
        a, b = socket.socketpair()
        srv = socket.create_server(("127.0.0.1", 0))
        lst, fillers = pending_connect_target()
        c = socket.socket()
        try:
            call = {"recv": lambda: a.recv(1), "accept": srv.accept,
                    "connect": lambda: c.connect(lst.getsockname()),
                    "sendall": lambda: a.sendall(b"x" * (16 << 20))}[op]
            t = lwp.spawn(call)
            settle()
            assert not t.done()
            t.cancel()
            with pytest.raises(lwp.Cancelled):
                t.join(5)
            # the sockets are intact
            b.sendall(b"k")
            a.settimeout(5)
            if op != "sendall":
                assert a.recv(1) == b"k"
        finally:
            for s in [a, b, srv, lst, c] + fillers:
                s.close()

    run1(main)


def test_close_from_another_green_thread_wakes_the_reader():
    def main():
        a, b = socket.socketpair()
        try:
            t = lwp.spawn(a.recv, 1)
            settle()
            a.close()
            with pytest.raises(OSError) as info:
                t.join(5)
            assert info.value.errno == errno.EBADF
        finally:
            a.close()
            b.close()

    run1(main)


def test_close_from_another_lwp_or_os_thread_wakes_the_reader():
    def main():
        a, b = socket.socketpair()
        try:
            t = lwp.spawn(a.recv, 1)
            settle()
            th = threading.Thread(target=a.close)
            th.start()
            th.join(5)
            with pytest.raises(OSError) as info:
                t.join(5)
            assert info.value.errno == errno.EBADF
        finally:
            a.close()
            b.close()

    run1(main)


def test_detach_wakes_the_reader_and_keeps_the_descriptor_open():
    def main():
        a, b = socket.socketpair()
        fd = None
        try:
            t = lwp.spawn(a.recv, 1)
            settle()
            fd = a.detach()
            with pytest.raises(OSError) as info:
                t.join(5)
            assert info.value.errno == errno.EBADF
            b.send(b"x")
            return os.read(fd, 1)
        finally:
            if fd is not None:
                os.close(fd)
            a.close()
            b.close()

    assert run1(main) == b"x"


def test_close_wakes_a_parked_accept_on_another_lwp():
    def main():
        srv = socket.create_server(("127.0.0.1", 0))
        t = lwp.spawn(srv.accept)
        try:
            while not lwp.stats() or all(s["live"] < 2 for s in lwp.stats()):
                lwp.sleep(0.001)
            lwp.sleep(0.01)
            srv.close()
            with pytest.raises(OSError):
                t.join(5)
        finally:
            srv.close()

    lwp.run(main, lwps=2)


def test_two_readers_of_one_socket_are_served_first_come_first_served():
    """Two green threads of one LWP may wait to read one socket (they once got
    RuntimeError); each readiness event wakes one, in the order they came."""
    def main():
        a, b = socket.socketpair()
        try:
            got = []

            def reader(name):
                got.append((name, a.recv(1)))

            first = lwp.spawn(reader, "first")
            settle()
            second = lwp.spawn(reader, "second")
            settle()
            b.send(b"x")
            first.join(5)
            assert got == [("first", b"x")]
            b.send(b"y")
            second.join(5)
            return got
        finally:
            a.close()
            b.close()

    assert run1(main) == [("first", b"x"), ("second", b"y")]


def test_a_reader_that_times_out_leaves_the_queue_of_readers():
    from lwp._core.park import wait_readable

    def main():
        a, b = socket.socketpair()
        try:
            patient = lwp.spawn(a.recv, 1)
            settle()
            assert wait_readable(a.fileno(), 0.01) is False  # second in line, gives up
            late = lwp.spawn(a.recv, 1)
            settle()
            b.send(b"x")
            assert patient.join(5) == b"x"
            b.send(b"y")
            return late.join(5)
        finally:
            a.close()
            b.close()

    assert run1(main) == b"y"


def test_a_busy_connection_lets_a_waiting_one_run():
    """A thread whose recv calls all succeed at once (its peer is always ahead)
    once kept a thread waiting for readiness on the same LWP waiting until it
    finished; now it lets the waiting one run after a bounded number of calls."""
    calls = 5000

    def main():
        busy_a, busy_b = socket.socketpair()
        idle_a, idle_b = socket.socketpair()
        try:
            busy_b.sendall(b"x" * calls)
            done = [0]
            seen_at = []

            def busy():
                for _ in range(calls):
                    busy_a.recv(1)
                    done[0] += 1

            def waiting():
                idle_a.recv(1)
                seen_at.append(done[0])

            w = lwp.spawn(waiting)
            settle()
            idle_b.send(b"!")  # readable now, but only a poll tells the LWP
            b = lwp.spawn(busy)
            b.join(10)
            w.join(10)
            return seen_at[0]
        finally:
            for s in (busy_a, busy_b, idle_a, idle_b):
                s.close()

    assert lwp.run(main, lwps=1, monitor=False) < calls


def test_cancelling_a_busy_reader_where_it_yields_loses_no_data():
    """The budget's yield (see the previous test) is a scheduling point, where a
    pending Cancelled is raised: it once came after a successful recv, whose
    bytes were then lost."""
    total = 5000

    def main():
        a, b = socket.socketpair()
        with a, b:
            b.sendall(b"x" * total)
            got = []

            def busy():
                while True:
                    got.append(a.recv(1))

            reader = lwp.spawn(busy)
            canceller = lwp.spawn(reader.cancel)  # runs when the reader first yields
            canceller.join(5)
            with pytest.raises(lwp.Cancelled):
                reader.join(5)
            assert 0 < len(got) < total
            a.settimeout(0)
            rest = b""
            while len(got) + len(rest) < total:
                rest += a.recv(total)  # BlockingIOError if a byte was lost
            return len(got) + len(rest)

    assert lwp.run(main, lwps=1, monitor=False) == total


def test_close_on_another_kernel_thread_then_the_fd_number_reused():
    """The close of a socket a green thread waits on, by another kernel thread,
    reached the waiter's LWP later than the fd number's next use there: the new
    socket's reader got RuntimeError (or a stale EBADF).  Now the old reader
    gets EBADF and the new socket works."""
    def main():
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        new = None
        try:
            n = a.fileno()
            old = lwp.spawn(a.recv, 1)
            settle()
            closed = threading.Lock()
            closed.acquire()

            def close_a():
                a.close()
                closed.release()

            th = threading.Thread(target=close_a)
            th.start()
            # Block this LWP's kernel thread (not cooperatively): its hub cannot
            # run until the new socket below waits.
            assert closed.acquire(timeout=5)
            th.join(5)
            os.dup2(c.fileno(), n)
            new = socket.socket(fileno=n)
            new.settimeout(5)
            sender = lwp.spawn(lambda: (lwp.sleep(0.01), d.send(b"y")))
            got = new.recv(1)
            sender.join(5)
            with pytest.raises(OSError) as info:
                old.join(5)
            assert info.value.errno == errno.EBADF
            return got
        finally:
            for s in (a, b, c, d):
                s.close()
            if new is not None:
                new.close()

    assert run1(main) == b"y"


# -- data -------------------------------------------------------------------------------------

def test_eof():
    def main():
        a, b = socket.socketpair()
        with a, b:
            t = lwp.spawn(a.recv, 10)
            settle()
            b.shutdown(socket.SHUT_WR)
            assert t.join(5) == b""
            b.close()
            assert a.recv(10) == b""

    run1(main)


def test_large_sendall_to_a_green_reader():
    payload = os.urandom(1 << 20) * 6

    def main():
        a, b = socket.socketpair()
        with a, b:
            def reader():
                h = hashlib.sha256()
                n = 0
                while True:
                    chunk = b.recv(1 << 16)
                    if not chunk:
                        return n, h.hexdigest()
                    h.update(chunk)
                    n += len(chunk)

            r = lwp.spawn(reader)
            a.sendall(payload)
            a.shutdown(socket.SHUT_WR)
            return r.join(10)

    assert run1(main) == (len(payload), hashlib.sha256(payload).hexdigest())


def test_makefile_readline_and_write():
    def main():
        a, b = socket.socketpair()
        with a, b:
            def echo():
                with b.makefile("rwb") as f:
                    for line in f:
                        f.write(line.upper())
                        f.flush()

            t = lwp.spawn(echo)
            with a.makefile("rw", encoding="utf-8", newline="\n") as f:
                for word in ("one", "two", "three"):
                    f.write(word + "\n")
                    f.flush()
                    assert f.readline() == word.upper() + "\n"
            a.shutdown(socket.SHUT_WR)
            t.join(5)

    run1(main)


def test_makefile_timeout():
    def main():
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(0.02)
            with a.makefile("rb") as f:
                with pytest.raises(TimeoutError):
                    f.readline()

    run1(main)


def test_udp_sendto_recvfrom():
    def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.bind(("127.0.0.1", 0))
            addr = rx.getsockname()
            (data, frm), seen = progress_while(lambda: rx.recvfrom(100),
                                               lambda: tx.sendto(b"dgram", addr))
            assert data == b"dgram" and frm[1] == tx.getsockname()[1]
            tx.sendto(b"x2", 0, ("localhost", addr[1]))  # flags form, and a name
            buf = bytearray(10)
            n, _ = rx.recvfrom_into(buf)
            assert bytes(buf[:n]) == b"x2"
            rx.settimeout(0.02)
            with pytest.raises(TimeoutError):
                rx.recvfrom(10)
            return seen

    assert run1(main) >= N_TICKS


def test_sendmsg_recvmsg_and_fds():
    def main():
        a, b = socket.socketpair()
        r, w = os.pipe()
        try:
            t = lwp.spawn(socket.recv_fds, b, 10, 1)
            settle()
            socket.send_fds(a, [b"fd"], [r])
            msg, fds, _flags, _addr = t.join(5)
            assert msg == b"fd" and len(fds) == 1
            os.close(fds[0])
        finally:
            for fd in (r, w):
                os.close(fd)
            a.close()
            b.close()

    run1(main)


def test_sendfile_zero_copy_and_fallback():
    data = os.urandom(300_000)

    def main():
        a, b = socket.socketpair()
        with a, b, tempfile.TemporaryFile() as f:
            f.write(data)
            f.flush()
            f.seek(0)

            def read(n):
                out = bytearray()
                while len(out) < n:
                    out += b.recv(1 << 16)
                return bytes(out)

            r = lwp.spawn(read, len(data) - 10)
            assert a.sendfile(f, offset=10) == len(data) - 10
            assert r.join(5) == data[10:]
            assert f.tell() == len(data)
            import io

            r = lwp.spawn(read, 1000)
            assert a.sendfile(io.BytesIO(data), count=1000) == 1000  # no fileno: send loop
            assert r.join(5) == data[:1000]

    run1(main)


# -- connections ------------------------------------------------------------------------------

def test_create_server_create_connection_echo():
    def main():
        with socket.create_server(("127.0.0.1", 0), backlog=16) as srv:
            port = srv.getsockname()[1]

            def serve(n):
                for _ in range(n):
                    conn, _ = srv.accept()
                    lwp.spawn(echo, conn)

            def echo(conn):
                with conn:
                    while True:
                        data = conn.recv(1024)
                        if not data:
                            return
                        conn.sendall(data)

            server = lwp.spawn(serve, 3)
            for host in ("127.0.0.1", "localhost"):
                with socket.create_connection((host, port), timeout=5) as c:
                    c.sendall(b"ping")
                    assert c.recv(10) == b"ping"
            with socket.socket() as c:
                c.connect(("127.0.0.1", port))
                c.sendall(b"pong")
                assert c.recv(10) == b"pong"
            server.join(5)

    run1(main)


def test_connect_refused():
    def main():
        with socket.socket() as tmp:
            tmp.bind(("127.0.0.1", 0))
            addr = tmp.getsockname()
        with socket.socket() as c:
            assert c.connect_ex(addr) == errno.ECONNREFUSED
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(addr, timeout=5)

    run1(main)


def test_cancel_create_connection_closes_its_socket():
    def main():
        lst, fillers = pending_connect_target()
        try:
            t = lwp.spawn(socket.create_connection, lst.getsockname())
            settle()
            t.cancel()
            with pytest.raises(lwp.Cancelled):
                t.join(5)
        finally:
            for s in fillers:
                s.close()
            lst.close()

    run1(main)  # the conftest checks that no fd leaked


def test_dup_detach_fromfd():
    def main():
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(3)
            d = a.dup()
            with d:
                assert isinstance(d, socket.socket) and d.gettimeout() == 3
                b.sendall(b"1")
                assert d.recv(1) == b"1"
            f = socket.fromfd(b.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
            with f:
                t = lwp.spawn(f.recv, 1)
                settle()
                a.sendall(b"2")
                assert t.join(5) == b"2"
        c, d = socket.socketpair()
        fd = c.detach()
        assert c.fileno() == -1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd) as c2, d:
            d.sendall(b"3")
            assert c2.recv(1) == b"3"

    run1(main)


def test_plain_os_thread_blocking_semantics():
    """Outside lwp the same sockets block their OS thread (in poll), as the stdlib's do."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        out = []
        done = threading.Event()

        def server():
            conn, _ = srv.accept()
            with conn:
                out.append(conn.recv(10))
                conn.sendall(b"reply" * 100_000)
                done.wait(5)

        th = threading.Thread(target=server)
        th.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"req")
                got = bytearray()
                while len(got) < 500_000:
                    got += c.recv(1 << 16)
                assert bytes(got) == b"reply" * 100_000
                c.settimeout(0.02)
                with pytest.raises(TimeoutError):
                    c.recv(1)
                done.set()
                c.settimeout(5)
                assert c.recv(1) == b""
        finally:
            done.set()
            th.join(5)
        assert out == [b"req"]


def test_green_and_os_threads_talk():
    def main():
        a, b = socket.socketpair()
        with a, b:
            def os_side():
                for _ in range(100):
                    b.sendall(b.recv(5))

            th = threading.Thread(target=os_side)
            th.start()
            for i in range(100):
                a.sendall(b"%05d" % i)
                assert a.recv(5) == b"%05d" % i
            th.join(5)

    run1(main)


# -- names ------------------------------------------------------------------------------------

def test_name_resolution_numeric_and_localhost():
    def main():
        assert socket.gethostbyname("127.0.0.1") == "127.0.0.1"
        assert socket.gethostbyname("localhost").startswith("127.")
        infos = socket.getaddrinfo("127.0.0.1", 80, socket.AF_INET, socket.SOCK_STREAM)
        assert infos[0][4] == ("127.0.0.1", 80)
        assert isinstance(infos[0][0], socket.AddressFamily)
        assert socket.getaddrinfo("localhost", 80, socket.AF_INET)[0][4][0].startswith("127.")
        assert socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV) \
            == ("127.0.0.1", "80")
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("no-such-host.invalid", 80)
        assert isinstance(socket.getfqdn("127.0.0.1"), str)

    run1(main)
    assert socket.gethostbyname("127.0.0.1") == "127.0.0.1"  # OS thread


def test_monkey_patched_socket_module():
    import socket as std

    import lwp.monkey as monkey

    import warnings

    with warnings.catch_warnings():  # a class of an already imported module (ssl.SSLSocket)
        warnings.simplefilter("ignore", monkey.MonkeyPatchWarning)  # may subclass the original
        monkey.patch_socket()
    try:
        assert std.socket is socket.socket and std.create_connection is socket.create_connection

        def main():
            with std.create_server(("127.0.0.1", 0)) as srv:
                t = lwp.spawn(srv.accept)
                with std.create_connection(srv.getsockname(), timeout=5) as c:
                    conn, _ = t.join(5)
                    with conn:
                        c.sendall(b"m")
                        assert conn.recv(1) == b"m"

        run1(main)
    finally:
        monkey.unpatch_all()
    assert std.socket is not socket.socket


# -- scale ------------------------------------------------------------------------------------

@pytest.mark.stress
def test_thousand_concurrent_connections():
    """1,000 connections open at once, each echoing a message; then the fds are back.

    Connection attempts go 100 at a time: a burst of 1,000 SYNs can overflow
    the loopback device's queue, and a dropped SYN costs a 1 s retransmission.
    """
    n = 1000

    def main():
        fds_before = len(os.listdir("/proc/self/fd"))
        connecting = lwp.Semaphore(100)
        all_open = lwp.Event()
        opened = [0]
        with socket.create_server(("127.0.0.1", 0), backlog=n) as srv:
            addr = srv.getsockname()

            def serve():
                for _ in range(n):
                    conn, _ = srv.accept()
                    lwp.spawn(echo, conn)

            def echo(conn):
                with conn:
                    conn.sendall(conn.recv(64))

            def client(i):
                with connecting:
                    c = socket.create_connection(addr, timeout=30)
                with c:
                    opened[0] += 1
                    if opened[0] == n:
                        all_open.set()
                    assert all_open.wait(30)
                    msg = b"hello %d" % i
                    c.sendall(msg)
                    return c.recv(64) == msg

            server = lwp.spawn(serve)
            clients = [lwp.spawn(client, i) for i in range(n)]
            ok = sum(c.join(60) for c in clients)
            server.join(30)
        while len(os.listdir("/proc/self/fd")) > fds_before:
            lwp.sleep(0.01)
        return ok

    assert lwp.run(main, lwps=2) == n


# -- known core limitation --------------------------------------------------------------------

DEEP_PARKS = """
import lwp, lwp.socket as socket

def nest(depth, fn):
    return fn() if depth == 0 else nest(depth - 1, fn)

def main():
    pairs = [socket.socketpair() for _ in range(200)]
    try:
        ts = [lwp.spawn(nest, 20, lambda a=a: a.recv(1)) for a, _ in pairs]
        lwp.sleep(0.05)  # main parks on a timer: each parking thread starts the next one
        for _, b in pairs:
            b.send(b"x")
        return [t.join(10) for t in ts]
    finally:
        for a, b in pairs:
            a.close()
            b.close()

assert lwp.run(main, lwps=1) == [b"x"] * 200
"""


def test_many_threads_parking_deep_in_the_stack():
    """New threads once inherited the parking thread's recursion depth (fixed in the core)."""
    import subprocess

    # In a child process: the failure kills an LWP's kernel thread.
    proc = subprocess.run([sys.executable, "-c", DEEP_PARKS], capture_output=True, timeout=50)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


CLOSED_AT_EXIT = """
import lwp.socket

class Holder:
    def __init__(self):
        self.s = lwp.socket.socket()
        self.cycle = self  # collected by the last collection, at interpreter exit

    def __del__(self):
        self.s.close()

h = Holder()
"""


def test_a_socket_closed_by_a_finalizer_at_interpreter_exit_closes_quietly():
    """Closing imported the poller lazily, which fails once the interpreter is
    shutting down: "Exception ignored ... ImportError: sys.meta_path is None",
    and the descriptor stayed open (seen at the exit of examples/web_client.py)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", CLOSED_AT_EXIT], capture_output=True, timeout=50)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()[-2000:]


def _passcred_by_setsockopt(tmp_path):
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    return a, b


def _passcred_inherited_from_the_listener(tmp_path):
    with socket.socket(socket.AF_UNIX) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        listener.bind(str(tmp_path / "sock"))
        listener.listen()
        b = socket.socket(socket.AF_UNIX)
        b.connect(str(tmp_path / "sock"))
        return listener.accept()[0], b


@pytest.mark.skipif(not hasattr(socket, "SO_PASSCRED"), reason="SO_PASSCRED is Linux's")
@pytest.mark.parametrize("pair", [_passcred_by_setsockopt, _passcred_inherited_from_the_listener],
                         ids=["setsockopt", "accepted"])
def test_a_recv_stopped_at_a_change_of_sender_is_not_a_drain(pair, tmp_path):
    """With SO_PASSCRED an AF_UNIX stream recv does not glue bytes of two
    processes: its short read left the second process's bytes in the buffer,
    yet cleared the readiness, and they waited for an edge that never came."""
    import subprocess

    from lwp._core import park

    child = "import socket, sys; socket.socket(fileno=int(sys.argv[1])).send(b'cd')"

    def main():
        a, b = pair(tmp_path)
        with a, b:
            a.settimeout(5)
            t = lwp.spawn(a.recv, 100)
            wait_until(park.current_lwp()._poller.busy)
            b.sendall(b"ab")
            # Blocking on purpose: both writes come before the reader runs.
            subprocess.run([sys.executable, "-c", child, str(b.fileno())],
                           pass_fds=[b.fileno()], check=True)
            return t.join(5), a.recv(100)

    assert run1(main) == (b"ab", b"cd")
