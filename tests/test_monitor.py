"""The monitor: stalls detected, work moved, compensation only where it helps."""

import ctypes
import logging
import os
import threading
import time

import pytest

import lwp

pytestmark = pytest.mark.fault


def _events(kinds):
    seen = []
    return seen, lwp.upcalls.subscribe(lambda e, **info: seen.append((e, info.get("kind"))),
                                       events=kinds)


def test_python_hog_moves_new_threads_but_gets_no_compensation():
    seen, unsubscribe = _events(("lwp_blocked", "lwp_added"))

    def main():
        queued = [lwp.spawn(lambda: lwp._core.park.current_lwp().index) for _ in range(4)]
        end = time.monotonic() + 0.2
        x = 0
        while time.monotonic() < end:  # 200 ms of Python, no scheduling point
            x += 1
        return [t.join(5) for t in queued], len(lwp.stats())

    try:
        where, nlwps = lwp.run(main, lwps=2, time_slice=0)  # no preemption: moving is the help
    finally:
        unsubscribe()
    assert ("lwp_blocked", None) in seen
    assert ("lwp_added", "compensating") not in seen and nlwps == 2
    assert set(where) == {1}  # moved off the hogging LWP 0 and run meanwhile


@pytest.mark.skipif(not lwp._core.preempt.available(), reason="preemption unavailable here")
def test_python_hog_shares_its_lwp_when_preempted():
    """On one LWP, only preemption lets the queued threads run while the hog spins."""
    def main():
        ran = []
        queued = [lwp.spawn(ran.append, i) for i in range(4)]
        end = time.monotonic() + 0.3
        x = 0
        while time.monotonic() < end and len(ran) < 4:
            x += 1
        seen_while_spinning = len(ran)
        for t in queued:
            t.join(5)
        return seen_while_spinning, lwp.stats()[0]["preemptions"]

    seen, preemptions = lwp.run(main, lwps=1)
    assert seen == 4 and preemptions >= 1


def test_blocked_c_call_gets_compensation():
    libc = ctypes.CDLL(None)
    seen, unsubscribe = _events(("lwp_added",))

    def main():
        stuck = [lwp.spawn(libc.usleep, 100_000) for _ in range(2)]
        for t in stuck:
            t.join(5)

    try:
        lwp.run(main, lwps=1)
    finally:
        unsubscribe()
    assert ("lwp_added", "compensating") in seen


def test_compensation_keeps_up_with_threads_that_block_one_after_another():
    """Six threads block in C, each on whichever LWP starts it, on 2 LWPs.
    Once the monitor has confirmed one LWP blocked, it adds as many LWPs as
    needed and counts as lost those that sat still outside Python for one
    sample, so all six calls are in progress before it has flagged any LWP
    but the first two (it used to add the next LWP only once the last one
    added had stalled for a whole threshold: one flag per call)."""
    libc = ctypes.CDLL(None)
    n, r, w = 6, *os.pipe()
    entered, seen = [], []
    unsubscribe = lwp.upcalls.subscribe(lambda e, **info: seen.append((e, info["lwp"].index)),
                                        events="lwp_blocked")

    def block():
        entered.append(lwp.current())
        libc.read(r, ctypes.create_string_buffer(1), 1)  # in the kernel until released

    def release():  # an OS thread: every LWP may be blocked
        deadline = time.monotonic() + 10
        while len(entered) < n and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.append(("all entered", len(entered)))
        os.write(w, b"x" * n)

    def main():
        for t in [lwp.spawn(block) for _ in range(n)]:
            t.join(10)

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        lwp.run(main, lwps=2, stall_threshold=0.2)  # a flag per LWP takes 200 ms
    finally:
        unsubscribe()
        releaser.join(10)
        os.close(r)
        os.close(w)
    at = [e for e, _ in seen].index("all entered")
    assert seen[at] == ("all entered", n)
    assert len({i for e, i in seen[:at] if e == "lwp_blocked"}) <= 2


def _fake_task_state(monkeypatch, state):
    """Make the monitor see every kernel thread in ``state``; returns the tids it asked about."""
    asked = []

    def fake(tid):
        asked.append(tid)
        return state

    monkeypatch.setattr(lwp._core.monitor.Monitor, "task_state", staticmethod(fake))
    return asked


@pytest.mark.parametrize("state, compensated", [("R", False), ("S", True), (None, True)])
def test_compensation_follows_the_kernel_thread_state(monkeypatch, state, compensated):
    """A C call whose kernel thread the kernel calls runnable (``R``: starved of
    CPU, not blocked) gets no compensating LWP; sleeping (``S``), or no
    ``/proc`` (None), is compensated as before."""
    libc = ctypes.CDLL(None)
    asked = _fake_task_state(monkeypatch, state)
    seen, unsubscribe = _events(("lwp_blocked", "lwp_added"))

    def main():
        stuck = [lwp.spawn(libc.usleep, 100_000) for _ in range(2)]
        for t in stuck:
            t.join(5)
        return lwp._core.park.current_lwp()._thread.native_id

    try:
        tid = lwp.run(main, lwps=1)
    finally:
        unsubscribe()
    assert ("lwp_blocked", None) in seen
    assert tid in asked
    assert (("lwp_added", "compensating") in seen) == compensated


def test_starved_lwp_still_hands_its_new_threads_to_the_others(monkeypatch):
    libc = ctypes.CDLL(None)
    asked = _fake_task_state(monkeypatch, "R")
    seen, unsubscribe = _events(("lwp_added",))

    def main():
        queued = [lwp.spawn(lambda: lwp._core.park.current_lwp().index) for _ in range(4)]
        libc.usleep(200_000)  # holds LWP 0 in C, out of the monitor's sight
        return [t.join(5) for t in queued], len(lwp.stats())

    try:
        where, nlwps = lwp.run(main, lwps=2, time_slice=0)
    finally:
        unsubscribe()
    assert asked
    assert ("lwp_added", "compensating") not in seen and nlwps == 2
    assert set(where) == {1}  # moved off the starved LWP 0 and run meanwhile


def test_task_state_reads_the_kernel():
    libc = ctypes.CDLL(None)
    task_state = lwp._core.monitor.task_state
    sleeper = threading.Thread(target=libc.usleep, args=(300_000,))
    sleeper.start()
    try:
        states = set()
        deadline = time.monotonic() + 5
        while "S" not in states and sleeper.is_alive() and time.monotonic() < deadline:
            states.add(task_state(sleeper.native_id))
    finally:
        sleeper.join(5)
    if task_state(threading.get_native_id()) is None:
        pytest.skip("no /proc/self/task here")
    assert task_state(threading.get_native_id()) == "R"  # this thread, running
    assert "S" in states  # the sleeper, in usleep
    assert task_state(sleeper.native_id) is None  # gone


def test_short_spawn_burst_stays_local():
    def main():
        for _ in range(20):
            threads = [lwp.spawn(lambda: None) for _ in range(10)]
            for t in threads:
                t.join(5)
        return lwp.stats()

    stats = lwp.run(main, lwps=2)
    assert stats[0]["threads_run"] == 201 and stats[1]["steals"] == 0


def test_long_stall_is_logged_once_with_stack(caplog, monkeypatch):
    monkeypatch.setenv("LWP_STALL_LOG_MS", "50")
    libc = ctypes.CDLL(None)

    def main():
        lwp.spawn(libc.usleep, 200_000, name="sleepy").join(5)

    with caplog.at_level(logging.WARNING, logger="lwp.monitor"):
        lwp.run(main, lwps=1)
    records = [r for r in caplog.records if r.name == "lwp.monitor"]
    assert len(records) == 1
    assert "sleepy" in records[0].getMessage() and "File" in records[0].getMessage()


def test_bad_thresholds_rejected():
    with pytest.raises(ValueError):
        lwp.run(lambda: None, stall_threshold=0)
    with pytest.raises(ValueError):
        lwp.run(lambda: None, retire_after=-1)
    with pytest.raises(ValueError):
        lwp.run(lambda: None, lwps=4, max_lwps=2)


@pytest.mark.parametrize("time_slice", [None, 0])
def test_hog_flag_is_raised_by_a_python_hog_and_drops_after_it(time_slice):
    """``Monitor.hog``: some LWP runs Python without switching (past its slice,
    or stalled with slices off); it drops once the hog has switched for a while."""
    def main():
        monitor = lwp._core.park.current_lwp().sched.monitor
        before = monitor.hog
        deadline = time.monotonic() + 5
        while not monitor.hog and time.monotonic() < deadline:
            pass  # Python, no scheduling point
        during = monitor.hog
        deadline = time.monotonic() + 5
        while monitor.hog and time.monotonic() < deadline:
            lwp.sleep(0.01)
        return before, during, monitor.hog

    assert lwp.run(main, lwps=1, time_slice=time_slice) == (False, True, False)
