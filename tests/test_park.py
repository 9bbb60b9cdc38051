"""The park/wake door: one wake-up counts, early wake-ups are kept, OS waiters.

The door has two implementations of the green waiter, the Python reference
and its C transcription (``csrc/park_py.c``); the ``door`` fixture runs each
test that uses it on both.  The tests of the native entry points themselves
come last.
"""

import os
import subprocess
import sys
import threading

import pytest

import lwp
from lwp import sync
from lwp._core import park

DOORS = ["native", "python"]


@pytest.fixture(params=DOORS)
def door(request, monkeypatch):
    """Make ``park.waiter`` (and lwp.sync's, for Events) and ``lwp.Event`` the
    implementation named."""
    if request.param == "native":
        if not park.NATIVE:
            pytest.skip("lwp._native is built without the park door")
        chosen, event = park._native_waiter, sync._NativeEvent
    else:
        chosen, event = park.python_waiter, sync.PythonEvent
    monkeypatch.setattr(park, "waiter", chosen)
    monkeypatch.setattr(sync, "waiter", chosen)
    monkeypatch.setattr(lwp, "Event", event)
    return request.param


def test_wake_before_wait_is_not_lost(door):
    def main():
        w = park.waiter()
        assert type(w).__name__ == {"native": "_NativeGreenWaiter", "python": "GreenWaiter"}[door]
        assert w.wake("early") is True
        assert w.wake("second") is False
        return w.wait()

    assert lwp.run(main) == "early"


def test_wake_after_timeout_returns_false(door):
    def main():
        w = park.waiter()
        assert w.wait(0.001) is park.TIMED_OUT
        return w.wake("late")

    assert lwp.run(main) is False


def test_exception_delivered_by_wake(door):
    def main():
        w = park.waiter()
        w.wake(exc=ValueError("boom"))
        try:
            w.wait()
        except ValueError as e:
            return str(e)

    assert lwp.run(main) == "boom"


def test_wake_from_other_lwp_and_os_thread(door):
    def main():
        got = []
        for source in ("lwp", "os"):
            w = park.waiter()
            if source == "lwp":
                lwp.spawn(w.wake, source)
            else:
                threading.Thread(target=w.wake, args=(source,)).start()
            got.append(w.wait(5))
        return got

    assert lwp.run(main, lwps=2) == ["lwp", "os"]


def test_os_waiter_in_plain_thread():
    w = park.waiter()
    assert isinstance(w, park.OSWaiter)
    assert w.wait(0.001) is park.TIMED_OUT
    assert w.wake(1) is False
    w2 = park.waiter()
    threading.Timer(0.01, w2.wake, args=("x",)).start()
    assert w2.wait(5) == "x"


def test_many_concurrent_wakers_exactly_one_wins(door):
    def main():
        wins = []
        for _ in range(200):
            w = park.waiter()
            racers = [lwp.spawn(lambda: wins.append(w.wake(True))) for _ in range(4)]
            w.wait(5)
            for r in racers:
                r.join(5)
        return wins

    wins = lwp.run(main, lwps=2)
    assert wins.count(True) == 200 and wins.count(False) == 600


def test_checkpoint_lets_others_run():
    def main():
        steps = []
        t = lwp.spawn(lambda: steps.append("other"))
        lwp.checkpoint()
        steps.append("me")
        t.join(5)
        return steps

    assert lwp.run(main, lwps=1) == ["other", "me"]
    lwp.checkpoint()  # in a plain thread: just returns


def test_cross_lwp_wakeups_racing_with_park(door):
    """A wake-up landing between the park decision and the switch is not resumed twice."""
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # GIL hand-offs everywhere: widen every race window
    try:
        def main():
            a, b = lwp.Event(), lwp.Event()
            rounds = 20_000

            def pong():
                for _ in range(rounds):
                    a.wait(5)
                    a.clear()
                    b.set()

            # bound=True puts pong on its own LWP: every wake-up crosses kernel threads
            t = lwp.spawn(pong, bound=True)
            for _ in range(rounds):
                a.set()
                assert b.wait(5)
                b.clear()
            t.join(10)
            return rounds

        assert lwp.run(main, lwps=1) == 20_000
    finally:
        sys.setswitchinterval(old)


def test_waiter_survives_another_park_of_its_thread(door):
    """A waiter holds its own outcome: its thread may park elsewhere in between
    (once an error), and a wake-up that came meanwhile is neither lost nor
    delivered to that other park."""
    def main():
        w = park.waiter()
        waker = lwp.spawn(w.wake, "for w")  # runs while main sleeps below
        assert lwp.sleep(0.01) is None       # not woken by w's wake-up
        assert waker.join(5) is True         # that wake-up counted...
        assert w.wait(5) == "for w"          # ...and is kept for w
        assert w.wake("again") is False
        late = park.waiter()
        lwp.sleep(0.001)
        assert late.wait(0.01) is park.TIMED_OUT  # one never woken still times out
        return "ok"

    assert lwp.run(main, lwps=1) == "ok"


def test_pending_cancel_is_raised_by_wait_without_parking(door):
    """A cancellation that came while the thread ran is raised by its next wait."""
    def main():
        me = lwp.current()
        me.cancel()  # running: kept as pending
        w = park.waiter()
        with pytest.raises(lwp.Cancelled):
            w.wait()
        assert w.wake("late") is False  # the cancellation was its outcome
        return "ok"

    assert lwp.run(main) == "ok"


def test_cancel_wakes_a_parked_waiter(door):
    def main():
        w = park.waiter()
        me = lwp.current()
        canceller = lwp.spawn(me.cancel)
        with pytest.raises(lwp.Cancelled):
            w.wait()
        assert canceller.join(5) is True
        return w.wake("late")

    assert lwp.run(main, lwps=1) is False


def test_woken_threads_run_in_wake_order(door):
    """Wake-ups on one LWP queue the threads in order, and each one parked
    switches straight to the next (the direct switch) or through the hub."""
    def main():
        order = []
        waiters = []

        def sleeper(i):
            w = park.waiter()
            waiters.append(w)
            order.append(w.wait())

        threads = [lwp.spawn(sleeper, i) for i in range(50)]
        while len(waiters) < 50:
            lwp.checkpoint()
        for i, w in enumerate(waiters):
            assert w.wake(i) is True
        for t in threads:
            t.join(5)
        return order

    assert lwp.run(main, lwps=1) == list(range(50))


# -- the native entry points (csrc/park_py.h) --------------------------------------------

native_only = pytest.mark.skipif(not park.NATIVE, reason="lwp._native is built without the park door")


def test_the_native_door_is_the_default_and_the_environment_selects_python():
    code = "from lwp._core import park; print(park.NATIVE, park.waiter is park.python_waiter)"
    env = dict(os.environ, LWP_NATIVE_PARK="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "True"]
    if park.NATIVE:
        assert park.waiter is park._native_waiter


@native_only
def test_native_waiter_in_a_green_and_in_an_os_thread():
    def main():
        w = park._native_waiter()
        return type(w), w.thread is lwp.current(), w.outcome, w.late

    assert lwp.run(main) == (park._NativeGreenWaiter, True, None, None)
    assert isinstance(park._native_waiter(), park.OSWaiter)


@native_only
def test_native_waiter_type_is_made_only_by_native_waiter():
    with pytest.raises(TypeError):
        park._NativeGreenWaiter()

    def main():
        w = park._native_waiter()
        with pytest.raises(AttributeError):
            w.thread = None  # the C relies on it being the thread that made it
        return "ok"

    assert lwp.run(main) == "ok"


@native_only
def test_native_wake_and_wait_take_the_reference_arguments():
    def main():
        w = park._native_waiter()
        with pytest.raises(TypeError):
            w.wake(1, None, -1, "extra")
        with pytest.raises(TypeError):
            w.wake(nothing=1)
        with pytest.raises(TypeError):
            w.wake(1, value=2)
        with pytest.raises(TypeError):
            w.wait(1, 2)
        assert w.wake(value="v", exc=None, timeout=5) is True
        assert w.outcome == ("v", None)
        assert w.wait(timeout=None) == "v"
        late = park._native_waiter()
        assert late.wait(timeout=0.001) is park.TIMED_OUT
        return "ok"

    assert lwp.run(main) == "ok"


@native_only
def test_native_wake_gives_up_on_a_busy_lock():
    """wake(timeout=0) returns None, settling nothing, while the LWP's lock is held."""
    def main():
        w = park._native_waiter()
        lock = lwp.current()._lwp._lock
        with lock:
            assert w.wake("no", None, 0) is None
        assert w.outcome is None
        assert w.wake("yes", None, 0) is True
        return w.wait()

    assert lwp.run(main) == "yes"


@native_only
def test_native_lwp_type_refuses_a_class_without_the_slots():
    from lwp._core.lwp import _FAIRNESS_TICKS, LWP

    with pytest.raises(AttributeError):
        park._native_lwp_type(object, 61)
    with pytest.raises(TypeError):
        park._native_lwp_type(type("NotSlots", (), {"_lock": None}), 61)
    with pytest.raises(ValueError):
        park._native_lwp_type(LWP, 0)
    park._native_lwp_type(LWP, _FAIRNESS_TICKS)  # idempotent
    assert lwp.run(lambda: "still runs") == "still runs"


@native_only
def test_native_door_makes_the_lwp_locks_and_lwp_event():
    assert park.new_lock is park._NativeLock and lwp.Event is sync._NativeEvent
    assert lwp.run(lambda: type(lwp.current()._lwp._lock)) is park._NativeLock
    code = ("import lwp, _thread; from lwp import sync; from lwp._core import park; "
            "print(park.new_lock is _thread.allocate_lock, lwp.Event is sync.PythonEvent)")
    env = dict(os.environ, LWP_NATIVE_PARK="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "True"]


@native_only
def test_native_event_keeps_its_waiters_to_itself():
    ev = sync._NativeEvent()
    assert not hasattr(ev, "_mutex")  # the GIL is its mutex (csrc/event_py.h)
    with pytest.raises(AttributeError):
        ev._waiters = []
    with pytest.raises(AttributeError):
        ev.other = 1


def _lock_answers(lock):
    """What a sequence of calls does to ``lock``, as comparable values."""
    out = []

    def do(call):
        try:
            out.append(call())
        except Exception as e:  # noqa: BLE001 - the answer is the exception's type
            out.append(type(e).__name__)

    do(lambda: lock.release())
    do(lambda: (lock.acquire(), lock.locked()))
    do(lambda: (lock.acquire(False), lock.acquire(blocking=False), lock.acquire(True, 0.001)))
    do(lambda: lock.acquire(timeout=0))
    do(lambda: (lock.release(), lock.locked()))
    for args, kwargs in [((False, 1), {}), ((True, -2), {}), ((True, 1e12), {}), ((True, "x"), {}),
                         ((1, 2, 3), {}), ((), {"nothing": 1}), ((True,), {"blocking": True})]:
        do(lambda: lock.acquire(*args, **kwargs))
    do(lambda: lock.locked())
    with lock:
        do(lambda: lock.locked())
    do(lambda: lock.locked())
    with pytest.raises(KeyError):
        with lock:
            raise KeyError
    do(lambda: (lock.acquire(True, -1), lock.release()))
    do(lambda: repr(lock).split()[0])
    return out


@native_only
def test_native_lock_answers_as_a_thread_lock():
    assert _lock_answers(park._NativeLock()) == _lock_answers(threading.Lock())
    with pytest.raises(TypeError):
        park._NativeLock(1)


@native_only
def test_native_lock_released_by_another_thread_wakes_a_blocked_acquire():
    lock, got = park._NativeLock(), []
    lock.acquire()
    t = threading.Thread(target=lambda: got.append(lock.acquire(True, 30)))
    t.start()
    releaser = threading.Thread(target=lock.release)  # not owned: any thread may release
    releaser.start()
    releaser.join(10)
    t.join(30)
    assert got == [True] and lock.locked()


class _Interrupt(Exception):
    pass


@native_only
@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach only the main thread")
@pytest.mark.parametrize("timeout", [30, -1])
def test_native_lock_acquire_runs_signal_handlers_and_a_raise_interrupts_it(timeout):
    """As _thread.lock: a handler that returns lets the wait go on; one that
    raises ends it with its exception, the lock not taken."""
    import signal

    lock, handled, stop = park._NativeLock(), [], threading.Event()
    lock.acquire()

    def handler(signum, frame):
        handled.append(signum)
        if len(handled) == 2:
            raise _Interrupt

    main_ident = threading.get_ident()

    def signaller():  # a bounded while: an acquire deaf to signals gets the lock in the end
        for _ in range(250):
            if stop.wait(0.02):
                break
            signal.pthread_kill(main_ident, signal.SIGUSR1)
        lock.release()

    old = signal.signal(signal.SIGUSR1, handler)
    helper = threading.Thread(target=signaller)
    helper.start()
    try:
        with pytest.raises(_Interrupt):
            lock.acquire(True, timeout)
    finally:
        stop.set()
        helper.join(10)
        signal.signal(signal.SIGUSR1, old)
    assert len(handled) == 2 and not lock.locked()


@pytest.mark.stress
@pytest.mark.timeout(300)
def test_sync_passes_on_the_python_door():
    """The reference stays tested under lwp.sync: its tests with LWP_NATIVE_PARK=0
    (this file's run on both doors through the ``door`` fixture)."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, LWP_NATIVE_PARK="0")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-m", "not stress",
         os.path.join(here, "test_sync.py")],
        env=env, capture_output=True, text=True, cwd=os.path.dirname(here), timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
