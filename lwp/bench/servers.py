"""Server cases: a TCP echo server and HTTP hello-world servers under load.

Each measurement starts the server under test in a process of its own
(``python -m lwp.bench.servers serve LIBRARY KIND PORT``) and drives it from
another with a load generator built on none of the libraries compared:

* echo: a small C epoll client (``ECHO_CLIENT_C`` below), compiled with
  ``gcc -O2`` at benchmark time, that keeps ``conns`` connections each with
  one 64-byte message in flight (closed loop) for ``seconds`` seconds and
  reports round trips per second and the p99 round-trip latency;
* HTTP: ``wrk`` (Debian package ``wrk``), ``conns`` keep-alive connections,
  one wrk thread, ``--latency`` for the p99.

``--quick`` runs each server in a thread of the measuring process and, for
HTTP, a small Python client instead of wrk: a smoke test, not a measurement.

Both generators skip the first tenth of the run (wrk: a separate warm-up
run), and each gets one of the 2 cores while the server has the other, so
the server's speed on one core is what is compared.

``echo_100`` / ``echo_1000``: lwp ``StreamServer`` with a recv/sendall
handler; gevent ``StreamServer`` with the same handler; asyncio and uvloop
with a ``Protocol`` that writes back what it receives; threads: a kernel
thread per connection (``socketserver.ThreadingTCPServer``).

``http_raw``: an HTTP responder that answers every request head with a fixed
200 response, written on each library's lowest level: lwp ``StreamServer``,
gevent ``StreamServer``, asyncio and uvloop ``Protocol``.

``http_wsgi``: a WSGI hello-world app on ``lwp.wsgi``, on gevent's
``pywsgi`` (as configured by default, and with TCP_NODELAY on its accepted
sockets), and ``http.server.ThreadingHTTPServer`` (a kernel thread per
connection, HTTP/1.1 keep-alive, no WSGI layer) as the threads peer.

The ``median`` column is throughput (higher is better); ``p99`` is the
99th-percentile latency in microseconds (lower is better), the median over
rounds.  lwp servers run with ``--lwps`` LWPs (default 1: one core each for
the server and the load generator).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from .case import Case
from .threads import LWPS_ENV

ECHO_CLIENT_C = r"""
/* Closed-loop echo load generator: CONNS connections, each with one message in flight. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { float x = *(const float *)a, y = *(const float *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  if (argc < 6) { fprintf(stderr, "usage: HOST PORT CONNS SECONDS MSGSIZE\n"); return 2; }
  int port = atoi(argv[2]), n = atoi(argv[3]), msz = atoi(argv[5]); double secs = atof(argv[4]);
  struct sockaddr_in a; memset(&a, 0, sizeof a); a.sin_family = AF_INET; a.sin_port = htons(port);
  inet_pton(AF_INET, argv[1], &a.sin_addr);
  int ep = epoll_create1(0); int *fds = calloc(n, sizeof(int)); int *got = calloc(n, sizeof(int));
  double *sent = calloc(n, sizeof(double)); char msg[65536], buf[65536]; memset(msg, 'x', msz);
  size_t cap = 1 << 23, nl = 0; float *lat = malloc(cap * sizeof(float)); long errors = 0, count = 0;
  for (int i = 0; i < n; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); fcntl(s, F_SETFL, O_NONBLOCK); fds[i] = s;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i}; epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
  }
  double t0 = now(), end = t0 + secs, warm = t0 + secs * 0.1, mt0 = t0; int measuring = 0;
  for (int i = 0; i < n; i++) { sent[i] = now(); if (write(fds[i], msg, msz) != msz) errors++; }
  struct epoll_event evs[1024];
  for (;;) {
    double t = now(); if (t >= end) break;
    if (!measuring && t >= warm) { measuring = 1; mt0 = t; count = 0; nl = 0; }
    int k = epoll_wait(ep, evs, 1024, 100);
    for (int j = 0; j < k; j++) {
      int i = evs[j].data.u32; ssize_t r = read(fds[i], buf, sizeof buf);
      if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; errors++; epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL); continue; }
      got[i] += r;
      while (got[i] >= msz) {
        got[i] -= msz; double tt = now(); count++;
        if (nl < cap) lat[nl++] = (float)((tt - sent[i]) * 1e6);
        sent[i] = tt; if (write(fds[i], msg, msz) != msz) errors++;
      }
    }
  }
  double el = now() - mt0; qsort(lat, nl, sizeof(float), cmp);
  printf("%ld %.4f %.1f %.1f %ld\n", count, el, nl ? lat[nl / 2] : 0.0, nl ? lat[(size_t)(nl * 0.99)] : 0.0, errors);
  return 0;
}
"""

HTTP_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
                 b"Connection: keep-alive\r\n\r\nHello, world!")
HELLO = b"Hello, world!"


def echo_client_binary() -> str:
    """Compile the C echo client once per source version; return its path."""
    digest = hashlib.sha1(ECHO_CLIENT_C.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"lwp-bench-echo-client-{digest}")
    if not os.path.exists(path):
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            raise RuntimeError("the echo load generator needs gcc (apt-get install -y gcc)")
        src = path + ".c"
        with open(src, "w") as f:
            f.write(ECHO_CLIENT_C)
        tmp = f"{path}.{os.getpid()}"
        subprocess.run([gcc, "-O2", "-o", tmp, src], check=True, capture_output=True)
        os.replace(tmp, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}: {proc.stderr.read()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("server did not listen in time")


def _with_server(library: str, kind: str, drive: Any, inproc: bool = False,
                 lwps: int | None = None) -> dict[str, Any]:
    port = _free_port()
    if inproc:  # --quick: the server in a daemon thread of this process saves a start-up
        import threading

        threading.Thread(target=serve, args=(library, kind, port), daemon=True).start()
        _wait_port(port, None)
        return drive(port)
    env = dict(os.environ)
    if lwps is not None:
        env[LWPS_ENV] = str(lwps)
    proc = subprocess.Popen([sys.executable, "-m", __name__, "serve", library, kind, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_port(port, proc)
        return drive(port)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stderr.close()


def _echo(library: str, conns: int, seconds: float, quick: bool = False,
          lwps: int | None = None) -> dict[str, Any]:
    binary = echo_client_binary()

    def drive(port: int) -> dict[str, Any]:
        out = subprocess.run([binary, "127.0.0.1", str(port), str(conns), str(seconds), "64"],
                             capture_output=True, text=True, timeout=seconds * 4 + 60, check=True)
        return parse_echo(out.stdout)

    return _with_server(library, "echo", drive, inproc=quick, lwps=lwps)


_WRK_LATENCY = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")


def parse_echo(out: str) -> dict[str, Any]:
    """The echo client's report as a sample; a run with errors or no round trip at all is an error."""
    count, elapsed, _p50, p99, errors = out.split()
    if int(errors):
        raise RuntimeError(f"{errors} connection errors during the run")
    if not int(count):
        raise RuntimeError("no round trip completed during the run")
    return {"samples": [int(count) / float(elapsed)], "p99": float(p99)}


def parse_wrk(out: str) -> dict[str, Any]:
    """wrk's report as a sample.

    A run in which wrk saw errors or completed no request at all is an error,
    never a throughput of zero: wrk reports a server that stopped answering
    as ``Requests/sec: 0.00`` and no error line.
    """
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError("wrk reported errors: " + " ".join(
            line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line))
    rate = _WRK_RATE.search(out)
    latency = _WRK_LATENCY.search(out)
    if rate is None or latency is None or not float(rate.group(1)):
        raise RuntimeError("wrk completed no request: " + " | ".join(
            line.strip() for line in out.splitlines() if line.strip()))
    value, unit = latency.groups()
    return {"samples": [float(rate.group(1))], "p99": float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]}


def _py_http_load(port: int, conns: int, requests: int) -> dict[str, Any]:
    """The --quick stand-in for wrk: a few keep-alive requests per connection, one at a time."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(conns)]
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    lat = []
    t0 = time.perf_counter()
    try:
        for _ in range(max(1, requests // conns)):
            for s in socks:
                t = time.perf_counter()
                s.sendall(req)
                data = b""
                while not data.endswith(HELLO):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError("server closed a keep-alive connection")
                    data += chunk
                if not data.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"bad response {data[:40]!r}")
                lat.append((time.perf_counter() - t) * 1e6)
    finally:
        for s in socks:
            s.close()
    lat.sort()
    return {"samples": [len(lat) / (time.perf_counter() - t0)], "p99": lat[int(len(lat) * 0.99)]}


def _wrk(library: str, kind: str, conns: int, seconds: float, quick: bool = False,
         lwps: int | None = None) -> dict[str, Any]:
    if quick:
        return _with_server(library, kind, lambda port: _py_http_load(port, min(conns, 5), 50),
                            inproc=True)
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("the HTTP load generator is wrk: apt-get install -y wrk")

    def drive(port: int) -> dict[str, Any]:
        url = f"http://127.0.0.1:{port}/"
        warm = max(1, int(seconds / 10))
        subprocess.run([wrk, "-t1", f"-c{conns}", f"-d{warm}s", url], capture_output=True,
                       timeout=warm + 60, check=True)
        out = subprocess.run([wrk, "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--latency", url],
                             capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
        return parse_wrk(out)

    return _with_server(library, kind, drive, lwps=lwps)


# -- the cases ---------------------------------------------------------------------------------

_LIB_REQUIRES = {"gevent": "gevent", "gevent-nodelay": "gevent", "uvloop": "uvloop"}
_P99 = "p99 is the round-trip latency in us (lower is better)"

# --quick: 0.3 s echo runs, and a small Python client instead of wrk (a smoke test only).
_QUICK = {"seconds": 0.1, "quick": True}
echo_100 = Case(name="echo_100", description="TCP echo, 100 connections, 64-byte messages; " + _P99,
                unit="rt/s", params={"conns": 100, "seconds": 5, "quick": False},
                quick={"conns": 100, **_QUICK}, tail=True, better="higher")
echo_1000 = Case(name="echo_1000", description="TCP echo, 1,000 connections, 64-byte messages; " + _P99,
                 unit="rt/s", params={"conns": 1000, "seconds": 5, "quick": False},
                 quick={"conns": 100, **_QUICK}, tail=True, better="higher")
http_raw = Case(name="http_raw", description="HTTP hello responder at each library's lowest level "
                "(wrk, 100 keep-alive connections); " + _P99, unit="req/s",
                params={"conns": 100, "seconds": 5, "quick": False}, quick={"conns": 100, **_QUICK},
                tail=True, better="higher")
http_wsgi = Case(name="http_wsgi", description="WSGI hello world (wrk, 100 keep-alive connections); "
                 + _P99, unit="req/s", params={"conns": 100, "seconds": 5, "quick": False},
                 quick={"conns": 100, **_QUICK}, tail=True, better="higher")


def _register() -> None:
    for case in (echo_100, echo_1000):
        for lib, note in (("lwp", "StreamServer, dispatcher/worker, on --lwps LWPs (default 1)"),
                          ("gevent", ""), ("asyncio", ""), ("uvloop", ""),
                          ("threading", "a kernel thread per connection")):
            def fn(conns: int, seconds: float, quick: bool, lwps: int | None = None,
                   _lib: str = lib) -> dict[str, Any]:
                return _echo(_lib, conns, seconds, quick, lwps)
            case.impl(lib, requires=_LIB_REQUIRES.get(lib, ()), note=note)(fn)
            if lib == "lwp":
                case.impl("lwp-2", library="lwp", lwps=2, note="the same on 2 LWPs")(fn)
    for lib in ("lwp", "gevent", "asyncio", "uvloop"):
        def raw(conns: int, seconds: float, quick: bool, lwps: int | None = None,
                _lib: str = lib) -> dict[str, Any]:
            return _wrk(_lib, "http_raw", conns, seconds, quick, lwps)
        http_raw.impl(lib, requires=_LIB_REQUIRES.get(lib, ()))(raw)
        if lib == "lwp":
            http_raw.impl("lwp-2", library="lwp", lwps=2, note="lwp on 2 LWPs")(raw)
    for label, lib, note in (
            ("lwp", "lwp", "lwp.wsgi.WSGIServer, httptools parser, access log off, on --lwps LWPs "
             "(default 1)"),
            ("gevent.pywsgi", "gevent", "default settings, log=None"),
            ("gevent.pywsgi+nodelay", "gevent-nodelay", "TCP_NODELAY set on accepted sockets"),
            ("ThreadingHTTPServer", "threading", "http.server, a kernel thread per "
             "connection, HTTP/1.1, no WSGI layer")):
        def wsgi(conns: int, seconds: float, quick: bool, lwps: int | None = None,
                 _lib: str = lib) -> dict[str, Any]:
            return _wrk(_lib, "http_wsgi", conns, seconds, quick, lwps)
        http_wsgi.impl(label, library=lib.split("-")[0], requires=_LIB_REQUIRES.get(lib, ()),
                       note=note)(wsgi)
        if lib == "lwp":
            http_wsgi.impl("lwp-2", library="lwp", lwps=2, note="lwp.wsgi on 2 LWPs")(wsgi)


_register()


# -- the servers (run in their own process) ----------------------------------------------------

def _hello_app(environ: dict, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def _count_heads(buf: bytes) -> tuple[int, bytes]:
    n = buf.count(b"\r\n\r\n")
    if n:
        buf = buf[buf.rfind(b"\r\n\r\n") + 4:]
    return n, buf


def serve(library: str, kind: str, port: int) -> None:
    addr = ("127.0.0.1", port)
    if library == "lwp":
        _serve_lwp(kind, addr)
    elif library.startswith("gevent"):
        _serve_gevent(kind, addr, nodelay=library == "gevent-nodelay")
    elif library in ("asyncio", "uvloop"):
        _serve_asyncio(kind, addr, uv=library == "uvloop")
    elif library == "threading":
        _serve_threads(kind, addr)
    else:
        raise ValueError(library)


def lwp_echo(conn: Any, _addr: Any = None) -> None:
    """lwp's echo handler (also counted by docs/figures/count_echo.py): each message back as it comes."""
    recv, sendall = conn.recv, conn.sendall
    while True:
        data = recv(65536)
        if not data:
            return
        sendall(data)


def _serve_lwp(kind: str, addr: tuple[str, int]) -> None:
    import lwp
    from lwp.server import StreamServer

    lwps = int(os.environ.get(LWPS_ENV) or 1)

    def http(conn: Any, _addr: Any) -> None:
        recv, sendall = conn.recv, conn.sendall
        buf = b""
        while True:
            data = recv(65536)
            if not data:
                return
            n, buf = _count_heads(buf + data)
            if n:
                sendall(HTTP_RESPONSE * n)

    def main() -> None:
        if kind == "http_wsgi":
            from lwp.wsgi import WSGIServer

            WSGIServer(addr, _hello_app, max_connections=4096, backlog=4096).serve_forever()
        else:
            StreamServer(addr, lwp_echo if kind == "echo" else http, max_connections=4096,
                         backlog=4096).serve_forever()

    lwp.run(main, lwps=lwps)


def _serve_gevent(kind: str, addr: tuple[str, int], nodelay: bool) -> None:
    from gevent.server import StreamServer

    def echo(conn: Any, _addr: Any) -> None:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)

    def http(conn: Any, _addr: Any) -> None:
        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            n, buf = _count_heads(buf + data)
            if n:
                conn.sendall(HTTP_RESPONSE * n)

    if kind == "http_wsgi":
        from gevent.pywsgi import WSGIServer

        class NoDelay(WSGIServer):
            def handle(self, sock: Any, address: Any) -> None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                super().handle(sock, address)

        cls = NoDelay if nodelay else WSGIServer
        cls(addr, _hello_app, log=None, backlog=4096).serve_forever()
    else:
        StreamServer(addr, echo if kind == "echo" else http, backlog=4096).serve_forever()


def _serve_asyncio(kind: str, addr: tuple[str, int], uv: bool) -> None:
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.t = transport

        def data_received(self, data: bytes) -> None:
            self.t.write(data)

    class Http(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            n, self.buf = _count_heads(self.buf + data)
            if n:
                self.t.write(HTTP_RESPONSE * n)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo if kind == "echo" else Http, *addr, backlog=4096)
        await server.serve_forever()

    if uv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _serve_threads(kind: str, addr: tuple[str, int]) -> None:
    import socketserver

    if kind == "echo":
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                s = self.request
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while True:
                    data = s.recv(65536)
                    if not data:
                        return
                    s.sendall(data)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            request_queue_size = 4096

        Server(addr, Handler).serve_forever()
    else:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Hello(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "13")
                self.end_headers()
                self.wfile.write(HELLO)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 4096

        Server(addr, Hello).serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("usage: python -m lwp.bench.servers serve LIBRARY KIND PORT")
