"""The dispatcher/worker file server, on lwp green threads.

What it shows: the server organisation of the course slides.  A dispatcher
accepts connections (``lwp.server.StreamServer``) and, for each connection, a
reader green thread parses HTTP requests and puts them on a request queue; a
fixed pool of N worker green threads takes requests off the queue, reads the
file through activations (``lwp.open``: the read runs on a native thread while
the LWP serves others) or from an optional in-memory cache, and sends the
response.  N is the knob of the slides' "how many threads?" question: with
``--workers 1`` every request waits for the one before it.

By default it serves a generated demo site (an ``index.html`` that embeds N
images, scripts and stylesheets), which is what ``examples/web_client.py``
fetches::

    python examples/dispatcher_server.py --port 8080 --workers 8 --demo-site 24
    python examples/web_client.py http://127.0.0.1:8080/

``--latency-ms L`` makes each request wait L ms (a back end that needs
neither the CPU nor the disk), so the client's concurrency shows;
``--cpu-ms X`` and ``--disk-ms Y`` add a simulated cost to each request: X ms
of CPU (a busy loop: one CPU, shared) and Y ms of "disk" (a wait on a single
simulated disk that serves one request at a time and needs no CPU); see
``examples/throughput_model.py``.  ``--cache`` keeps files in memory (a cache
hit skips the disk).  On exit (Ctrl-C, SIGTERM or ``--duration``) it prints
its statistics.  Only 127.0.0.1 is served unless ``--host`` says otherwise;
if it cannot listen there (a port in use, say) it says so on stderr and exits
with status 1.
"""

import argparse
import mimetypes
import os
import shutil
import signal
import sys
import tempfile
import time

import httptools

import lwp
import _cli
from _cli import complain, directory, non_negative_float, non_negative_int, port, positive_int
from lwp.server import StreamServer

# -- the demo site -----------------------------------------------------------------------------


def make_demo_site(root, n, size=4096):
    """Write ``index.html`` embedding ``n`` resources (images, scripts, stylesheets) under ``root``."""
    kinds = [("img", "png", "image"), ("js", "js", "script"), ("css", "css", "stylesheet")]
    tags = []
    for i in range(n):
        folder, ext, kind = kinds[i % 3]
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        name = f"/{folder}/r{i}.{ext}"
        payload = (f"/* resource {i} */\n".encode() * (size // 16 + 1))[:size + i * 37]
        with open(os.path.join(root, name.lstrip("/")), "wb") as f:
            f.write(payload)
        if kind == "image":
            tags.append(f'<img src="{name}" alt="image {i}">')
        elif kind == "script":
            tags.append(f'<script src="{name}"></script>')
        else:
            tags.append(f'<link rel="stylesheet" href="{name}">')
    html = ("<!doctype html>\n<html><head><title>lwp demo site</title>\n"
            + "\n".join(t for t in tags if t.startswith("<link"))
            + "\n</head><body>\n<h1>lwp demo site</h1>\n"
            + "\n".join(t for t in tags if not t.startswith("<link"))
            + "\n</body></html>\n")
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write(html)
    return n


# -- the server ----------------------------------------------------------------------------------


class Request:
    __slots__ = ("conn", "method", "path", "keep_alive", "done", "queued_at")

    def __init__(self, conn, method, path, keep_alive):
        self.conn, self.method, self.path, self.keep_alive = conn, method, path, keep_alive
        self.done = lwp.Event()
        self.queued_at = time.monotonic()


class _Head:
    """httptools callbacks: collect complete request heads."""

    def __init__(self):
        self.url = b""
        self.complete = []
        self.parser = httptools.HttpRequestParser(self)

    def on_url(self, url):
        self.url += url

    def on_message_complete(self):
        p = self.parser
        self.complete.append((p.get_method(), self.url, p.should_keep_alive()))
        self.url = b""


class FileServer:
    def __init__(self, root, workers, cache=False, cpu_ms=0.0, disk_ms=0.0, latency_ms=0.0):
        self.root = os.path.realpath(root)
        self.queue = lwp.Queue()
        self.nworkers = workers
        self.cache = {} if cache else None
        self.cpu_s = cpu_ms / 1000
        self.disk_s = disk_ms / 1000
        self.latency_s = latency_ms / 1000
        self.disk = lwp.Lock()  # one simulated disk: one request at a time
        self.stats = {"requests": 0, "bytes": 0, "hits": 0, "misses": 0, "not_found": 0,
                      "queue_wait": 0.0, "per_worker": [0] * workers}
        self.workers = []
        self.server = None

    def start_workers(self):
        self.workers = [lwp.spawn(self.worker, i, name=f"worker-{i}") for i in range(self.nworkers)]

    def stop_workers(self):
        for _ in self.workers:
            self.queue.put(None)
        for w in self.workers:
            w.join(5)

    # The dispatcher side: one reader per connection turns bytes into queued requests.
    def reader(self, conn, addr):
        head = _Head()
        while True:
            with self.server.idle():  # between requests: stop() may close this connection
                data = conn.recv(65536)
            if not data:
                return
            try:
                head.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                # No protocol upgrades here (curl --http2 asks for h2c): the request is
                # answered in HTTP/1.1, and the connection closed after it.
                method, url, _ = head.complete[-1]
                head.complete[-1] = (method, url, False)
            except httptools.HttpParserError:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            while head.complete:
                method, url, keep = head.complete.pop(0)
                req = Request(conn, method, url.split(b"?")[0].decode("latin-1"), keep)
                self.queue.put(req)
                req.done.wait()  # responses go out in order
                if not keep:
                    return

    # The worker side.
    def worker(self, index):
        while True:
            req = self.queue.get()
            if req is None:
                return
            self.stats["queue_wait"] += time.monotonic() - req.queued_at
            try:
                self.serve(req)
                self.stats["per_worker"][index] += 1
            except OSError:
                pass  # the client went away
            finally:
                req.done.set()

    def _simulate(self):
        self._simulate_cpu()
        if self.disk_s:
            with self.disk:  # the single disk serves one request at a time
                lwp.sleep(self.disk_s)  # the transfer needs no CPU: the LWP runs others

    def _simulate_cpu(self):
        """X ms of CPU, in 1 ms slices with a scheduling point between them.

        Green threads are not preempted; the slices play the part of a
        preemptive kernel's time slices, so a request whose disk transfer has
        finished gets the CPU back within a millisecond, as in the model.
        """
        end = time.perf_counter() + self.cpu_s
        while True:
            now = time.perf_counter()
            if now >= end:
                return
            slice_end = min(end, now + 0.001)
            while time.perf_counter() < slice_end:
                pass
            lwp.sleep(0)

    def read_file(self, path):
        if self.cache is not None and path in self.cache:
            self.stats["hits"] += 1
            self._simulate_cpu()
            return self.cache[path]
        self.stats["misses"] += 1
        self._simulate()
        with lwp.open(path, "rb") as f:  # reads run on activations
            data = f.read()
        if self.cache is not None:
            self.cache[path] = data
        return data

    def serve(self, req):
        if self.latency_s:
            lwp.sleep(self.latency_s)  # parks the worker; the others go on
        rel = req.path.lstrip("/") or "index.html"
        if rel.endswith("/"):
            rel += "index.html"
        path = os.path.realpath(os.path.join(self.root, rel))
        ok = path.startswith(self.root + os.sep) and os.path.isfile(path)
        if req.method not in (b"GET", b"HEAD") or not ok:
            self.stats["not_found"] += 1
            body = b"not found\n"
            head = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
        else:
            body = self.read_file(path)
            ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
            head = b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype.encode() + b"\r\n"
        head += b"Content-Length: %d\r\n" % len(body)
        if not req.keep_alive:
            head += b"Connection: close\r\n"
        req.conn.sendall(head + b"\r\n" + (body if req.method != b"HEAD" else b""))
        self.stats["requests"] += 1
        self.stats["bytes"] += len(body)

    def report(self, elapsed, out=sys.stdout):
        s = self.stats
        n = max(s["requests"], 1)
        print(f"stats: {s['requests']} requests, {s['bytes']} bytes in {elapsed:.2f} s "
              f"({s['requests'] / max(elapsed, 1e-9):.1f} req/s); "
              f"cache hits {s['hits']}, misses {s['misses']}; not found {s['not_found']}; "
              f"mean queue wait {s['queue_wait'] / n * 1000:.2f} ms", file=out)
        print(f"stats: requests per worker: {s['per_worker']}", file=out, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=8080, help="0 picks a free port (printed)")
    p.add_argument("--workers", type=positive_int, default=8, help="worker threads (default 8)")
    p.add_argument("--root", type=directory,
                   help="directory to serve (default: a generated demo site)")
    p.add_argument("--demo-site", type=non_negative_int, default=24, metavar="N",
                   help="resources in the generated demo site (default 24)")
    p.add_argument("--cache", action="store_true", help="keep served files in memory")
    p.add_argument("--cpu-ms", type=non_negative_float, default=0.0,
                   help="simulated CPU per request (ms)")
    p.add_argument("--disk-ms", type=non_negative_float, default=0.0,
                   help="simulated disk per request (ms)")
    p.add_argument("--latency-ms", type=non_negative_float, default=0.0,
                   help="simulated wait per request that needs no CPU or disk (a back end, say)")
    p.add_argument("--lwps", type=positive_int, default=1,
                   help="LWPs (default 1: one CPU, as in the model)")
    p.add_argument("--duration", type=non_negative_float, default=None,
                   help="stop after this many seconds")
    args = p.parse_args(argv)

    tmp = None
    root = args.root
    if root is None:
        tmp = root = tempfile.mkdtemp(prefix="lwp-demo-site-")
        make_demo_site(root, args.demo_site)

    def run():
        fs = FileServer(root, args.workers, args.cache, args.cpu_ms, args.disk_ms, args.latency_ms)
        server = fs.server = StreamServer((args.host, args.port), fs.reader, name="dispatcher")
        try:
            server.start()  # binds and listens
        except OSError as e:  # a port in use, a host that is not this machine's
            return complain(f"cannot listen on {args.host}:{args.port}: {e}")
        fs.start_workers()
        host, bound_port = server.address[:2]
        print(f"serving {root} on http://{host}:{bound_port}/ with {args.workers} workers"
              f"{' and a cache' if args.cache else ''}", flush=True)
        t0 = time.monotonic()
        try:
            if args.duration is not None:
                lwp.sleep(args.duration)
            else:
                server.serve_forever()
        except (KeyboardInterrupt, lwp.Cancelled):
            pass
        finally:
            server.stop(2.0)
            fs.stop_workers()
            fs.report(time.monotonic() - t0)
        return 0

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return lwp.run(run, lwps=args.lwps)
    except KeyboardInterrupt:
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    _cli.run(main)
