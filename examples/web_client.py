"""The multithreaded web client: fetch a page and its embedded resources concurrently.

What it shows: plain standard-library HTTP code (``urllib.request``) made
cooperative by lwp.  ``lwp.monkey.patch_all()`` runs first; after that each
resource download is ordinary blocking code in its own green thread, and while
one waits for the network the others proceed, as a browser's threads hide the
network's latency.  At most ``--concurrency`` downloads run at once
(``lwp.Semaphore``).

It fetches URL, finds the embedded images, scripts and stylesheets, downloads
them concurrently with a progress line each, then downloads the same resources
one at a time and prints a summary: bytes, time, and the speed-up.  A
resource that cannot be fetched is reported on stderr and skipped, and the
exit status is then 1; a page that cannot be fetched ends the run at once,
with one line on stderr.  Try it
against the dispatcher/worker server, with a simulated latency that makes
the waiting visible::

    python examples/dispatcher_server.py --port 8080 --workers 8 --latency-ms 20 &
    python examples/web_client.py http://127.0.0.1:8080/ --concurrency 8

Only local servers exist here: use 127.0.0.1 URLs.
"""

import argparse
import http.client
import time
import urllib.error
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import lwp
import lwp.monkey
import _cli
from _cli import complain, http_url, positive_float, positive_int


def make_cooperative():
    """Patch the standard library so that urllib's sockets park green threads."""
    try:
        lwp.monkey.patch_all()
        return "lwp.monkey.patch_all()"
    except ImportError:  # a build without some of lwp's select/ssl/subprocess modules
        pass
    lwp.monkey.patch_time()
    lwp.monkey.patch_threading()
    try:
        lwp.monkey.patch_socket()
        return "lwp.monkey.patch_socket(), patch_time(), patch_threading()"
    except ImportError:
        # No lwp.socket at all: give socket.create_connection (what http.client
        # connects with) cooperative sockets.
        import socket

        from lwp.server import cooperative_socket

        original = socket.create_connection

        def create_connection(*args, **kwargs):
            return cooperative_socket(original(*args, **kwargs))

        socket.create_connection = create_connection
        return "lwp.monkey.patch_time() + cooperative socket.create_connection"


class ResourceFinder(HTMLParser):
    """Collect the URLs of embedded resources: img/script src, stylesheet href."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("img", "script") and a.get("src"):
            self.found.append(a["src"])
        elif tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or "").split():
            self.found.append(a["href"])


class FetchError(Exception):
    """A URL that could not be fetched; the message says which and why, in one line."""


def fetch(url, timeout):
    """GET ``url``: ``(body, seconds)``, or ``FetchError``."""
    import urllib.request

    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
    except urllib.error.HTTPError as e:
        e.close()
        raise FetchError(f"cannot fetch {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:  # no connection: refused, unknown host, timed out
        raise FetchError(f"cannot fetch {url}: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # the reply broke off or made no sense
        raise FetchError(f"cannot fetch {url}: {type(e).__name__}: {e}") from None
    return data, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", type=http_url, help="page to fetch, e.g. http://127.0.0.1:8080/")
    p.add_argument("--concurrency", type=positive_int, default=8,
                   help="downloads at once (default 8)")
    p.add_argument("--timeout", type=positive_float, default=30.0,
                   help="per-request timeout in seconds (default 30)")
    p.add_argument("--no-sequential", action="store_true",
                   help="skip the one-at-a-time comparison")
    p.add_argument("--lwps", type=positive_int, default=1, help="LWPs (default 1)")
    args = p.parse_args(argv)
    how = make_cooperative()
    return lwp.run(run, args, how, lwps=args.lwps)


def run(args, how):
    print(f"cooperative stdlib via {how}")
    try:
        page, took = fetch(args.url, args.timeout)
    except FetchError as e:
        return complain(e)
    finder = ResourceFinder()
    finder.feed(page.decode("utf-8", "replace"))
    # Only what is downloaded over HTTP: data: URIs and the like are not fetched.
    urls = [u for u in dict.fromkeys(urljoin(args.url, u) for u in finder.found)
            if urlsplit(u).scheme in ("http", "https")]
    print(f"page {args.url}: {len(page)} bytes in {took * 1000:.1f} ms; "
          f"{len(urls)} embedded resources")

    gate = lwp.Semaphore(args.concurrency)
    done = []
    failed = []

    def download(url):
        with gate:
            try:
                data, dt = fetch(url, args.timeout)
            except FetchError as e:
                failed.append(url)
                complain(e)
                return 0
        done.append(len(data))
        print(f"  [{len(done):3d}/{len(urls)}] {len(data):8d} B {dt * 1000:8.1f} ms  {url}",
              flush=True)
        return len(data)

    t0 = time.perf_counter()
    threads = [lwp.spawn(download, u) for u in urls]
    sizes = [t.join() for t in threads]
    concurrent_s = time.perf_counter() - t0
    total = sum(sizes)
    print(f"concurrent: {len(done)} resources, {total} bytes in {concurrent_s:.3f} s "
          f"with {args.concurrency} green threads at a time")
    if not args.no_sequential:
        fetched = [u for u in urls if u not in failed]  # the same work as the concurrent phase
        t0 = time.perf_counter()
        seq_total = 0
        for u in fetched:
            try:
                seq_total += len(fetch(u, args.timeout)[0])
            except FetchError as e:
                failed.append(u)
                complain(e)
        sequential_s = time.perf_counter() - t0
        print(f"sequential: {len(fetched)} resources, {seq_total} bytes in {sequential_s:.3f} s "
              f"one at a time")
        print(f"summary: {total + len(page)} bytes; concurrent {concurrent_s:.3f} s, "
              f"sequential {sequential_s:.3f} s, speed-up {sequential_s / max(concurrent_s, 1e-9):.1f}x")
    else:
        print(f"summary: {total + len(page)} bytes; concurrent {concurrent_s:.3f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    _cli.run(main)
