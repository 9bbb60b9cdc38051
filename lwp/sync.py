"""Synchronization: ``Lock``, ``RLock``, ``Condition``, ``Semaphore``,
``BoundedSemaphore``, ``Event`` and ``Barrier``, with ``threading``'s signatures.

They work between green threads on the same or different LWPs, and between
green threads and plain OS threads: a green thread that waits parks (its LWP
runs others), an OS thread that waits blocks on a kernel lock.  Code ports from
``threading`` by changing the import.

Each primitive keeps its state under a short internal mutex, never held while
waiting, and a FIFO of one-shot waiters (see :mod:`lwp._core.park`).  With
the native park door, ``Event`` is in C (``csrc/event_py.c``, see
:class:`Event`), where the GIL is that mutex.  Releasing
a ``Lock`` or a ``Semaphore`` hands it straight to the first waiter still
waiting, so waiters are served in order and a waiter that times out or is
cancelled at the same moment can never swallow the hand-off.
"""

import threading
import time
from _thread import TIMEOUT_MAX, allocate_lock
from collections import deque

from ._core import park
from ._core.park import TIMED_OUT, current, waiter

BrokenBarrierError = threading.BrokenBarrierError

__all__ = ["Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier",
           "BrokenBarrierError"]


def _timeout_arg(blocking, timeout):
    """Map ``threading``'s (blocking, timeout=-1) convention to seconds or None."""
    if timeout is None or timeout == -1:
        return None
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    if timeout > TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    return timeout


def _wait_timeout(timeout):
    """A ``wait``/``acquire`` timeout as threading's Condition, Event and
    Semaphore take it: None waits forever, a negative number does not wait
    (``threading.Timer(-1, f)`` runs at once), NaN is refused."""
    if timeout is None:
        return None
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    return max(timeout, 0)


def _wait_for_handoff(mutex, waiters, w, timeout, give_back):
    """Wait on ``w`` for a hand-off; return True if it came, False on timeout.

    On timeout or exception ``w`` leaves ``waiters``.  If a hand-off reached an
    OS thread at the instant a signal interrupted it (``w.late``), it is passed
    on with ``give_back()`` before the exception propagates.
    """
    try:
        got = w.wait(timeout)
    except BaseException:
        _discard(mutex, waiters, w)
        if w.late is not None:
            give_back()
        raise
    if got is TIMED_OUT:
        _discard(mutex, waiters, w)
        return False
    return True


def _discard(mutex, waiters, w):
    """Take ``w`` out of ``waiters`` under ``mutex``, unless a waker already did."""
    with mutex:
        try:
            waiters.remove(w)
        except ValueError:
            pass


def _hand_off(waiters):
    """Wake the first live waiter in ``waiters`` (caller holds the mutex)."""
    while waiters:
        if waiters.popleft().wake(True):
            return True
    return False


class Lock:
    """A mutual-exclusion lock, like :class:`threading.Lock`.

    Not owned: any thread may release it.  Waiters acquire it in FIFO order.
    """

    __slots__ = ("_mutex", "_locked", "_waiters", "__weakref__")

    def __init__(self):
        self._mutex = allocate_lock()
        self._locked = False
        self._waiters = deque()

    def __repr__(self):
        return f"<lwp.Lock {'locked' if self._locked else 'unlocked'} waiters={len(self._waiters)}>"

    def acquire(self, blocking=True, timeout=-1):
        """Acquire; with ``blocking=False`` or a ``timeout``, return False on failure."""
        timeout = _timeout_arg(blocking, timeout)
        with self._mutex:
            if not self._locked:
                self._locked = True
                return True
            if not blocking:
                return False
            w = waiter()
            self._waiters.append(w)
        return _wait_for_handoff(self._mutex, self._waiters, w, timeout, self.release)

    def release(self):
        """Release; raise RuntimeError if the lock is not locked."""
        with self._mutex:
            if not self._locked:
                raise RuntimeError("release unlocked lock")
            if not _hand_off(self._waiters):
                self._locked = False

    def locked(self):
        return self._locked

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()

    def _at_fork_reinit(self):
        self.__init__()


class RLock:
    """A reentrant lock owned by the green thread (or OS thread) that holds it."""

    def __init__(self):
        self._lock = Lock()
        self._owner = None
        self._count = 0

    def __repr__(self):
        return f"<lwp.RLock owner={self._owner!r} count={self._count}>"

    def acquire(self, blocking=True, timeout=-1):
        _timeout_arg(blocking, timeout)  # bad arguments fail even when the call would not wait
        me = _me()
        if self._owner == me:  # ==: an OS thread's ident is an int, a new object each time
            self._count += 1
            return True
        if not self._lock.acquire(blocking, timeout):
            return False
        self._owner, self._count = me, 1
        return True

    def release(self):
        if self._owner != _me():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()

    def _is_owned(self):
        return self._owner == _me()

    def _release_save(self):
        if not self._is_owned():
            raise RuntimeError("cannot release un-acquired lock")
        state, self._owner, self._count = (self._owner, self._count), None, 0
        self._lock.release()
        return state

    def _acquire_restore(self, state):
        try:
            _acquire_resisting(self._lock)  # raises only once the lock is held again
        finally:
            self._owner, self._count = state


def _me():
    """Identity of the calling thread: its GreenThread, or its OS thread id."""
    return current() or threading.get_ident()


def _acquire_resisting(lock):
    """Acquire ``lock`` even if cancelled meanwhile, then re-raise the cancellation.

    Used where a lock must be held again on the way out (``Condition.wait``):
    leaving without it would break the caller's ``with`` block.
    """
    pending = None
    while True:
        try:
            lock.acquire()
            break
        except BaseException as e:  # noqa: B036
            pending = e
    if pending is not None:
        raise pending


class Condition:
    """A condition variable, like :class:`threading.Condition`.

    ``lock`` defaults to a new :class:`RLock`; a :class:`Lock` works too.
    ``wait`` always returns holding the lock again, even when it raises.
    """

    def __init__(self, lock=None):
        self._lock = lock if lock is not None else RLock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._mutex = allocate_lock()
        self._waiters = deque()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)

    def __repr__(self):
        return f"<lwp.Condition({self._lock!r}) waiters={len(self._waiters)}>"

    def _is_owned(self):
        if hasattr(self._lock, "_is_owned"):
            return self._lock._is_owned()
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def wait(self, timeout=None):
        """Release the lock, wait for ``notify`` or ``timeout``, re-acquire.

        Returns False if the timeout passed, True otherwise.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        timeout = _wait_timeout(timeout)
        w = waiter()
        with self._mutex:
            self._waiters.append(w)
        if hasattr(self._lock, "_release_save"):
            saved = self._lock._release_save()
            restore = self._lock._acquire_restore
        else:
            self._lock.release()
            saved, restore = None, lambda _: _acquire_resisting(self._lock)
        try:
            notified = w.wait(timeout) is not TIMED_OUT
        except BaseException:
            # A notification that reached an OS thread as a signal interrupted it
            # (w.late) is passed on: the exception means it will not be reported.
            self._leave(w, restore, saved, w.late is not None, raising=True)
            raise
        self._leave(w, restore, saved, notified, raising=False)
        return notified

    def _leave(self, w, restore, saved, notified, raising):
        """Forget ``w`` and take the lock back; pass on a notification the
        caller will not see because it is about to raise."""
        _discard(self._mutex, self._waiters, w)
        try:
            restore(saved)
        except BaseException:
            # Cancelled (or timed out) while taking the lock back after a notify
            # chose us: as POSIX asks of pthread_cond_wait, the notification is
            # not lost with us but goes to another waiter.
            if notified:
                self._notify_one()
            raise
        if raising and notified:
            self._notify_one()

    def _notify_one(self):
        with self._mutex:
            while self._waiters:
                if self._waiters.popleft().wake(True):
                    return

    def wait_for(self, predicate, timeout=None):
        """Wait until ``predicate()`` is true; return its last value."""
        endtime = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            if endtime is not None:
                remaining = endtime - time.monotonic()
                if remaining <= 0:
                    break
                self.wait(remaining)
            else:
                self.wait()
            result = predicate()
        return result

    def notify(self, n=1):
        """Wake up to ``n`` threads waiting on this condition."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        with self._mutex:
            while n > 0 and self._waiters:
                if self._waiters.popleft().wake(True):
                    n -= 1

    def notify_all(self):
        self.notify(len(self._waiters))

    notifyAll = notify_all


class Semaphore:
    """A counting semaphore, like :class:`threading.Semaphore`; FIFO hand-off."""

    def __init__(self, value=1):
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
        self._mutex = allocate_lock()
        self._waiters = deque()

    def __repr__(self):
        return f"<lwp.{type(self).__name__} value={self._value} waiters={len(self._waiters)}>"

    def acquire(self, blocking=True, timeout=None):
        """Decrement, waiting while the value is zero; False on timeout/non-blocking."""
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        timeout = _wait_timeout(timeout)
        with self._mutex:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return True
            if not blocking:
                return False
            w = waiter()
            self._waiters.append(w)
        return _wait_for_handoff(self._mutex, self._waiters, w, timeout, self.release)

    __enter__ = acquire

    def release(self, n=1):
        """Increment by ``n``, handing units to waiters first."""
        if n < 1:
            raise ValueError("n must be one or more")
        with self._mutex:
            self._check_release(n)
            for _ in range(n):
                if not _hand_off(self._waiters):
                    self._value += 1

    def _check_release(self, n):
        pass

    def __exit__(self, *exc):
        self.release()


class BoundedSemaphore(Semaphore):
    """A semaphore whose ``release`` raises ValueError above the initial value."""

    def __init__(self, value=1):
        super().__init__(value)
        self._initial = value

    def _check_release(self, n):
        if self._value + n > self._initial:
            raise ValueError("Semaphore released too many times")


class Event:
    """A flag threads can wait for, like :class:`threading.Event`.

    This class is the reference; with the native park door (see
    :mod:`lwp._core.park`) ``lwp.Event`` is its C transcription
    (``csrc/event_py.c``), with the same methods and guarantees.
    """

    __slots__ = ("_flag", "_mutex", "_waiters")

    def __init__(self):
        self._flag = False
        self._mutex = allocate_lock()
        self._waiters = []

    def __repr__(self):
        return f"<lwp.Event {'set' if self._flag else 'unset'} waiters={len(self._waiters)}>"

    def is_set(self):
        return self._flag

    isSet = is_set

    def set(self):
        """Set the flag and wake every waiter."""
        # acquire/try/finally rather than `with`: half the cost on this hot path.
        mutex = self._mutex
        mutex.acquire()
        try:
            self._flag = True
            waiters = self._waiters
            if not waiters:
                return
            self._waiters = []
        finally:
            mutex.release()
        for w in waiters:
            w.wake(True)

    def clear(self):
        self._flag = False

    def wait(self, timeout=None):
        """Wait until the flag is set; return it (False only on timeout)."""
        if self._flag:
            return True
        if timeout is not None:
            timeout = _wait_timeout(timeout)
        w = waiter()
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._flag:
                return True
            self._waiters.append(w)
        finally:
            mutex.release()
        try:
            got = w.wait(timeout)
        except BaseException:
            _discard(self._mutex, self._waiters, w)
            raise
        if got is TIMED_OUT:
            _discard(self._mutex, self._waiters, w)
            return self._flag
        return True

    def _at_fork_reinit(self):
        # threading._after_fork calls it in a child process (on each Thread's
        # _started): the flag stays; the waiters, threads of the parent, and the
        # mutex, perhaps held by one of them, are gone.
        self._mutex = allocate_lock()
        self._waiters = []


PythonEvent = Event
"""The reference :class:`Event`, whichever is in use (for the tests)."""


def _load_native_event():
    """The native Event (``csrc/event_py.h``), if the native park door is in use."""
    if not park.NATIVE:
        return None
    from lwp._native import lib

    if lib.lwp_event_py_init(__name__.encode()) != 0:
        return None
    return _NativeEvent  # noqa: F821 - installed by lwp_event_py_init


Event = _load_native_event() or Event


class Barrier:
    """A barrier for ``parties`` threads, like :class:`threading.Barrier`.

    Raises :class:`lwp.BrokenBarrierError` (the ``threading`` class itself) when
    broken by ``abort``, a timeout or an exception in ``action``.
    """

    def __init__(self, parties, action=None, timeout=None):
        if parties < 1:
            raise ValueError("parties must be >= 1")
        self._cond = Condition(Lock())
        self._parties = parties
        self._action = action
        self._timeout = timeout
        self._state = 0  # 0 filling, 1 draining, -1 resetting, -2 broken
        self._count = 0

    def wait(self, timeout=None):
        """Wait for all parties; return this thread's arrival index (0..parties-1)."""
        if timeout is None:
            timeout = self._timeout
        with self._cond:
            self._enter()
            index = self._count
            self._count += 1
            try:
                if index + 1 == self._parties:
                    self._release()
                else:
                    self._wait(timeout)
                return index
            finally:
                self._count -= 1
                self._exit()

    def _enter(self):
        while self._state in (-1, 1):
            self._cond.wait()
        if self._state < 0:
            raise BrokenBarrierError

    def _release(self):
        try:
            if self._action:
                self._action()
            self._state = 1
            self._cond.notify_all()
        except BaseException:
            self._break()
            raise

    def _wait(self, timeout):
        if not self._cond.wait_for(lambda: self._state != 0, timeout):
            self._break()
            raise BrokenBarrierError
        if self._state < 0:
            raise BrokenBarrierError

    def _exit(self):
        if self._count == 0 and self._state in (-1, 1):
            self._state = 0
            self._cond.notify_all()

    def reset(self):
        """Return to the empty state; threads waiting get BrokenBarrierError."""
        with self._cond:
            if self._count > 0:
                if self._state == 0:
                    self._state = -1
                elif self._state == -2:
                    self._state = -1
            else:
                self._state = 0
            self._cond.notify_all()

    def abort(self):
        """Break the barrier: current and future waiters get BrokenBarrierError."""
        with self._cond:
            self._break()

    def _break(self):
        self._state = -2
        self._cond.notify_all()

    @property
    def parties(self):
        return self._parties

    @property
    def n_waiting(self):
        return self._count if self._state == 0 else 0

    @property
    def broken(self):
        return self._state == -2
