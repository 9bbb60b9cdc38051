"""The bundled examples, run as people run them, against local servers only.

Each example runs in a subprocess (``python examples/NAME.py ...``); servers
print the address they bound (port 0) and are stopped with SIGTERM.  Checks are
on what they print and serve, never on timings.
"""

import os
import re
import signal
import socket
import subprocess
import sys
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
# An argument error is an argparse error (status 2) before anything starts: no traceback, no hang.

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
    ("web_client.py http://127.0.0.1:1/ --lwps 0", 2, "argument --lwps: must be >= 1, got '0'"),
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
    # throughput_model.py
    ("throughput_model.py --threads abc", 2, "argument --threads: not a whole number: 'abc'"),
    ("throughput_model.py --threads 1,", 2, "argument --threads: not a whole number: '' in '1,'"),
    ("throughput_model.py --threads 0", 2, "argument --threads: must be >= 1, got '0'"),
    ("throughput_model.py --requests 0", 2, "argument --requests: must be >= 1, got '0'"),
    ("throughput_model.py --cpu-ms -5", 2, "argument --cpu-ms: must be >= 0, got '-5'"),
    ("throughput_model.py --cpu-ms 0 --disk-ms 0", 2, "--cpu-ms and --disk-ms cannot both be 0"),
    ("throughput_model.py --plot /does/not/exist/plot.png", 2,
     "argument --plot: no such directory: '/does/not/exist'"),
    # rpc_fanout.py
    ("rpc_fanout.py --servers 0", 2, "argument --servers: must be >= 1, got '0'"),
    ("rpc_fanout.py --delay-ms -3", 2, "argument --delay-ms: must be >= 0, got '-3'"),
    ("rpc_fanout.py --lwps 0", 2, "argument --lwps: must be >= 1, got '0'"),
]


@pytest.mark.parametrize("command, status, message", BAD, ids=[c for c, _, _ in BAD])
def test_bad_command_line(command, status, message):
    name, *args = command.split()
    r = subprocess.run([sys.executable, example(name), *args], capture_output=True, text=True,
                       timeout=T, cwd=ROOT)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == status, r.stderr
    assert message in r.stderr, r.stderr
    assert r.stderr.startswith("usage: ") and r.stdout == ""  # refused before anything starts
