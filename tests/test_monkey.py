"""lwp.monkey: the standard library made cooperative, late imports handled."""

import queue
import sys
import threading
import time
import types
import warnings

import pytest

import lwp
import lwp.monkey as monkey


@pytest.fixture(autouse=True)
def restore():
    yield
    monkey.unpatch_all()


def test_patched_time_sleep_parks():
    monkey.patch_time()

    def main():
        counter = [0]

        def tick():
            for _ in range(20):
                counter[0] += 1
                time.sleep(0.001)

        ticker = lwp.spawn(tick)
        time.sleep(0.05)  # the ticker keeps going on the same LWP
        seen = counter[0]
        ticker.join(5)
        return seen

    assert lwp.run(main, lwps=1) >= 10
    assert monkey.is_patched("time", "sleep")
    time.sleep(0.001)  # plain OS thread: still sleeps


def test_patched_threading_primitives_work_for_green_and_os_threads():
    monkey.patch_threading()
    assert threading.Lock is lwp.Lock and threading.Event is lwp.Event
    assert threading.Thread is monkey.get_original("threading", "Thread")  # stays real
    lock, done = threading.Lock(), threading.Event()
    shared = []

    def os_worker():
        for i in range(100):
            with lock:
                shared.append(("os", i))
        done.set()

    def main():
        th = threading.Thread(target=os_worker)
        th.start()
        for i in range(100):
            with lock:
                shared.append(("green", i))
            lwp.sleep(0)
        assert done.wait(5)
        while th.is_alive():
            lwp.sleep(0.001)
        return len(shared)

    assert lwp.run(main, lwps=1) == 200


def test_patched_queue():
    monkey.patch_queue()
    assert queue.Queue is lwp.Queue and queue.Empty is lwp.Empty

    def main():
        q = queue.Queue(maxsize=1)
        consumer = lwp.spawn(lambda: [q.get(timeout=5) for _ in range(50)])
        for i in range(50):
            q.put(i)
        return consumer.join(5)

    assert lwp.run(main, lwps=1) == list(range(50))


def test_late_from_import_is_rebound_and_restored():
    late = types.ModuleType("late_user")
    exec("from time import sleep\nfrom threading import Event", late.__dict__)
    sys.modules["late_user"] = late
    try:
        monkey.patch_time()
        monkey.patch_threading()
        assert late.sleep is lwp.sleep and late.Event is lwp.Event
        monkey.unpatch_all()
        assert late.sleep is time.sleep and late.Event is threading.Event
        assert threading.Event is not lwp.Event
    finally:
        del sys.modules["late_user"]


def test_subclass_of_an_original_is_named_in_a_warning():
    late = types.ModuleType("late_subclasser")
    exec("import queue\nclass MyQueue(queue.Queue):\n    pass\n", late.__dict__)
    late.MyQueue.__module__ = "late_subclasser"
    sys.modules["late_subclasser"] = late
    try:
        with pytest.warns(monkey.MonkeyPatchWarning, match=r"late_subclasser\.MyQueue.*queue\.Queue"):
            monkey.patch_queue()
    finally:
        del sys.modules["late_subclasser"]


def test_get_original_and_unknown_module():
    assert monkey.get_original("time", "sleep") is time.sleep
    monkey.patch_time()
    assert monkey.get_original("time", "sleep") is not time.sleep
    with pytest.raises(ModuleNotFoundError):
        monkey.patch_module("no_such_module_xyz")


def test_lwp_internals_keep_working_when_everything_is_patched():
    monkey.patch_time()
    monkey.patch_threading()
    monkey.patch_queue()
    # a whole scheduler life cycle with patched primitives around it
    assert lwp.run(lambda: lwp.spawn(lambda: time.sleep(0.001) or 5).join(5), lwps=2) == 5
    assert lwp.spawn(lambda: 6).join(5) == 6  # default scheduler started while patched


# Until lwp.ssl replaces ssl.SSLSocket, patching socket rightly warns that it stays blocking.
_ssl_pending = pytest.mark.filterwarnings(
    "ignore:ssl.SSLSocket subclasses:lwp.monkey.MonkeyPatchWarning")


@_ssl_pending
def test_patched_urllib_fetches_concurrently():
    """Plain urllib code, patched: each fetch parks and the LWP serves the others."""
    import http.server
    import socketserver
    import urllib.request

    monkey.patch_all()
    release = threading.Event()  # patched: an lwp.Event, fine from OS threads too

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            release.wait(5)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        block_on_close = False

    server = Server(("127.0.0.1", 0), Slow)
    port = server.server_address[1]
    serving = monkey.get_original("threading", "Thread")(target=server.serve_forever)
    serving.start()
    try:
        def main():
            fetches = [lwp.spawn(lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{port}/", timeout=10).read()) for _ in range(10)]
            ticks = 0
            while sum(s["live"] for s in lwp.stats()) < 11 and ticks < 5000:
                ticks += 1
                lwp.sleep(0.001)  # every fetch is parked in recv; this thread still runs
            release.set()
            return [t.join(10) for t in fetches]

        assert lwp.run(main, lwps=1) == [b"ok"] * 10
    finally:
        server.shutdown()
        server.server_close()
        serving.join(5)


@_ssl_pending
def test_patch_all_covers_available_modules():
    done = monkey.patch_all()
    assert set(done) == set(monkey.available())
    assert {"time", "threading", "queue", "socket"} <= set(done)
    import socket

    assert socket.socket is lwp.socket.socket


def test_asyncio_running_loop_holder_is_not_warned_about():
    import asyncio  # noqa: F401 - asyncio.events._RunningLoop subclasses threading.local

    with warnings.catch_warnings():
        warnings.simplefilter("error", monkey.MonkeyPatchWarning)
        monkey.patch_threading()


def test_threading_local_subclass_warning_says_what_happens():
    late = types.ModuleType("late_local")
    exec("import threading\nclass Mine(threading.local):\n    pass\n", late.__dict__)
    late.Mine.__module__ = "late_local"
    sys.modules["late_local"] = late
    try:
        with pytest.warns(monkey.MonkeyPatchWarning, match="one value per kernel thread"):
            monkey.patch_threading()
    finally:
        del sys.modules["late_local"]


def test_blocking_works_after_patching_threading():
    """The activation pool's Condition was looked up at run time: patched, it hung."""
    monkey.patch_threading()
    assert lwp.run(lambda: lwp.blocking(lambda: "done"), lwps=1) == "done"
