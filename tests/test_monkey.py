"""lwp.monkey: the standard library made cooperative, late imports handled."""

import queue
import sys
import threading
import time
import types
import warnings

import pytest

from helpers import N_TICKS, held_http_server, progress_while, settle
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


def test_patched_urllib_fetches_concurrently():
    """Plain urllib code, patched: each fetch parks and the LWP serves the others."""
    import urllib.request

    monkey.patch_all()
    release = threading.Event()  # patched: an lwp.Event, fine from OS threads too
    with held_http_server(release) as server:
        port = server.server_address[1]

        def main():
            fetches = [lwp.spawn(lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{port}/", timeout=10).read()) for _ in range(10)]
            ticks = 0
            while sum(s["live"] for s in lwp.stats()) < 11 and ticks < 5000:
                ticks += 1
                lwp.sleep(0.001)  # every fetch is parked in recv; this thread still runs
            release.set()
            return [t.join(10) for t in fetches]

        assert lwp.run(main, lwps=1) == [b"held"] * 10


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


# -- threading.Thread as a green thread ------------------------------------------------------

N = 8  # threads that must all be waiting at once: a Barrier of N proves concurrency

green_threads = pytest.mark.skipif(not hasattr(threading, "_set_sentinel"),
                                   reason="threads=True supports Python 3.10 to 3.12")


def _all_green_at_once(n=N):
    """A task for n threads: returns only if all n wait together, each in a green thread."""
    barrier = threading.Barrier(n, timeout=5)  # patched: lwp's

    def task(*_args):
        assert lwp.current() is not None
        barrier.wait()
        return threading.current_thread().name

    return task


@green_threads
def test_green_threads_patch_and_unpatch():
    import _thread

    originals = {name: getattr(threading, name)
                 for name in ("_start_new_thread", "get_ident", "_set_sentinel", "_DummyThread")}
    first = monkey.patch_threading(threads=True)
    assert monkey.patch_threading(threads=True) == first  # idempotent
    assert {"_start_new_thread", "get_ident", "Lock"} <= set(first)
    assert _thread.get_ident is threading.get_ident  # rebound where it was copied
    assert threading.Thread is monkey.get_original("threading", "Thread")
    monkey.patch_threading()  # without threads=True: they stay green
    assert threading.get_ident is not originals["get_ident"]
    monkey.unpatch_all()
    for name, original in originals.items():
        assert getattr(threading, name) is original
    assert _thread.get_ident is originals["get_ident"]
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join(5)
    assert t.native_id != threading.get_native_id()  # a kernel thread again


@green_threads
def test_start_new_thread_is_green_and_checks_its_arguments():
    import _thread

    monkey.patch_threading(threads=True)

    def main():
        out = lwp.Queue()
        ident = _thread.start_new_thread(lambda *a, **k: out.put((a, k, lwp.current().ident)),
                                         (1, 2), {"name": "kept", "bound": "kept too"})
        args, kwargs, green = out.get(timeout=5)
        assert (args, kwargs) == ((1, 2), {"name": "kept", "bound": "kept too"})
        assert green == ident
        with pytest.raises(TypeError, match="tuple"):
            _thread.start_new_thread(print, [1])
        with pytest.raises(TypeError, match="dictionary"):
            _thread.start_new_thread(print, (), [])
        with pytest.raises(TypeError, match="callable"):
            _thread.start_new_thread(None, ())

    lwp.run(main, lwps=1)


@green_threads
def test_thread_semantics_in_green_threads():
    monkey.patch_all(threads=True)

    def main():
        seen = {}
        release = threading.Event()

        def body():
            me = threading.current_thread()
            seen["current"] = me
            seen["ident"] = threading.get_ident()
            seen["in_enumerate"] = me in threading.enumerate()
            seen["main"] = threading.main_thread()
            try:
                me.join()
            except RuntimeError as e:
                seen["self_join"] = str(e)
            release.wait(5)

        t = threading.Thread(target=body, name="worker")
        assert not t.is_alive() and t.ident is None
        assert t.daemon  # inherited, as threading does, from the starter: a dummy thread
        t.start()
        assert t.is_alive() and t.ident is not None
        settle()
        assert seen["current"] is t and seen["ident"] == t.ident and seen["in_enumerate"]
        assert seen["main"] is monkey.get_original("threading", "main_thread")()
        t.join(0.01)
        assert t.is_alive()  # join timed out, as threading's does: no exception
        release.set()
        t.join(5)
        assert not t.is_alive() and t not in threading.enumerate()
        assert seen["self_join"] == "cannot join current thread"
        with pytest.raises(RuntimeError, match="once"):
            t.start()
        return t

    t = lwp.run(main, lwps=1)
    assert t.ident not in threading._active


@green_threads
def test_each_green_thread_has_its_own_local_and_ident():
    monkey.patch_all(threads=True)

    def main():
        data = threading.local()
        barrier = threading.Barrier(4, timeout=5)
        out = []

        def body(i):
            data.value = i
            barrier.wait()  # all four have set it before any reads it back
            out.append((data.value, threading.get_ident()))

        ts = [threading.Thread(target=body, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(5)
        return out, [t.ident for t in ts]

    out, idents = lwp.run(main, lwps=1)
    assert sorted(out) == sorted(zip(range(4), idents))
    assert len(set(idents)) == 4


@green_threads
def test_current_thread_of_a_plain_green_thread_is_forgotten_when_it_ends():
    """threading's _DummyThread for a thread it did not start stays in _active for ever."""
    monkey.patch_all(threads=True)

    def main():
        dummies = [lwp.spawn(threading.current_thread).join(5) for _ in range(20)]
        settle()
        assert len({id(d) for d in dummies}) == 20 and all(d.daemon for d in dummies)
        assert not any(d.is_alive() for d in dummies)
        return [d for d in dummies if d in threading.enumerate()]

    before = threading.active_count()
    assert lwp.run(main, lwps=1) == []
    assert threading.active_count() == before


@green_threads
def test_kernel_threads_stay_kernel_threads():
    monkey.patch_all(threads=True)
    names = []
    t = monkey.KernelThread(target=lambda: names.append(lwp.current()))
    t.start()
    t.join(5)
    assert names == [None] and t.native_id != threading.get_native_id()
    # the LWPs and the monitor of a scheduler started while patched are KernelThreads
    assert lwp.run(lambda: lwp.current() is not None, lwps=2, max_lwps=3)
    assert lwp.spawn(lambda: 7).join(5) == 7  # the default scheduler, started while patched


@green_threads
def test_thread_started_by_an_os_thread_runs_green_and_joins():
    """From a plain OS thread, Thread.start spawns on the default scheduler; join blocks
    the OS thread; the exception of the target goes to threading.excepthook."""
    monkey.patch_all(threads=True)
    hooked = []
    old_hook = threading.excepthook
    threading.excepthook = hooked.append
    try:
        out = []
        t = threading.Thread(target=lambda: out.append(lwp.current() is not None))
        t.start()
        t.join(5)
        bad = threading.Thread(target=lambda: 1 / 0)
        bad.start()
        bad.join(5)
    finally:
        threading.excepthook = old_hook
    assert out == [True] and not t.is_alive()
    assert [type(h.exc_value) for h in hooked] == [ZeroDivisionError] and hooked[0].thread is bad


@green_threads
def test_thread_pool_executor_runs_green_and_concurrent():
    monkey.patch_all(threads=True)
    from concurrent.futures import ThreadPoolExecutor

    def main():
        task = _all_green_at_once()
        with ThreadPoolExecutor(max_workers=N) as pool:
            names = list(pool.map(task, range(N), timeout=10))
        return names

    names = lwp.run(main, lwps=1)
    assert len(set(names)) == N and all(n.startswith("ThreadPoolExecutor") for n in names)


@green_threads
def test_socketserver_threading_mixin_serves_concurrently():
    monkey.patch_all(threads=True)
    import socket
    import socketserver
    from concurrent.futures import ThreadPoolExecutor

    task = _all_green_at_once()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            task()
            self.wfile.write(line.upper())

    def main():
        class Server(socketserver.ThreadingTCPServer):
            request_queue_size = 2 * N

        with Server(("127.0.0.1", 0), Handler) as server:
            serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
            serving.start()

            def client(i):
                with socket.create_connection(server.server_address, timeout=10) as c:
                    c.sendall(b"hello %d\n" % i)
                    return c.makefile("rb").readline()

            try:
                with ThreadPoolExecutor(N) as pool:
                    return list(pool.map(client, range(N), timeout=10))
            finally:
                server.shutdown()
                serving.join(5)

    assert lwp.run(main, lwps=1) == [b"HELLO %d\n" % i for i in range(N)]


def _http_server(task):
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            task()
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 2 * N  # else connections beyond 5 wait for a SYN retry (1 s)

    server = Server(("127.0.0.1", 0), Handler)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    serving.start()
    return server, serving


@green_threads
@pytest.mark.parametrize("client", ["http.client", "urllib.request", "requests"])
def test_http_server_and_clients_on_green_threads(client):
    if client == "requests":
        pytest.importorskip("requests")
    monkey.patch_all(threads=True)
    from concurrent.futures import ThreadPoolExecutor

    def fetch(i, port):
        if client == "http.client":
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", f"/{i}")
                return conn.getresponse().read()
            finally:
                conn.close()
        if client == "urllib.request":
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{i}", timeout=10) as r:
                return r.read()
        import requests

        with requests.Session() as s:
            s.trust_env = False  # no proxy from the environment
            return s.get(f"http://127.0.0.1:{port}/{i}", timeout=10).content

    def main():
        server, serving = _http_server(_all_green_at_once())
        try:
            with ThreadPoolExecutor(N) as pool:
                return list(pool.map(fetch, range(N), [server.server_address[1]] * N,
                                     timeout=20))
        finally:
            server.shutdown()
            server.server_close()
            serving.join(5)

    assert lwp.run(main, lwps=1) == [b"/%d" % i for i in range(N)]


@green_threads
def test_non_daemon_green_threads_are_joined_at_exit(tmp_path):
    import subprocess
    import textwrap

    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent("""
        import lwp.monkey
        lwp.monkey.patch_all(threads=True)
        import threading, time

        def late(what):
            time.sleep(0.05)
            print(what, flush=True)

        threading.Thread(target=late, args=("non-daemon",)).start()
        threading.Thread(target=late, args=("daemon",), daemon=True).start()
        time.sleep(0)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "non-daemon" in out.stdout.split()


@pytest.mark.skipif(hasattr(threading, "_set_sentinel"), reason="Python 3.13 and later only")
def test_green_threads_refused_precisely_where_unsupported():
    with pytest.raises(NotImplementedError, match="3.10 to 3.12"):
        monkey.patch_threading(threads=True)
    assert not monkey.is_patched("threading")


@green_threads
def test_threads_left_running_end_quietly_with_lwp_run():
    hooked = []
    old_hook = threading.excepthook
    threading.excepthook = hooked.append  # before patching: the patched hook calls it
    try:
        monkey.patch_all(threads=True)

        def main():
            sleeper = threading.Thread(target=time.sleep, args=(60,))
            sleeper.start()
            failing = threading.Thread(target=lambda: 1 / 0)
            failing.start()
            failing.join(5)
            return sleeper

        sleeper = lwp.run(main, lwps=1)
        assert not sleeper.is_alive()  # cancelled and joined by the end of lwp.run
    finally:
        monkey.unpatch_all()
        threading.excepthook = old_hook
    assert [type(h.exc_value) for h in hooked] == [ZeroDivisionError]


# -- the standard clients and servers of the issue, patched: a ticker progresses while they wait

@pytest.mark.parametrize("client", ["http.client", "urllib.request"])
def test_patched_http_clients_park(client):

    monkey.patch_all()
    release = threading.Event()

    def fetch(port):
        if client == "http.client":
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/")
                return conn.getresponse().read()
            finally:
                conn.close()
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            return r.read()

    with held_http_server(release) as server:
        port = server.server_address[1]
        body, ticks = lwp.run(lambda: progress_while(lambda: fetch(port), release.set), lwps=1)
    assert body == b"held" and ticks >= N_TICKS


def _smtp_server(release, received):
    """A minimal SMTP server (one session, on a kernel thread) that greets only once
    ``release`` is set, and keeps each message's DATA in ``received``."""
    import socket

    lst = socket.create_server(("127.0.0.1", 0))

    def session():
        conn, _ = lst.accept()
        with conn, conn.makefile("rb") as rfile:
            release.wait(10)
            conn.sendall(b"220 test ESMTP\r\n")
            while True:
                line = rfile.readline()
                verb = line[:4].upper()
                if not line or verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                if verb == b"DATA":
                    conn.sendall(b"354 go on\r\n")
                    data = b"".join(iter(lambda: rfile.readline(), b".\r\n"))
                    received.append(data)
                    conn.sendall(b"250 queued\r\n")
                elif verb == b"EHLO":
                    conn.sendall(b"250-test\r\n250 8BITMIME\r\n")
                else:
                    conn.sendall(b"250 ok\r\n")

    th = threading.Thread(target=session)
    th.start()
    return lst, th


def test_patched_smtplib_parks():
    import smtplib

    monkey.patch_all()
    release, received = threading.Event(), []
    lst, th = _smtp_server(release, received)

    def send():
        with smtplib.SMTP(*lst.getsockname(), timeout=10) as smtp:  # waits for the greeting
            return smtp.sendmail("a@example.org", ["b@example.org"], "Subject: hi\r\n\r\nbody")

    try:
        refused, ticks = lwp.run(lambda: progress_while(send, release.set), lwps=1)
    finally:
        release.set()
        th.join(10)
        lst.close()
    assert refused == {} and ticks >= N_TICKS
    assert len(received) == 1 and b"body" in received[0]


def test_patched_socketserver_parks():
    """A plain TCPServer, handling requests in a green thread, parks between them."""
    import socket
    import socketserver

    monkey.patch_all()

    class Upper(socketserver.StreamRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.readline().upper())

    replies = []

    def client():  # a plain OS thread, after N_TICKS ticks
        with socket.create_connection(server.server_address, timeout=10) as c:
            c.sendall(b"ping\n")
            replies.append(c.makefile("rb").readline())

    def main():
        server.timeout = 10
        _, ticks = progress_while(server.handle_request, client)
        return ticks

    with socketserver.TCPServer(("127.0.0.1", 0), Upper) as server:
        ticks = lwp.run(main, lwps=1)
    assert replies == [b"PING\n"] and ticks >= N_TICKS


@green_threads
def test_fork_in_a_green_thread(tmp_path):
    """In the child, threading knows only the forking Thread (and the rebuilt LWPs),
    and new green Threads run."""
    import subprocess
    import textwrap

    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent("""
        import os, time
        import lwp, lwp.monkey
        lwp.monkey.patch_all(threads=True)
        import threading

        def forker():
            other = threading.Thread(target=time.sleep, args=(0.2,), name="other")
            other.start()
            pid = os.fork()
            if pid == 0:
                names = sorted(t.name for t in threading.enumerate()
                               if not isinstance(t, lwp.monkey.KernelThread))
                t = threading.Thread(target=lambda: None)
                t.start()
                t.join(5)
                print(names, t.is_alive(), flush=True)
                os._exit(0)
            assert os.waitpid(pid, 0)[1] == 0
            other.join(5)

        t = threading.Thread(target=forker, name="forker")
        t.start()
        t.join(10)
    """))
    out = subprocess.run([sys.executable, "-W", "error", str(script)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "['forker'] False" and out.stderr == ""


@pytest.mark.skipif(not hasattr(threading.Thread, "_wait_for_tstate_lock"),
                    reason="Python 3.13 joins through _ThreadHandle")
def test_green_join_of_a_kernel_thread_parks():
    """Joining a kernel thread waits on the interpreter's C lock: an activation waits."""
    original = threading.Thread._wait_for_tstate_lock
    monkey.patch_threading()
    assert threading.Thread._wait_for_tstate_lock is not original
    release = threading.Event()
    kernel = monkey.KernelThread(target=release.wait, args=(10,))
    kernel.start()

    def main():
        assert kernel.is_alive()
        _, ticks = progress_while(kernel.join, release.set)
        return ticks, kernel.is_alive()

    try:
        ticks, alive = lwp.run(main, lwps=1)
    finally:
        release.set()
        kernel.join(10)
    assert ticks >= N_TICKS and not alive
    monkey.unpatch_all()
    assert threading.Thread._wait_for_tstate_lock is original
