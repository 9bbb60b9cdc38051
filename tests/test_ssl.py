"""lwp.ssl: TLS over lwp sockets, parking while OpenSSL wants the network.

The certificate is self-signed, made for the test by the ``openssl`` command
(skipped, with the reason, where it is missing).
"""

import threading
import time

import pytest

from helpers import N_TICKS, held_http_server, make_cert, progress_while, settle
import lwp
import lwp.socket as socket
import lwp.ssl as ssl


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def contexts(cert):
    certfile, keyfile = cert
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certfile, keyfile)
    client = ssl.create_default_context(cafile=certfile)
    return server, client


def tls_pair(contexts):
    """A connected (client, server) pair of lwp SSLSockets, handshaken by two green threads."""
    server_ctx, client_ctx = contexts
    with socket.create_server(("127.0.0.1", 0)) as lst:
        t = lwp.spawn(lambda: server_ctx.wrap_socket(lst.accept()[0], server_side=True))
        raw = socket.create_connection(lst.getsockname(), timeout=10)
        client = client_ctx.wrap_socket(raw, server_hostname="localhost")
        return client, t.join(10)


def read_up_to(sock, n):
    """Read until ``n`` bytes or the end of the stream."""
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def test_names(contexts):
    import ssl as std

    server_ctx, client_ctx = contexts
    assert isinstance(client_ctx, ssl.SSLContext) and isinstance(client_ctx, std.SSLContext)
    assert client_ctx.check_hostname and client_ctx.verify_mode == ssl.CERT_REQUIRED
    assert issubclass(ssl.SSLSocket, std.SSLSocket) and issubclass(ssl.SSLSocket, socket.socket)
    assert ssl.SSLError is std.SSLError and ssl.SSLWantReadError is std.SSLWantReadError
    for name in ("CERT_REQUIRED", "PROTOCOL_TLS_CLIENT", "Purpose", "MemoryBIO", "SSLObject"):
        assert getattr(ssl, name) is getattr(std, name)
    with pytest.raises(TypeError):
        ssl.SSLSocket()


def test_handshake_and_echo_on_one_lwp(contexts):
    """Client and server on the same LWP: impossible unless every TLS wait parks."""
    def main():
        client, server = tls_pair(contexts)
        with client, server:
            assert isinstance(client, ssl.SSLSocket) and isinstance(server, ssl.SSLSocket)
            assert client.version() and client.getpeercert()["subject"]
            t = lwp.spawn(lambda: server.sendall(server.recv(100).upper()))
            client.sendall(b"hello")
            assert client.recv(100) == b"HELLO"
            t.join(5)

    lwp.run(main, lwps=1)


def test_read_parks(contexts):
    def main():
        client, server = tls_pair(contexts)
        with client, server:
            data, seen = progress_while(lambda: client.recv(100),
                                        lambda: server.sendall(b"from an OS thread"))
            assert data == b"from an OS thread"
            return seen

    assert lwp.run(main, lwps=1) >= N_TICKS


def test_handshake_parks(contexts):
    server_ctx, client_ctx = contexts

    def main():
        with socket.create_server(("127.0.0.1", 0)) as lst:
            raw = socket.create_connection(lst.getsockname(), timeout=10)
            out = []

            def serve():  # an OS thread: plain blocking semantics
                conn, _ = lst.accept()
                out.append(server_ctx.wrap_socket(conn, server_side=True))

            client, seen = progress_while(
                lambda: client_ctx.wrap_socket(raw, server_hostname="localhost"),
                lambda: threading.Thread(target=serve).start())
            deadline = time.monotonic() + 10
            while not out and time.monotonic() < deadline:
                lwp.sleep(0.001)
            with client, out[0]:
                assert client.version() == out[0].version()
            return seen

    assert lwp.run(main, lwps=1) >= N_TICKS


def test_large_sendall_to_a_green_reader(contexts):
    payload = bytes(range(256)) * 16 * 1024  # 4 MB

    def main():
        client, server = tls_pair(contexts)
        with client, server:
            t = lwp.spawn(read_up_to, server, len(payload))
            client.sendall(payload)
            return t.join(30) == payload

    assert lwp.run(main, lwps=1)


def test_timeouts_and_nonblocking(contexts):
    def main():
        client, server = tls_pair(contexts)
        with client, server:
            client.settimeout(0.02)
            with pytest.raises(TimeoutError, match="read operation timed out"):
                client.recv(10)
            server.sendall(b"later")
            client.settimeout(5)
            assert client.recv(10) == b"later"
            client.setblocking(False)
            with pytest.raises(ssl.SSLWantReadError):
                client.recv(10)
            server.sendall(b"x")
            deadline = time.monotonic() + 5
            while True:
                try:
                    assert client.recv(10) == b"x"
                    break
                except ssl.SSLWantReadError:
                    assert time.monotonic() < deadline
                    lwp.sleep(0.001)

    lwp.run(main, lwps=1)


def test_makefile_over_tls(contexts):
    def main():
        client, server = tls_pair(contexts)
        with client, server:
            def echo():
                with server.makefile("rwb") as f:
                    for line in f:
                        f.write(line.upper())
                        f.flush()
                server.unwrap()  # answers the client's close_notify

            t = lwp.spawn(echo)
            with client.makefile("rwb") as f:
                f.write(b"abc\n")
                f.flush()
                assert f.readline() == b"ABC\n"
                f.write(b"xyz\n")
                f.flush()
                assert f.readline() == b"XYZ\n"
            client.unwrap()  # close_notify: the server's loop ends, it answers
            t.join(5)

    lwp.run(main, lwps=1)


def test_unwrap_back_to_plain_text(contexts):
    def main():
        client, server = tls_pair(contexts)
        with client, server:
            t = lwp.spawn(server.unwrap)
            plain = client.unwrap()
            assert plain is client and t.join(5) is server
            client.sendall(b"clear")
            assert server.recv(10) == b"clear"
            with pytest.raises(ValueError):
                client.unwrap()

    lwp.run(main, lwps=1)


def test_eof_and_ragged_eof(contexts):
    def main():
        client, server = tls_pair(contexts)
        with client:
            server.close()  # no close_notify: a ragged EOF, suppressed by default
            assert client.recv(10) == b""

    lwp.run(main, lwps=1)


def test_verification_failure_closes_the_socket(cert):
    def main():
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(*cert)
        strict = ssl.create_default_context()  # does not trust the self-signed certificate
        with socket.create_server(("127.0.0.1", 0)) as lst:
            def serve():
                conn, _ = lst.accept()
                try:
                    server_ctx.wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    pass

            t = lwp.spawn(serve)
            raw = socket.create_connection(lst.getsockname(), timeout=10)
            with pytest.raises(ssl.SSLCertVerificationError):
                strict.wrap_socket(raw, server_hostname="localhost")
            t.join(10)

    lwp.run(main, lwps=1)  # conftest: no fd left open by the failed handshake


@pytest.mark.parametrize("where", ["read", "handshake", "accept"])
def test_cancel(contexts, where):
    server_ctx, client_ctx = contexts

    def main():
        with socket.create_server(("127.0.0.1", 0)) as lst:
            if where == "read":
                client, server = tls_pair(contexts)
                t = lwp.spawn(client.recv, 10)
            elif where == "accept":
                slst = server_ctx.wrap_socket(socket.socket(), server_side=True)
                slst.bind(("127.0.0.1", 0))
                slst.listen()
                t = lwp.spawn(slst.accept)
            else:  # the server never answers the ClientHello
                raw = socket.create_connection(lst.getsockname(), timeout=10)
                conn, _ = lst.accept()
                t = lwp.spawn(client_ctx.wrap_socket, raw, server_hostname="localhost")
            settle()
            lwp.sleep(0.01)
            assert not t.done()
            t.cancel()
            with pytest.raises(lwp.Cancelled):
                t.join(5)
            if where == "read":
                client.close()
                server.close()
            elif where == "accept":
                slst.close()
            else:
                conn.close()

    lwp.run(main, lwps=1)  # conftest: a cancelled handshake closed its socket


def test_os_thread_client_green_server(contexts):
    server_ctx, client_ctx = contexts
    with socket.create_server(("127.0.0.1", 0)) as lst:
        addr = lst.getsockname()

        def green_server():
            conn, _ = lst.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(s.recv(100) * 2)

        t = lwp.spawn(green_server)
        with client_ctx.wrap_socket(socket.create_connection(addr, timeout=10),
                                    server_hostname="localhost") as c:
            c.sendall(b"os")
            got = b""
            while len(got) < 4:
                got += c.recv(10)
            assert got == b"osos"
        t.join(10)


def test_deprecated_module_wrap_socket(cert):
    if not hasattr(ssl, "wrap_socket"):
        pytest.skip("ssl.wrap_socket is gone in this Python")

    def main():
        with socket.create_server(("127.0.0.1", 0)) as lst:
            with pytest.warns(DeprecationWarning):
                slst = ssl.wrap_socket(socket.socket(), server_side=True, certfile=cert[0],
                                       keyfile=cert[1])
            with slst:
                assert isinstance(slst, ssl.SSLSocket)
            lst.close()

    lwp.run(main, lwps=1)


def test_monkey_patched_ssl_uses_lwp_contexts(cert):
    import ssl as std

    import lwp.monkey as monkey

    monkey.patch_ssl()
    try:
        assert std.SSLContext is ssl.SSLContext
        ctx = std.create_default_context(cafile=cert[0])  # the stdlib function, patched class
        assert isinstance(ctx, ssl.SSLContext)
        assert ctx.sslsocket_class is ssl.SSLSocket
        # the standard setters name the class through the module: ours must not recurse
        ctx.verify_mode = std.CERT_OPTIONAL
        ctx.options |= std.OP_NO_COMPRESSION
        ctx.verify_flags |= std.VERIFY_X509_STRICT
        ctx.minimum_version = std.TLSVersion.TLSv1_2
        ctx.maximum_version = std.TLSVersion.TLSv1_3
        assert ctx.verify_mode == std.CERT_OPTIONAL and ctx.options & std.OP_NO_COMPRESSION
        assert ctx.minimum_version == std.TLSVersion.TLSv1_2
        server_ctx = std.SSLContext(std.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(*cert)
        seen = []
        ctx._msg_callback = lambda *args: seen.append(args[3])
        assert ctx._msg_callback is not None

        def main():
            with socket.create_server(("127.0.0.1", 0)) as lst:
                t = lwp.spawn(lambda: server_ctx.wrap_socket(lst.accept()[0], server_side=True))
                c = ctx.wrap_socket(std.create_connection(lst.getsockname(), timeout=10),
                                    server_hostname="localhost")
                with c, t.join(10):
                    assert isinstance(c, ssl.SSLSocket)

        lwp.run(main, lwps=1)
        assert seen and isinstance(seen[0], std._TLSContentType)
        ctx._msg_callback = None
    finally:
        monkey.unpatch_all()
    assert std.SSLContext is not ssl.SSLContext


def test_get_server_certificate_parks(cert, contexts):
    """The server handshakes in a green thread of the same LWP: it only can if the
    client's connect and handshake park."""
    server_ctx, _ = contexts
    with open(cert[0]) as f:
        expected = ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(f.read()))

    def main():
        with socket.create_server(("127.0.0.1", 0)) as lst:
            def serve():
                for _ in range(2):
                    with server_ctx.wrap_socket(lst.accept()[0], server_side=True) as conn:
                        conn.recv(1)  # until the client closes

            server = lwp.spawn(serve)
            settle()  # parked in accept, on this LWP for good
            pems = [ssl.get_server_certificate(lst.getsockname(), timeout=5),
                    ssl.get_server_certificate(lst.getsockname(), ca_certs=cert[0], timeout=5)]
            server.join(5)
            return pems

    assert lwp.run(main, lwps=1) == [expected, expected]


def test_get_server_certificate_verification_failure(contexts, tmp_path_factory):
    """With ``ca_certs`` that do not vouch for the server: the standard error, no leak."""
    server_ctx, _ = contexts
    other_ca, _ = make_cert(tmp_path_factory.mktemp("other-ca"))

    def main():
        with socket.create_server(("127.0.0.1", 0)) as lst:
            def serve():
                conn = lst.accept()[0]
                with pytest.raises(ssl.SSLError):
                    server_ctx.wrap_socket(conn, server_side=True)

            server = lwp.spawn(serve)
            settle()
            with pytest.raises(ssl.SSLError):
                ssl.get_server_certificate(lst.getsockname(), ca_certs=other_ca, timeout=5)
            server.join(5)

    lwp.run(main, lwps=1)


def test_sendfile_over_tls_to_a_green_reader(contexts, tmp_path):
    payload = bytes(range(256)) * 4 * 1024  # 1 MB: more than the socket buffers hold
    path = tmp_path / "payload"
    path.write_bytes(payload)

    def main():
        client, server = tls_pair(contexts)
        with client, server:
            t = lwp.spawn(read_up_to, server, len(payload))
            with open(path, "rb") as f:
                assert client.sendfile(f, offset=10) == len(payload) - 10
                assert f.tell() == len(payload)
            client.sendall(b"x" * 10)
            return t.join(30) == payload[10:] + b"x" * 10

    assert lwp.run(main, lwps=1)


@pytest.mark.parametrize("on_connect", [True, False])
def test_wrap_then_connect_on_one_lwp(contexts, on_connect):
    """An unconnected socket wrapped first: ``connect`` (and the handshake it does,
    or the explicit one) park while the server, on the same LWP, answers."""
    server_ctx, client_ctx = contexts

    def main():
        with socket.create_server(("127.0.0.1", 0)) as lst:
            def serve():
                with server_ctx.wrap_socket(lst.accept()[0], server_side=True) as conn:
                    conn.sendall(conn.recv(10).upper())
                    conn.unwrap().close()

            server = lwp.spawn(serve)
            settle()
            c = client_ctx.wrap_socket(socket.socket(), server_hostname="localhost",
                                       do_handshake_on_connect=on_connect)
            with c:
                c.settimeout(5)
                c.connect(lst.getsockname())
                if not on_connect:
                    assert c.version() is None
                    c.do_handshake()
                c.sendall(b"tls")
                reply = c.recv(10)
                c.unwrap()
            server.join(5)
            return reply

    assert lwp.run(main, lwps=1) == b"TLS"


def test_patched_https_client_parks(cert):
    """http.client over TLS, unchanged, patched: the request parks until an HTTPS server
    on a kernel thread answers, and a ticker on the LWP progresses meanwhile."""
    import http.client
    import ssl as std

    import lwp.monkey as monkey

    monkey.patch_all()
    try:
        release = threading.Event()
        server_ctx = std.SSLContext(std.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(*cert)

        def fetch(port):
            conn = http.client.HTTPSConnection(
                "localhost", port, timeout=10,
                context=std.create_default_context(cafile=cert[0]))
            try:
                conn.request("GET", "/")
                return conn.getresponse().read()
            finally:
                conn.close()

        with held_http_server(release, tls=server_ctx) as server:
            port = server.server_address[1]
            body, ticks = lwp.run(lambda: progress_while(lambda: fetch(port), release.set),
                                  lwps=1)
    finally:
        monkey.unpatch_all()
    assert body == b"held" and ticks >= N_TICKS
