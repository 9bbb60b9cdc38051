"""Activations: a blocking call runs on another kernel thread; its LWP runs on.

This is lwp's version of a scheduler activation (Anderson et al., 1991): when
a green thread makes a call that would block its kernel thread, the call is
handed to a kernel-level context of its own, the thread parks, the LWP keeps
running its other threads, and the completion wakes the thread through the
LWP's wake-up fd, like a wake-up from another LWP.  The scheduler hears of it
through the ``thread_blocked`` / ``thread_unblocked`` upcalls.

Two kinds of activation, per scheduler, both created on first use:

* **native**: C worker threads (``csrc/activations.c``) that never take the
  GIL, for regular-file I/O and name resolution.  Each LWP gets a completion
  queue tied to its eventfd; the hub drains it when the eventfd fires.
* **Python**: plain kernel threads, for :func:`lwp.blocking` (any callable).
  They need the GIL to run Python, but not while the callable waits in C.

A thread cancelled while its call is in flight wakes with ``Cancelled`` at
once.  The call itself cannot be recalled: it finishes on its activation and
its late result is dropped (a late ``open`` has its descriptor closed).  A job
not yet taken by a Python activation thread is not run at all.
"""

import os
from _thread import allocate_lock, start_new_thread
from threading import Condition as _Condition  # the real one: bound before lwp.monkey runs
from collections import deque

from . import park
from .exceptions import report_unraisable

NATIVE_THREADS = 8         # C workers per scheduler
PYTHON_THREADS_MAX = 64    # Python activation threads per scheduler, at most
PYTHON_IDLE_EXIT = 5.0     # seconds an idle Python activation thread lingers


class Activations:
    """The activation pools of one scheduler."""

    def __init__(self, sched):
        self._sched = sched
        self._lock = allocate_lock()
        self._native = None
        self._python = _PythonActivations(PYTHON_THREADS_MAX)

    def native_call(self, op, *args):
        """Run native ``op`` (an ``ActivationPool`` method name) for the calling green thread."""
        lwp = park.current_lwp()
        cq = lwp._completions
        if cq is None:
            cq = lwp._completions = self._completion_queue(lwp)
        w = park.waiter()
        getattr(self._native_pool(), op)(cq, (w, op), *args)
        return self._wait_blocked(w, op)

    def python_call(self, fn, args, kwargs):
        """Run ``fn(*args, **kwargs)`` on a Python activation thread for the calling green thread."""
        w = park.waiter()
        job = _Job(w, fn, args, kwargs)
        self._python.submit(job)
        try:
            return self._wait_blocked(w, getattr(fn, "__qualname__", repr(fn)))
        except BaseException:
            job.abandoned = True
            raise

    def _wait_blocked(self, w, call):
        sched, t = self._sched, w.thread
        sched.thread_blocked(t, call)
        try:
            return w.wait()
        finally:
            sched.thread_unblocked(t, call)

    def _native_pool(self):
        if self._native is None:
            with self._lock:
                if self._native is None:
                    from .native import ActivationPool

                    self._native = ActivationPool(NATIVE_THREADS)
        return self._native

    def _completion_queue(self, lwp):
        from .native import CompletionQueue

        cq = CompletionQueue(lwp._wakefd)
        lwp._wake_hooks.append(lambda: _deliver(cq))
        return cq

    def close(self, timeout):
        """Stop both pools (after every LWP has stopped)."""
        self._python.close(timeout)
        if self._native is not None:
            self._native.close()

    def stats(self):
        return {"python_threads": self._python._nthreads,
                "native_threads": self._native.size if self._native is not None else 0}


def _deliver(cq):
    """LWP hub: wake the thread of each finished native request."""
    for c in cq.drain():
        w, op = c.cookie
        if not w.wake(c.value, c.error) and op == "open" and c.error is None:
            os.close(c.value)  # its thread was cancelled: nobody will close it


class _Job:
    __slots__ = ("waiter", "fn", "args", "kwargs", "abandoned")

    def __init__(self, waiter, fn, args, kwargs):
        self.waiter, self.fn, self.args, self.kwargs = waiter, fn, args, kwargs
        self.abandoned = False

    def __call__(self):
        if self.abandoned:
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as e:  # noqa: B036 - delivered to the waiting thread
            self.waiter.wake(exc=e)
        else:
            self.waiter.wake(result)


class _PythonActivations:
    """A pool of Python kernel threads, grown on demand, shrunk when idle.

    ``submit`` never waits: it is called between making a waiter and waiting
    on it, where the calling green thread must not park (see park.py).  So the
    threads are started with ``_thread.start_new_thread``, which returns at
    once, not with ``threading.Thread.start``, which waits for the new thread
    (on an lwp Event, once ``lwp.monkey`` has patched ``threading``).
    """

    def __init__(self, max_threads):
        self._cond = _Condition(allocate_lock())
        self._jobs = deque()
        self._nthreads = 0     # under _cond
        self._running = set()  # jobs being run, under _cond (failed at fork)
        self._idle = 0
        self._max = max_threads
        self._closed = False

    def submit(self, job):
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is shutting down")
            self._jobs.append(job)
            if self._idle > len(self._jobs) - 1:
                self._cond.notify()
                return
            if self._nthreads < self._max:
                self._nthreads += 1
                start_new_thread(self._worker, ())

    def _worker(self):
        with self._cond:
            while True:
                while not self._jobs and not self._closed:
                    self._idle += 1
                    woke = self._cond.wait(PYTHON_IDLE_EXIT)
                    self._idle -= 1
                    if not woke and not self._jobs:
                        break
                if not self._jobs:
                    break
                job = self._jobs.popleft()
                self._running.add(job)
                self._cond.release()
                try:
                    job()
                except BaseException as e:  # noqa: B036
                    report_unraisable(e, job, "Exception in an lwp activation thread")
                finally:
                    self._cond.acquire()
                    self._running.discard(job)
            self._nthreads -= 1
            self._cond.notify_all()

    def close(self, timeout):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._nthreads == 0, timeout)


def blocking(fn, /, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` on an activation thread and return its result.

    For a call lwp cannot make cooperative (a C library that blocks, a slow
    ``os.stat`` on a network filesystem…): the calling green thread parks, and
    its LWP runs other threads until ``fn`` returns or raises, which this
    re-raises.  Cancelling the caller wakes it at once; ``fn`` itself runs to
    its end on the activation thread and its result is dropped.  From a plain OS
    thread, ``fn`` is simply called.
    """
    t = park.current()
    if t is None:
        return fn(*args, **kwargs)
    return t._lwp.sched.activations.python_call(fn, args, kwargs)


def native_call(op, *args):
    """Run a native activation op for the calling green thread (see native.py)."""
    return park.current_lwp().sched.activations.native_call(op, *args)
