"""The one door into the scheduler: how a thread waits and how it is woken.

Everything in lwp that blocks (locks, queues, channels, sockets, sleeps, joins,
activations) goes through this module, and nothing else switches greenlets.  The
protocol is a *waiter*, made by the thread that is about to wait:

    w = waiter()             # 1. the waiting thread makes a one-shot waiter
    queue_of_waiters.append(w)   # 2. publishes it where a waker will find it
    value = w.wait(timeout)  # 3. and waits on it, exactly once

and any kernel thread may later call ``w.wake(value)`` (or ``w.wake(exc=e)``).
Guarantees:

* ``wake`` returns True for exactly one call per waiter: the wake-up that counts.
  A wake-up that comes after a timeout, a cancellation or another wake-up returns
  False, so a primitive hands its token to the next waiter instead of losing it.
* A wake-up that comes before ``wait`` is not lost: ``wait`` returns at once.
* ``wait`` returns the woken value, or :data:`TIMED_OUT` when the timeout passes,
  or raises the exception given to ``wake``, or a pending :class:`lwp.Cancelled`
  / :class:`lwp.Timeout`.

In a green thread ``wait`` parks it: its LWP runs other threads meanwhile.  In a
plain OS thread (a thread not run by lwp) ``wait`` blocks that thread on a lock,
so the same primitives work between green threads and OS threads.

Two implementations of the green waiter exist: the Python one in this module,
which is the reference, and a transcription of its hot path in C
(``csrc/park_py.c``: :func:`waiter`, ``GreenWaiter.wake`` and ``wait`` with
the direct switch of ``LWP.park_current``), used when the native module is
built.  They keep the same locking and the same guarantees.  With the C
door come two more native parts: each LWP's lock (:func:`new_lock`) is a C
lock (``csrc/park_lock.c``) that the door takes without a method call, and
:class:`lwp.Event` is a C transcription of ``lwp.sync``'s (``csrc/event_py.c``)
that makes, wakes and waits on C waiters directly (``csrc/park_door.h``).
``LWP_NATIVE_PARK=0`` in the environment selects the Python ones, as on PyPy.
"""

import os

# Names are bound at import, before lwp.monkey can replace them: lwp's own
# machinery must keep the real kernel-level primitives.
from _thread import _local, allocate_lock
from functools import partial
from _thread import get_ident as _get_ident
from _thread import start_new_thread as _start_new_thread
from select import POLLIN, POLLOUT, poll
from time import sleep as _os_sleep

from .thread import DONE, PARKED, RUNNABLE, RUNNING  # noqa: F401 - RUNNING: for the native door

_new_object = object.__new__

TIMED_OUT = type("TimedOut", (), {"__repr__": lambda self: "TIMED_OUT", "__slots__": ()})()
"""Returned by ``wait`` when its timeout passed before any wake-up."""

_tls = _local()  # .lwp: the LWP run by this kernel thread, if any


# The LWP of the calling kernel thread, or None for a plain OS thread.  A
# partial of the builtin getattr: called on every socket call, it costs no
# Python frame.
current_lwp = partial(getattr, _tls, "lwp", None)


def set_lwp(lwp):
    """Make ``lwp`` (None: no LWP) the calling kernel thread's: ``_tls.lwp``,
    and its copy in the native door (``csrc/park_py.c``), which reads it
    without a ``threading.local`` look-up.  The only writer of both."""
    _tls.lwp = lwp
    if NATIVE:
        _native_set_lwp(lwp)  # noqa: F821 - installed by lwp_park_py_init


def current():
    """The calling green thread, or None when called from a plain OS thread."""
    lwp = getattr(_tls, "lwp", None)
    return lwp.current if lwp is not None else None


def waiter():
    """A one-shot waiter for the calling thread (green or OS), see the module doc."""
    lwp = getattr(_tls, "lwp", None)
    if lwp is not None:
        t = lwp.current
        if t is not None:
            w = _new_object(GreenWaiter)  # no __init__ call: this is the hot path
            w.thread = t
            w.outcome = None
            return w
    return OSWaiter()


class GreenWaiter:
    """Waiter of a green thread (made by :func:`waiter`).  ``wake`` may be called
    from any kernel thread.

    The waiter itself holds the outcome, so a waiter is independent of any other
    park of its thread: a stale wake-up can only settle its own, finished waiter.
    ``outcome`` and the thread's ``_waiting``/``_state`` are written under the
    owning LWP's lock; ``t._waiting is w`` means the thread is parked on ``w``
    and ``w.outcome`` is None.  The outcome is read without the lock once the
    thread runs again: whoever settled it did so under the lock before queueing
    the thread, and the LWP took that lock before resuming it.
    """

    __slots__ = ("thread", "outcome")  # outcome: None, then (value, exc) for good
    late = None  # see OSWaiter.late: a green thread never misses a delivered wake-up

    def wake(self, value=None, exc=None, timeout=-1):
        """Settle the outcome and queue the thread; see the module doc.

        Waits at most ``timeout`` seconds (-1: no limit) for the owning LWP's
        lock and returns None if it could not have it (see :func:`wake_or_defer`).
        """
        t = self.thread
        lwp = t._lwp  # fixed: the thread has started
        lock = lwp._lock
        if timeout < 0:
            lock.acquire()  # the hot path: no arguments to parse
        elif not lock.acquire(True, timeout):
            return None
        try:
            if self.outcome is not None or t._state is DONE:
                return False
            self.outcome = (value, exc)
            if t._waiting is self:
                t._waiting = None
                if _get_ident() == lwp.ident:  # the common, local case, inlined
                    t._state = RUNNABLE
                    lwp._runq.append(t)
                else:
                    lwp._make_runnable(t)
            return True
        finally:
            lock.release()

    def wait(self, timeout=None):
        t = self.thread
        lwp = t._lwp
        timer = None if timeout is None else lwp.call_later(timeout, self.wake, TIMED_OUT)
        parking = False
        lock = lwp._lock
        lock.acquire()
        try:
            if self.outcome is None:
                exc = t._pending_exc
                if exc is None:
                    t._state = PARKED
                    t._waiting = self
                    parking = True
                else:
                    t._pending_exc = None
                    self.outcome = (None, exc)
        finally:
            lock.release()
        # Decided under the lock: once _waiting is published a waker may queue the
        # thread at once, so it must park even if it is already runnable again.
        if parking:
            lwp.park_current()
        value, exc = self.outcome
        if timer is not None:
            timer.cancel()
        if exc is not None:
            raise exc
        return value


class OSWaiter:
    """Waiter of a plain OS thread, blocking on a lock; ``wake`` from any thread."""

    __slots__ = ("_claim", "_lock", "_outcome", "late")

    def __init__(self):
        self._claim = allocate_lock()  # acquired by whoever settles the outcome, once
        self._lock = allocate_lock()   # released to let wait() return
        self._lock.acquire()
        self._outcome = None
        self.late = None  # outcome of a wake-up that raced with an interrupting signal

    def wake(self, value=None, exc=None, timeout=-1):
        """Settle the outcome and let ``wait`` return; never waits for a lock."""
        if not self._claim.acquire(False):
            return False
        self._outcome = (value, exc)
        self._lock.release()
        return True

    def wait(self, timeout=None):
        try:
            acquired = self._lock.acquire(True, -1 if timeout is None else timeout)
        except BaseException:  # a signal handler raised (KeyboardInterrupt)
            if not self._claim.acquire(False):
                self._lock.acquire()
                self.late = self._outcome
            raise
        if not acquired:
            if self._claim.acquire(False):
                return TIMED_OUT
            self._lock.acquire()  # a wake-up won the race; its outcome is on the way
        value, exc = self._outcome
        if exc is not None:
            raise exc
        return value


def wake_or_defer(w, value, on_miss):
    """``w.wake(value)`` without waiting for a lock the calling kernel thread may hold.

    For code the garbage collector may run (a ``__del__`` or a weakref
    callback), which can interrupt lwp itself inside a critical section under
    an LWP's lock: ``w.wake`` would wait for that lock forever.  Returns True
    or False as ``w.wake`` does, or None if the lock was busy: the wake-up is
    then done soon, outside any critical section, by the calling LWP's hub (or,
    from a plain OS thread, by a short-lived helper kernel thread), which calls
    ``on_miss()`` if it did not count.
    """
    here = getattr(_tls, "lwp", None)
    woke = w.wake(value, None, 0 if here is not None else _OS_THREAD_PATIENCE)
    if woke is None:
        if here is not None:
            # Lock-free append by the owner: see the ownership notes of lwp.py.
            here._calls.append((_deferred_wake, (w, value, on_miss)))
        else:
            _start_new_thread(_deferred_wake, (w, value, on_miss))
    return woke


# A plain OS thread has no hub to defer to: it waits this long for the lock
# (another kernel thread holds it for microseconds) before deciding that it
# interrupted its holder and handing the wake-up to a helper thread.
_OS_THREAD_PATIENCE = 0.005


def _deferred_wake(w, value, on_miss):
    if not w.wake(value):
        on_miss()


def checkpoint():
    """A scheduling point that does not wait: let the LWP's other threads run.

    Raises a pending :class:`lwp.Cancelled` or :class:`lwp.Timeout`.  In a plain
    OS thread it only gives up the GIL for a moment.
    """
    lwp = getattr(_tls, "lwp", None)
    t = lwp.current if lwp is not None else None
    if t is None:
        _os_sleep(0)
        return
    with lwp._lock:
        exc, t._pending_exc = t._pending_exc, None
        if exc is None:
            t._state = RUNNABLE
    if exc is not None:
        raise exc
    lwp._runq.append(t)
    lwp.park_current()


def wait_readable(fd, timeout=None):
    """Wait until ``fd`` is readable (or hung up); False if ``timeout`` passed.

    In a green thread this parks on the LWP's epoll; in a plain OS thread it
    blocks in ``poll(2)``.  A True return is a hint, not a promise: retry the
    non-blocking call and wait again on ``EAGAIN``.  Several threads may wait
    on one fd: each readiness event wakes one, first come first served.
    Raises ``OSError(EBADF)`` if :func:`fd_closing` is called for ``fd``
    meanwhile.
    """
    return _wait_fd(fd, False, timeout)


def wait_writable(fd, timeout=None):
    """Wait until ``fd`` is writable; see :func:`wait_readable`."""
    return _wait_fd(fd, True, timeout)


def _wait_fd(fd, write, timeout):
    lwp = getattr(_tls, "lwp", None)
    if lwp is not None and lwp.current is not None:
        return lwp.wait_fd(fd, write, timeout)
    p = poll()
    p.register(fd, POLLOUT if write else POLLIN)
    return bool(p.poll(None if timeout is None else timeout * 1000))


def fd_reused(fd):
    """Call when a new socket object takes descriptor ``fd``: forgets what the
    pollers knew of an earlier file with that number that was closed without
    :func:`fd_closing` (collected, or closed with ``os.close``).  Lock-free and
    cheap when no poller watched the number."""
    lwp = getattr(_tls, "lwp", None)
    _poller.fd_reused(fd, lwp._poller if lwp is not None else None)


def fd_closing(fd):
    """Call before closing ``fd``: threads waiting on it wake with ``OSError(EBADF)``.

    Waiters on the caller's LWP are woken before this returns, those on other
    LWPs soon after; either way no thread stays parked on the closed fd, and a
    new file that reuses the fd number never gets a stale waiter or wake-up
    (see :mod:`lwp._core.poller`).  Only LWPs that have waited on ``fd`` are
    disturbed.  Cheap enough to call on every close.
    """
    lwp = getattr(_tls, "lwp", None)
    _poller.fd_closing(fd, lwp._poller if lwp is not None else None)


def _load_native():
    """Install the native door (``csrc/park_py.h``): ``_native_waiter``,
    ``_NativeGreenWaiter``, ``_NativeLock``, ``_native_set_lwp`` and
    ``_native_lwp_type`` (which lwp._core.lwp calls with its class); True if
    it is there to be used."""
    if os.environ.get("LWP_NATIVE_PARK") == "0":
        return False
    try:
        from lwp._native import lib
    except ImportError:
        return False
    return hasattr(lib, "lwp_park_py_init") and lib.lwp_park_py_init(__name__.encode()) == 0


python_waiter = waiter
"""The reference :func:`waiter`, whichever is in use (for the tests)."""

NATIVE = _load_native()
new_lock = allocate_lock
"""A new lock for an LWP (its ``_lock``): with the native door on, the door's
own ``_NativeLock``, which its C takes without a method call and Python code
uses as a ``_thread.lock``."""
if NATIVE:
    waiter = _native_waiter  # noqa: F821 - installed by lwp_park_py_init
    new_lock = _NativeLock  # noqa: F821 - installed by lwp_park_py_init

# Last: the poller imports this module's waiter.  Imported here, not in the
# functions that use it, so that a socket closed by a finalizer at interpreter
# exit (when imports fail) still closes.
from . import poller as _poller  # noqa: E402
