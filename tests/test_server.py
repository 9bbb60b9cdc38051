"""lwp.server.StreamServer: dispatcher/worker and iterative modes, limits, stop, accept errors.

Servers run on the default scheduler (started from the test's OS thread);
clients are plain blocking sockets in the test thread.  Every wait is bounded.
"""

import errno
import logging
import socket
import ssl
import threading

import pytest

from helpers import make_cert, wait_until
import lwp
from lwp import server as server_mod
from lwp.server import StreamServer

T = 5.0  # bound on every wait


def echo(conn, addr):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def client(addr):
    c = socket.create_connection(addr[:2], timeout=T)
    return c


def roundtrip(c, msg=b"ping"):
    c.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = c.recv(65536)
        assert chunk, "server closed early"
        got += chunk
    return got


def test_echo_concurrent_many_clients():
    srv = StreamServer(("127.0.0.1", 0), echo).start()
    try:
        clients = [client(srv.address) for _ in range(50)]
        for i, c in enumerate(clients):
            assert roundtrip(c, b"m%d" % i) == b"m%d" % i
        for c in clients:
            c.close()
    finally:
        assert srv.stop(T) == 0
    st = srv.stats()
    assert st["accepted"] == 50 and st["busy"] == 0 and st["workers"] == 0


def test_workers_are_reused():
    srv = StreamServer(("127.0.0.1", 0), echo, max_connections=4).start()
    try:
        for _ in range(20):
            with client(srv.address) as c:
                assert roundtrip(c) == b"ping"
        # every connection was closed before the next: the pool never grew past a few
        assert srv.stats()["workers_made"] <= 4
    finally:
        srv.stop(T)


def test_iterative_serves_one_at_a_time():
    srv = StreamServer(("127.0.0.1", 0), echo, mode="iterative").start()
    try:
        a = client(srv.address)
        b = client(srv.address)
        assert roundtrip(a, b"a") == b"a"
        b.sendall(b"b")
        b.settimeout(0.2)
        with pytest.raises(socket.timeout):
            b.recv(10)  # waits behind a
        a.close()
        b.settimeout(T)
        assert b.recv(10) == b"b"
        b.close()
        assert srv.stats()["max_busy"] == 1
    finally:
        srv.stop(T)


def test_back_pressure_waits_for_a_free_worker():
    srv = StreamServer(("127.0.0.1", 0), echo, max_connections=2).start()
    try:
        a, b, c = (client(srv.address) for _ in range(3))
        assert roundtrip(a, b"a") == b"a"
        assert roundtrip(b, b"b") == b"b"
        c.sendall(b"c")
        c.settimeout(0.2)
        with pytest.raises(socket.timeout):
            c.recv(10)  # connected (kernel backlog) but not accepted yet
        a.close()
        c.settimeout(T)
        assert c.recv(10) == b"c"
        assert srv.stats()["max_busy"] == 2
        b.close()
        c.close()
    finally:
        srv.stop(T)


def test_overload_callable_rejects():
    def busy(conn, addr):
        conn.sendall(b"busy")

    srv = StreamServer(("127.0.0.1", 0), echo, max_connections=1, overload=busy).start()
    try:
        a = client(srv.address)
        assert roundtrip(a) == b"ping"
        b = client(srv.address)
        assert b.recv(10) == b"busy"
        assert b.recv(10) == b""
        b.close()
        a.close()
        assert srv.stats()["rejected"] == 1
    finally:
        srv.stop(T)


def test_stop_drains_then_cancels():
    started = threading.Event()
    finished = []

    def slow(conn, addr):
        started.set()
        try:
            lwp.sleep(30)
        finally:
            finished.append(True)

    srv = StreamServer(("127.0.0.1", 0), slow).start()
    c = client(srv.address)
    assert started.wait(T)
    assert srv.stop(0.1) == 1  # one handler cancelled after the grace period
    assert finished == [True]
    assert c.recv(10) == b""
    c.close()
    with pytest.raises(OSError):
        socket.create_connection(srv.address[:2], timeout=T)


def test_stop_waits_for_busy_connections():
    release = lwp.Event()
    entered = threading.Event()

    def handler(conn, addr):
        entered.set()
        release.wait(T)
        conn.sendall(b"done")

    srv = StreamServer(("127.0.0.1", 0), handler).start()
    c = client(srv.address)
    assert entered.wait(T)
    stopper = threading.Thread(target=srv.stop, args=(T,))
    stopper.start()
    release.set()
    stopper.join(T)
    assert not stopper.is_alive()
    assert c.recv(10) == b"done"
    c.close()


def test_idle_phase_is_cancelled_at_stop():
    def handler(conn, addr):
        with srv.idle():
            conn.recv(10)

    srv = StreamServer(("127.0.0.1", 0), handler).start()
    c = client(srv.address)
    assert roundtrip_closed_after_stop(srv, c) == b""


def roundtrip_closed_after_stop(srv, c):
    import time

    deadline = time.monotonic() + T
    while srv.stats()["busy"] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert srv.stop(None) == 0  # idle connections do not hold stop up
    data = c.recv(10)
    c.close()
    return data


def test_handler_exception_does_not_stop_the_server(caplog):
    def bad(conn, addr):
        raise ValueError("boom")

    srv = StreamServer(("127.0.0.1", 0), bad).start()
    try:
        for _ in range(3):
            c = client(srv.address)
            assert c.recv(10) == b""
            c.close()
        assert srv.stats()["handler_errors"] == 3
    finally:
        srv.stop(T)


class BlockingHandler(logging.Handler):
    """A logging handler whose emit waits until released (a StreamHandler on a pipe
    nobody reads)."""

    def __init__(self):
        super().__init__()
        self.entered = threading.Event()
        self.unblock = threading.Event()
        self.records = []

    def emit(self, record):
        self.entered.set()
        assert self.unblock.wait(T), "the test never released the handler"
        self.records.append(record)


def test_a_blocking_log_handler_holds_no_connection():
    """A handler's exception was logged on its LWP (log.exception): a logging handler that
    blocked stalled every connection on that LWP.  One LWP and no monitor here, so nothing
    else could serve them."""
    def handler(conn, addr):
        while data := conn.recv(65536):
            if data == b"boom":
                raise ValueError("boom (expected by the test)")
            conn.sendall(data)

    stuck = BlockingHandler()
    logging.getLogger("lwp.server").addHandler(stuck)

    def main():
        srv = StreamServer(("127.0.0.1", 0), handler).start()

        def talk():
            served = 0
            with client(srv.address) as a, client(srv.address) as b:
                assert roundtrip(a) == b"ping"
                b.sendall(b"boom")
                assert stuck.entered.wait(T)  # the record's handler is stuck from now on
                try:
                    for i in range(10):
                        assert roundtrip(a, b"m%d" % i) == b"m%d" % i
                        served += 1
                except TimeoutError:
                    pass
                stuck.unblock.set()
            return served

        try:
            return lwp.blocking(talk)
        finally:
            srv.stop(T)

    try:
        served = lwp.run(main, lwps=1, monitor=False)
    finally:
        stuck.unblock.set()
        logging.getLogger("lwp.server").removeHandler(stuck)
    assert served == 10
    [record] = stuck.records
    assert record.getMessage().startswith("server: handler failed for ")
    assert record.exc_info is None and "ValueError: boom" in record.exc_text


class _FlakyListener:
    """Wraps the listener: the first accepts fail with EMFILE, then it recovers."""

    def __init__(self, real, failures):
        self.real = real
        self.failures = failures

    def _accept(self):
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.real._accept()

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_emfile_backs_off_and_recovers(monkeypatch, caplog):
    monkeypatch.setattr(server_mod, "BACKOFF_MIN", 0.001)
    srv = StreamServer(("127.0.0.1", 0), echo)
    srv.start()
    srv._listener = _FlakyListener(srv._listener, 3)
    try:
        c = client(srv.address)
        assert roundtrip(c) == b"ping"
        c.close()
        assert srv.stats()["accept_errors"] >= 3
    finally:
        srv._listener = srv._listener.real
        srv.stop(T)
    assert "backing off" in caplog.text


class _ClosedByStopListener(_FlakyListener):
    """Wraps the listener; once armed, an accept finds nothing and stop() closes it right then."""

    def __init__(self, real):
        super().__init__(real, 0)
        self.srv = None  # armed when set

    def _accept(self):
        if self.srv is not None and not self.srv._stopping:
            with self.srv._lock:
                self.srv._stopping = True  # stop() from another thread, in the window
            self.real.close()
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return self.real._accept()


def test_stop_closing_the_listener_between_accept_and_wait(monkeypatch):
    """The dispatcher that gets EAGAIN just before stop() closes the listener waits on
    fd -1; it must end quietly (it died with ValueError, and stop() re-raised it)."""
    make, made = server_mod._make_listener, []

    def wrapped(*args, **kwargs):
        made.append(_ClosedByStopListener(make(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(server_mod, "_make_listener", wrapped)
    srv = StreamServer(("127.0.0.1", 0), echo).start()
    try:
        c = client(srv.address)
        assert roundtrip(c) == b"ping"
        c.close()
        made[0].srv = srv
        try:
            client(srv.address).close()  # wakes the dispatcher into the armed accept
        except OSError:  # refused or reset: a busy dispatcher got there first
            pass
    finally:
        assert srv.stop(T) == 0


def test_real_emfile_recovers():
    """Exhaust the descriptors for real; the server survives and serves afterwards."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    srv = StreamServer(("127.0.0.1", 0), echo).start()
    hog = []
    try:
        c = client(srv.address)  # the client's fd exists before the limit bites
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(__import__("os").listdir("/proc/self/fd")) + 4, hard))
        try:
            while True:
                hog.append(socket.socket())
        except OSError:
            pass
        # the server cannot accept now; it backs off rather than dying
        pending = client_no_limit(srv.address, hog)
        import time

        time.sleep(0.1)
        assert srv.stats()["accept_errors"] >= 1
        for s in hog:
            s.close()
        hog.clear()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert roundtrip(pending) == b"ping"
        pending.close()
        assert roundtrip(c) == b"ping"
        c.close()
    finally:
        for s in hog:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        srv.stop(T)


def client_no_limit(addr, hog):
    hog.pop().close()  # room for one client socket
    return client(addr)


def test_reuse_port_two_servers_share_a_port():
    a = StreamServer(("127.0.0.1", 0), echo, reuse_port=True).start()
    b = StreamServer(("127.0.0.1", a.address[1]), echo, reuse_port=True).start()
    try:
        for _ in range(20):
            with client(a.address) as c:
                assert roundtrip(c) == b"ping"
        assert a.stats()["accepted"] + b.stats()["accepted"] == 20
    finally:
        a.stop(T)
        b.stop(T)


def test_serve_forever_in_lwp_run():
    def main():
        srv = StreamServer(("127.0.0.1", 0), echo)
        srv.start()

        def talk():
            c = socket.create_connection(srv.address, timeout=T)  # blocks one LWP briefly
            try:
                return roundtrip(c, b"hello")
            finally:
                c.close()
                srv.stop(T)

        t = lwp.spawn(lwp.blocking, talk)
        srv.serve_forever()
        return t.join(T)

    assert lwp.run(main, lwps=2) == b"hello"


def test_bad_arguments():
    with pytest.raises(ValueError):
        StreamServer(("127.0.0.1", 0), echo, mode="threaded")
    with pytest.raises(ValueError):
        StreamServer(("127.0.0.1", 0), echo, max_connections=0)
    with pytest.raises(ValueError):
        StreamServer(("127.0.0.1", 0), echo, overload="drop")


# -- TLS --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"))


def tls_server(cert, handler=echo, **kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    return StreamServer(("127.0.0.1", 0), handler, ssl_context=ctx, **kw).start()


def tls_client(srv, cert):
    ctx = ssl.create_default_context(cafile=cert[0])
    return ctx.wrap_socket(client(srv.address), server_hostname="localhost")


def wait_stat(srv, key, value):
    wait_until(lambda: srv.stats()[key] == value, T)


def test_tls_echo(cert):
    srv = tls_server(cert)
    try:
        with tls_client(srv, cert) as c:
            assert c.version() is not None
            assert roundtrip(c, b"secret" * 1000) == b"secret" * 1000
        assert srv.stats()["tls_errors"] == 0
    finally:
        srv.stop(T)


def test_tls_silent_client_holds_a_worker_not_the_dispatcher(cert):
    """A client that connects and sends nothing: others are served meanwhile, and it is
    dropped after handshake_timeout."""
    srv = tls_server(cert, handshake_timeout=0.3)
    try:
        silent = client(srv.address)
        wait_stat(srv, "busy", 1)
        with tls_client(srv, cert) as c:  # accepted and served while the silent one waits
            assert roundtrip(c) == b"ping"
        assert silent.recv(10) == b""  # dropped at the handshake timeout
        silent.close()
        wait_stat(srv, "busy", 0)
        assert srv.stats()["tls_errors"] == 1
    finally:
        srv.stop(T)


def test_tls_handshake_failure_logged_once_and_server_goes_on(cert, caplog):
    calls = []
    srv = tls_server(cert, handler=lambda conn, addr: calls.append(addr) or echo(conn, addr))
    try:
        with caplog.at_level(logging.DEBUG, logger="lwp.server"):
            with client(srv.address) as c:  # plain HTTP on the TLS port
                c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                try:
                    while c.recv(100):  # perhaps a TLS alert, then the close
                        pass
                except ConnectionResetError:
                    pass
            wait_stat(srv, "tls_errors", 1)
            with tls_client(srv, cert) as c:
                assert roundtrip(c) == b"ping"
            assert len(calls) == 1  # the handler saw only the good client
            wait_stat(srv, "busy", 0)
            assert srv.stats()["handler_errors"] == 0
    finally:
        srv.stop(T)  # the log writer has handed the record over
    records = [r for r in caplog.records if r.name == "lwp.server"]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert "TLS handshake" in records[0].getMessage() and records[0].exc_info is None


def test_tls_stop_ends_a_pending_handshake_at_once(cert):
    srv = tls_server(cert, handshake_timeout=60)
    silent = client(srv.address)
    wait_stat(srv, "busy", 1)
    stopper = threading.Thread(target=lambda: result.append(srv.stop(None)))
    result = []
    stopper.start()
    stopper.join(T)  # without the idle phase, stop would wait out the 60 s handshake
    assert not stopper.is_alive() and result == [0]
    assert silent.recv(10) == b""
    silent.close()


def test_tls_bad_arguments(cert):
    with pytest.raises(TypeError):
        StreamServer(("127.0.0.1", 0), echo, ssl_context=object())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ValueError):
        StreamServer(("127.0.0.1", 0), echo, ssl_context=ctx, handshake_timeout=0)
