"""lwp.wsgi: HTTP/1.1 behaviour and the safety defaults, one test per bad-input shape.

Each test talks raw bytes to a WSGIServer on 127.0.0.1 (ephemeral port) from
the test's OS thread, checks the answer, and checks that the server still
serves the next client.  The autouse leak check (conftest) checks fds.
"""

import json
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import time

import pytest

from helpers import make_cert, wait_until
from lwp.wsgi import WSGIServer, server_ssl_context

T = 5.0
# A child started in tmp_path imports lwp from this checkout, not from where it is installed.
CHECKOUT_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
     *filter(None, [os.environ.get("PYTHONPATH")])])}


def app(env, start_response):
    path = env["PATH_INFO"]
    if path == "/echo":
        data = env["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [data]
    if path == "/lines":
        lines = list(env["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(lines)).encode()]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part%d;" % i for i in range(5))
    if path == "/big":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"x" * 65536 for _ in range(64))
    if path == "/huge":  # more than the socket buffers hold
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"x" * 65536 for _ in range(1024))
    if path == "/env":
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "HTTP_X_A",
                "HTTP_X_B", "CONTENT_LENGTH", "HTTP_X_UNDER_SCORE", "HTTP_HOST", "wsgi.url_scheme")
        body = json.dumps({k: env.get(k) for k in keys}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/error":
        raise RuntimeError("application failure (expected by the test)")
    if path == "/upstream-down":  # the application's own ConnectionError, not the client's
        raise ConnectionRefusedError(111, "upstream refused (expected by the test)")
    if path == "/str-body":  # PEP 3333 wants bytes
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["hello"]
    if path == "/str-chunks":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (s for s in ["hel", "lo"])
    if path == "/negative-length":
        start_response("200 OK", [("Content-Length", "-5")])
        return [b"hello"]
    if path == "/short-body":  # less than its Content-Length
        start_response("200 OK", [("Content-Length", "10")])
        return [b"hello"]
    if path == "/inject":
        start_response("200 OK", [("X-Bad", "a\r\nSet-Cookie: evil=1")])
        return [b"no"]
    if path == "/errors":  # text for the server's log, as Flask writes its errors
        env["wsgi.errors"].write("note from the application\n")
        env["wsgi.errors"].writelines(["second ", "note\n"])
        env["wsgi.errors"].flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"noted"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return [b"returned"]
    if path == "/nocontent":
        start_response("204 No Content", [])
        return []
    if path == "/late-error":  # fails before the first body byte: the error replaces the 200
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Oops", [("Content-Length", "4")], sys.exc_info())
        return [b"oops"]
    if path == "/error-after-write":  # headers are out: start_response must re-raise
        write = start_response("200 OK", [("Content-Length", "100")])
        write(b"partial")
        try:
            raise KeyError("too late (expected by the test)")
        except KeyError:
            start_response("500 Oops", [], sys.exc_info())
        return [b"never"]
    if path == "/app-close":
        start_response("200 OK", [("Content-Length", "3"), ("Connection", "close")])
        return [b"bye"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"never"]
    if path == "/bad-header-type":
        start_response("200 OK", [("X-Number", 5)])
        return [b"never"]
    if path == "/bad-header-name":
        start_response("200 OK", [("X Bad", "1")])
        return [b"never"]
    if path == "/non-latin1":
        start_response("200 OK", [("X-Name", "\u20ac")])
        return [b"never"]
    if path == "/readline":
        inp = env["wsgi.input"]
        out = [inp.readline(3), inp.readline(), inp.readline(-1), inp.read(2)]
        out += list(inp)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps([x.decode() for x in out]).encode()]
    if path == "/file":
        f = open(env["QUERY_STRING"], "rb")
        f.seek(int(env.get("HTTP_X_SKIP", "0")))
        headers = [("Content-Length", env["HTTP_X_LENGTH"])] if "HTTP_X_LENGTH" in env else []
        start_response("200 OK", headers)
        return env["wsgi.file_wrapper"](f, 4096)
    body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [body]


@pytest.fixture
def server():
    srv = WSGIServer(("127.0.0.1", 0), app, max_body=100_000, header_timeout=0.5,
                     keepalive_timeout=0.5, io_timeout=1.0, max_connections=50)
    srv.start()
    yield srv
    srv.stop(T)


def connect(srv):
    return socket.create_connection(srv.address[:2], timeout=T)


class Reader:
    """Reads HTTP responses off a client socket."""

    def __init__(self, sock):
        self.f = sock.makefile("rb")

    def response(self):
        line = self.f.readline()
        if not line:
            return None
        status = int(line.split()[1])
        headers = {}
        while True:
            h = self.f.readline()
            assert h, "connection closed inside the head"
            if h == b"\r\n":
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:
            return status, headers, b""
        if "content-length" in headers:
            body = self.f.read(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self.f.readline().split(b";")[0], 16)
                chunk = self.f.read(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        elif status in (204, 304):
            body = b""
        else:
            body = self.f.read()
        return status, headers, body

    def closed(self):
        try:
            return self.f.read(1) == b""
        except ConnectionResetError:
            return True


def exchange(srv, raw, expect_close=True):
    """Send ``raw`` on a fresh connection; return (status, headers, body) and whether it closed."""
    with connect(srv) as c:
        c.sendall(raw)
        r = Reader(c)
        resp = r.response()
        closed = r.closed() if expect_close else None
        r.f.close()
    return resp, closed


def still_serving(srv):
    (status, _, body), _ = exchange(srv, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert (status, body) == (200, b"hello")
    return True


# -- the basics ------------------------------------------------------------------------------

def test_hello_and_keep_alive(server):
    with connect(server) as c:
        r = Reader(c)
        for _ in range(3):
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body = r.response()
            assert (status, body) == (200, b"hello")
            assert "connection" not in headers
        r.f.close()
    assert server.stats()["accepted"] == 1


def test_pipelining_in_order(server):
    reqs = b"".join(b"GET /env?i=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5))
    with connect(server) as c:
        c.sendall(reqs)
        r = Reader(c)
        got = [json.loads(r.response()[2])["QUERY_STRING"] for _ in range(5)]
        r.f.close()
    assert got == ["i=%d" % i for i in range(5)]


def test_chunked_request_and_response(server):
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    (status, _, data), _ = exchange(
        server, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + body)
    assert (status, data) == (200, b"hello world")
    (status, headers, data), _ = exchange(server, b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert headers["transfer-encoding"] == "chunked"
    assert data == b"part0;part1;part2;part3;part4;"


def test_http10_gets_close_delimited_stream(server):
    (status, headers, data), closed = exchange(server, b"GET /stream HTTP/1.0\r\n\r\n")
    assert status == 200 and data == b"part0;part1;part2;part3;part4;" and closed
    assert "transfer-encoding" not in headers


def test_expect_100_continue(server):
    with connect(server) as c:
        c.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        r = Reader(c)
        assert r.response()[0] == 100
        c.sendall(b"data")
        status, _, body = r.response()
        assert (status, body) == (200, b"data")
        r.f.close()


def test_expect_100_continue_body_too_large_refused_first(server):
    (status, _, _), closed = exchange(
        server, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\nExpect: 100-continue\r\n\r\n")
    assert status == 413 and closed


def test_head_and_204(server):
    (status, headers, body), _ = exchange(server, b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status == 200 and headers["content-length"] == "5" and body == b""
    (status, _, body), _ = exchange(server, b"GET /nocontent HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status == 204 and body == b""


def test_environ(server):
    (status, _, body), _ = exchange(
        server, b"GET /env?q=1 HTTP/1.1\r\nHost: example\r\nX-A: one\r\nX-A: two\r\n"
        b"X_Under_Score: sneaky\r\nConnection: close\r\n\r\n")
    env = json.loads(body)
    assert env["QUERY_STRING"] == "q=1" and env["HTTP_X_A"] == "one, two"
    assert env["HTTP_X_UNDER_SCORE"] is None  # underscore names are dropped
    assert env["HTTP_HOST"] == "example" and env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["wsgi.url_scheme"] == "http"


def test_readline_iteration_of_input(server):
    body = b"a\nb\nc\n"
    (status, _, data), _ = exchange(server, b"POST /lines HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n"
                                    b"Connection: close\r\n\r\n" + body)
    assert (status, data) == (200, b"3")


def test_unread_body_is_discarded_and_connection_kept(server):
    with connect(server) as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789"
                  b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(c)
        assert r.response()[0] == 200
        assert r.response()[2] == b"hello"
        r.f.close()


def test_access_log(tmp_path):
    path = tmp_path / "access.log"
    with open(path, "w") as log:
        srv = WSGIServer(("127.0.0.1", 0), app, access_log=log).start()
        try:
            exchange(srv, b"GET /env?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        finally:
            srv.stop(T)
    line = path.read_text().strip()
    assert '"GET /env?x=1 HTTP/1.1" 200' in line and line.startswith("127.0.0.1")


class StuckLog:
    """A log destination whose writes block (a stderr pipe nobody reads) until released."""

    def __init__(self):
        import threading

        self.release = threading.Event()
        self.entered = threading.Event()  # a write has begun
        self.lines = []
        self.first_write = None  # the lines of the write that was stuck

    def write(self, text):
        self.entered.set()
        assert self.release.wait(T), "the test never released the log"
        if self.first_write is None:
            self.first_write = text.splitlines()
        self.lines += text.splitlines()

    def flush(self):
        pass


def hello_requests(srv, n):
    with connect(srv) as c:
        r = Reader(c)
        for _ in range(n):
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert r.response()[2] == b"hello"
        r.f.close()


def test_a_stuck_access_log_holds_no_request():
    out = StuckLog()
    srv = WSGIServer(("127.0.0.1", 0), app, access_log=out).start()
    try:
        hello_requests(srv, 20)  # all answered while the log's first write is stuck
        assert out.lines == []
        out.release.set()
    finally:
        srv.stop(T)
    assert len(out.lines) == 20 and all('"GET / HTTP/1.1" 200 5' in x for x in out.lines)


def test_wsgi_errors_with_a_stuck_stderr_holds_no_request(monkeypatch):
    """wsgi.errors was sys.stderr itself: an application's write to it, stderr a full pipe,
    blocked the LWP and every connection on it.  One LWP and no monitor here, so nothing
    else could serve them."""
    import lwp

    stderr = StuckLog()
    monkeypatch.setattr(sys, "stderr", stderr)

    def main():
        srv = WSGIServer(("127.0.0.1", 0), app).start()

        def talk():
            served = 0
            with connect(srv) as a, connect(srv) as b:
                ra, rb = Reader(a), Reader(b)
                b.sendall(b"GET /errors HTTP/1.1\r\nHost: t\r\n\r\n")
                assert stderr.entered.wait(T)  # the write to stderr is stuck from now on
                try:
                    for _ in range(10):
                        a.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                        assert ra.response()[2] == b"hello"
                        served += 1
                    noted = rb.response()[2]
                except TimeoutError:
                    noted = None
                stderr.release.set()
                ra.f.close()
                rb.f.close()
            return served, noted

        try:
            return lwp.blocking(talk)
        finally:
            srv.stop(T)

    try:
        assert lwp.run(main, lwps=1, monitor=False) == (10, b"noted")
    finally:
        stderr.release.set()
    assert stderr.lines == ["note from the application", "second note"]


def test_errors_must_be_a_file():
    with pytest.raises(TypeError, match="errors must be None or a file-like"):
        WSGIServer(("127.0.0.1", 0), app, errors="stderr")


def test_wsgi_errors_is_a_text_stream(server, monkeypatch):
    """PEP 3333: text only; bytes are refused with the exception a text file raises."""
    import io

    seen = []
    monkeypatch.setattr(sys, "stderr", io.StringIO())

    def check(env, start_response):
        try:
            env["wsgi.errors"].write(b"bytes")
        except TypeError as e:
            seen.append(str(e))
        start_response("200 OK", [])
        return [b""]

    server.app = check
    assert exchange(server, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")[0][0] == 200
    assert seen == ["write() argument must be str, not bytes"]


def test_stop_gives_up_on_a_log_that_stays_stuck(monkeypatch, caplog):
    """stop() waited for the log writer for ever: a stderr nobody reads held the
    server's shutdown (python -m lwp.wsgi on SIGTERM) for good."""
    import threading

    import lwp._logwriter

    monkeypatch.setattr(lwp._logwriter, "CLOSE_TIMEOUT", 0.2)
    out = StuckLog()
    srv = WSGIServer(("127.0.0.1", 0), app, access_log=out).start()
    try:
        hello_requests(srv, 3)
        with caplog.at_level(logging.ERROR, logger="lwp.server"):
            stopper = threading.Thread(target=srv.stop, args=(T,))
            stopper.start()
            stopper.join(T)
            stopped = not stopper.is_alive()
            wait_until(lambda: any("did not take" in r.getMessage() for r in caplog.records))
    finally:
        out.release.set()  # the activation thread's write returns; nothing stays stuck
        stopper.join(T)
    assert stopped
    # Entries put later are dropped too, and the note says so: nothing is lost quietly.
    note = next(r.getMessage() for r in caplog.records if "did not take" in r.getMessage())
    assert note.endswith("more dropped, and so is what is logged after this"), note


def test_access_log_drops_and_counts_lines_beyond_its_backlog(monkeypatch):
    import lwp._logwriter

    monkeypatch.setattr(lwp._logwriter, "BACKLOG", 5)
    out = StuckLog()
    srv = WSGIServer(("127.0.0.1", 0), app, access_log=out).start()
    try:
        hello_requests(srv, 20)
        out.release.set()
    finally:
        srv.stop(T)
    kept = [x for x in out.lines if '"GET / HTTP/1.1" 200' in x]
    notes = [x for x in out.lines if "log entries dropped" in x]
    # The writer took what had come before it first ran (one line or more, as the
    # scheduler had it; the backlog full and a drop note too, on a slow run) and stuck
    # writing it; behind it, at most the backlog waited.
    assert 1 <= len(notes) <= 2 and len(kept) - len(out.first_write) <= 5
    assert len(kept) + sum(int(x.split()[1]) for x in notes) == 20


def test_access_log_to_a_logger(caplog):
    logger = logging.getLogger("test.access")
    with caplog.at_level(logging.INFO, logger="test.access"):
        srv = WSGIServer(("127.0.0.1", 0), app, access_log=logger).start()
        try:
            hello_requests(srv, 3)
        finally:
            srv.stop(T)
    assert [r.getMessage().split('"')[1] for r in caplog.records
            if r.name == "test.access"] == ["GET / HTTP/1.1"] * 3


def test_access_log_off_by_default(server, capsys):
    hello_requests(server, 2)
    assert server.access_log is None
    assert capsys.readouterr() == ("", "")


# -- bad input: each answered as stated, then the next client is served --------------------

BAD = {
    "cl_and_te": (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "duplicate_cl": (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    "conflicting_cl": (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    "bad_chunk_size": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    "negative_chunk_size": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    "overflowing_chunk_size": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400),
    "te_not_chunked_last": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\nhello", 400),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n", 400),
    "space_before_colon": (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    "garbage": (b"\x00\x01\x02\xff garbage \r\n\r\n", 400),
    "non_ascii_header_name": ("GET / HTTP/1.1\r\nHost: t\r\nX-\u00e9: v\r\n\r\n".encode(), 400),
    "bad_version": (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    "request_line_too_long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    "header_field_too_large": (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    "too_many_headers": (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n", 431),
    "header_block_too_large": (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000)
                                                                  for i in range(90)) + b"\r\n", 431),
    "body_too_large": (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100001\r\n\r\n" + b"x" * 1000, 413),
    "chunked_body_too_large": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                               + b"10000\r\n" + b"x" * 65536 + b"\r\n" + b"10000\r\n" + b"x" * 65536
                               + b"\r\n0\r\n\r\n", 413),
    "no_host": (b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    "two_hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "two_hosts_http10": (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "unknown_expectation": (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx", 417),
}


@pytest.mark.parametrize("shape", sorted(BAD))
def test_bad_input(server, shape):
    raw, expected = BAD[shape]
    (status, headers, _), closed = exchange(server, raw)
    assert status == expected
    assert headers["connection"] == "close" and closed
    assert still_serving(server)


def test_bad_request_after_good_ones_in_a_pipeline(server):
    with connect(server) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\nBAD\x00\r\n\r\n")
        r = Reader(c)
        assert [r.response()[0] for _ in range(3)] == [200, 200, 400]
        assert r.closed()
        r.f.close()
    assert still_serving(server)


def test_non_ascii_header_value_is_latin1(server):
    (status, _, body), _ = exchange(
        server, "GET /env HTTP/1.1\r\nHost: t\r\nX-B: caf\u00e9\r\nConnection: close\r\n\r\n".encode())
    assert status == 200
    assert json.loads(body)["HTTP_X_B"] == "caf\u00e9".encode().decode("latin-1")


def test_slowloris_gets_408(server):
    with connect(server) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        for _ in range(3):
            time.sleep(0.1)
            try:
                c.sendall(b"X-Slow: 1\r\n")  # trickles, never finishes the head
            except OSError:
                break
        r = Reader(c)
        status, headers, _ = r.response()
        assert status == 408 and headers["connection"] == "close"
        assert r.closed()
        r.f.close()
    assert still_serving(server)


def test_idle_keep_alive_is_closed(server):
    with connect(server) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(c)
        assert r.response()[0] == 200
        assert r.closed()  # after keepalive_timeout (0.5 s) with no request
        r.f.close()


def test_truncated_body(server):
    with connect(server) as c:
        c.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten!!")
        c.shutdown(socket.SHUT_WR)
        r = Reader(c)
        status, _, _ = r.response()
        assert status == 400
        r.f.close()
    assert still_serving(server)


def test_truncated_body_client_silent(server):
    with connect(server) as c:
        c.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten!!")
        c.settimeout(T)
        assert Reader(c).closed()  # io_timeout (1 s): closed without an answer
    assert still_serving(server)


def test_client_disconnects_mid_response(server, caplog):
    caplog.set_level(logging.ERROR, logger="lwp.wsgi")
    c = connect(server)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    c.recv(1000)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()  # reset while the server is still writing 4 MiB
    assert still_serving(server)
    deadline = time.monotonic() + T
    while server.stats()["busy"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stats()["busy"] == 0
    server.stop(T)
    assert not [r for r in caplog.records if r.name == "lwp.wsgi"]  # the client's doing


def test_application_error_is_500(server):
    (status, headers, _), closed = exchange(server, b"GET /error HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 500 and closed
    assert still_serving(server)


class StuckStderr:
    """A logging handler on ``lwp.wsgi`` writing to a full pipe nobody reads (a stuck
    stderr) until ``release()``; ``text()`` ends it and returns what was logged."""

    def __init__(self):
        import os
        import threading

        self.r, w = os.pipe()
        os.set_blocking(w, False)
        try:
            while True:
                os.write(w, b"x" * 65536)
        except BlockingIOError:
            pass
        os.set_blocking(w, True)
        self.handler = logging.StreamHandler(open(w, "w"))
        logging.getLogger("lwp.wsgi").addHandler(self.handler)
        self.logged = []
        self.reader = threading.Thread(target=self._drain)

    def _drain(self):
        import os

        while data := os.read(self.r, 65536):
            self.logged.append(data)

    def release(self):
        if not self.reader.is_alive():
            self.reader.start()

    def text(self):
        import os

        self.release()
        logging.getLogger("lwp.wsgi").removeHandler(self.handler)
        self.handler.stream.close()
        self.reader.join(T)
        os.close(self.r)
        return b"".join(self.logged).lstrip(b"x").decode()


def test_application_error_with_a_stuck_stderr_is_still_answered():
    stderr = StuckStderr()
    srv = WSGIServer(("127.0.0.1", 0), app).start()
    try:
        for _ in range(3):
            (status, _, _), closed = exchange(srv, b"GET /error HTTP/1.1\r\nHost: t\r\n\r\n")
            assert status == 500 and closed
        assert still_serving(srv)
    finally:
        stderr.release()
        srv.stop(T)  # the writer has written the three tracebacks, whole and in turn
        text = stderr.text()
    reports = text.split("lwp.wsgi: application error on ")[1:]
    assert len(reports) == 3
    assert all(r.rstrip().endswith("RuntimeError: application failure (expected by the test)")
               and "Traceback (most recent call last)" in r for r in reports)


def test_error_reports_beyond_the_backlog_are_dropped_and_counted(monkeypatch):
    import lwp._logwriter

    monkeypatch.setattr(lwp._logwriter, "BACKLOG", 2)
    stderr = StuckStderr()
    srv = WSGIServer(("127.0.0.1", 0), app).start()
    try:
        for _ in range(6):
            assert exchange(srv, b"GET /error HTTP/1.1\r\nHost: t\r\n\r\n")[0][0] == 500
    finally:
        stderr.release()
        srv.stop(T)
        text = stderr.text()
    kept = text.count("RuntimeError: application failure")
    dropped = re.findall(r"wsgi: (\d+) log entries dropped", text)
    assert len(dropped) == 1 and kept + int(dropped[0]) == 6 and kept < 6


def test_application_connection_error_is_500_and_logged(server, caplog):
    with caplog.at_level(logging.ERROR, logger="lwp.wsgi"):
        (status, _, _), closed = exchange(server, b"GET /upstream-down HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status == 500 and closed
        assert still_serving(server)
        server.stop(T)  # the writer has logged the error
    errors = [r for r in caplog.records if r.name == "lwp.wsgi"]
    assert len(errors) == 1 and "ConnectionRefusedError" in errors[0].exc_text
    assert errors[0].getMessage() == "lwp.wsgi: application error on GET /upstream-down"


def test_header_injection_is_500(server):
    (status, headers, _), closed = exchange(server, b"GET /inject HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 500 and "set-cookie" not in headers
    assert still_serving(server)


def test_over_connection_cap_gets_503():
    srv = WSGIServer(("127.0.0.1", 0), app, max_connections=2, keepalive_timeout=5).start()
    try:
        held = [connect(srv) for _ in range(2)]
        for c in held:
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(c).response()[0] == 200
        (status, headers, _), closed = exchange(srv, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status == 503 and headers["retry-after"] == "1" and closed
        for c in held:
            c.close()
        deadline = time.monotonic() + T
        while srv.stats()["busy"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert still_serving(srv)
    finally:
        srv.stop(T)


def test_stop_closes_idle_keep_alive_connections():
    srv = WSGIServer(("127.0.0.1", 0), app, keepalive_timeout=30).start()
    c = connect(srv)
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    r = Reader(c)
    assert r.response()[0] == 200
    t0 = time.monotonic()
    assert srv.stop(T) == 0  # the idle connection was closed, not cancelled after T
    assert time.monotonic() - t0 < T
    assert r.closed()
    r.f.close()
    c.close()


@pytest.mark.stress
def test_thousand_keep_alive_connections():
    import os

    import lwp

    n = 1000
    lwp.spawn(lambda: None).join(T)  # the default scheduler's own fds belong to the baseline
    fds_before = len(os.listdir("/proc/self/fd"))
    srv = WSGIServer(("127.0.0.1", 0), app, max_connections=1100, keepalive_timeout=60,
                     backlog=2048).start()
    conns = []
    readers = []
    errors = 0
    try:
        for _ in range(n):
            conns.append(connect(srv))
        readers = [Reader(c) for c in conns]
        for _ in range(2):
            for c in conns:
                c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            for r in readers:
                resp = r.response()
                if resp is None or resp[0] != 200 or resp[2] != b"hello":
                    errors += 1
        assert srv.stats()["busy"] == n  # all held open at once
    finally:
        for r in readers:
            r.f.close()
        for c in conns:
            c.close()
        srv.stop(T)
    assert errors == 0
    # Compensating LWPs the monitor may have added retire after a second idle.
    deadline = time.monotonic() + 4 * T
    while len(os.listdir("/proc/self/fd")) > fds_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_flask_app_runs_unchanged():
    flask = pytest.importorskip("flask")
    fapp = flask.Flask("t")

    @fapp.route("/hi/<name>")
    def hi(name):
        return {"hi": name, "q": flask.request.args.get("q")}

    @fapp.post("/upload")
    def upload():
        return {"n": len(flask.request.get_data())}

    srv = WSGIServer(("127.0.0.1", 0), fapp).start()
    try:
        (status, _, body), _ = exchange(srv, b"GET /hi/bob?q=2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert status == 200 and json.loads(body) == {"hi": "bob", "q": "2"}
        (status, _, body), _ = exchange(srv, b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                        b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        assert status == 200 and json.loads(body) == {"n": 3}
        (status, _, _), _ = exchange(srv, b"GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert status == 404
    finally:
        srv.stop(T)


def test_command_line(tmp_path):
    (tmp_path / "cliapp.py").write_text(
        "def app(env, sr):\n    sr('200 OK', [('Content-Length', '2')])\n    return [b'ok']\n")
    proc = subprocess.Popen([sys.executable, "-m", "lwp.wsgi", "cliapp:app", "--port", "0",
                             "--lwps", "1", "--access-log", "-"], cwd=tmp_path, env=CHECKOUT_ENV,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "serving cliapp:app on http://127.0.0.1:" in line
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=T) as c:
            c.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            r = Reader(c)
            assert r.response()[2] == b"ok"
            r.f.close()
        assert '"GET /x HTTP/1.1" 200 2' in proc.stderr.readline()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=T)[1]
    assert proc.returncode == 0 and "stopped" in out


@pytest.mark.parametrize("args, status, message", [
    (["nomodule:app"], 1, "cannot load nomodule:app: no module named 'nomodule'"),
    (["cliapp:nothere"], 1, "module 'cliapp' has no attribute 'nothere'"),
    (["json"], 1, "module 'json' has no attribute 'app'"),
    (["cliapp:NAME"], 1, "cliapp:NAME is a str, not a WSGI application"),
    (["cliapp:app", "--port", "99999"], 2, "--port: must be a port number, 0 to 65535"),
    (["cliapp:app", "--lwps", "0"], 2, "--lwps: must be > 0"),
    (["cliapp:app", "--io-timeout", "-1"], 2, "--io-timeout: must be > 0"),
    (["cliapp:app", "--max-body", "x"], 2, "--max-body: invalid int value"),
])
def test_command_line_bad_input_is_one_clear_line(tmp_path, args, status, message):
    """Each ended in a traceback (ModuleNotFoundError, AttributeError, OverflowError
    from bind, ValueError from lwp.run), or was accepted."""
    (tmp_path / "cliapp.py").write_text("NAME = 'x'\ndef app(env, sr):\n    return []\n")
    port = [] if "--port" in args else ["--port", "0"]  # a good one would start serving
    proc = subprocess.run([sys.executable, "-m", "lwp.wsgi", *args, *port],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == status and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_command_line_shows_the_traceback_of_an_app_that_fails_to_import(tmp_path):
    (tmp_path / "brokenapp.py").write_text("import no_such_dependency\napp = None\n")
    proc = subprocess.run([sys.executable, "-m", "lwp.wsgi", "brokenapp:app", "--port", "0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "No module named 'no_such_dependency'" in proc.stderr


def run_gunicorn(tmp_path, *options, connect=None):
    """Run gunicorn with lwp's worker on a one-line app (that also writes a line to
    wsgi.errors); two pipelined requests through ``connect(port)`` (a plain connection by
    default) must get the app's answer.  Returns gunicorn's stderr after its start."""
    pytest.importorskip("gunicorn")
    (tmp_path / "gapp.py").write_text(
        "def app(env, sr):\n    env['wsgi.errors'].write('gapp was here\\n')\n"
        "    sr('200 OK', [('Content-Length', '7')])\n    return [b'gunicrn']\n")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-k", "lwp.wsgi_gunicorn.LwpWorker",
                             "-b", "127.0.0.1:0", "--workers", "1", "--graceful-timeout", "60",
                             *options, "gapp:app"], cwd=tmp_path, env=CHECKOUT_ENV,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "Listening at: " in line:
                port = int(line.split("://127.0.0.1:")[1].split()[0])
        assert port, "gunicorn did not start"
        deadline = time.monotonic() + 30
        while True:  # the worker boots after the master listens
            try:
                c = connect(port) if connect else socket.create_connection(("127.0.0.1", port),
                                                                           timeout=T)
                with c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    r = Reader(c)
                    assert [r.response()[2] for _ in range(2)] == [b"gunicrn"] * 2
                    r.f.close()
                break
            except (ConnectionError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        # The worker acts on the master's SIGTERM (it used to sit out the whole
        # graceful timeout, 60 s here, blocked in a join that SA_RESTART kept going).
        err = proc.communicate(timeout=20)[1]
    assert proc.returncode == 0
    return err


def test_gunicorn_worker_class(tmp_path):
    run_gunicorn(tmp_path)


def test_gunicorn_wsgi_errors_go_to_the_error_log(tmp_path):
    """As with gunicorn's own workers: the error log's streams (here stderr, its default)."""
    assert run_gunicorn(tmp_path).count("gapp was here\n") >= 2


def test_gunicorn_access_log(tmp_path):
    log = tmp_path / "access.log"
    run_gunicorn(tmp_path, "--access-logfile", str(log))
    lines = log.read_text().splitlines()
    assert len(lines) >= 2 and all('"GET / HTTP/1.1" 200 7' in x for x in lines)


def test_gunicorn_access_logformat(tmp_path):
    """--access-logformat was ignored: the lines were in lwp's format."""
    log = tmp_path / "access.log"
    run_gunicorn(tmp_path, "--access-logfile", str(log), "--access-logformat",
                 "%(r)s|%(m)s|%(U)s|%(q)s|%(s)s|%(B)s|%(b)s|%({host}i)s|%({content-length}o)s"
                 "|%({missing}i)s|%({RAW_URI}e)s|%(h)s|%(D)s|%(p)s")
    lines = log.read_text().splitlines()
    assert len(lines) >= 2 and all(
        re.fullmatch(r"GET / HTTP/1.1\|GET\|/\|\|200\|7\|7\|t\|7\|-\|/\|127.0.0.1\|\d+\|<\d+>", x)
        for x in lines), lines


# -- PEP 3333 and HTTP details a WSGI server owes its users ------------------------------------

def test_http10_keep_alive(server):
    with connect(server) as c:
        r = Reader(c)
        for _ in range(3):
            c.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = r.response()
            assert (status, body) == (200, b"hello")
            assert headers["connection"].lower() == "keep-alive"
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")  # without keep-alive: answered, then closed
        assert r.response()[2] == b"hello" and r.closed()
        r.f.close()
    assert server.stats()["accepted"] == 1


def test_head_of_a_streamed_response_has_no_body_and_keeps_the_connection(server):
    with connect(server) as c:
        c.sendall(b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        f = c.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += f.readline()
        assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
        assert f.readline().startswith(b"HTTP/1.1 200")  # the next response, no body between
        f.close()


def test_connection_close_from_the_client_ends_the_pipeline(server):
    with connect(server) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                  b"GET /env HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(c)
        status, headers, body = r.response()
        assert (status, body, headers["connection"]) == (200, b"hello", "close")
        assert r.closed()  # the second request is not answered
        r.f.close()


def test_connection_close_from_the_application_closes(server):
    with connect(server) as c:
        c.sendall(b"GET /app-close HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(c)
        status, headers, body = r.response()
        assert (status, body, headers["connection"]) == (200, b"bye", "close")
        assert r.closed()
        r.f.close()


def test_exc_info_before_the_headers_are_sent_replaces_the_response(server):
    (status, _, body), _ = exchange(server, b"GET /late-error HTTP/1.1\r\nHost: t\r\n\r\n",
                                    expect_close=False)
    assert (status, body) == (500, b"oops")
    assert still_serving(server)


def test_exc_info_after_the_headers_are_sent_reraises_and_closes(server, caplog):
    with caplog.at_level(logging.ERROR, logger="lwp.wsgi"):
        with connect(server) as c:
            c.sendall(b"GET /error-after-write HTTP/1.1\r\nHost: t\r\n\r\n")
            with c.makefile("rb") as f:
                data = f.read()  # until the server closes
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\npartial")  # cut short
    assert still_serving(server)
    server.stop(T)  # the writer has logged the error
    errors = [r for r in caplog.records if r.name == "lwp.wsgi"]
    assert len(errors) == 1 and errors[0].exc_text.endswith("KeyError: 'too late (expected by the test)'")


@pytest.mark.parametrize("path", ["/twice", "/bad-header-type", "/bad-header-name", "/non-latin1",
                                  "/str-body", "/str-chunks", "/negative-length"])
def test_bad_responses_of_the_application_are_500(server, path):
    (status, _, _), closed = exchange(server, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
    assert status == 500 and closed
    assert still_serving(server)


def test_a_body_short_of_its_content_length_is_cut_and_logged(server, caplog):
    caplog.set_level(logging.ERROR, logger="lwp.wsgi")
    with connect(server) as c:
        c.sendall(b"GET /short-body HTTP/1.1\r\nHost: t\r\n\r\n")
        with c.makefile("rb") as f:
            data = f.read()  # until the server closes
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\nhello")
    server.stop(T)  # the writer has logged the error
    errors = [r for r in caplog.records if r.name == "lwp.wsgi"]
    assert len(errors) == 1 and "less than its Content-Length" in errors[0].exc_text


def test_readline_and_iteration_over_a_chunked_body(server):
    body = b"ab"  b"c\nde" b"f\n" b"\nghij\nk" b"l"  # lines cut across chunks
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p)
                       for p in (b"ab", b"c\nde", b"f\n", b"\nghij\nk", b"l")) + b"0\r\n\r\n"
    assert b"".join((b"ab", b"c\nde", b"f\n", b"\nghij\nk", b"l")) == body
    with connect(server) as c:
        c.sendall(b"POST /readline HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(chunked), 7):  # trickled, so reads wait for more in mid-line
            c.sendall(chunked[i:i + 7])
            time.sleep(0.002)
        r = Reader(c)
        status, _, data = r.response()
        r.f.close()
    assert status == 200
    assert json.loads(data) == ["abc", "\n", "def\n", "\ng", "hij\n", "kl"]


def test_file_wrapper_sends_the_file(server, tmp_path):
    path = tmp_path / "data.bin"
    content = bytes(range(256)) * 4096  # 1 MiB
    path.write_bytes(content)
    with connect(server) as c:
        q = str(path).encode()
        c.sendall(b"GET /file?%s HTTP/1.1\r\nHost: t\r\n\r\n" % q
                  + b"GET /file?%s HTTP/1.1\r\nHost: t\r\nX-Skip: 1000\r\nX-Length: 10\r\n\r\n" % q
                  + b"HEAD /file?%s HTTP/1.1\r\nHost: t\r\n\r\n" % q)
        r = Reader(c)
        status, headers, body = r.response()
        assert (status, headers["content-length"], body == content) == (200, str(len(content)), True)
        status, headers, body = r.response()
        assert (status, body) == (200, content[1000:1010])
        f = r.f
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += f.readline()
        assert b"content-length: %d" % len(content) in head.lower()
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert r.response()[2] == b"hello"  # nothing of the file after the HEAD
        r.f.close()


def test_file_wrapper_content_length_beyond_the_file_closes(server, tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"12345")
    with connect(server) as c:
        c.sendall(b"GET /file?%s HTTP/1.1\r\nHost: t\r\nX-Length: 10\r\n\r\n" % str(path).encode())
        f = c.makefile("rb")
        data = f.read()  # until the server closes: it cannot keep a promise of 10 bytes
        f.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n12345")


def test_slow_reader_of_a_response_is_dropped_after_io_timeout():
    """The send timeout is io_timeout, whatever the keep-alive timeout."""
    srv = WSGIServer(("127.0.0.1", 0), app, keepalive_timeout=60, header_timeout=60,
                     io_timeout=0.3).start()
    try:
        with connect(srv) as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n")  # 64 MiB, read no further
            assert c.recv(12) == b"HTTP/1.1 200"  # the response is under way
            deadline = time.monotonic() + T
            while srv.stats()["busy"] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert srv.stats()["busy"] == 0  # the worker gave up on the silent reader
        assert still_serving(srv)
    finally:
        srv.stop(T)


def test_stop_lets_an_in_flight_request_finish_and_closes_its_keep_alive_connection():
    import threading

    started, release = threading.Event(), threading.Event()

    def slow_app(env, start_response):
        started.set()
        release.wait(T)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"done"]

    srv = WSGIServer(("127.0.0.1", 0), slow_app).start()
    idle = connect(srv)  # a keep-alive connection between requests: closed at once
    idle.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    ri = Reader(idle)
    with connect(srv) as c:
        release.set()
        assert ri.response()[2] == b"done"
        release.clear()
        started.clear()
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert started.wait(T)
        result = []
        stopper = threading.Thread(target=lambda: result.append(srv.stop(T)))
        stopper.start()
        assert ri.closed()  # the idle one is closed while the other request runs
        release.set()
        r = Reader(c)
        status, headers, body = r.response()
        assert (status, body, headers["connection"]) == (200, b"done", "close")
        assert r.closed()
        stopper.join(T)
        assert result == [0]  # nothing had to be cancelled
        r.f.close()
    ri.f.close()
    idle.close()


def test_write_callable(server):
    (status, headers, body), _ = exchange(server, b"GET /write HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert (status, body) == (200, b"written;returned")


def test_processes_share_the_port(tmp_path):
    (tmp_path / "pidapp.py").write_text(
        "import os\n"
        "def app(env, sr):\n    b = str(os.getpid()).encode()\n"
        "    sr('200 OK', [('Content-Length', str(len(b)))])\n    return [b]\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lwp.wsgi", "pidapp:app", "--port", str(port),
                             "--lwps", "1", "--processes", "2"], cwd=tmp_path, env=CHECKOUT_ENV,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(2):
            assert "serving pidapp:app" in proc.stderr.readline()
        pids = set()
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", port), timeout=T) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                r = Reader(c)
                pids.add(r.response()[2])
                r.f.close()
        assert len(pids) == 2  # the kernel spread the connections over both processes
    finally:
        proc.terminate()
        out = proc.communicate(timeout=T)[1]
    assert proc.returncode == 0 and out.count("stopped") == 2


# -- TLS -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"))


def tls_connect(port, cert, client_cert=None):
    ctx = ssl.create_default_context(cafile=cert[0])
    if client_cert is not None:
        ctx.load_cert_chain(*client_cert)
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=T),
                           server_hostname="localhost")


def test_https_keep_alive_pipelining_chunked_bodies_file_wrapper(cert, tmp_path):
    content = bytes(range(256)) * 1000
    (tmp_path / "f.bin").write_bytes(content)
    srv = WSGIServer(("127.0.0.1", 0), app, ssl_context=server_ssl_context(*cert)).start()
    try:
        with tls_connect(srv.address[1], cert) as c:
            c.sendall(b"GET /env HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            r = Reader(c)
            assert json.loads(r.response()[2])["wsgi.url_scheme"] == "https"
            assert r.response()[2] == b"hello world"
            c.sendall(b"GET /file?%s HTTP/1.1\r\nHost: t\r\n\r\n" % str(tmp_path / "f.bin").encode())
            assert r.response()[2] == content
            c.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            status, headers, body = r.response()
            assert (status, headers["transfer-encoding"], len(body)) == (200, "chunked", 64 << 16)
            assert r.closed()
            r.f.close()
        st = srv.stats()
        assert (st["accepted"], st["tls_errors"]) == (1, 0)
    finally:
        srv.stop(T)


def test_https_silent_client_dropped_others_served(cert, caplog):
    srv = WSGIServer(("127.0.0.1", 0), app, ssl_context=server_ssl_context(*cert),
                     handshake_timeout=0.3).start()
    try:
        with caplog.at_level(logging.INFO, logger="lwp.server"):
            silent = socket.create_connection(srv.address[:2], timeout=T)
            with tls_connect(srv.address[1], cert) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                r = Reader(c)
                assert r.response()[2] == b"hello"
                r.f.close()
            assert silent.recv(10) == b""
            silent.close()
            wait_until(lambda: srv.stats()["tls_errors"] == 1, T)
    finally:
        srv.stop(T)  # the log writer has handed the record over
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_https_client_certificates(cert, tmp_path):
    client_cert = make_cert(tmp_path, "client")
    ctx = server_ssl_context(*cert, ca_certs=client_cert[0])
    srv = WSGIServer(("127.0.0.1", 0), app, ssl_context=ctx).start()
    try:
        with tls_connect(srv.address[1], cert, client_cert) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            r = Reader(c)
            assert r.response()[2] == b"hello"
            r.f.close()
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with tls_connect(srv.address[1], cert) as c:  # no certificate: refused
                c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                Reader(c).response()
        wait_until(lambda: srv.stats()["tls_errors"] == 1, T)
    finally:
        srv.stop(T)


def test_https_command_line(tmp_path, cert):
    (tmp_path / "cliapp.py").write_text(
        "def app(env, sr):\n    b = env['wsgi.url_scheme'].encode()\n"
        "    sr('200 OK', [('Content-Length', str(len(b)))])\n    return [b]\n")
    proc = subprocess.Popen([sys.executable, "-m", "lwp.wsgi", "cliapp:app", "--port", "0",
                             "--lwps", "1", "--certfile", cert[0], "--keyfile", cert[1],
                             "--monkey"],  # the context is made before the patching
                            cwd=tmp_path, env=CHECKOUT_ENV, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "serving cliapp:app on https://127.0.0.1:" in line
        port = int(line.split("https://127.0.0.1:")[1].split()[0])
        with tls_connect(port, cert) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            r = Reader(c)
            assert r.response()[2] == b"https"
            r.f.close()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=T)[1]
    assert proc.returncode == 0 and "stopped" in out


def test_https_command_line_bad_files(tmp_path, cert):
    bad = subprocess.run([sys.executable, "-m", "lwp.wsgi", "x:app", "--certfile",
                          str(tmp_path / "missing.pem")], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "cannot load the TLS certificate" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "lwp.wsgi", "x:app", "--keyfile", cert[1]],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "need --certfile" in bad.stderr


def test_gunicorn_worker_tls(tmp_path, cert):
    run_gunicorn(tmp_path, "--certfile", cert[0], "--keyfile", cert[1],
                 connect=lambda port: tls_connect(port, cert))


def test_https_over_the_connection_cap_gets_503_over_tls(cert):
    srv = WSGIServer(("127.0.0.1", 0), app, max_connections=1, keepalive_timeout=5,
                     ssl_context=server_ssl_context(*cert)).start()
    try:
        with tls_connect(srv.address[1], cert) as held:
            held.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(held).response()[0] == 200
            with tls_connect(srv.address[1], cert) as c:  # handshaken by the overload thread
                c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                r = Reader(c)
                status, headers, _ = r.response()
                assert status == 503 and headers["retry-after"] == "1"
                r.f.close()
        assert srv.stats()["tls_errors"] == 0
    finally:
        srv.stop(T)


@pytest.mark.parametrize("error", [RuntimeError, OSError])  # OSError: a full disk, say
def test_a_broken_access_log_is_reported_and_the_server_goes_on(caplog, error):
    class Broken:
        def write(self, text):
            raise error("broken log (expected by the test)")

        def flush(self):
            pass

    srv = WSGIServer(("127.0.0.1", 0), app, access_log=Broken()).start()
    try:
        with caplog.at_level(logging.ERROR, logger="lwp.server"):
            hello_requests(srv, 3)
            wait_until(lambda: caplog.records, T)
            hello_requests(srv, 1)
    finally:
        srv.stop(T)  # the writer still ends (it used to die at the first failure)
    assert all(f"{error.__name__}: broken log" in r.exc_text
               for r in caplog.records if r.name == "lwp.server")
    assert len([r for r in caplog.records if r.name == "lwp.server"]) >= 2


def test_https_plain_http_client_gets_400_in_the_clear(cert, caplog):
    srv = WSGIServer(("127.0.0.1", 0), app, ssl_context=server_ssl_context(*cert)).start()
    try:
        with caplog.at_level(logging.INFO, logger="lwp.server"):
            (status, headers, body), closed = exchange(srv, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (status, headers["connection"], closed) == (400, "close", True)
            assert b"plain HTTP request was sent to the HTTPS port" in body
            wait_until(lambda: srv.stats()["tls_errors"] == 1, T)
            wait_until(lambda: [r for r in caplog.records if r.name == "lwp.server"], T)
        assert [r.levelno for r in caplog.records if r.name == "lwp.server"] == [logging.INFO]
        with tls_connect(srv.address[1], cert) as c:  # TLS clients are served next
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            r = Reader(c)
            assert r.response()[2] == b"hello"
            r.f.close()
    finally:
        srv.stop(T)
