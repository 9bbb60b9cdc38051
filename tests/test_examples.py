"""The bundled examples, run as people run them, against local servers only.

Each example runs in a subprocess (``python examples/NAME.py ...``); servers
print the address they bound (port 0) and are stopped with SIGTERM.  Checks are
on what they print and serve, never on timings.
"""

import contextlib
import http.server
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
T = 60


def example(name):
    return os.path.join(EXAMPLES, name)


def start_server(*args):
    proc = subprocess.Popen([sys.executable, example("dispatcher_server.py"), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        out, err = proc.communicate(timeout=T)
        raise AssertionError(f"server did not start: {line!r} {out!r} {err!r}")
    return proc, int(m.group(1)), line


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=T)
    assert proc.returncode == 0, err
    return out


def get(url):
    with urllib.request.urlopen(url, timeout=T) as r:
        return r.read()


def run_example(*args):
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=T, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("name", ["web_client.py", "dispatcher_server.py", "throughput_model.py",
                                  "rpc_fanout.py"])
def test_help_and_docstring(name):
    path = example(name)
    out = run_example(path, "--help")
    assert "usage:" in out
    with open(path) as f:
        src = f.read()
    assert src.startswith('"""') and "127.0.0.1" in src


def test_dispatcher_server_serves_the_demo_site():
    proc, port, line = start_server("--workers", "4", "--demo-site", "9", "--cache")
    try:
        base = f"http://127.0.0.1:{port}/"
        page = get(base).decode()
        refs = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert len(refs) == 9
        for ref in refs + refs:  # the second round comes from the cache
            assert len(get(base + ref.lstrip("/"))) >= 4096
        with pytest.raises(urllib.error.HTTPError) as e:
            get(base + "../../etc/passwd")
        assert e.value.code == 404
        e.value.close()
        # keep-alive with two pipelined requests on one connection
        with socket.create_connection(("127.0.0.1", port), timeout=T) as c:
            c.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\nGET /index.html HTTP/1.1\r\n"
                      b"Host: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2
        # an upgrade request (curl --http2's h2c) is answered in HTTP/1.1, then closed
        with socket.create_connection(("127.0.0.1", port), timeout=T) as c:
            c.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings"
                      b"\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
            with c.makefile("rb") as f:
                data = f.read()  # until the server closes
        assert data.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in data
    finally:
        out = stop_server(proc)
    m = re.search(r"stats: (\d+) requests, (\d+) bytes.*cache hits (\d+), misses (\d+); not found (\d+)", out)
    assert m, out
    requests, nbytes, hits, misses, notfound = map(int, m.groups())
    assert requests == 1 + 18 + 1 + 2 + 1 and notfound == 1
    assert hits >= 10 and misses == 10  # index + 9 resources read once, then cached
    assert "requests per worker" in out


def test_web_client_against_dispatcher_server():
    proc, port, _ = start_server("--workers", "6", "--demo-site", "15", "--latency-ms", "5")
    try:
        out = run_example(example("web_client.py"), f"http://127.0.0.1:{port}/",
                          "--concurrency", "5")
    finally:
        server_out = stop_server(proc)
    assert "15 embedded resources" in out
    progress = re.findall(r"\[\s*(\d+)/15\]\s+(\d+) B", out)
    assert sorted(int(i) for i, _ in progress) == list(range(1, 16))
    m = re.search(r"concurrent: 15 resources, (\d+) bytes", out)
    s = re.search(r"sequential: 15 resources, (\d+) bytes", out)
    assert m and s and m.group(1) == s.group(1) == str(sum(int(b) for _, b in progress))
    assert re.search(r"summary: \d+ bytes; concurrent [\d.]+ s, sequential [\d.]+ s, speed-up [\d.]+x", out)
    # page + 15 concurrent + 15 sequential
    assert re.search(r"stats: 31 requests", server_out), server_out


def test_throughput_model():
    path = example("throughput_model.py")
    out = run_example(path, "--cpu-ms", "2", "--disk-ms", "4", "--threads", "1,4",
                      "--requests", "30", "--no-plot")
    assert re.search(r"threads\s+measured", out)
    rows = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)", out, re.M)
    assert [r[0] for r in rows] == ["1", "4"]
    model = {int(k): float(m) for k, _, m in rows}
    assert model[1] == pytest.approx(1000 / 6, rel=0.01)   # 1 / (X + Y)
    assert model[4] == pytest.approx(1000 / 4, rel=0.01)   # the slowest resource: the disk


def test_rpc_fanout():
    path = example("rpc_fanout.py")
    out = run_example(path, "--servers", "4", "--delay-ms", "50")
    assert re.search(r"sequential: 4 calls", out) and re.search(r"concurrent: 4 calls", out)
    assert re.search(r"speed-up [\d.]+x", out)
    assert "results agree" in out


# -- bad command lines -----------------------------------------------------------------------------
#
# An argument error is an argparse error (status 2) before anything starts; a run-time failure the
# user caused is one line on stderr (status 1).  Either way no traceback and no hang.  {closed} is a
# port nobody listens on, {busy} one already taken, {site} a small HTTP server (see site()), {tmp}
# the test's own directory.

BAD = [
    # web_client.py
    ("web_client.py notaurl", 2, "argument url: not an http:// or https:// URL: 'notaurl'"),
    ("web_client.py ftp://127.0.0.1/", 2, "argument url: not an http:// or https:// URL"),
    ("web_client.py http://127.0.0.1:99999/", 2, "argument url: not a valid URL"),
    ("web_client.py http://127.0.0.1:1/ --concurrency 0", 2,
     "argument --concurrency: must be >= 1, got '0'"),
    ("web_client.py http://127.0.0.1:1/ --timeout -1", 2,
     "argument --timeout: must be > 0, got '-1'"),
    ("web_client.py http://127.0.0.1:1/ --timeout nan", 2,
     "argument --timeout: must be a finite number"),
    ("web_client.py http://127.0.0.1:1/ --timeout soon", 2,
     "argument --timeout: not a number: 'soon'"),
    ("web_client.py http://127.0.0.1:1/ --lwps 0", 2, "argument --lwps: must be >= 1, got '0'"),
    ("web_client.py http://127.0.0.1:{closed}/", 1,
     "web_client.py: cannot fetch http://127.0.0.1:{closed}/: [Errno 111] Connection refused"),
    ("web_client.py http://no-such-host.invalid/", 1,
     "web_client.py: cannot fetch http://no-such-host.invalid/: "),
    ("web_client.py {site}/nothere.html", 1,
     "web_client.py: cannot fetch {site}/nothere.html: HTTP 404 Not Found"),
    # a resource missing: reported, the rest downloaded in both phases
    ("web_client.py {site}/broken.html", 1,
     "web_client.py: cannot fetch {site}/missing.png: HTTP 404 Not Found"),
    # a resource that fails in the sequential phase only
    ("web_client.py {site}/", 1, "web_client.py: cannot fetch {site}/once.css: HTTP 404 Not Found"),
    # dispatcher_server.py
    ("dispatcher_server.py --root /does/not/exist", 2,
     "argument --root: not a directory: '/does/not/exist'"),
    ("dispatcher_server.py --workers 0", 2, "argument --workers: must be >= 1, got '0'"),
    ("dispatcher_server.py --demo-site -1", 2, "argument --demo-site: must be >= 0, got '-1'"),
    ("dispatcher_server.py --port 99999", 2,
     "argument --port: must be a port number from 0 to 65535"),
    ("dispatcher_server.py --latency-ms -1", 2, "argument --latency-ms: must be >= 0, got '-1'"),
    ("dispatcher_server.py --disk-ms -1", 2, "argument --disk-ms: must be >= 0, got '-1'"),
    ("dispatcher_server.py --lwps -1", 2, "argument --lwps: must be >= 1, got '-1'"),
    ("dispatcher_server.py --duration -1", 2, "argument --duration: must be >= 0, got '-1'"),
    ("dispatcher_server.py --port {busy} --duration 5", 1,
     "dispatcher_server.py: cannot listen on 127.0.0.1:{busy}: [Errno 98] Address already in use"),
    # throughput_model.py
    ("throughput_model.py --threads abc", 2, "argument --threads: not a whole number: 'abc'"),
    ("throughput_model.py --threads 1,", 2, "argument --threads: not a whole number: '' in '1,'"),
    ("throughput_model.py --threads 0", 2, "argument --threads: must be >= 1, got '0'"),
    ("throughput_model.py --requests 0", 2, "argument --requests: must be >= 1, got '0'"),
    ("throughput_model.py --cpu-ms -5", 2, "argument --cpu-ms: must be >= 0, got '-5'"),
    ("throughput_model.py --cpu-ms 0 --disk-ms 0", 2, "--cpu-ms and --disk-ms cannot both be 0"),
    ("throughput_model.py --plot {tmp}", 2, "argument --plot: is a directory: '{tmp}'"),
    ("throughput_model.py --plot /does/not/exist/plot.png", 2,
     "argument --plot: no such directory: '/does/not/exist'"),
    pytest.param("throughput_model.py --threads 1 --requests 5 --cpu-ms 1 --disk-ms 1 --plot {tmp}/plot.foo", 1,
                 "throughput_model.py: cannot save the plot to {tmp}/plot.foo: Format 'foo' is not supported",
                 marks=pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                          reason="without matplotlib no plot is made"),
                 id="throughput_model.py --plot {tmp}/plot.foo"),
    # rpc_fanout.py
    ("rpc_fanout.py --servers 0", 2, "argument --servers: must be >= 1, got '0'"),
    ("rpc_fanout.py --delay-ms -3", 2, "argument --delay-ms: must be >= 0, got '-3'"),
    ("rpc_fanout.py --lwps 0", 2, "argument --lwps: must be >= 1, got '0'"),
    ("rpc_fanout.py --servers 400", 2,  # run with ulimit -n 1024, see below
     "--servers 400 needs about 1232 open files, more than the limit of 1024 (see ulimit -n)"),
    ("throughput_model.py --threads 1,600", 2,
     "--threads 600 needs about 1232 open files, more than the limit of 1024 (see ulimit -n)"),
]


class _Site(http.server.BaseHTTPRequestHandler):
    """/ embeds /ok.png and /once.css, served once only; /broken.html embeds /missing.png."""

    pages = {"/": b'<link rel="stylesheet" href="/once.css"><img src="/ok.png">',
             "/broken.html": b'<img src="/missing.png"><img src="/ok.png">',
             "/ok.png": b"png", "/once.css": b"css"}

    def do_GET(self):
        pages = self.server.pages
        body = pages.pop(self.path, None) if self.path == "/once.css" else pages.get(self.path)
        self.send_response(404 if body is None else 200)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = False
    server.block_on_close = True
    server.pages = dict(_Site.pages)
    thread = threading.Thread(target=server.serve_forever, name="test-site")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("command, status, message", BAD,
                         ids=[c if isinstance(c, str) else None for c, *_ in BAD])
def test_bad_command_line(command, status, message, tmp_path):
    with contextlib.ExitStack() as stack:
        places = {"tmp": str(tmp_path)}
        if "{closed}" in command:  # bound, not listening: a connection is refused
            closed = stack.enter_context(socket.socket())
            closed.bind(("127.0.0.1", 0))
            places["closed"] = closed.getsockname()[1]
        if "{busy}" in command:
            busy = stack.enter_context(socket.socket())
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            places["busy"] = busy.getsockname()[1]
        if "{site}" in command:
            places["site"] = stack.enter_context(site())
        name, *args = command.format(**places).split()
        # The same limit of open files wherever the test runs: 1024, a common default.
        r = subprocess.run(["sh", "-c", 'ulimit -n 1024 && exec "$@"', "sh", sys.executable,
                            example(name), *args],
                           capture_output=True, text=True, timeout=T, cwd=ROOT)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == status, r.stderr
    assert message.format(**places) in r.stderr, r.stderr
    if status == 2:
        assert r.stderr.startswith("usage: ") and r.stdout == ""  # refused before anything starts
    else:
        assert len(r.stderr.splitlines()) == 1  # one line says what went wrong


def test_ctrl_c_ends_an_example_quietly():
    """Ctrl-C in web_client.py (and the others but the server, which had its own
    handling) ended in a KeyboardInterrupt traceback."""
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        # SIGINT as a terminal has it, whatever the test runner inherited.
        proc = subprocess.Popen([sys.executable, example("web_client.py"), url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        assert "cooperative stdlib" in proc.stdout.readline()  # main runs: the page request waits
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=T)
    assert proc.returncode == 130 and err == "", err
