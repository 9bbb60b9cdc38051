"""Helpers shared by the tests."""

import contextlib
import shutil
import subprocess
import threading
import time

import pytest

import lwp


def wait_until(predicate, timeout=5.0, step=0.001):
    """Poll ``predicate`` (from a green or OS thread) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        lwp.sleep(step)


N_TICKS = 10  # ticks a ticker thread makes before a test lets a parked call go


def start_ticker():
    ticks = [0]

    def tick():
        while True:
            ticks[0] += 1
            lwp.sleep(0.001)

    return ticks, lwp.spawn(tick, name="ticker")


def progress_while(block, release):
    """``block()`` parks until an OS thread calls ``release()`` after N_TICKS ticks of a
    ticker on the same LWP; returns (block()'s result, ticks seen)."""
    ticks, ticker = start_ticker()

    def run():
        deadline = time.monotonic() + 5
        while ticks[0] < N_TICKS and time.monotonic() < deadline:
            time.sleep(0.001)
        release()

    th = threading.Thread(target=run)
    th.start()
    try:
        return block(), ticks[0]
    finally:
        th.join(10)
        ticker.cancel()


def run1(main):
    """``lwp.run(main)`` on one LWP: every thread the test spawns shares it."""
    return lwp.run(main, lwps=1)


def settle():
    for _ in range(3):
        lwp.sleep(0)


def make_cert(directory, name="localhost"):
    """A self-signed certificate for ``name`` (and 127.0.0.1) in ``directory``: (certfile,
    keyfile), made by the ``openssl`` command; the test is skipped, with the reason, without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    certfile, keyfile = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    proc = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(keyfile), "-out", str(certfile), "-days", "2",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1"],
        capture_output=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"openssl could not make a test certificate: {proc.stderr.decode()[-300:]}")
    return str(certfile), str(keyfile)


@contextlib.contextmanager
def held_http_server(release, tls=None):
    """An HTTP server on kernel threads (over TLS with the server context ``tls``) that
    answers each GET with ``b"held"`` once ``release`` is set; stopped on exit."""
    import http.server

    from lwp.monkey import KernelThread

    class Held(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            release.wait(10)
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"held")

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        block_on_close = False
        request_queue_size = 16  # else connections beyond 5 wait for a SYN retry (1 s)

    server = Server(("127.0.0.1", 0), Held)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    serving = KernelThread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    serving.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        serving.join(5)
