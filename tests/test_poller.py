"""The per-LWP readiness poller (lwp/_core/poller.py) and fd_closing."""

import errno

import pytest

from helpers import run1, wait_until
import lwp
import lwp.socket as socket
from lwp._core import park


def _lwp_calls(monkeypatch, lwp_obj):
    """Count the callbacks other kernel threads post to ``lwp_obj``."""
    posted = []
    real = lwp_obj.call_soon_threadsafe

    def counting(fn, *args):
        posted.append(getattr(fn, "__name__", fn))
        return real(fn, *args)

    monkeypatch.setattr(lwp_obj, "call_soon_threadsafe", counting)
    return posted


def _close_under(reader, sock):
    """Close ``sock`` while ``reader`` (a thread) is parked on it: the errno it fails with."""
    sock.close()
    with pytest.raises(OSError) as info:
        reader.join(5)
    return info.value.errno


def test_closing_an_fd_disturbs_only_the_lwps_that_waited_on_it(monkeypatch):
    """fd_closing once posted a callback to, and woke, every LWP of every scheduler."""
    def main():
        here = park.current_lwp()
        other = next(x for x in here.sched.lwps() if x is not here)
        posted = _lwp_calls(monkeypatch, other)
        a, b = socket.socketpair()
        with a, b:
            t = lwp.spawn(a.recv, 1)
            wait_until(lambda: t._lwp is not None and t._lwp._poller.busy())
            if t._lwp is not here:
                pytest.skip("the reader was placed on the other LWP")
            return _close_under(t, a), [name for name in posted if "forget" in name]

    assert lwp.run(main, lwps=2) == (errno.EBADF, [])


def test_a_closed_fd_leaves_no_state_behind():
    def main():
        poller = park.current_lwp()._poller
        a, b = socket.socketpair()
        fd = a.fileno()
        with a, b:
            t = lwp.spawn(a.recv, 1)
            wait_until(poller.busy)
            b.send(b"x")
            assert t.join(5) == b"x"
            assert fd in poller._fds  # kept between waits: no re-registration
        return fd not in poller._fds and not poller.busy()

    assert lwp.run(main, lwps=1)


def test_a_waiter_on_another_lwp_wakes_with_ebadf():
    def main():
        here = park.current_lwp()
        a, b = socket.socketpair()
        with a, b:
            t = lwp.spawn(a.recv, 1, bound=True)  # a kernel thread of its own
            wait_until(lambda: t._lwp not in (None, here) and t._lwp._poller.busy())
            return _close_under(t, a)

    assert lwp.run(main, lwps=1) == errno.EBADF


# -- edge registration of lwp sockets ------------------------------------------------------

class _CountingC:
    """Stands for the C socket type in lwp.socket: counts recv calls that found nothing."""

    def __init__(self, real):
        self.real = real
        self.eagain = 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def recv(self, sock, *args):
        try:
            return self.real.recv(sock, *args)
        except BlockingIOError:
            self.eagain += 1
            raise


def test_a_socket_waiting_for_its_next_message_makes_no_failed_recv(monkeypatch):
    """Each wait for the next message used to cost a recv that raised EAGAIN first."""
    counting = _CountingC(socket._ss)
    monkeypatch.setattr(socket, "_ss", counting)

    def main():
        a, b = socket.socketpair()
        with a, b:
            def echo():
                while data := b.recv(4096):
                    b.sendall(data)

            t = lwp.spawn(echo)
            for i in range(50):
                a.sendall(b"%d" % i)
                assert a.recv(4096) == b"%d" % i
            a.shutdown(socket.SHUT_WR)
            t.join(5)
        return counting.eagain

    # The first recv of each side finds nothing before the socket is registered.
    assert run1(main) <= 2


def test_a_socket_that_waited_to_connect_can_send_at_once():
    """The edge that ended the connect's wait was handed to the waiter and not
    recorded, so the first send waited for an edge that never came."""
    def main():
        with socket.create_server(("127.0.0.1", 0)) as srv:
            c = socket.socket()
            c.settimeout(2)
            with c:
                c.connect(srv.getsockname())  # in progress: waits for writable
                conn, _ = srv.accept()
                with conn:
                    c.send(b"!")
                    return conn.recv(1)

    assert run1(main) == b"!"


def test_end_of_stream_after_a_short_read_is_seen():
    """A hang-up is a state, not an edge: once its edge was handed to a reader
    that then drained the data, the next recv must still see the end."""
    def main():
        a, b = socket.socketpair()
        with b:
            t = lwp.spawn(lambda: (b.recv(4096), b.recv(4096)))
            poller = park.current_lwp()._poller
            wait_until(poller.busy)  # parked: the edge of what follows goes to it
            a.sendall(b"last words")
            a.close()
            return t.join(5)

    assert run1(main) == (b"last words", b"")


def test_a_number_closed_behind_lwps_back_and_reused_gets_registered_again():
    """An edge registration is never re-armed: if its fd is closed without lwp
    knowing and the number reused, the new socket must not trust the old state."""
    import os
    import _socket

    def main():
        a, b = socket.socketpair()
        t = lwp.spawn(a.recv, 1)  # registers a's number
        wait_until(park.current_lwp()._poller.busy)
        b.send(b"x")
        assert t.join(5) == b"x"
        fd = a.fileno()
        _socket.socket.detach(a)  # the C detach: lwp is not told
        os.close(fd)
        c, d = socket.socketpair()
        with b, c, d:
            assert fd in (c.fileno(), d.fileno())
            reused, other = (c, d) if c.fileno() == fd else (d, c)
            t = lwp.spawn(reused.recv, 1)
            wait_until(park.current_lwp()._poller.busy)
            other.send(b"y")
            return t.join(5)

    assert run1(main) == b"y"


def _refused_udp_socket():
    """A UDP socket connected to a port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        address = gone.getsockname()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(address)
    return u


def test_an_error_once_reported_does_not_keep_a_socket_ready(monkeypatch):
    """An error (EPOLLERR) was kept as a state, like a hang-up: after a UDP
    socket reported a refused datagram, every wait returned at once and the
    next recv spun on EAGAIN until its timeout."""
    counting = _CountingC(socket._ss)
    monkeypatch.setattr(socket, "_ss", counting)

    def main():
        with _refused_udp_socket() as u:
            u.settimeout(5)
            t = lwp.spawn(u.recv, 10)
            wait_until(park.current_lwp()._poller.busy)  # registered: the error is an edge
            u.send(b"x")
            with pytest.raises(ConnectionRefusedError):
                t.join(5)
            counting.eagain = 0
            u.settimeout(0.2)
            with pytest.raises(TimeoutError):
                u.recv(10)
            return counting.eagain

    assert run1(main) <= 1


def _tcp_pair():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname())
        return srv.accept()[0], c


@pytest.mark.parametrize("pair", [_tcp_pair, socket.socketpair], ids=["tcp", "unix"])
def test_data_after_urgent_data_is_received(pair):
    """A recv stops at the urgent mark (TCP; AF_UNIX since Linux 5.15): that
    short read did not drain the buffer, yet it cleared the readiness, and
    the data after the mark waited for an edge that never came."""
    def main():
        conn, c = pair()
        with conn, c:
            conn.settimeout(5)
            t = lwp.spawn(conn.recv, 100)
            wait_until(park.current_lwp()._poller.busy)
            c.sendall(b"ab")
            try:
                c.send(b"!", socket.MSG_OOB)
            except OSError as e:
                pytest.skip(f"no urgent data here: {e}")
            c.sendall(b"cd")
            first = t.join(5)
            rest = b""
            while len(first + rest) < 4:
                rest += conn.recv(100)
            return first + rest

    assert run1(main) == b"abcd"


def test_a_stale_hang_up_under_a_reused_number_does_not_make_a_socket_spin(monkeypatch):
    """epoll reports events by fd number but keeps a registration as long as
    its file lives: a socket collected without close, whose file lives on in
    a dup, keeps reporting under its old number.  Its hang-up was taken as
    the new socket's, whose every wait then returned at once."""
    import gc
    import warnings

    counting = _CountingC(socket._ss)
    monkeypatch.setattr(socket, "_ss", counting)

    def main():
        poller = park.current_lwp()._poller
        a, b = socket.socketpair()
        dup = socket.fromfd(a.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
        t = lwp.spawn(a.recv, 1)  # registers a's number
        wait_until(poller.busy)
        b.send(b"x")
        assert t.join(5) == b"x"
        fd = a.fileno()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del a, t
            gc.collect()
        c, d = socket.socketpair()
        with dup, c, d:
            assert fd in (c.fileno(), d.fileno())
            reused = c if c.fileno() == fd else d
            reused.settimeout(0.2)
            t = lwp.spawn(reused.recv, 1)
            wait_until(poller.busy)
            counting.eagain = 0
            b.close()  # the old file hangs up, reported under the reused number
            with pytest.raises(TimeoutError):
                t.join(5)
            return counting.eagain

    assert run1(main) <= 2


def test_one_shot_waits_between_edge_waits_lose_no_wake_up():
    """A one-shot wait (wait_readable, as lwp.os.read makes) on an
    edge-registered socket switches its registration; the next edge wait
    must switch it back and see data that is already there."""
    def main():
        poller = park.current_lwp()._poller
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(5)
            t = lwp.spawn(a.recv, 100)
            wait_until(poller.busy)
            b.send(b"1")
            got = [t.join(5)]  # a short read: known not ready
            b.send(b"2")
            assert park.wait_readable(a.fileno(), 5)
            got.append(a.recv(100))
            t = lwp.spawn(a.recv, 100)
            w = lwp.spawn(park.wait_readable, a.fileno(), 5)
            wait_until(lambda: poller._nwaiting == 2)
            b.send(b"3")  # wakes the first; the other finds nothing and waits on
            got.append(t.join(5))
            b.send(b"4")
            assert w.join(5)
            got.append(a.recv(100))
            t = lwp.spawn(a.recv, 100)
            wait_until(poller.busy)
            b.send(b"5")
            got.append(t.join(5))
            return got

    assert run1(main) == [b"1", b"2", b"3", b"4", b"5"]


def test_readers_on_several_lwps_share_one_socket():
    """Each LWP's epoll holds its own edge registration and readiness of the
    socket: every byte reaches some reader, and every reader sees the end."""
    def main():
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(10)

            def reader():
                n = 0
                while data := a.recv(7):
                    n += len(data)
                return n

            readers = [lwp.spawn(reader, bound=i % 2 == 0) for i in range(6)]
            sent = 0
            for i in range(2000):
                sent += b.send(b"y" * (1 + i % 50))
                if i % 7 == 0:
                    lwp.sleep(0)
            b.shutdown(socket.SHUT_WR)
            return sum(r.join(10) for r in readers) == sent

    assert lwp.run(main, lwps=2)
