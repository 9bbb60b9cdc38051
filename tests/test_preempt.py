"""Time-slice preemption (lwp._core.preempt, csrc/preempt.c, the monitor's slice check).

The behaviour tests run one LWP with a thread spinning in a pure Python loop
(no scheduling point) and count what the other threads of that LWP get done.
No test asserts a duration: each spinner stops on a flag, and a watchdog (a
plain OS thread) sets that flag after a generous delay so that a broken
preemption fails the test instead of hanging it.
"""

import contextvars
import os
import subprocess
import sys
import textwrap
import threading
import time
from time import sleep as os_sleep  # never lwp.monkey's

import pytest

import lwp
from lwp._core import park, preempt
from lwp._core.preempt import no_preempt

needs_preemption = pytest.mark.skipif(not preempt.available(),
                                      reason=f"{preempt.available()!r}")

WATCHDOG = 10.0  # seconds before a spinner is told to stop anyway


@pytest.fixture(autouse=True)
def default_slice(monkeypatch):
    """Every scheduler here gets the default 10 ms slice unless a test says otherwise."""
    monkeypatch.setenv("LWP_SLICE_MS", "10")


class Flag:
    """A stop flag for spinners, set by the test or by a watchdog OS thread."""

    def __init__(self):
        self.set_by = None
        self._timer = threading.Timer(WATCHDOG, self.set, ("watchdog",))
        self._timer.daemon = True
        self._timer.start()

    def set(self, by="test"):
        if self.set_by is None:
            self.set_by = by

    def __bool__(self):
        return self.set_by is not None

    def close(self):
        self._timer.cancel()
        self._timer.join()


def spin_until(flag):
    """The CPU hog: a Python loop that reaches no scheduling point."""
    x = 0
    while not flag:
        x += 1
    return x


def spin_for(seconds):
    x = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        x += 1
    return x


def heartbeat(beats, flag, n=20):
    """Beat ``n`` times 1 ms apart, counting in ``beats[0]``, then set ``flag``."""
    for _ in range(n):
        beats[0] += 1
        lwp.sleep(0.001)
    flag.set()


def beat_until(beats, flag):
    """Beat every 1 ms, counting in ``beats[0]``, until ``flag`` is set."""
    while not flag:
        beats[0] += 1
        lwp.sleep(0.001)


def preemptions():
    return preempt.counters(park.current_lwp())["preemptions"]


# -- availability and options ----------------------------------------------------------------

def test_available_on_supported_cpython():
    a = preempt.available()
    supported = sys.implementation.name == "cpython" and (3, 11) <= sys.version_info[:2] <= (3, 12)
    assert bool(a) is supported
    if supported:
        assert a.reason is None and "available" in repr(a)
    else:
        assert a.reason and a.reason in repr(a)


def test_time_slice_option_is_checked(monkeypatch):
    assert preempt.check_slice(0) == 0 and preempt.check_slice(0.005) == 0.005
    for bad in (-1, "10", None, True, float("nan")):
        with pytest.raises(ValueError):
            preempt.check_slice(bad)
    monkeypatch.setenv("LWP_SLICE_MS", "2.5")
    assert preempt.default_slice() == 0.0025
    monkeypatch.setenv("LWP_SLICE_MS", "0")
    assert preempt.default_slice() == 0
    monkeypatch.delenv("LWP_SLICE_MS")
    assert preempt.default_slice() == preempt.DEFAULT_SLICE == 0.010
    sched = lwp.Scheduler(1)
    try:
        assert sched.monitor.time_slice == preempt.DEFAULT_SLICE
    finally:
        sched.shutdown()


# -- the cases ----------------------------------------------------------------------

@needs_preemption
def test_spinning_thread_does_not_stop_a_heartbeat_on_its_lwp():
    flag = Flag()

    def main():
        beats = [0]
        spinner = lwp.spawn(spin_until, flag)
        lwp.spawn(heartbeat, beats, flag).join()
        spinner.join()
        return beats[0], preemptions()

    try:
        beats, n = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert flag.set_by == "test", "the heartbeat never got its 20 beats: no preemption"
    assert beats == 20 and n >= 1


def test_slices_off_means_no_preemption(monkeypatch):
    monkeypatch.setenv("LWP_SLICE_MS", "0")
    flag = Flag()
    beats = [0]
    beats_when_stopped = None

    def stop():
        nonlocal beats_when_stopped
        beats_when_stopped = beats[0]
        flag.set("timer")

    def main():
        assert park.current_lwp().sched.monitor.time_slice == 0

        h = lwp.spawn(beat_until, beats, flag)
        lwp.sleep(0.01)  # the heartbeat beats a few times, then sleeps in its loop
        beats_before_spin = beats[0]
        timer = threading.Timer(0.3, stop)
        timer.start()
        spin_until(flag)
        timer.join()
        h.join()
        return beats_before_spin, preemptions()

    try:
        beats_before_spin, n = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert n == 0
    assert beats_when_stopped == beats_before_spin  # not one beat in 300 ms of spinning


@needs_preemption
def test_preempted_thread_keeps_locals_exception_contextvars_and_local():
    flag = Flag()
    var = contextvars.ContextVar("var")
    tls = lwp.local()

    def intruder():
        # Runs only if the victim is preempted; messes with every kind of state.
        var.set("intruder")
        tls.value = "intruder"
        try:
            raise KeyError("intruder")
        except KeyError:
            flag.set()
            lwp.sleep(0.02)  # parked with its own exception being handled

    def victim():
        me = lwp.current()
        var.set("victim")
        tls.value = "victim"
        a, b = 1, ["two"]
        try:
            raise ValueError("victim")
        except ValueError as e:
            before = preemptions()
            spin_until(flag)
            after = preemptions()
            assert sys.exc_info()[1] is e
            return (me is lwp.current(), a, b, var.get(), tls.value, after - before)

    def main():
        v = lwp.spawn(victim)
        lwp.spawn(intruder)
        return v.join()

    try:
        got = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert flag.set_by == "test"
    assert got[:5] == (True, 1, ["two"], "victim", "victim")
    assert got[5] >= 1


@needs_preemption
def test_no_preempt_section_is_not_preempted():
    flag = Flag()
    beats = [0]

    def hog():
        t = lwp.current()
        lwp.sleep(0.005)  # let the heartbeat start
        with no_preempt():
            with no_preempt():  # sections nest
                assert t._preempt_off == 2
                start, n0 = beats[0], preemptions()
                spin_for(0.15)  # fifteen slices
                inside = (beats[0] - start, preemptions() - n0)
            assert t._preempt_off == 1
        assert t._preempt_off == 0
        start = beats[0]
        while beats[0] == start and not flag:  # preempted again once out of the section
            pass
        return inside, beats[0] > start

    def main():
        h = lwp.spawn(beat_until, beats, flag)
        inside, beat_after = lwp.spawn(hog).join()
        flag.set()
        h.join()
        return inside, beat_after

    try:
        inside, beat_after = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert inside == (0, 0)
    assert beat_after and flag.set_by == "test"


@needs_preemption
def test_readers_sharing_the_hogs_lwp_get_more_than_one_read_per_slice(tmp_path):
    """A preempted hog waits while the others' native file reads are in flight."""
    path = tmp_path / "data"
    path.write_bytes(os.urandom(1 << 16))
    flag = Flag()
    reads = 0

    def reader():
        nonlocal reads
        with lwp.open(path, "rb", buffering=0) as f:
            for i in range(300):
                f.seek((i * 4096) % (1 << 16))
                f.read(4096)
                reads += 1
        flag.set()

    def main():
        r = lwp.spawn(reader)
        spin_until(flag)
        r.join()
        return preemptions()

    try:
        n = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert flag.set_by == "test" and reads == 300
    assert 1 <= n <= 150  # one read per preemption would take 300


def test_no_preempt_in_os_thread_is_harmless():
    with no_preempt() as np:
        assert isinstance(np, no_preempt)


@needs_preemption
def test_lone_thread_is_left_alone():
    def main():
        spin_for(0.1)  # nothing else to run on this LWP: preempting it would be waste
        return preemptions()

    assert lwp.run(main, lwps=1) == 0


@needs_preemption
def test_lone_hog_is_preempted_while_another_lwp_has_threads_to_run():
    """Alone on its LWP, a hog still shares the GIL: while another LWP runs threads it is
    preempted and sits out slices, so that LWP gets the interpreter; it resumes after."""
    flag = Flag()

    def hog():
        return spin_until(flag), preemptions()

    def work():
        while not flag:  # Python between switches: this LWP stays awake, threads queued
            sum(range(100))
            lwp.checkpoint()

    def main():
        hogger = lwp.spawn(hog, bound=True)  # an LWP of its own, with nothing else on it
        workers = [lwp.spawn(work) for _ in range(4)]
        for _ in range(200_000):
            lwp.checkpoint()
            if hogger._lwp is not None and preempt.counters(hogger._lwp)["preemptions"] >= 3:
                break
        flag.set()
        for w in workers:
            w.join()
        return hogger.join()

    try:
        spins, n = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert flag.set_by == "test" and spins > 0
    assert n >= 3


@needs_preemption
def test_lone_hogs_on_two_lwps_leave_each_other_alone():
    """A hog alone on its LWP does not count as threads waiting for the GIL: two of them
    share it as CPython shares it, without preempting each other at every slice."""
    flag = Flag()

    def hog():
        return spin_until(flag), preemptions()

    def main():
        hoggers = [lwp.spawn(hog, bound=True) for _ in range(2)]
        lwp.sleep(0.3)  # thirty slices each
        flag.set()
        return [h.join() for h in hoggers]

    try:
        (spins_a, n_a), (spins_b, n_b) = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert flag.set_by == "test" and spins_a > 0 and spins_b > 0
    assert n_a + n_b <= 2  # the start, and this LWP waking to set the flag, may cost one


@needs_preemption
def test_user_code_called_back_by_lwp_is_not_preempted():
    """An item's __lt__ runs inside a PriorityQueue operation: no switch there."""
    flag = Flag()
    beats = [0]
    seen = []

    class Slow:
        def __init__(self, n):
            self.n = n

        def __lt__(self, other):
            start, n0 = beats[0], preemptions()
            spin_for(0.05)
            seen.append((beats[0] - start, preemptions() - n0))
            return self.n < other.n

    def main():
        h = lwp.spawn(beat_until, beats, flag)
        lwp.sleep(0.005)
        q = lwp.PriorityQueue()
        q.put(Slow(2))
        q.put(Slow(1))  # compares with the first item inside lwp's put
        assert q.get().n == 1
        start = beats[0]
        while beats[0] == start and not flag:
            pass  # but the same thread is preempted in its own code
        flag.set()
        h.join()
        return beats[0] > start

    try:
        preempted_outside = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert seen and all(s == (0, 0) for s in seen)
    assert preempted_outside


@needs_preemption
def test_thread_blocked_in_c_is_preempted_once_back_in_python():
    """Armed while blocked in C, the hook waits (3.11), or steps back and retries
    ever less often (3.12, where an armed hook slows every thread down)."""
    flag = Flag()
    beats = [0]
    seen = []

    def main():
        here = park.current_lwp()
        h = lwp.spawn(beat_until, beats, flag)
        lwp.sleep(0.005)

        def look():
            os_sleep(0.1)
            for _ in range(50):
                seen.append(preempt.status(here))
                os_sleep(0.005)

        looker = threading.Thread(target=look)
        looker.start()
        os_sleep(0.5)  # the real time.sleep: blocks the LWP with the GIL released
        looker.join()
        start = beats[0]
        while beats[0] == start and not flag:
            pass
        flag.set()
        h.join()
        return beats[0] > start

    try:
        preempted = lwp.run(main, lwps=1)
    finally:
        flag.close()
    armed = seen.count("armed")
    assert armed + seen.count("ready") == len(seen) == 50
    if preempt._ARMING_IS_GLOBAL:
        assert armed < 25
    else:
        assert armed == 50
    assert preempted


# -- other users of the trace hook -------------------------------------------------------------

@needs_preemption
def test_settrace_user_keeps_its_events_and_preemption_steps_aside():
    flag = Flag()
    lines = []

    def spin_until_refused(here):
        # Until the monitor has met the tracer in the hook's place (or the watchdog).
        x = 0
        while not preempt.counters(here)["preempt_hook_busy"] and not flag:
            x += 1
        return x

    def tracer(frame, event, arg):
        if frame.f_code is spin_until_refused.__code__:
            if event == "line":
                lines.append(frame.f_lineno)
            return tracer
        return None

    def main():
        here = park.current_lwp()
        beats = [0]

        h = lwp.spawn(beat_until, beats, flag)
        lwp.sleep(0.005)
        n0 = preemptions()
        sys.settrace(tracer)
        try:
            start = beats[0]
            spin_until_refused(here)
            traced_beats = beats[0] - start
            status = preempt.status(here)
        finally:
            sys.settrace(None)
        busy = preempt.counters(here)["preempt_hook_busy"]
        n1 = preemptions()
        start = beats[0]
        while beats[0] == start and not flag:  # hook free again: preemption is back
            pass
        flag.set()
        h.join()
        return traced_beats, status, busy, n1 - n0, beats[0] > start

    try:
        traced_beats, status, busy, preempted_while_traced, back = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert flag.set_by == "test"
    assert len(lines) > 100  # the tracer saw every iteration of the loop
    assert status == "hook taken" and busy >= 1
    assert traced_beats == 0 and preempted_while_traced == 0
    assert back


# -- the native contract, on the calling OS thread --------------------------------------------

class FakeHook:
    """Stands in for preempt._Hook: answers _decide from a script."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.events = []
        self.switched = 0
        self.on_switch = None

    def _decide(self, frame):
        self.events.append(frame.f_code.co_name)
        return self.answers.pop(0) if self.answers else preempt._DISARM

    def _switch(self):
        self.switched += 1
        if self.on_switch is not None:
            self.on_switch()


def _arm_self(hook):
    return preempt._arm(threading.get_ident(), hook)


def _a_few_lines():
    x = 1
    x += 1
    return x


@needs_preemption
def test_native_hook_is_one_shot_and_only_removes_itself():
    me = threading.get_ident()
    assert preempt._owner(me) == 0
    hook = FakeHook(preempt._STAY, preempt._STAY, preempt._DISARM)
    armed = (preempt._arm(me, hook), preempt._arm(me, hook))  # no line event in between
    assert armed == (preempt._ARMED, preempt._ALREADY)
    _a_few_lines()
    _a_few_lines()
    assert len(hook.events) == 3 and preempt._owner(me) == 0

    # Someone else's trace function: never armed over, never removed.
    def tracer(frame, event, arg):
        return None

    sys.settrace(tracer)
    try:
        assert _arm_self(FakeHook()) == preempt._BUSY
        assert preempt._disarm(me) is False
        assert sys.gettrace() is tracer and preempt._owner(me) == 2
    finally:
        sys.settrace(None)

    # A tool that installs its trace function while the hook is armed replaces it.
    hook = FakeHook(preempt._STAY)
    assert _arm_self(hook) == preempt._ARMED
    sys.settrace(tracer)
    try:
        _a_few_lines()
        assert sys.gettrace() is tracer and preempt._owner(me) == 2
    finally:
        sys.settrace(None)
    assert preempt._owner(1) == -1  # no such thread


@needs_preemption
def test_native_hook_lifts_the_tracing_guard_while_switched_away():
    """Inside _switch, profile events flow again (CPython's `tracing` counter is
    lowered for the switch) and they still do after the hook returns."""
    calls = []

    def profiler(frame, event, arg):
        if event == "call":
            calls.append(frame.f_code.co_name)

    def marker_inside_switch():
        pass

    def marker_after():
        pass

    hook = FakeHook(preempt._PREEMPT)
    hook.on_switch = marker_inside_switch
    sys.setprofile(profiler)  # the profile slot does not keep the hook out
    try:
        assert _arm_self(hook) == preempt._ARMED
        _a_few_lines()
        marker_after()
    finally:
        sys.setprofile(None)
    assert hook.switched == 1
    assert "marker_inside_switch" in calls and "marker_after" in calls
    assert preempt._owner(threading.get_ident()) == 0


@needs_preemption
def test_hook_saved_and_reinstalled_by_a_tool_steps_aside():
    hook = preempt._Hook(None)
    sys.settrace(hook)  # what `old = sys.gettrace(); ...; sys.settrace(old)` could do
    try:
        _a_few_lines()
        assert sys.gettrace() is None
    finally:
        sys.settrace(None)


# -- coverage, in a subprocess ---------------------------------------------------------------

COVERED_SCRIPT = textwrap.dedent("""
    import sys, time, lwp
    from lwp._core import park, preempt

    def spin_for(seconds):
        x = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            x += 1
        return x

    def main():
        beats = 0
        done = False

        def heartbeat():
            nonlocal beats
            while not done:
                beats += 1
                lwp.sleep(0.001)

        h = lwp.spawn(heartbeat)
        lwp.sleep(0.005)
        spin_for(0.2)
        done = True
        h.join()
        return preempt.counters(park.current_lwp())

    print(lwp.run(main, lwps=1))
""")


@needs_preemption
def test_coverage_keeps_working(tmp_path):
    pytest.importorskip("coverage")
    script = tmp_path / "covered.py"
    script.write_text(COVERED_SCRIPT)
    env = dict(os.environ, LWP_SLICE_MS="10", COVERAGE_FILE=str(tmp_path / ".coverage"))
    env.pop("COVERAGE_CORE", None)  # the default (C tracer) core: it holds the trace hook
    # --concurrency=greenlet: coverage needs it for any greenlet program, preempted or not.
    run = subprocess.run([sys.executable, "-m", "coverage", "run",
                          "--concurrency=greenlet,thread", str(script)], check=False, env=env,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    counters = eval(run.stdout.strip().splitlines()[-1])
    assert counters["preemptions"] == 0 and counters["preempt_hook_busy"] >= 1
    report = subprocess.run([sys.executable, "-m", "coverage", "report", "-m", str(script)],
                            check=False, env=env, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    line = next(x for x in report.stdout.splitlines() if "covered" in x)
    assert line.split()[3] == "100%", report.stdout  # every line ran, on the LWP too


# -- request handlers are user code -----------------------------------------------------------

def _spinning_handler_lets_a_heartbeat_beat(make_server, request):
    """A server whose handler computes until the test's flag is set, on one LWP:
    a heartbeat started once the handler spins must get its 20 beats meanwhile."""
    import socket

    flag = Flag()
    spinning = [False]
    beats = [0]

    def spin():
        spinning[0] = True
        spin_until(flag)

    def beat_once_spinning():
        while not spinning[0]:
            lwp.sleep(0.001)
        heartbeat(beats, flag)

    def main():
        srv = make_server(spin).start()
        reply = []

        def client():  # an OS thread with a blocking socket
            with socket.create_connection(srv.address[:2], timeout=WATCHDOG) as c:
                c.sendall(request)
                reply.append(c.recv(4096))

        th = threading.Thread(target=client)
        th.start()
        lwp.spawn(beat_once_spinning).join()
        deadline = time.monotonic() + WATCHDOG
        while th.is_alive() and time.monotonic() < deadline:
            lwp.sleep(0.01)  # a plain join would hold the only LWP
        th.join(WATCHDOG)
        srv.stop(5)
        return reply, preemptions()

    try:
        reply, n = lwp.run(main, lwps=1)
    finally:
        flag.close()
    assert flag.set_by == "test", "the heartbeat never got its beats: the handler was not preempted"
    assert beats[0] == 20 and n >= 1
    return reply


@needs_preemption
def test_cpu_heavy_stream_handler_is_preempted():
    from lwp.server import StreamServer

    def make(spin):
        def handler(conn, addr):
            spin()
            conn.sendall(b"done")
        return StreamServer(("127.0.0.1", 0), handler)

    assert _spinning_handler_lets_a_heartbeat_beat(make, b"") == [b"done"]


@needs_preemption
def test_cpu_heavy_wsgi_app_is_preempted():
    from lwp.wsgi import WSGIServer

    def make(spin):
        def app(environ, start_response):
            spin()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"done"]
        return WSGIServer(("127.0.0.1", 0), app)

    [reply] = _spinning_handler_lets_a_heartbeat_beat(make, b"GET / HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"done")
