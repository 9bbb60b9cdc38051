"""The green thread: a function call with a life cycle, run by one LWP.

A :class:`GreenThread` is created by :func:`lwp.spawn` in state ``new``: just the
function and its arguments, not yet a greenlet, so the scheduler may still place
it on any LWP or let an idle LWP steal it.  The first time an LWP runs it, the LWP
gives it a greenlet (a recycled one when it can); from then on the thread belongs
to that LWP for good, because a greenlet can only be switched to from the kernel
thread that created it.

State changes and the fields marked "owner lock" below are guarded by the lock of
the LWP that owns the thread (``thread._lwp._lock``); :func:`owner_locked` takes
it, following the thread if it is stolen meanwhile.
"""

import itertools
import sys
import traceback

import lwp  # for lwp.excepthook, which users replace; the package is in sys.modules already

from . import park
from .exceptions import Cancelled, InvalidStateError, report_unraisable

NEW = "new"            # spawned, no greenlet yet; may still move between LWPs
RUNNABLE = "runnable"  # in its LWP's run queue (or inbox)
RUNNING = "running"    # its greenlet is executing on its LWP
PARKED = "parked"      # suspended in park(); only a wake-up makes it runnable
DONE = "done"          # finished: result or exception is final

_ids = itertools.count(1)


class GreenThread:
    """A green thread, as returned by :func:`lwp.spawn`.

    Its methods may be called from any green thread or plain OS thread.  ``join``
    blocks the caller (cooperatively if it is a green thread); the others never
    block.
    """

    __slots__ = (
        "_name", "ident", "_fn", "_args", "_kwargs", "_bound",
        "_lwp",          # owning LWP; changes only while NEW (stealing), under both locks
        "_glet",         # greenlet, set by the owning LWP when it first runs the thread
        "_state",        # owner lock
        "_waiting",      # owner lock: the GreenWaiter it is parked on, or None
        "_pending_exc",  # owner lock: exception to raise at the next scheduling point
        "_result", "_exc",         # final once DONE
        "_joiners",      # owner lock: waiters and done-callbacks; () for none yet, None once DONE
        "_retrieved",    # the exception was seen by join()/result()/exception()
        "_preempt_off",  # depth of `with lwp.no_preempt()` sections
        "__weakref__",
    )

    def __init__(self, fn, args, kwargs, name=None, bound=False):
        self._exc = None  # first: __del__ reads it even if __init__ raises
        if not callable(fn):
            raise TypeError(f"spawn() needs a callable, got {type(fn).__name__}")
        self.ident = next(_ids)
        self._name = name  # None: the default name, made when asked (a string per thread costs ~66 B)
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._bound = bound
        self._lwp = None
        self._glet = None
        self._state = NEW
        self._waiting = None
        self._pending_exc = None
        self._result = None
        self._exc = None
        self._joiners = ()  # a list once someone joins: most threads are never joined while running
        self._retrieved = False
        self._preempt_off = 0

    @property
    def name(self):
        """The thread's name: the one given to :func:`lwp.spawn`, else ``GreenThread-<ident>``."""
        return f"GreenThread-{self.ident}" if self._name is None else self._name

    @name.setter
    def name(self, value):
        self._name = value

    def __repr__(self):
        where = f" on LWP-{self._lwp.index}" if self._lwp is not None else ""
        if self._state is DONE:
            how = "cancelled" if self.cancelled() else (
                f"raised {type(self._exc).__name__}" if self._exc is not None else "returned")
            return f"<GreenThread {self.name!r} done, {how}{where}>"
        return f"<GreenThread {self.name!r} {self._state}{where}>"

    # -- called by the owning LWP ------------------------------------------------

    def _run(self):
        """Run the function to completion on the current greenlet (owner LWP only)."""
        try:
            if self._pending_exc is not None:  # cancelled before it started
                raise self._take_pending()
            fn, args = self._fn, self._args
            # In CPython 3.11 and 3.12, fn(*args) is a C-level call that nests
            # a new eval loop: a C frame greenlet copies off the stack each
            # time the thread parks.  A plain call of a Python function is not.
            if self._kwargs:
                result = fn(*args, **self._kwargs)
            elif not args:
                result = fn()
            elif len(args) == 1:
                result = fn(args[0])
            else:
                result = fn(*args)
        except BaseException as e:  # noqa: B036 - every outcome is kept for join()
            if e.__traceback__ is not None:
                e.__traceback__ = e.__traceback__.tb_next  # drop this frame: no cycle
            self._finish(None, e)
        else:
            self._finish(result, None)

    def _take_pending(self):
        lwp = lock_owner(self)
        exc, self._pending_exc = self._pending_exc, None
        lwp._lock.release()
        return exc

    def _finish(self, result, exc):
        self._fn = self._args = self._kwargs = None
        lwp = lock_owner(self)
        self._result, self._exc = result, exc
        self._state = DONE
        joiners, self._joiners = self._joiners, None
        lwp._lock.release()
        for j in joiners:
            if callable(j):
                try:
                    j(self)
                except BaseException as e:  # noqa: B036
                    _report(self, e, "in a done-callback of")
            else:
                j.wake(self)

    def __del__(self):
        if self._exc is not None and not self._retrieved and not isinstance(self._exc, Cancelled):
            _report(self, self._exc, "in")

    # -- public API -----------------------------------------------------------------

    def done(self):
        """True once the thread has finished (returned, raised or was cancelled)."""
        return self._state is DONE

    def cancelled(self):
        """True if the thread finished because of :class:`lwp.Cancelled`."""
        return self._state is DONE and isinstance(self._exc, Cancelled)

    def join(self, timeout=None):
        """Wait for the thread to finish; return its result or raise its exception.

        Raises :class:`TimeoutError` if ``timeout`` seconds pass first (the thread
        keeps running), :class:`RuntimeError` when a thread joins itself.
        """
        if self._state is not DONE:
            if timeout is not None:
                _check_timeout(timeout)
            w = park.waiter()
            if getattr(w, "thread", None) is self:
                raise RuntimeError("a green thread cannot join itself")
            lwp = lock_owner(self)
            registered = self._add_joiner(w)
            lwp._lock.release()
            if registered:
                try:
                    got = w.wait(timeout)
                except BaseException:
                    self._forget_joiner(w)
                    raise
                if got is park.TIMED_OUT:
                    self._forget_joiner(w)
                    raise TimeoutError(f"{self!r} did not finish within {timeout} s")
        return self.result()

    def _forget_joiner(self, w):
        with owner_locked(self):
            if self._joiners is not None and w in self._joiners:
                self._joiners.remove(w)

    def result(self):
        """The return value, or raise the exception the thread ended with.

        Never blocks: raises :class:`lwp.InvalidStateError` if the thread is not done.
        """
        if self._state is not DONE:
            raise InvalidStateError(f"{self!r} has not finished")
        if self._exc is not None:
            self._retrieved = True
            raise self._exc
        return self._result

    def exception(self):
        """The exception the thread ended with, or None.  Never blocks."""
        if self._state is not DONE:
            raise InvalidStateError(f"{self!r} has not finished")
        self._retrieved = True
        return self._exc

    def add_done_callback(self, fn):
        """Call ``fn(thread)`` when the thread finishes (at once if it already has).

        The callback runs on the finishing thread's LWP, so it must not block.  An
        exception it raises is reported through :func:`lwp.excepthook`.
        """
        with owner_locked(self):
            if self._add_joiner(fn):
                return
        fn(self)

    def _add_joiner(self, j):
        """Register a waiter or callback for the end; False once DONE.  Owner lock held."""
        if self._joiners is None:
            return False
        if self._joiners:
            self._joiners.append(j)
        else:
            self._joiners = [j]
        return True

    def cancel(self):
        """Ask the thread to stop: :class:`lwp.Cancelled` is raised inside it.

        A thread that has not started never runs; one that is parked (on any LWP)
        wakes up with the exception; one that is running gets it at its next
        blocking point.  Returns False if the thread had already finished.
        """
        return self._throw(Cancelled())

    def _throw(self, exc):
        """Deliver ``exc`` to the thread at its next scheduling point (any kernel thread)."""
        with owner_locked(self) as lwp:
            if self._state is DONE:
                return False
            w = self._waiting
            if w is not None:  # parked, not woken yet: wake it with exc
                self._waiting = None
                w.outcome = (None, exc)
                lwp._make_runnable(self)
            else:
                self._pending_exc = exc
            return True


def lock_owner(thread):
    """Take the lock of the LWP that owns ``thread`` and return that LWP.

    The caller releases ``lwp._lock``.  A thread that has not started may be
    stolen by another LWP between reading ``thread._lwp`` and taking its lock,
    so the owner is checked again under the lock.  Never hold two LWP locks at
    once: that rule keeps the locks deadlock-free.
    """
    while True:
        lwp = thread._lwp
        lwp._lock.acquire()
        if thread._lwp is lwp:
            return lwp
        lwp._lock.release()


class owner_locked:
    """``with owner_locked(thread) as lwp:`` -- :func:`lock_owner` as a context manager."""

    __slots__ = ("_thread", "_lwp")

    def __init__(self, thread):
        self._thread = thread

    def __enter__(self):
        self._lwp = lock_owner(self._thread)
        return self._lwp

    def __exit__(self, *exc):
        self._lwp._lock.release()


def _check_timeout(timeout):
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be None or a number >= 0, got {timeout!r}")


class ExceptHookArgs:
    """What :func:`lwp.excepthook` receives, shaped like :class:`threading.ExceptHookArgs`."""

    __slots__ = ("exc_type", "exc_value", "exc_traceback", "thread", "context")

    def __init__(self, exc, thread, context):
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.thread = thread
        self.context = context


def excepthook(args):
    """Default hook: print the traceback of an exception that no one collected.

    Called once for a thread whose exception was never retrieved with ``join()``,
    ``result()`` or ``exception()`` (when the thread object is discarded), and for
    an exception raised by a done-callback.  Replace ``lwp.excepthook`` to route
    these elsewhere.
    """
    name = args.thread.name if args.thread is not None else "?"
    print(f"Exception {args.context} green thread {name!r}:", file=sys.stderr)
    traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback, file=sys.stderr)


def _report(thread, exc, context):
    hook = getattr(lwp, "excepthook", excepthook)
    try:
        hook(ExceptHookArgs(exc, thread, context))
    except BaseException as e:  # noqa: B036 - a broken hook must not kill an LWP
        report_unraisable(e, hook, "Exception in lwp.excepthook")

