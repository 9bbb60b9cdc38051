"""lwp.selectors: the standard selectors over lwp.select's cooperative calls."""


import pytest

from helpers import N_TICKS, progress_while, settle
import lwp
import lwp.selectors as selectors
import lwp.socket as socket

CLASSES = [selectors.EpollSelector, selectors.PollSelector, selectors.SelectSelector]


def test_names():
    import selectors as std

    assert selectors.DefaultSelector is selectors.EpollSelector
    assert issubclass(selectors.EpollSelector, std.EpollSelector)
    assert selectors.EVENT_READ == std.EVENT_READ and selectors.SelectorKey is std.SelectorKey
    assert selectors.BaseSelector is std.BaseSelector
    for name in selectors.__all__:
        assert hasattr(selectors, name)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_select_parks_until_ready(cls):
    def main():
        a, b = socket.socketpair()
        with a, b, cls() as sel:
            sel.register(a, selectors.EVENT_READ, "a")
            ready, seen = progress_while(lambda: sel.select(10), lambda: b.send(b"x"))
            assert [(k.fileobj, k.data, ev) for k, ev in ready] == [(a, "a", selectors.EVENT_READ)]
            return seen

    assert lwp.run(main, lwps=1) >= N_TICKS


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_readiness_timeout_modify_unregister(cls):
    def main():
        a, b = socket.socketpair()
        with a, b, cls() as sel:
            key = sel.register(a, selectors.EVENT_READ | selectors.EVENT_WRITE)
            assert sel.select(0) == [(key, selectors.EVENT_WRITE)]
            key = sel.modify(a, selectors.EVENT_READ, data=1)
            assert sel.select(0.02) == []
            assert sel.select(-1) == []
            b.send(b"x")
            assert sel.select() == [(key, selectors.EVENT_READ)]
            sel.unregister(a)
            assert sel.get_map() == {}
            assert sel.select(0.01) == []

    lwp.run(main, lwps=1)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_cancel_a_parked_select(cls):
    def main():
        a, b = socket.socketpair()
        with a, b, cls() as sel:
            sel.register(a, selectors.EVENT_READ)
            t = lwp.spawn(sel.select)
            settle()
            assert not t.done()
            t.cancel()
            with pytest.raises(lwp.Cancelled):
                t.join(5)
            b.send(b"x")
            assert len(sel.select(5)) == 1  # still usable

    lwp.run(main, lwps=1)


def test_default_selector_serves_many_connections():
    """An echo server in one green thread over DefaultSelector, clients in others."""
    n = 50

    def main():
        with socket.create_server(("127.0.0.1", 0), backlog=n) as srv, \
                selectors.DefaultSelector() as sel:
            srv.setblocking(False)
            sel.register(srv, selectors.EVENT_READ)
            done = [0]

            def server():
                conns = []
                try:
                    while done[0] < n:
                        for key, _ in sel.select(5):
                            if key.fileobj is srv:
                                conn, _ = srv.accept()
                                conn.setblocking(False)
                                conns.append(conn)
                                sel.register(conn, selectors.EVENT_READ)
                            else:
                                data = key.fileobj.recv(100)
                                if data:
                                    key.fileobj.sendall(data)
                                else:
                                    sel.unregister(key.fileobj)
                                    key.fileobj.close()
                                    done[0] += 1
                finally:
                    for c in conns:
                        c.close()

            def client(i):
                with socket.create_connection(srv.getsockname(), timeout=5) as c:
                    c.sendall(b"m%d" % i)
                    return c.recv(100) == b"m%d" % i

            s = lwp.spawn(server)
            ok = sum(t.join(10) for t in [lwp.spawn(client, i) for i in range(n)])
            s.join(10)
            return ok

    assert lwp.run(main, lwps=2) == n


def test_in_a_plain_os_thread():
    a, b = socket.socketpair()
    with a, b, selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ)
        assert sel.select(0.01) == []
        b.send(b"x")
        assert len(sel.select(5)) == 1
