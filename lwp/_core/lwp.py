"""The LWP: one kernel thread that runs green threads, and its queues.

Read the design essay in :mod:`lwp._core.scheduler` first; this module is the
kernel of it.  Each LWP is a kernel thread whose root greenlet is the *hub*: the
loop in :meth:`LWP._loop` that picks the next green thread and switches to it.
A green thread that blocks switches back to the hub (see :mod:`lwp._core.park`).

Ownership (who may touch what):

* owner only (the LWP's own kernel thread, no lock): ``_runq``, ``_timers``,
  ``_poller``, ``_spare``, ``_live``, ``current`` and the counters;
* under ``_lock``, from any kernel thread: ``_inbox`` (threads woken from other
  kernel threads), ``_calls`` (callbacks posted from other kernel threads; the
  owner may also append without the lock, as ``park.wake_or_defer`` does when
  the lock is busy: appends are atomic and only the owner swaps the deque out),
  ``_newq`` (threads not started yet; other LWPs steal from it), ``_sleeping``,
  and the wake-up fields of every thread this LWP owns.
"""

import heapq
import os
import threading
import time
from _thread import get_ident as _kernel_ident
from time import monotonic as _monotonic
from collections import deque

import greenlet

from . import park
from .poller import Poller
from .thread import DONE, NEW, RUNNABLE, RUNNING


class KernelThread(threading.Thread):
    """A :class:`threading.Thread` that is always a kernel thread.

    ``lwp.monkey.patch_threading(threads=True)`` makes every other
    ``threading.Thread`` a green thread; the LWPs and the monitor are these.
    """


_SPARE_GREENLETS = 256  # finished greenlets kept for reuse by new threads
_FAIRNESS_TICKS = 61    # every this many switches, poll I/O even if threads are runnable
DEFAULT_SPIN = 50e-6    # next to a CPU hog, wait this long for native completions before sleeping
_MAX_SPIN = 0.001       # what CompletionQueue.wait_ready allows (MAX_SPIN_NS in csrc/activations_py.c)
_IO_BUDGET = 32         # I/O calls a thread may make in a row without waiting (io_yield)


def default_spin():
    """``$LWP_SPIN_US`` microseconds (0: never spin), default 50: see ``completion_spin``."""
    env = os.environ.get("LWP_SPIN_US")
    return check_spin(float(env) / 1e6) if env else DEFAULT_SPIN


def check_spin(value):
    """Validate a ``completion_spin`` option: seconds from 0 (never spin) to 0.001.  Returns it."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 <= value <= _MAX_SPIN):
        raise ValueError(f"completion_spin must be a number of seconds from 0 to {_MAX_SPIN}, "
                         f"got {value!r}")
    return value


def _worker_entry():
    """The ``run`` of every worker greenlet: :meth:`LWP._worker` of this LWP.

    A plain function, not the bound method: greenlet would call a bound method
    through one more C frame, which it copies off the stack at every park
    (~150 B per parked thread).
    """
    park._tls.lwp._worker()


class Timer:
    """A callback the LWP runs at a given ``time.monotonic()`` (owner only)."""

    __slots__ = ("when", "seq", "fn", "args", "lwp")

    def __init__(self, when, seq, fn, args, lwp):
        self.when, self.seq, self.fn, self.args, self.lwp = when, seq, fn, args, lwp

    def __lt__(self, other):
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self):
        if self.fn is not None:
            self.fn = self.args = None
            self.lwp._timers_cancelled += 1


class LWP:
    """A kernel thread running green threads.  Made and started by the Scheduler."""

    # The fields the native park/wake door and socket path read and write
    # (csrc/park_py.c, csrc/io_py.c) are slots, which they reach at the
    # offsets their descriptors give; the others live in the instance dict.
    __slots__ = ("_lock", "_inbox", "_calls", "_newq", "_shuffle", "_runq", "_timers",
                 "ticks", "current", "ident", "_poller", "io_ticks", "io_left",
                 "__dict__", "__weakref__")

    def __init__(self, sched, index, kind="pooled"):
        self.sched = sched
        self.index = index
        self.kind = kind          # "pooled", "compensating" or "bound"
        self.ident = None         # kernel thread id, once started
        self.hub = None
        self.current = None       # the green thread running now, or None in the hub
        self._lock = park.new_lock()
        self._inbox = deque()
        self._calls = deque()
        self._newq = deque()
        self._sleeping = False
        self._shuffle = sched._rng is not None  # seeded random mode: the hub picks, always
        self._runq = deque()
        self._timers = []
        self._timers_cancelled = 0
        self._timer_seq = 0
        self._spare = []
        self._live = {}           # started, unfinished threads (a dict keeps order)
        self._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poller = Poller(self._wakefd, self)
        # For green threads of this LWP (owner only); see lwp._core.poller.
        self.wait_fd = self._poller.wait
        self.fd_ready = self._poller.ready
        self.fd_not_ready = self._poller.not_ready
        self._wake_hooks = []     # run by the hub when the wake-up fd fires
        self._completions = None  # native activation CompletionQueue, made on first use
        self.io_ticks = -1        # owner only: ``ticks`` when io_left was last reset
        self.io_left = 0          # owner only: I/O calls the running thread may still make
        self._exit = False        # owner only: leave the loop when idle
        self._retired = False     # under _lock: retired, push_new must go elsewhere
        self._thread = KernelThread(target=self._main, name=f"lwp-{index}", daemon=True)
        # Counters, written by the owner only; read by anyone for stats and the monitor.
        self.ticks = 0            # switches into green threads
        self.threads_run = 0
        self.steals = 0
        self.remote_wakeups = 0   # written under _lock
        self.parked_time = 0.0
        self.busy_since = None    # monotonic time the hub last woke up, None while parked
        self.stalled_since = None  # set and cleared by the monitor
        self.preemptions = 0       # written by this LWP's own kernel thread (preempt.py)
        self.preempt_hook_busy = 0  # slices overrun while a tracer held the hook
    def __repr__(self):
        return f"<LWP-{self.index} {self.kind} live={len(self._live)} queued={len(self._runq)}>"

    # -- any kernel thread ------------------------------------------------------------

    def start(self):
        self._thread.start()

    def push_new(self, t):
        """Queue a thread that has not started (any kernel thread).

        Returns False, queueing nothing, if this LWP has retired meanwhile.
        """
        with self._lock:
            if self._retired:
                return False
            t._lwp = self
            self._newq.append(t)
            if self._sleeping:
                self._sleeping = False
                self._poke()
            return True

    def call_soon_threadsafe(self, fn, *args):
        """Run ``fn(*args)`` in this LWP's hub, soon (any kernel thread)."""
        with self._lock:
            self._calls.append((fn, args))
            if self._sleeping:
                self._sleeping = False
                self._poke()

    def _make_runnable(self, t):
        """Put a parked thread back to run.  Caller holds ``self._lock``."""
        t._state = RUNNABLE
        # the kernel thread's ident: lwp.monkey may make threading.get_ident per green thread
        if _kernel_ident() == self.ident:
            self._runq.append(t)
        else:
            self._inbox.append(t)
            self.remote_wakeups += 1
            if self._sleeping:
                self._sleeping = False
                self._poke()

    def _poke(self):
        os.eventfd_write(self._wakefd, 1)

    def load(self):
        """A rough count of the work waiting here, for placement (racy read)."""
        return len(self._runq) + len(self._newq) + len(self._inbox) + (self.current is not None)

    # -- owner only -------------------------------------------------------------------

    def call_later(self, delay, fn, *args):
        """Run ``fn(*args)`` in the hub after ``delay`` seconds; returns a Timer."""
        self._timer_seq += 1
        timer = Timer(time.monotonic() + delay, self._timer_seq, fn, args, self)
        heapq.heappush(self._timers, timer)
        if self._timers_cancelled > 256 and self._timers_cancelled * 2 > len(self._timers):
            self._timers = [t for t in self._timers if t.fn is not None]
            heapq.heapify(self._timers)
            self._timers_cancelled = 0
        return timer

    def park_current(self):
        """Give up the CPU to the next thread, directly if it can (see park.py).

        When the hub would do nothing but resume the head of the run queue, or
        start the next new thread, the switch goes straight there: one greenlet
        switch instead of two, and no pass through the loop.
        """
        if not (self._inbox or self._calls or self._shuffle
                or self.ticks % _FAIRNESS_TICKS == 0
                or (self._timers and self._timers[0].when <= _monotonic())):
            runq = self._runq
            if runq:
                if not self._newq:
                    t = runq.popleft()
                    self.ticks += 1
                    self.current = t
                    t._state = RUNNING  # benign unlocked write: wakers only act on _waiting
                    t._glet.switch()
                    return
            elif self._newq and self._spare:
                # Only a spare: greenlet gives a new greenlet the recursion
                # depth of whoever first switches to it, so new greenlets are
                # made by the hub, at its shallow depth, never from a thread.
                g = self._take_new()
                if g is not None:
                    g.switch()
                    return
        self.hub.switch()

    def io_spend(self):
        """Count one I/O call of the running thread, before it is made (owner only).

        A thread whose socket calls keep succeeding never parks, and would keep
        every thread waiting for I/O on this LWP waiting: a client that answers
        at once keeps its connection's handler busy.  The count starts again
        whenever the thread parks; at the ``_IO_BUDGET``-th call of one run the
        LWP polls for I/O and, if any other thread is runnable then, the caller
        goes to the back of the run queue (as in Tokio's cooperative budget).
        Raises a pending :class:`lwp.Cancelled` or :class:`lwp.Timeout` then,
        as any scheduling point does.
        """
        if self.io_ticks != self.ticks:
            self.io_ticks = self.ticks
            self.io_left = _IO_BUDGET
        elif self.io_left > 1:
            self.io_left -= 1
        else:
            self.io_left = _IO_BUDGET
            if self._poller.busy() or self._completions is not None:
                self._poll(0)
            if self._runq or self._inbox or self._newq:
                park.checkpoint()


    def _main(self):
        self.ident = _kernel_ident()
        park.set_lwp(self)
        self.hub = greenlet.getcurrent()
        self.busy_since = time.monotonic()
        self.sched._lwp_started(self)
        try:
            self._loop()
        finally:
            # No longer an LWP: from here on a deferred wake-up (park.wake_or_defer)
            # must not be left in _calls, which no loop will drain.
            park.set_lwp(None)
            self._spare.clear()  # kills the recycled greenlets on their own thread
            if self._completions is not None:
                for hook in self._wake_hooks:
                    hook()  # deliver the last completions: a late open's fd gets closed
                self._completions.close()
            self._poller.close()
            os.close(self._wakefd)
            self.sched._lwp_stopped(self)

    def _loop(self):
        runq = self._runq
        while True:
            if self._inbox or self._calls:
                self._drain_inbox()
            if self._timers:
                self._run_timers()
            if self.ticks % _FAIRNESS_TICKS == 0 and runq:
                self._poll_now()
            if self._newq and (not runq or self.ticks & 1):
                self._start_next()  # new and woken threads take turns
            elif runq:
                if self._shuffle:
                    runq.rotate(-self.sched._rng.randrange(len(runq)))
                self._resume(runq.popleft())
            elif not self._live and self._finished():  # _live: no call while threads wait
                return
            elif not self.sched._steal_for(self):
                self._idle()

    def _finished(self):
        """True when this LWP may exit: nothing left to run, and none will come.

        Called when no started thread is live (``_live`` is empty)."""
        if self._completions is not None and self._completions.in_flight:
            return False  # late native completions must be drained before the queue closes
        if self.kind == "bound":
            return self.threads_run > 0
        if not (self._exit or self.sched._closing):
            return False
        with self._lock:
            if self._newq or self._inbox or self._calls:
                return False
            self._retired = True
        return True

    def _resume(self, t):
        self.ticks += 1
        self.current = t
        t._state = RUNNING  # benign unlocked write: wakers only act on _waiting
        t._glet.switch()
        self.current = None

    def _start_next(self):
        g = self._take_new()
        if g is not None:
            g.switch()
            self.current = None

    def _take_new(self):
        """Pop the next new thread, make it current, and return its greenlet (or None).

        The caller switches to the greenlet with no arguments (greenlet keeps a
        fresh greenlet's start arguments alive); the worker reads ``current``.  A recycled
        greenlet keeps the stack it parked with and gets a fresh, empty
        ``contextvars`` context, as a new thread would.
        """
        with self._lock:
            if not self._newq:
                return None
            t = self._newq.popleft()
            t._state = RUNNING
        if self._spare:
            g = self._spare.pop()
            if g.gr_context is not None:
                g.gr_context = None
        else:
            g = greenlet.greenlet(_worker_entry, self.hub)
        t._glet = g
        self._live[t] = None
        self.threads_run += 1
        self.ticks += 1
        self.current = t
        return g

    def _worker(self):
        """Body of a worker greenlet: run threads one after another, recycled."""
        while True:
            t = self.current
            t._run()
            del self._live[t]
            t._glet = None
            t = None
            if len(self._spare) >= _SPARE_GREENLETS:
                return
            self._spare.append(greenlet.getcurrent())
            self.park_current()

    def _drain_inbox(self):
        with self._lock:
            woken, self._inbox = self._inbox, deque()
            calls, self._calls = self._calls, deque()
        self._runq.extend(woken)
        for fn, args in calls:
            fn(*args)

    def _run_timers(self):
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0].when <= now:
            timer = heapq.heappop(timers)
            if timer.fn is None:
                self._timers_cancelled -= 1
            else:
                fn, args = timer.fn, timer.args
                timer.fn = timer.args = None
                fn(*args)

    def _idle(self):
        """Nothing to run: sleep in epoll until I/O, a timer or a wake-up."""
        timeout = None
        while self._timers and self._timers[0].fn is None:
            heapq.heappop(self._timers)
            self._timers_cancelled -= 1
        if self._timers:
            timeout = max(0.0, self._timers[0].when - time.monotonic())
        if self.kind == "compensating":  # wakes up to see whether it may retire
            retire = self.sched.retire_after
            timeout = retire if timeout is None else min(timeout, retire)
        if self._completions is not None and self._spin_for_completions():
            return
        with self._lock:
            if self._inbox or self._calls or self._newq:
                return
            self._sleeping = True
        self.busy_since = None
        t0 = time.monotonic()
        self._poll(timeout)
        now = time.monotonic()
        self.parked_time += now - t0
        self.busy_since = now
        with self._lock:
            self._sleeping = False
        if self.kind == "compensating" and not self._live and now - t0 >= self.sched.retire_after:
            self._exit = True  # idle long enough: retire

    def _poll_now(self):
        """Deliver what is ready without waiting: I/O and native completions.

        With no thread waiting for an fd, only native completions can be ready
        (the wake-up fd is not written while the LWP is awake), and checking
        them keeps the GIL, where ``epoll_wait`` would give it away.
        """
        if self._poller.busy():
            self._poll(0)
        else:
            self._deliver_completions(0)

    def _spin_for_completions(self):
        """Next to a CPU hog, wait briefly for native completions holding the GIL.

        Sleeping in epoll gives the GIL away, and while a green thread computes
        on another LWP, getting it back costs a switch interval (5 ms), far
        longer than a file read from the page cache.  So when the monitor sees a
        hog and native requests are in flight, the LWP first waits up to the
        scheduler's ``completion_spin`` for one to finish, without releasing
        the GIL.  True if completions were delivered.
        """
        cq, monitor, spin_ns = self._completions, self.sched.monitor, self.sched.spin_ns
        if cq is None or monitor is None or not spin_ns or not monitor.hog or not cq.pending:
            return False
        return self._deliver_completions(spin_ns)

    def _deliver_completions(self, wait_ns):
        """Deliver finished native requests, waiting up to ``wait_ns`` for one
        (holding the GIL); True if there were any."""
        cq = self._completions
        if cq is None or not cq.wait_ready(wait_ns):
            return False
        for hook in self._wake_hooks:
            hook()
        return True

    def _poll(self, timeout):
        if self._poller.poll(timeout):
            try:
                os.eventfd_read(self._wakefd)
            except BlockingIOError:
                pass
            for hook in self._wake_hooks:
                hook()

    # -- introspection -------------------------------------------------------------------

    def stats(self):
        return {
            "lwp": self.index,
            "kind": self.kind,
            "threads_run": self.threads_run,
            "switches": self.ticks,
            "steals": self.steals,
            "remote_wakeups": self.remote_wakeups,
            "parked_time": round(self.parked_time, 6),
            "live": len(self._live),
            "queued": len(self._runq) + len(self._newq),
            "preemptions": self.preemptions,
            "preempt_hook_busy": self.preempt_hook_busy,
        }

    def threads(self):
        """Snapshot of the threads this LWP holds: started ones, then queued new ones."""
        with self._lock:
            new = list(self._newq)
        return [t for t in list(self._live) if t._state is not DONE] + [t for t in new if t._state is NEW]


if park.NATIVE:
    park._native_lwp_type(LWP, _FAIRNESS_TICKS)  # the slots its hot path uses
