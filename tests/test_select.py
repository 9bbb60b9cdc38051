"""lwp.select: select(), poll() and epoll() park the green thread.

As in test_socket: a ticker thread on the same LWP must advance while a call
waits, and an OS thread releases the wait only once it has (5 s at most).
"""

import os
import threading

import pytest

from helpers import N_TICKS, progress_while, run1, settle
import lwp
import lwp.select as select
import lwp.socket as socket


def test_reexports_the_standard_module():
    import select as std

    for name in dir(std):
        if not name.startswith("_"):
            assert hasattr(select, name), name
    assert select.error is OSError and select.EPOLLIN == std.EPOLLIN


# -- select() -------------------------------------------------------------------------------

def test_select_parks_until_readable():
    def main():
        a, b = socket.socketpair()
        with a, b:
            (r, w, x), seen = progress_while(lambda: select.select([a, b.fileno()], [], [], 10),
                                             lambda: b.send(b"x"))
            assert r == [a] and w == [] and x == []
            return seen

    assert run1(main) >= N_TICKS


def test_select_ready_at_once_and_writable():
    def main():
        a, b = socket.socketpair()
        with a, b:
            b.send(b"x")
            assert select.select([a], [b], [], None) == ([a], [b], [])
            assert select.select((), [a.fileno()], (), 0) == ([], [a.fileno()], [])
            assert select.select(iter([a]), [], [], 1) == ([a], [], [])

    run1(main)


def test_select_timeout_and_empty_lists():
    def main():
        a, b = socket.socketpair()
        with a, b:
            assert select.select([a], [], [], 0.02) == ([], [], [])
            assert select.select([a], [], [], 0) == ([], [], [])
            assert select.select([], [], [], 0.01) == ([], [], [])
            with pytest.raises(ValueError):
                select.select([a], [], [], -1)
            with pytest.raises(TypeError):
                select.select([a], [], [], "1")

    run1(main)


def test_select_exceptional_condition():
    def main():
        with socket.create_server(("127.0.0.1", 0)) as srv:
            with socket.create_connection(srv.getsockname(), timeout=5) as c:
                conn, _ = srv.accept()
                with conn:
                    t = lwp.spawn(select.select, [], [], [conn], 10)
                    settle()
                    c.send(b"!", socket.MSG_OOB)
                    assert t.join(5) == ([], [], [conn])

    run1(main)


def test_select_on_a_closed_fd_raises_like_the_stdlib():
    def main():
        a, b = socket.socketpair()
        fd = a.detach()
        os.close(fd)
        with b:
            with pytest.raises((OSError, ValueError)):
                select.select([fd], [], [], 1)

    run1(main)


def test_cancel_select_leaks_nothing():
    def main():
        a, b = socket.socketpair()
        with a, b:
            t = lwp.spawn(select.select, [a], [], [])
            settle()
            t.cancel()
            with pytest.raises(lwp.Cancelled):
                t.join(5)
            t = lwp.spawn(select.select, [], [], [])  # nothing at all: parks for ever
            settle()
            t.cancel()
            with pytest.raises(lwp.Cancelled):
                t.join(5)

    run1(main)  # conftest: the private epoll fd was closed


def test_select_in_a_plain_os_thread():
    a, b = socket.socketpair()
    with a, b:
        assert select.select([a], [], [], 0.01) == ([], [], [])
        threading.Timer(0.01, b.send, (b"x",)).start()
        assert select.select([a], [], [], 5) == ([a], [], [])


# -- poll() ---------------------------------------------------------------------------------

def test_poll_parks_until_ready():
    def main():
        a, b = socket.socketpair()
        with a, b:
            p = select.poll()
            p.register(a, select.POLLIN)
            p.register(b.fileno(), select.POLLIN)
            events, seen = progress_while(lambda: p.poll(10_000), lambda: b.send(b"x"))
            assert events == [(a.fileno(), select.POLLIN)]
            return seen

    assert run1(main) >= N_TICKS


def test_poll_register_modify_unregister_timeout_hangup():
    def main():
        a, b = socket.socketpair()
        with a:
            p = select.poll()
            p.register(a)
            assert p.poll(0) == [(a.fileno(), select.POLLOUT)]
            p.modify(a, select.POLLIN)
            assert p.poll(20) == []
            assert p.poll(0) == []
            t = lwp.spawn(p.poll)
            settle()
            b.close()
            ((fd, ev),) = t.join(5)
            assert fd == a.fileno() and ev & (select.POLLIN | select.POLLHUP)
            p.unregister(a)
            with pytest.raises(KeyError):
                p.unregister(a)
            assert p.poll(10) == []

    run1(main)


def test_poll_nothing_registered_and_cancel():
    def main():
        p = select.poll()
        assert p.poll(10) == []
        a, b = socket.socketpair()
        with a, b:
            p.register(a, select.POLLIN)
            t = lwp.spawn(p.poll, -1)
            settle()
            t.cancel()
            with pytest.raises(lwp.Cancelled):
                t.join(5)

    run1(main)


def test_poll_in_a_plain_os_thread():
    a, b = socket.socketpair()
    with a, b:
        p = select.poll()
        p.register(a, select.POLLIN)
        assert p.poll(10) == []
        b.send(b"x")
        assert p.poll(5000) == [(a.fileno(), select.POLLIN)]


# -- epoll ----------------------------------------------------------------------------------

def test_epoll_parks_until_ready():
    def main():
        a, b = socket.socketpair()
        with a, b, select.epoll() as ep:
            ep.register(a.fileno(), select.EPOLLIN)
            events, seen = progress_while(lambda: ep.poll(10), lambda: b.send(b"x"))
            assert events == [(a.fileno(), select.EPOLLIN)]
            assert ep.poll(0.01) == [(a.fileno(), select.EPOLLIN)]  # level-triggered
            a.recv(1)
            assert ep.poll(0.01) == []
            ep.modify(a.fileno(), select.EPOLLOUT)
            assert ep.poll(-1, 1) == [(a.fileno(), select.EPOLLOUT)]
            ep.unregister(a.fileno())
            assert ep.poll(0) == []
            return seen

    assert run1(main) >= N_TICKS


def test_epoll_close_wakes_a_parked_poll():
    def main():
        a, b = socket.socketpair()
        with a, b:
            ep = select.epoll()
            ep.register(a.fileno(), select.EPOLLIN)
            t = lwp.spawn(ep.poll)
            settle()
            ep.close()
            assert ep.closed
            with pytest.raises(OSError):
                t.join(5)
            ep.close()  # idempotent

    run1(main)


def test_epoll_fromfd_and_os_thread():
    a, b = socket.socketpair()
    with a, b:
        import select as std

        raw = std.epoll()
        ep = select.epoll.fromfd(raw.detach() if hasattr(raw, "detach") else os.dup(raw.fileno()))
        raw.close()
        with ep:
            ep.register(a.fileno(), select.EPOLLIN)
            assert ep.poll(0.01) == []
            b.send(b"x")
            assert ep.poll(5) == [(a.fileno(), select.EPOLLIN)]
        with pytest.raises(ValueError):
            ep.__enter__()


def test_lwp_select_is_this_module():
    """The package exports no ``select`` of its own: the channel select is lwp.channel.select."""
    assert lwp.select is select and not callable(select)
    assert select.select is not lwp.channel.select
