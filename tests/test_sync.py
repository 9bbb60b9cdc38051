"""lwp.sync: Lock, RLock, Condition, Semaphore, BoundedSemaphore, Event, Barrier.

Layout: first each primitive's behaviour and error paths (mostly from one
green thread, checked against ``threading`` where the two must agree), then the
same primitives between two threads in each *context* (``same_lwp``: two green
threads on one LWP; ``cross_lwp``: the partner is a bound green thread, so it
runs on an LWP of its own; ``os_thread``: the partner is a plain
``threading.Thread``), then cancellation and ``lwp.Timeout`` around every
blocking call, then the stress tests (``-m stress``).

No test asserts a duration: waits are observed through the primitives' waiter
lists (white box) and outcomes are counts and orders.
"""

import math
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from _thread import TIMEOUT_MAX

import pytest
from helpers import wait_until

import lwp

CONTEXTS = ["same_lwp", "cross_lwp", "os_thread"]

# The reference Event and, when the native park door is on, lwp.Event: its C
# transcription (the rest of this file tests whichever lwp.Event is; the
# reference also in test_park's run of this file on the Python door).
EVENT_CLASSES = list(dict.fromkeys([lwp.sync.PythonEvent, lwp.Event]))


def run(main, lwps=1, **kw):
    return lwp.run(main, lwps=lwps, **kw)


class Partner:
    """``fn(*args)`` running in a thread of the given context (see the module doc).

    Made from a green thread; ``join`` waits cooperatively, with a timeout.
    """

    def __init__(self, ctx, fn, *args):
        self.ctx = ctx
        if ctx == "os_thread":
            self._out = None

            def body():
                try:
                    self._out = (fn(*args), None)
                except BaseException as e:  # noqa: B036 - re-raised by join()
                    self._out = (None, e)

            self._t = threading.Thread(target=body, daemon=True)
            self._t.start()
        else:
            self._t = lwp.spawn(fn, *args, bound=(ctx == "cross_lwp"))

    def join(self, timeout=10):
        if self.ctx != "os_thread":
            return self._t.join(timeout)
        wait_until(lambda: not self._t.is_alive(), timeout)  # polls with lwp.sleep: cooperative
        self._t.join(timeout)
        result, exc = self._out
        if exc is not None:
            raise exc
        return result


def run_in(ctx, main):
    """Run ``main`` as the green thread of a fresh scheduler suited to ``ctx``."""
    def checked():
        if ctx == "cross_lwp":
            # The bound partner really is on another kernel thread.
            here = lwp.current()._lwp
            probe = lwp.spawn(lambda: lwp.current()._lwp, bound=True)
            assert probe.join(10) is not here
        return main()

    return lwp.run(checked, lwps=2 if ctx == "cross_lwp" else 1)


@pytest.fixture(params=CONTEXTS)
def ctx(request):
    return request.param


# ---------------------------------------------------------------------------------------------
# Lock
# ---------------------------------------------------------------------------------------------


def test_lock_acquire_release_locked():
    def main():
        lock = lwp.Lock()
        assert not lock.locked()
        assert lock.acquire() is True
        assert lock.locked()
        assert lock.acquire(False) is False
        assert lock.acquire(blocking=False) is False
        assert lock.acquire(timeout=0) is False
        assert lock.acquire(True, 0.01) is False
        lock.release()
        assert not lock.locked()
        assert lock.acquire(blocking=False) is True
        lock.release()
        assert lock.acquire(True, -1) is True  # -1 means "no timeout", as in threading
        lock.release()

    run(main)


def test_lock_as_context_manager_releases_on_exception():
    def main():
        lock = lwp.Lock()
        with lock as got:
            assert got is True and lock.locked()
        assert not lock.locked()
        with pytest.raises(KeyError):
            with lock:
                raise KeyError
        assert not lock.locked()

    run(main)


def test_lock_release_unlocked_raises():
    lock = lwp.Lock()
    with pytest.raises(RuntimeError):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError):  # double release
        lock.release()
    assert not lock.locked()


@pytest.mark.parametrize("make", [threading.Lock, lwp.Lock], ids=["threading", "lwp"])
def test_lock_argument_errors_like_threading(make):
    lock = make()
    with pytest.raises(ValueError):
        lock.acquire(False, 1)  # a timeout for a non-blocking call
    with pytest.raises(ValueError):
        lock.acquire(blocking=False, timeout=0)
    with pytest.raises(ValueError):
        lock.acquire(timeout=-5)
    with pytest.raises(ValueError):
        lock.acquire(timeout=-0.5)
    assert not lock.locked()


def test_lock_is_not_owned_and_weakrefable():
    def main():
        lock = lwp.Lock()
        lock.acquire()
        lwp.spawn(lock.release).join(5)  # any thread may release it
        assert not lock.locked()
        ref = weakref.ref(lock)
        del lock
        return ref() is None

    assert run(main)


def test_lock_repr():
    lock = lwp.Lock()
    assert "unlocked" in repr(lock)
    lock.acquire()
    assert "locked" in repr(lock) and "unlocked" not in repr(lock)


def test_lock_waiters_are_served_in_fifo_order():
    def main():
        lock = lwp.Lock()
        order = []

        def worker(i):
            with lock:
                order.append(i)

        lock.acquire()
        threads = []
        for i in range(10):
            threads.append(lwp.spawn(worker, i))
            wait_until(lambda: len(lock._waiters) == i + 1)
        lock.release()
        for t in threads:
            t.join(5)
        return order

    assert run(main) == list(range(10))


def test_lock_timeout_while_held_then_acquire_after_release():
    def main():
        lock = lwp.Lock()
        lock.acquire()
        t = lwp.spawn(lock.acquire, timeout=0.02)
        assert t.join(5) is False
        assert lock._waiters == type(lock._waiters)()  # the timed-out waiter left
        lock.release()
        assert lock.acquire(timeout=5) is True
        lock.release()

    run(main)


# ---------------------------------------------------------------------------------------------
# RLock
# ---------------------------------------------------------------------------------------------


def test_rlock_is_reentrant():
    def main():
        rl = lwp.RLock()
        assert rl.acquire() and rl.acquire() and rl.acquire(False) and rl.acquire(timeout=1)
        for _ in range(3):
            rl.release()
        assert rl._is_owned()
        rl.release()
        assert not rl._is_owned()
        with pytest.raises(RuntimeError):
            rl.release()
        with rl:
            with rl:
                assert rl._is_owned()
        assert not rl._is_owned()

    run(main)


def test_rlock_release_unacquired_raises():
    rl = lwp.RLock()
    with pytest.raises(RuntimeError):
        rl.release()
    rl.acquire()
    rl.release()
    with pytest.raises(RuntimeError):
        rl.release()


def test_rlock_owned_per_green_thread_on_one_lwp():
    # Two green threads on the same kernel thread: ownership is the green thread's.
    def main():
        rl = lwp.RLock()
        rl.acquire()
        other = lwp.spawn(lambda: (rl.acquire(False), rl._is_owned()))
        assert other.join(5) == (False, False)
        assert lwp.current()._lwp is other._lwp
        with pytest.raises(RuntimeError):
            lwp.spawn(rl.release).join(5)
        assert rl._is_owned()
        rl.release()

    run(main)


def test_rlock_release_from_other_thread_raises(ctx):
    def main():
        rl = lwp.RLock()
        rl.acquire()
        rl.acquire()
        p = Partner(ctx, rl.release)
        with pytest.raises(RuntimeError):
            p.join()
        # Still held twice by main.
        assert Partner(ctx, lambda: rl.acquire(False)).join() is False
        rl.release()
        rl.release()
        assert Partner(ctx, lambda: (rl.acquire(False), rl.release())).join() == (True, None)

    run_in(ctx, main)


def test_rlock_blocks_other_thread_until_fully_released(ctx):
    def main():
        rl = lwp.RLock()
        rl.acquire()
        rl.acquire()
        steps = []

        def other():
            with rl:
                steps.append("other")

        p = Partner(ctx, other)
        wait_until(lambda: len(rl._lock._waiters) == 1)
        rl.release()
        steps.append("main released once")
        lwp.sleep(0.01)
        assert steps == ["main released once"]
        rl.release()
        p.join()
        return steps

    assert run_in(ctx, main) == ["main released once", "other"]


def test_rlock_argument_errors():
    rl = lwp.RLock()
    with pytest.raises(ValueError):
        rl.acquire(False, 1)
    with pytest.raises(ValueError):
        rl.acquire(timeout=-3)
    assert rl._owner is None


# ---------------------------------------------------------------------------------------------
# Condition
# ---------------------------------------------------------------------------------------------

LOCK_KINDS = {"Lock": lwp.Lock, "RLock": lwp.RLock, "default": None}


@pytest.fixture(params=list(LOCK_KINDS))
def make_cond(request):
    kind = LOCK_KINDS[request.param]
    return lambda: lwp.Condition(kind() if kind else None)


def test_condition_wait_notify(make_cond):
    def main():
        cond = make_cond()
        items = []
        got = []

        def consumer():
            with cond:
                while not items:
                    assert cond.wait() is True
                got.append(items.pop())

        t = lwp.spawn(consumer)
        wait_until(lambda: len(cond._waiters) == 1)
        with cond:
            items.append("x")
            cond.notify()
        t.join(5)
        return got

    assert run(main) == ["x"]


def test_condition_notify_n_and_all_wake_in_fifo_order(make_cond):
    def main():
        cond = make_cond()
        woken = []

        def waiter(i):
            with cond:
                cond.wait()
                woken.append(i)

        ts = []
        for i in range(6):
            ts.append(lwp.spawn(waiter, i))
            wait_until(lambda: len(cond._waiters) == i + 1)
        with cond:
            cond.notify()
        wait_until(lambda: len(woken) == 1)
        with cond:
            cond.notify(2)
        wait_until(lambda: len(woken) == 3)
        lwp.sleep(0.01)
        assert len(woken) == 3
        with cond:
            cond.notify_all()
        for t in ts:
            t.join(5)
        with cond:
            cond.notify()  # no waiter: a no-op
            cond.notifyAll()
        return woken

    assert run(main) == list(range(6))


def test_condition_wait_timeout_returns_false_and_reacquires(make_cond):
    def main():
        cond = make_cond()
        with cond:
            assert cond.wait(0.01) is False
            assert cond.wait(timeout=0) is False
            # Still held: another thread cannot take it.
            assert lwp.spawn(lambda: cond.acquire(False)).join(5) is False
        assert not cond._waiters

    run(main)


def test_condition_wait_for(make_cond):
    def main():
        cond = make_cond()
        state = {"n": 0}

        def bump():
            for _ in range(4):
                lwp.sleep(0.001)
                with cond:
                    state["n"] += 1
                    cond.notify()

        t = lwp.spawn(bump)
        with cond:
            result = cond.wait_for(lambda: state["n"] >= 4 and "done")
        t.join(5)
        with cond:
            assert cond.wait_for(lambda: 0, timeout=0.01) == 0   # last predicate value
            assert cond.wait_for(lambda: 7, timeout=0) == 7     # true at once: no wait
            assert cond.wait_for(lambda: [], timeout=-1) == []  # deadline already past
        return result

    assert run(main) == "done"


def test_condition_without_lock_raises(make_cond):
    cond = make_cond()
    with pytest.raises(RuntimeError):
        cond.wait()
    with pytest.raises(RuntimeError):
        cond.wait(0)
    with pytest.raises(RuntimeError):
        cond.notify()
    with pytest.raises(RuntimeError):
        cond.notify_all()
    assert not cond._waiters


def test_condition_with_rlock_restores_recursion_level():
    def main():
        rl = lwp.RLock()
        cond = lwp.Condition(rl)
        with cond:
            with cond:
                assert rl._count == 2
                assert cond.wait(0.01) is False
                assert rl._count == 2 and rl._is_owned()
            assert rl._count == 1
        assert not rl._is_owned()

    run(main)


def test_condition_with_rlock_wait_from_non_owner_raises():
    def main():
        cond = lwp.Condition(lwp.RLock())
        cond.acquire()
        t = lwp.spawn(cond.wait, 0.01)  # main holds the RLock, not t
        with pytest.raises(RuntimeError):
            t.join(5)
        assert not cond._waiters
        cond.release()

    run(main)


def test_condition_acquire_release_and_repr():
    cond = lwp.Condition(lwp.Lock())
    assert cond.acquire() is True
    assert cond.acquire(False) is False
    cond.release()
    with cond as got:
        assert got is True
    assert "Condition" in repr(cond)


def test_condition_bad_timeout():
    cond = lwp.Condition()
    with cond:
        with pytest.raises((ValueError, TypeError)):
            cond.wait(float("nan"))
        with pytest.raises(TypeError):
            cond.wait("1")
        assert cond._is_owned()


# ---------------------------------------------------------------------------------------------
# Semaphore, BoundedSemaphore
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [lwp.Semaphore, lwp.BoundedSemaphore])
def test_semaphore_counts(cls):
    def main():
        sem = cls(3)
        assert all(sem.acquire() for _ in range(3))
        assert sem.acquire(False) is False
        assert sem.acquire(timeout=0.01) is False
        assert sem.acquire(True, 0) is False
        sem.release()
        assert sem.acquire(blocking=False) is True
        sem.release(3)
        assert sem._value == 3
        with sem:
            assert sem._value == 2
        assert sem._value == 3
        assert cls()._value == 1  # default value

    run(main)


@pytest.mark.parametrize("cls", [lwp.Semaphore, lwp.BoundedSemaphore,
                                 threading.Semaphore, threading.BoundedSemaphore])
def test_semaphore_argument_errors_like_threading(cls):
    with pytest.raises(ValueError):
        cls(-1)
    sem = cls(1)
    with pytest.raises(ValueError):
        sem.acquire(False, timeout=1)
    with pytest.raises(ValueError):
        sem.acquire(False, 0)
    with pytest.raises(ValueError):
        sem.release(0)
    with pytest.raises(ValueError):
        sem.release(-2)
    assert sem.acquire(False) is True
    sem.release()


@pytest.mark.parametrize("cls", [lwp.BoundedSemaphore, threading.BoundedSemaphore])
def test_bounded_semaphore_over_release(cls):
    sem = cls(2)
    with pytest.raises(ValueError):
        sem.release()
    sem.acquire()
    sem.acquire()
    with pytest.raises(ValueError):
        sem.release(3)
    sem.release(2)
    with pytest.raises(ValueError):
        sem.release()
    # The failed releases changed nothing.
    assert sem.acquire(False) and sem.acquire(False) and not sem.acquire(False)


def test_unbounded_semaphore_release_beyond_initial():
    sem = lwp.Semaphore(0)
    sem.release(5)
    assert sum(sem.acquire(False) for _ in range(6)) == 5


def test_semaphore_fifo_and_release_n_wakes_n():
    def main():
        sem = lwp.Semaphore(0)
        order = []

        def worker(i):
            sem.acquire()
            order.append(i)

        ts = []
        for i in range(5):
            ts.append(lwp.spawn(worker, i))
            wait_until(lambda: len(sem._waiters) == i + 1)
        sem.release(2)
        wait_until(lambda: len(order) == 2)
        lwp.sleep(0.01)
        assert order == [0, 1]
        sem.release(3)
        for t in ts:
            t.join(5)
        assert sem._value == 0
        return order

    assert run(main) == [0, 1, 2, 3, 4]


def test_semaphore_repr():
    assert "value=2" in repr(lwp.Semaphore(2))
    assert "BoundedSemaphore" in repr(lwp.BoundedSemaphore(2))


# ---------------------------------------------------------------------------------------------
# Event
# ---------------------------------------------------------------------------------------------


def test_event_flag():
    ev = lwp.Event()
    assert not ev.is_set() and not ev.isSet()
    assert ev.wait(0) is False
    ev.set()
    ev.set()
    assert ev.is_set() and ev.wait() is True and ev.wait(0) is True
    ev.clear()
    ev.clear()
    assert not ev.is_set()
    assert "unset" in repr(ev)


def test_event_set_wakes_every_waiter_even_if_cleared_at_once():
    def main():
        ev = lwp.Event()
        ts = [lwp.spawn(ev.wait) for _ in range(5)] + [lwp.spawn(ev.wait, 30) for _ in range(5)]
        wait_until(lambda: len(ev._waiters) == 10)
        ev.set()
        ev.clear()  # gh-57711: a waiter woken by set() returns True anyway
        return [t.join(5) for t in ts]

    assert run(main) == [True] * 10


@pytest.mark.parametrize("event_class", EVENT_CLASSES)
def test_event_takes_threading_arguments(event_class):
    ev = event_class()
    with pytest.raises(TypeError):
        event_class(1)
    with pytest.raises(TypeError):
        type("Sub", (event_class,), {})(1)
    with pytest.raises(TypeError):
        ev.wait(1, 2)
    with pytest.raises(TypeError):
        ev.wait(delay=1)
    with pytest.raises(ValueError):
        ev.wait(float("nan"))
    assert ev.wait(timeout=-1) is False and ev.wait(timeout=0.001) is False
    assert repr(ev) == "<lwp.Event unset waiters=0>" and not ev._waiters
    ev.set()
    assert ev.wait(float("nan")) is True  # set: the timeout is not looked at, as threading's
    assert repr(ev) == "<lwp.Event set waiters=0>" and ev.isSet()


@pytest.mark.parametrize("event_class", EVENT_CLASSES)
def test_event_subclass_keeps_working(event_class):
    """A subclass may take arguments, add attributes and extend the methods."""
    class Counted(event_class):
        def __init__(self, name):
            super().__init__()
            self.name, self.sets = name, 0

        def set(self):
            self.sets += 1
            super().set()

    def main():
        ev = Counted("x")
        t = lwp.spawn(ev.wait, 5)
        wait_until(lambda: len(ev._waiters) == 1)
        ev.set()
        return t.join(5), ev.sets, ev.name, ev.is_set()

    assert run(main) == (True, 1, "x", True)


@pytest.mark.parametrize("event_class", EVENT_CLASSES)
def test_event_many_waiters_of_every_kind(event_class):
    """One set() wakes green threads on this and on another LWP and OS threads,
    each once; the waiter list is empty after."""
    def main():
        ev, got = event_class(), []
        ts = [lwp.spawn(lambda: got.append(ev.wait(30))) for _ in range(3)]
        ts += [lwp.spawn(lambda: got.append(ev.wait()), bound=True) for _ in range(2)]
        os_ts = [threading.Thread(target=lambda: got.append(ev.wait(30))) for _ in range(2)]
        for t in os_ts:
            t.start()
        wait_until(lambda: len(ev._waiters) == 7)
        ev.set()
        for t in ts:
            t.join(10)
        for t in os_ts:
            t.join(10)
        return got, ev._waiters

    assert run(main, lwps=2) == ([True] * 7, [])


def test_event_wait_timeout():
    def main():
        ev = lwp.Event()
        assert ev.wait(0.01) is False
        assert not ev._waiters
        with pytest.raises((ValueError, TypeError)):
            ev.wait(float("nan"))
        with pytest.raises(TypeError):
            ev.wait("soon")

    run(main)


# ---------------------------------------------------------------------------------------------
# Barrier
# ---------------------------------------------------------------------------------------------


def test_barrier_indices_action_and_reuse():
    def main():
        actions = []
        b = lwp.Barrier(4, action=lambda: actions.append(lwp.current()))
        assert b.parties == 4 and b.n_waiting == 0 and not b.broken
        rounds = []

        def party():
            return [b.wait() for _ in range(3)]

        ts = [lwp.spawn(party) for _ in range(3)]
        wait_until(lambda: b.n_waiting == 3)
        rounds.append(b.wait())
        rounds.extend(b.wait() for _ in range(2))
        results = [t.join(5) for t in ts] + [rounds]
        for i in range(3):
            assert sorted(r[i] for r in results) == [0, 1, 2, 3]
        assert len(actions) == 3  # once per round, by one of the parties
        assert b.n_waiting == 0 and not b.broken

    run(main)


def test_barrier_single_party_and_bad_parties():
    b = lwp.Barrier(1)
    assert b.wait() == 0 and b.wait() == 0
    with pytest.raises(ValueError):
        lwp.Barrier(0)
    with pytest.raises(ValueError):
        lwp.Barrier(-1)
    assert lwp.BrokenBarrierError is threading.BrokenBarrierError


def test_barrier_abort_breaks_waiters_and_later_callers():
    def main():
        b = lwp.Barrier(3)
        ts = [lwp.spawn(b.wait) for _ in range(2)]
        wait_until(lambda: b.n_waiting == 2)
        b.abort()
        for t in ts:
            with pytest.raises(lwp.BrokenBarrierError):
                t.join(5)
        assert b.broken and b.n_waiting == 0
        with pytest.raises(lwp.BrokenBarrierError):
            b.wait()
        b.reset()
        assert not b.broken
        ts = [lwp.spawn(b.wait) for _ in range(3)]
        return sorted(t.join(5) for t in ts)

    assert run(main) == [0, 1, 2]


def test_barrier_reset_breaks_current_waiters_then_works():
    def main():
        b = lwp.Barrier(3)
        ts = [lwp.spawn(b.wait) for _ in range(2)]
        wait_until(lambda: b.n_waiting == 2)
        b.reset()
        for t in ts:
            with pytest.raises(lwp.BrokenBarrierError):
                t.join(5)
        assert not b.broken and b.n_waiting == 0
        ts = [lwp.spawn(b.wait) for _ in range(3)]
        return sorted(t.join(5) for t in ts)

    assert run(main) == [0, 1, 2]


def test_barrier_timeout_breaks_it():
    def main():
        b = lwp.Barrier(3)
        other = lwp.spawn(b.wait)
        wait_until(lambda: b.n_waiting == 1)
        with pytest.raises(lwp.BrokenBarrierError):
            b.wait(0.01)
        with pytest.raises(lwp.BrokenBarrierError):
            other.join(5)
        assert b.broken

        d = lwp.Barrier(2, timeout=0.01)  # the default timeout
        with pytest.raises(lwp.BrokenBarrierError):
            d.wait()
        assert d.broken

        e = lwp.Barrier(2, timeout=0.01)
        t = lwp.spawn(e.wait, 30)  # an explicit timeout wins over the default
        wait_until(lambda: e.n_waiting == 1)
        lwp.sleep(0.03)
        assert e.wait() in (0, 1) and t.join(5) in (0, 1)

    run(main)


def test_barrier_action_error_breaks_it():
    def main():
        def action():
            raise KeyError("action")

        b = lwp.Barrier(2, action=action)
        t = lwp.spawn(b.wait)
        wait_until(lambda: b.n_waiting == 1)
        with pytest.raises(KeyError):
            b.wait()
        with pytest.raises(lwp.BrokenBarrierError):
            t.join(5)
        assert b.broken

    run(main)


# ---------------------------------------------------------------------------------------------
# Between two threads: same LWP, across LWPs, green <-> OS thread
# ---------------------------------------------------------------------------------------------


def test_ctx_lock_handoff_both_ways(ctx):
    def main():
        lock = lwp.Lock()
        log = []
        lock.acquire()

        def other():
            lock.acquire()
            log.append("other has it")
            return "done"  # and keeps it: main takes it back by release-from-here

        p = Partner(ctx, other)
        wait_until(lambda: len(lock._waiters) == 1)
        log.append("main releases")
        lock.release()
        assert p.join() == "done"
        assert lock.locked()
        lock.release()  # a Lock is not owned: main releases what the partner took

        # Now main waits for the partner.
        ready = lwp.Event()

        def holder():
            lock.acquire()
            ready.set()
            wait_until(lambda: len(lock._waiters) == 1)
            log.append("partner releases")
            lock.release()

        p = Partner(ctx, holder)
        ready.wait(10)
        assert lock.acquire(timeout=10)
        log.append("main has it")
        lock.release()
        p.join()
        return log

    assert run_in(ctx, main) == ["main releases", "other has it", "partner releases",
                                 "main has it"]


def test_ctx_lock_timeout_in_partner(ctx):
    def main():
        lock = lwp.Lock()
        lock.acquire()
        assert Partner(ctx, lambda: lock.acquire(timeout=0.01)).join() is False
        assert Partner(ctx, lambda: lock.acquire(False)).join() is False
        assert len(lock._waiters) == 0
        lock.release()
        assert Partner(ctx, lambda: lock.acquire(timeout=10)).join() is True
        assert lock.locked()

    run_in(ctx, main)


def test_ctx_event_both_ways(ctx):
    def main():
        ev, back = lwp.Event(), lwp.Event()

        def other():
            assert ev.wait(10)
            back.set()
            return "woken"

        p = Partner(ctx, other)
        wait_until(lambda: len(ev._waiters) == 1)
        ev.set()
        assert back.wait(10)
        assert p.join() == "woken"

        ev2 = lwp.Event()
        p = Partner(ctx, lambda: (wait_until(lambda: len(ev2._waiters) == 1), ev2.set()))
        assert ev2.wait(10) is True
        p.join()

    run_in(ctx, main)


def test_ctx_semaphore(ctx):
    def main():
        sem = lwp.Semaphore(0)
        got = []

        def other():
            for _ in range(3):
                assert sem.acquire(timeout=10)
                got.append(1)
            return sem.acquire(timeout=0.01)

        p = Partner(ctx, other)
        for _ in range(3):
            wait_until(lambda: len(sem._waiters) == 1)
            sem.release()
        assert p.join() is False
        assert len(got) == 3 and sem._value == 0

        # The partner releases, main waits.
        p = Partner(ctx, lambda: (wait_until(lambda: len(sem._waiters) == 1), sem.release(2)))
        assert sem.acquire(timeout=10)
        p.join()
        assert sem._value == 1

    run_in(ctx, main)


def test_ctx_bounded_semaphore_over_release_in_partner(ctx):
    def main():
        sem = lwp.BoundedSemaphore(1)
        with pytest.raises(ValueError):
            Partner(ctx, sem.release).join()
        sem.acquire()
        Partner(ctx, sem.release).join()
        assert sem._value == 1

    run_in(ctx, main)


def test_ctx_condition(ctx, make_cond):
    def main():
        cond = make_cond()
        box = []

        def consumer():
            with cond:
                assert cond.wait_for(lambda: box, timeout=10)
                return box.pop()

        p = Partner(ctx, consumer)
        wait_until(lambda: len(cond._waiters) == 1)
        with cond:
            box.append("item")
            cond.notify()
        assert p.join() == "item"

        def producer():
            wait_until(lambda: len(cond._waiters) == 1)
            with cond:
                box.append("back")
                cond.notify_all()

        p = Partner(ctx, producer)
        with cond:
            assert cond.wait_for(lambda: box, timeout=10)
        p.join()
        return box

    assert run_in(ctx, main) == ["back"]


def test_ctx_barrier(ctx):
    def main():
        b = lwp.Barrier(2)
        p = Partner(ctx, lambda: [b.wait(10) for _ in range(5)])
        mine = [b.wait(10) for _ in range(5)]
        theirs = p.join()
        assert all(sorted(pair) == [0, 1] for pair in zip(mine, theirs))

    run_in(ctx, main)


def test_os_threads_only_no_scheduler():
    # The primitives between plain OS threads, no scheduler anywhere.
    lock, ev, sem = lwp.Lock(), lwp.Event(), lwp.Semaphore(0)
    cond = lwp.Condition()
    counter = [0]

    def worker():
        ev.wait(10)
        for _ in range(200):
            with lock:
                counter[0] += 1
        with cond:
            cond.notify()
        sem.release()

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    ev.set()
    for _ in ts:
        assert sem.acquire(timeout=10)
    for t in ts:
        t.join(10)
    assert counter[0] == 800


# ---------------------------------------------------------------------------------------------
# Cancellation and lwp.Timeout at every blocking call
# ---------------------------------------------------------------------------------------------


def _hold_forever(lock):
    """A green thread that takes ``lock`` and parks (cancelled at shutdown)."""
    t = lwp.spawn(lambda: (lock.acquire(), lwp.Event().wait()))
    wait_until(lambda: lock.locked() if isinstance(lock, lwp.Lock) else lock._owner is t)
    return t


def _free(lock):
    """True if no thread holds ``lock`` (a Lock or an RLock) and none waits for it."""
    inner = lock._lock if isinstance(lock, lwp.RLock) else lock
    return not inner.locked() and not inner._waiters


def _blocked(kind):
    """(blocking call, parked predicate, consistency check after it was interrupted).

    The call blocks until interrupted; the check says the primitive is as it
    was before the call.
    """
    if kind == "Lock":
        p = lwp.Lock()
        holder = _hold_forever(p)
        return p.acquire, lambda: len(p._waiters) == 1, lambda: p.locked() and not p._waiters
    if kind == "RLock":
        p = lwp.RLock()
        holder = _hold_forever(p)
        return (p.acquire, lambda: len(p._lock._waiters) == 1,
                lambda: p._owner is holder and p._count == 1 and not p._lock._waiters)
    if kind in ("Condition(Lock)", "Condition(RLock)"):
        p = lwp.Condition(lwp.Lock() if "(Lock)" in kind else lwp.RLock())

        def call():
            with p:
                p.wait()

        return call, lambda: len(p._waiters) == 1, lambda: not p._waiters and _free(p._lock)
    if kind == "Semaphore":
        p = lwp.Semaphore(0)
        return p.acquire, lambda: len(p._waiters) == 1, lambda: p._value == 0 and not p._waiters
    if kind == "Event":
        p = lwp.Event()
        return p.wait, lambda: len(p._waiters) == 1, lambda: not p._waiters and not p.is_set()
    if kind == "Barrier":
        p = lwp.Barrier(2)
        return p.wait, lambda: p.n_waiting == 1, lambda: p.n_waiting == 0 and not p.broken
    raise AssertionError(kind)


BLOCKING = ["Lock", "RLock", "Condition(Lock)", "Condition(RLock)", "Semaphore", "Event", "Barrier"]


@pytest.mark.parametrize("kind", BLOCKING)
@pytest.mark.parametrize("where", ["same_lwp", "cross_lwp"])
def test_cancel_parked_thread(kind, where):
    def main():
        call, parked, consistent = _blocked(kind)
        finally_ran = []

        def victim():
            try:
                call()
            finally:
                finally_ran.append(True)

        t = lwp.spawn(victim, bound=(where == "cross_lwp"))
        wait_until(parked)
        assert t.cancel() is True
        with pytest.raises(lwp.Cancelled):
            t.join(5)
        assert t.cancelled() and finally_ran == [True]
        assert consistent()
        assert t.cancel() is False  # already done

    run(main, lwps=2 if where == "cross_lwp" else 1)


@pytest.mark.parametrize("kind", BLOCKING)
def test_timeout_around_blocking_call(kind):
    def main():
        call, parked, consistent = _blocked(kind)
        with pytest.raises(lwp.Timeout):
            with lwp.Timeout(0.02):
                call()
        assert consistent()
        with lwp.Timeout(0.02, silent=True) as to:
            call()
        assert to.expired and consistent()

    run(main)


def test_cancelled_lock_waiter_never_owns_the_lock():
    """Hand-off and cancellation race, many times: the lock ends either with the
    waiter (which then releases it) or free, never locked by nobody."""
    def main():
        outcomes = {"got": 0, "cancelled": 0}
        for i in range(300):
            lock = lwp.Lock()
            lock.acquire()
            got = []

            def waiter():
                lock.acquire()
                got.append(True)
                lock.release()

            t = lwp.spawn(waiter)
            wait_until(lambda: len(lock._waiters) == 1)
            if i % 3 == 0:
                t.cancel()
                lock.release()
            elif i % 3 == 1:
                lock.release()
                t.cancel()
            else:  # from two kernel threads at once
                canceller = lwp.spawn(t.cancel, bound=True)
                lock.release()
                canceller.join(5)
            try:
                t.join(5)
            except lwp.Cancelled:
                pass
            assert not lock.locked() and not lock._waiters, i
            assert t.cancelled() != bool(got), i
            outcomes["cancelled" if t.cancelled() else "got"] += 1
        return outcomes

    outcomes = run(main, lwps=2, seed=7)
    assert outcomes["got"] + outcomes["cancelled"] == 300
    assert outcomes["got"] > 0 and outcomes["cancelled"] > 0


def test_cancelled_semaphore_waiter_loses_no_unit():
    def main():
        for i in range(200):
            sem = lwp.Semaphore(0)
            t1 = lwp.spawn(sem.acquire)
            t2 = lwp.spawn(sem.acquire, timeout=10)
            wait_until(lambda: len(sem._waiters) == 2)
            if i % 2:
                t1.cancel()
                sem.release()
            else:
                sem.release()
                t1.cancel()
            try:
                first = t1.join(5)
            except lwp.Cancelled:
                first = None
            if first:  # t1 got the unit before the cancellation landed
                sem.release()
            assert t2.join(5) is True, i
            assert sem._value == 0 and not sem._waiters, i

    run(main, lwps=2, seed=3)


@pytest.mark.parametrize("lock_kind", ["Lock", "RLock"])
def test_condition_cancelled_while_reacquiring_keeps_lock_consistent(lock_kind):
    """Notified, then cancelled while waiting to take the lock back: wait raises
    Cancelled holding the lock (an RLock with its owner and recursion level), so
    the ``with`` block releases it cleanly."""
    def main():
        lock = lwp.Lock() if lock_kind == "Lock" else lwp.RLock()
        cond = lwp.Condition(lock)
        seen = []

        def victim():
            with cond:
                with cond if lock_kind == "RLock" else _nothing():
                    try:
                        cond.wait()
                    except lwp.Cancelled:
                        seen.append(cond._is_owned())
                        if lock_kind == "RLock":
                            seen.append(lock._count)
                        raise

        t = lwp.spawn(victim)
        wait_until(lambda: len(cond._waiters) == 1)
        with cond:
            cond.notify()
            # victim is woken and now waits for the lock main holds
            wait_until(lambda: len((lock._lock if lock_kind == "RLock" else lock)._waiters) == 1)
            t.cancel()
            lwp.sleep(0.01)
        with pytest.raises(lwp.Cancelled):
            t.join(5)
        assert _free(lock)
        assert lwp.spawn(lambda: cond.acquire(False)).join(5) is True
        return seen

    assert run(main) == ([True, 2] if lock_kind == "RLock" else [True])


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_condition_notified_then_cancelled_waiter_passes_the_notification_on():
    """As POSIX asks of pthread_cond_wait: a waiter cancelled after a notify()
    chose it does not swallow the notification while others wait."""
    def main():
        cond = lwp.Condition(lwp.Lock())
        items = []

        def consumer():
            with cond:
                while not items:
                    cond.wait()
                return items.pop()

        first = lwp.spawn(consumer)
        wait_until(lambda: len(cond._waiters) == 1)
        second = lwp.spawn(consumer)
        wait_until(lambda: len(cond._waiters) == 2)
        with cond:
            items.append("x")
            cond.notify()  # chooses first
            wait_until(lambda: len(cond._lock._waiters) == 1)
            first.cancel()
            lwp.sleep(0.01)
        with pytest.raises(lwp.Cancelled):
            first.join(5)
        return second.join(5)

    assert run(main) == "x"


class _Interrupt(Exception):
    pass


def _signal_main_thread_when(ready, handler):
    """Install ``handler`` for SIGUSR1; a helper thread sends it to this (the main)
    thread once ``ready()`` holds.  Returns (helper thread, restore function)."""
    old = signal.signal(signal.SIGUSR1, handler)
    main_ident = threading.get_ident()

    def trigger():
        wait_until(ready, 10)
        signal.pthread_kill(main_ident, signal.SIGUSR1)

    helper = threading.Thread(target=trigger)
    helper.start()
    return helper, lambda: signal.signal(signal.SIGUSR1, old)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach only the main thread")
def test_condition_os_waiter_interrupted_by_signal_passes_a_notification_on():
    """An OS thread in Condition.wait, chosen by notify() just as a signal
    handler raises in it: the notification goes to the next waiter."""
    cond = lwp.Condition(lwp.Lock())
    items, got = [], []

    def second():
        with cond:
            got.append(cond.wait(10))  # True only if notified
            got.append(list(items))

    t2 = threading.Thread(target=second)

    def handler(signum, frame):
        with cond:
            items.append("x")
            cond.notify()  # chooses the main thread, first in line
        raise _Interrupt

    def ready():
        if not t2.ident:
            t2.start()  # second in line, once main waits
        return len(cond._waiters) == 2

    helper, restore = _signal_main_thread_when(lambda: len(cond._waiters) == 1 and ready(),
                                               handler)
    try:
        with pytest.raises(_Interrupt):
            with cond:
                cond.wait(30)
    finally:
        helper.join(10)
        t2.join(10)
        restore()
    assert got == [True, ["x"]]


@pytest.mark.parametrize("mod", [threading, lwp], ids=["threading", "lwp"])
def test_negative_wait_timeout_means_do_not_wait_like_threading(mod):
    """threading's Event, Condition and Semaphore take a negative timeout as
    "do not wait" (threading.Timer(-1, f) fires at once; a deadline already
    past is common): lwp's, which replace them under lwp.monkey, must too."""
    def check():
        assert mod.Event().wait(-1) is False
        cond = mod.Condition()
        with cond:
            assert cond.wait(-0.5) is False
            assert cond._is_owned()
        assert mod.Semaphore(0).acquire(timeout=-1) is False
        assert mod.Semaphore(1).acquire(timeout=-1) is True
        with pytest.raises(threading.BrokenBarrierError):
            mod.Barrier(2).wait(-1)

    check()  # from an OS thread
    if mod is lwp:
        run(check)  # and from a green thread


@pytest.mark.parametrize("make", [threading.RLock, lwp.RLock], ids=["threading", "lwp"])
def test_rlock_argument_errors_even_when_owned(make):
    rl = make()
    rl.acquire()
    with pytest.raises(ValueError):
        rl.acquire(False, 1)
    with pytest.raises(ValueError):
        rl.acquire(timeout=-3)
    rl.release()
    with pytest.raises(RuntimeError):
        rl.release()  # the failed calls did not count as acquisitions


@pytest.mark.parametrize("make", [threading.Lock, lwp.Lock, threading.RLock, lwp.RLock],
                         ids=["threading.Lock", "lwp.Lock", "threading.RLock", "lwp.RLock"])
def test_lock_timeout_values_like_threading(make):
    lock = make()
    with pytest.raises(ValueError):
        lock.acquire(timeout=float("nan"))
    with pytest.raises(OverflowError):
        lock.acquire(timeout=TIMEOUT_MAX * 2)
    with pytest.raises(OverflowError):
        lock.acquire(timeout=math.inf)
    assert lock.acquire(timeout=TIMEOUT_MAX) is True
    lock.release()


def test_contended_lock_with_nan_timeout_raises_in_green_thread():
    def main():
        lock = lwp.Lock()
        lock.acquire()
        with pytest.raises(ValueError):
            lock.acquire(timeout=float("nan"))
        assert not lock._waiters

    run(main)


def test_long_timeout_does_not_kill_the_lwp():
    """A timer more than 2**31 ms away once reached epoll.poll() and killed the LWP."""
    # 30 days is a valid threading timeout (far below TIMEOUT_MAX).  Run in a
    # child process: the dead LWP would hang this one.
    code = textwrap.dedent("""
        import os, threading, lwp
        threading.excepthook = lambda args: os._exit(3)  # a kernel thread (an LWP) died
        def main():
            ev = lwp.Event()
            threading.Timer(0.05, ev.set).start()
            return ev.wait(30 * 86400)
        print(lwp.run(main, lwps=1))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "True"), proc.stderr


# ---------------------------------------------------------------------------------------------
# Stress (-m stress): many green threads, 1/2/4 LWPs, randomized scheduling
# ---------------------------------------------------------------------------------------------

STRESS = [pytest.param(n, seed, id=f"lwps{n}-seed{seed}")
          for n in (1, 2, 4) for seed in (None, 1, 2)]
N_THREADS = 10_000


def _join_all(threads, timeout=60):
    deadline = time.monotonic() + timeout
    return [t.join(max(0.0, deadline - time.monotonic())) for t in threads]


@pytest.mark.stress
@pytest.mark.parametrize("lwps,seed", STRESS)
def test_stress_lock_counter(lwps, seed):
    def main():
        lock = lwp.Lock()
        state = {"n": 0, "inside": 0, "max_inside": 0}

        def worker():
            for _ in range(3):
                with lock:
                    state["inside"] += 1
                    state["max_inside"] = max(state["max_inside"], state["inside"])
                    n = state["n"]
                    lwp.checkpoint()  # a switch inside the critical section
                    state["n"] = n + 1
                    state["inside"] -= 1

        _join_all([lwp.spawn(worker) for _ in range(N_THREADS)])
        return state

    state = run(main, lwps=lwps, seed=seed)
    assert state == {"n": 3 * N_THREADS, "inside": 0, "max_inside": 1}


@pytest.mark.stress
@pytest.mark.parametrize("lwps,seed", STRESS)
def test_stress_semaphore_never_more_than_k(lwps, seed):
    k = 7

    def main():
        sem = lwp.BoundedSemaphore(k)
        guard = lwp.Lock()  # the counts are touched from several LWPs
        state = {"inside": 0, "max": 0, "passes": 0}

        def worker():
            with sem:
                with guard:
                    state["inside"] += 1
                    state["max"] = max(state["max"], state["inside"])
                lwp.checkpoint()
                with guard:
                    state["inside"] -= 1
                    state["passes"] += 1

        _join_all([lwp.spawn(worker) for _ in range(N_THREADS)])
        return state, sem._value

    state, value = run(main, lwps=lwps, seed=seed)
    assert state["passes"] == N_THREADS and state["inside"] == 0
    assert 1 <= state["max"] <= k and value == k


@pytest.mark.stress
@pytest.mark.parametrize("lwps,seed", STRESS)
def test_stress_condition_producer_consumer(lwps, seed):
    """5,000 producers and 5,000 consumers (10,000 green threads) through a
    bounded buffer guarded by two Conditions on one Lock, notify() only: no
    item lost or duplicated, no wake-up lost (a lost one hangs the test)."""
    producers = consumers = 5_000
    per = 2

    def main():
        lock = lwp.Lock()
        not_full, not_empty = lwp.Condition(lock), lwp.Condition(lock)
        buf, got = [], []
        capacity = 16

        def produce(p):
            for i in range(per):
                with not_full:
                    while len(buf) >= capacity:
                        assert not_full.wait(60)
                    buf.append((p, i))
                    not_empty.notify()

        def consume():
            for _ in range(per):
                with not_empty:
                    while not buf:
                        assert not_empty.wait(60)
                    got.append(buf.pop(0))
                    not_full.notify()

        ts = [lwp.spawn(consume) for _ in range(consumers)]
        ts += [lwp.spawn(produce, p) for p in range(producers)]
        _join_all(ts)
        return got, buf

    got, buf = run(main, lwps=lwps, seed=seed)
    assert not buf
    assert sorted(got) == [(p, i) for p in range(producers) for i in range(per)]


@pytest.mark.stress
@pytest.mark.parametrize("lwps,seed", STRESS)
def test_stress_condition_many_waiters(lwps, seed):
    """Threads wait on one Condition for their turn, woken by notify_all."""
    def main():
        cond = lwp.Condition()
        state = {"turn": 0}
        order = []

        def worker(i):
            with cond:
                assert cond.wait_for(lambda: state["turn"] == i, timeout=60)
                order.append(i)
                state["turn"] += 1
                cond.notify_all()

        # Spawned in reverse so that most must wait; turn 0 goes last.
        n = 300  # every notify_all wakes all N waiters: O(N^2) wake-ups in all
        ts = [lwp.spawn(worker, i) for i in reversed(range(n))]
        _join_all(ts)
        return order, n

    order, n = run(main, lwps=lwps, seed=seed)
    assert order == list(range(n))


EVENT_PAIRS = 50_000  # per run; one million would take about a minute per run here


@pytest.mark.stress
@pytest.mark.parametrize("lwps,seed", [pytest.param(n, s, id=f"lwps{n}-seed{s}")
                                       for n in (2, 4) for s in (None, 5)])
def test_stress_event_ping_pong_across_lwps(lwps, seed):
    """Set/wait pairs between two green threads on different LWPs; none lost."""
    def main():
        pings = [lwp.Event() for _ in range(EVENT_PAIRS)]
        pongs = [lwp.Event() for _ in range(EVENT_PAIRS)]

        def ponger():
            here = lwp.current()._lwp
            for ping, pong in zip(pings, pongs):
                assert ping.wait(30)
                pong.set()
            return here

        t = lwp.spawn(ponger, bound=True)
        for ping, pong in zip(pings, pongs):
            ping.set()
            assert pong.wait(30)
        there = t.join(30)
        assert there is not lwp.current()._lwp
        return sum(e.is_set() for e in pings + pongs)

    assert run(main, lwps=lwps, seed=seed) == 2 * EVENT_PAIRS


@pytest.mark.parametrize("event_class", EVENT_CLASSES)
def test_event_at_fork_reinit_keeps_the_flag_drops_the_waiters(event_class):
    """threading._after_fork calls it on every Thread's _started (an lwp.Event once
    lwp.monkey patched threading); it was missing, which aborted _after_fork."""
    ev = event_class()
    mutex = getattr(ev, "_mutex", None)  # the reference's; the native Event's is the GIL
    if mutex is not None:
        mutex.acquire()  # held, as by a thread of the parent at the fork
    ev._waiters.append(object())
    ev._at_fork_reinit()
    assert not ev.is_set() and ev._waiters == []
    assert mutex is None or not ev._mutex.locked()
    ev.set()
    ev._at_fork_reinit()
    assert ev.is_set() and ev.wait(0)
