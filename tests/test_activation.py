"""Activations: lwp.blocking and native calls keep the LWP running others."""

import ctypes
import threading
import time

import pytest

import lwp
from lwp._core import activation


def _ticker(counter, stop):
    while not stop.is_set():
        counter[0] += 1
        lwp.sleep(0.001)


def test_blocking_returns_result_and_lwp_keeps_running():
    def main():
        counter, stop = [0], lwp.Event()
        ticker = lwp.spawn(_ticker, counter, stop)
        lwp.sleep(0.005)
        before = counter[0]
        result = lwp.blocking(time.sleep, 0.1)  # would block the only LWP if called directly
        during = counter[0] - before
        stop.set()
        ticker.join(5)
        return result, during

    result, during = lwp.run(main, lwps=1)
    assert result is None and during > 5


def test_blocking_reraises_and_plain_thread_calls_directly():
    def main():
        with pytest.raises(ZeroDivisionError):
            lwp.blocking(lambda: 1 / 0)
        return lwp.blocking(lambda a, b=1: a + b, 1, b=2)

    assert lwp.run(main) == 3
    assert lwp.blocking(threading.get_ident) == threading.get_ident()


def test_cancel_thread_in_blocking_drops_late_result():
    release = threading.Event()
    finished = []

    def slow():
        release.wait(5)
        finished.append(True)
        return "late"

    def main():
        t = lwp.spawn(lwp.blocking, slow)
        lwp.sleep(0.02)
        t.cancel()
        with pytest.raises(lwp.Cancelled):
            t.join(5)
        release.set()
        while not finished:
            lwp.sleep(0.001)
        lwp.sleep(0.01)  # the late wake-up arrives and is dropped
        return "ok"

    assert lwp.run(main, lwps=1) == "ok"


def test_python_activation_pool_grows_and_caps(monkeypatch):
    monkeypatch.setattr(activation, "PYTHON_THREADS_MAX", 3)
    gate = threading.Barrier(3, timeout=5)

    def main():
        sched = lwp._core.park.current_lwp().sched
        threads = [lwp.spawn(lwp.blocking, gate.wait) for _ in range(3)]
        results = sorted(t.join(5) for t in threads)
        more = [lwp.spawn(lwp.blocking, lambda: 1) for _ in range(10)]
        assert [t.join(5) for t in more] == [1] * 10
        return results, sched.activations.stats()["python_threads"]

    results, nthreads = lwp.run(main)
    assert results == [0, 1, 2]
    assert nthreads <= 3


def test_native_usleep_is_an_activation():
    def main():
        counter, stop = [0], lwp.Event()
        ticker = lwp.spawn(_ticker, counter, stop)
        before = counter[0]
        activation.native_call("usleep", 100_000)
        during = counter[0] - before
        stop.set()
        ticker.join(5)
        return during

    assert lwp.run(main, lwps=1) > 5


def test_cancel_thread_in_native_call_drains_late_completion():
    def main():
        t = lwp.spawn(activation.native_call, "usleep", 50_000)
        lwp.sleep(0.01)
        t.cancel()
        with pytest.raises(lwp.Cancelled):
            t.join(5)
        return "ok"

    # shutdown must wait for the late completion before closing the queue
    assert lwp.run(main, lwps=1) == "ok"


@pytest.mark.fault
def test_unpatchable_blocking_call_stalls_only_its_lwp():
    """libc usleep through ctypes: the monitor compensates, others keep going."""
    libc = ctypes.CDLL(None)
    events = []
    unsubscribe = lwp.upcalls.subscribe(lambda e, **info: events.append((e, info.get("kind"))))

    def main():
        counter, stop = [0], lwp.Event()
        ticker = lwp.spawn(_ticker, counter, stop)
        lwp.sleep(0.01)
        stallers = [lwp.spawn(libc.usleep, 200_000) for _ in range(4)]
        lwp.sleep(0.05)
        newcomer = lwp.spawn(lambda: "ran")  # spawned during the stall
        newcomer_result = newcomer.join(5)
        ticks_during = counter[0]
        for t in stallers:
            t.join(5)
        stop.set()
        ticker.join(5)
        return newcomer_result, ticks_during, len(lwp.stats())

    try:
        result, ticks, nlwps = lwp.run(main, lwps=2, retire_after=0.05)
    finally:
        unsubscribe()
    names = [e for e, _ in events]
    assert result == "ran" and ticks > 0
    assert "lwp_blocked" in names and "lwp_unblocked" in names
    assert ("lwp_added", "compensating") in events
    assert nlwps > 2


@pytest.mark.fault
def test_compensating_lwps_retire_when_idle():
    libc = ctypes.CDLL(None)
    retired = []
    unsubscribe = lwp.upcalls.subscribe(lambda e, **info: retired.append(info["kind"]),
                                        events="lwp_retired")

    def main():
        for t in [lwp.spawn(libc.usleep, 50_000) for _ in range(4)]:
            t.join(5)
        peak = len(lwp.stats())
        deadline = time.monotonic() + 5
        while len(lwp.stats()) > 1 and time.monotonic() < deadline:
            lwp.sleep(0.01)
        return peak, len(lwp.stats())

    try:
        peak, after = lwp.run(main, lwps=1, retire_after=0.05)
    finally:
        unsubscribe()
    assert peak > 1 and after == 1
    assert "compensating" in retired


def test_bound_threads_get_their_own_lwp():
    def main():
        where = lwp.spawn(lambda: lwp._core.park.current_lwp()).join(5)
        bound = [lwp.spawn(lambda: lwp._core.park.current_lwp(), bound=True) for _ in range(3)]
        lwps = [t.join(5) for t in bound]
        return where, lwps

    where, lwps = lwp.run(main, lwps=1)
    assert all(x.kind == "bound" for x in lwps)
    assert len({id(x) for x in lwps}) == 3 and where not in lwps


def test_bound_thread_blocking_does_not_stall_others():
    libc = ctypes.CDLL(None)

    def main():
        counter, stop = [0], lwp.Event()
        ticker = lwp.spawn(_ticker, counter, stop)
        b = lwp.spawn(libc.usleep, 100_000, bound=True)
        before = counter[0]
        b.join(5)
        during = counter[0] - before
        stop.set()
        ticker.join(5)
        return during

    assert lwp.run(main, lwps=1, monitor=False) > 5
