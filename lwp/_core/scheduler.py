"""The M:N scheduler: green threads multiplexed on a pool of LWPs.

Design
======

The objects
-----------
*Green thread* (``GreenThread``, module ``thread``): a function call with a life
cycle (new, runnable, running, parked, done).  Cheap: a Python object and, once
started, a greenlet whose stack is saved on the heap while it is not running.

*LWP* (``LWP``, module ``lwp``), after Solaris's light-weight processes: a kernel
thread that runs green threads.  Its root greenlet is the *hub*, a loop that
takes the next runnable thread, switches to it, and gets control back when that
thread blocks or ends.  There are ``lwps`` pooled LWPs (default: the number of
CPUs), plus *compensating* LWPs the monitor adds while some are stuck, plus one
*bound* LWP per thread spawned with ``bound=True``.

*Activation*, after scheduler activations (Anderson et al., 1991): a kernel-level
context that performs one blocking call for a green thread while the thread's
LWP goes on running others.  A completed activation wakes its thread through the
LWP's wake-up fd, exactly like a wake-up from another LWP.

*Upcall*: the scheduler's notice that something happened (a thread blocked or
unblocked, an LWP added, blocked or retired).  The scheduler reacts to them and
users may subscribe (module ``upcalls``).

The problem
-----------
Thread-style code wants to block: ``sock.recv()``, ``lock.acquire()``,
``time.sleep()``.  Kernel threads make blocking cheap to write but cost ~8 MB of
address space and ~100 us to create; greenlets cost a few KB and well under a
microsecond to switch, but a greenlet that blocks in the kernel blocks its
whole kernel thread, and with it every greenlet that thread runs.  Multiplexing
M green threads on N kernel threads keeps the cheap switches and confines a
stall to one LWP, which the others, and the monitor, work around.

The platform's hard rule
------------------------
A greenlet belongs to the kernel thread that created it; switching to it from
any other thread raises.  So a green thread's greenlet is created by the LWP
that first runs it, and **a started thread never moves**.  Only threads that
have not started (state ``new``: a function and its arguments) can be placed,
re-placed or stolen.  We considered and rejected faking migration (re-running a
function elsewhere, or copying stacks between threads): the first changes
semantics, the second is unsound with C frames on the stack.  In the terms of
code migration, lwp has *weak mobility* for new threads and none for started ones.

Queues, and who may touch them
------------------------------
Each LWP owns:

``_runq``   runnable started threads.  Touched only by the LWP's own kernel
            thread, with no lock: it is the hot path.
``_timers`` a heap of timers (sleeps, timeouts).  Owner only.
``_poller`` an epoll set with the LWP's wake-up eventfd in it.  Owner only.
``_inbox``  threads woken by *other* kernel threads.  Under the LWP's ``_lock``.
``_calls``  callbacks posted by other kernel threads.  Under ``_lock``.
``_newq``   threads not started yet.  Under ``_lock``; idle LWPs steal from it.

A thread's wake-up state (``_state``, ``_waiting`` and its waiter's ``outcome``,
``_pending_exc``, ``_joiners``) is guarded by the lock of its owning LWP.  Nothing
relies on the GIL for atomicity, so the design holds on free-threaded CPython;
no code path holds two LWP locks at once, so the locks cannot deadlock.

Wake-ups stay local when they can
---------------------------------
A greenlet switch costs well under 1 us; a wake-up across kernel threads (an
eventfd write, a futex, a GIL hand-off) about 10 us.  So: a thread woken by a
thread of the same LWP goes straight onto ``_runq`` with no syscall; a thread
woken from elsewhere goes to ``_inbox``, and the eventfd is written only if
that LWP is asleep (``_sleeping``).  A new thread spawned inside an LWP stays
on that LWP.  Only when a backlog of unstarted threads outlasts one sample of
the monitor is an idle LWP woken, to steal half of it: under the GIL a second
LWP running Python competes with the first, and pays only when the first is
slow to drain its queue (measured: the 10,000-thread demo ran 2.2x slower
when every backlog was shared at once).  A thread spawned from outside goes to
an idle LWP, else the least loaded.

The hub loop
------------
See ``LWP._loop``: drain the inbox, fire due timers, resume the next runnable
thread, else start a new one, else steal, else sleep in epoll until I/O, a
timer or a wake-up.  New and woken threads take turns, and every
``_FAIRNESS_TICKS`` switches the hub polls I/O, so a busy run queue can starve
neither new threads nor I/O.

Blocking calls
--------------
Everything that blocks goes through the waiter protocol of ``park``, which
parks the green thread and lets the hub run others.  Its hot path (make a
waiter, wake it, wait on it with the direct switch) is also transcribed in C
(``csrc/park_py.c``), with the same locks and the same guarantees, and so is
``Event`` (``csrc/event_py.c``); the Python versions stay the reference
(``LWP_NATIVE_PARK=0``).  Calls that can be polled
(sockets, pipes) wait in the LWP's epoll; the socket calls' hot path and the
epoll loop's handling of events are in C too (``csrc/io_py.c``), on the same
switch.  Calls that cannot (regular files,
DNS, arbitrary C code) run on an activation; see ``activation``.  Calls lwp
cannot see at all stall their LWP: the monitor (``monitor``) notices an LWP
that has not switched for longer than a threshold, moves its unstarted threads
away and, if its kernel thread is blocked (not running Python, not runnable
and waiting for a CPU), adds compensating LWPs, as Solaris did on SIGWAITING
and Go's sysmon does when it hands a P away from an M stuck in a syscall: as
many as it takes for ``lwps`` LWPs to be able to run, where an LWP that has
sat a whole sample without a switch, its kernel thread not runnable, counts
as lost already (an LWP added for threads that block one after another blocks
on the first of them).

Computing threads
-----------------
A thread that runs Python past its time slice without a scheduling point is
preempted at its next safe point (``preempt``), so the other threads of its
LWP run.  The interpreter lock is shared the same way between LWPs: left to
CPython, a hog's kernel thread would get half of it in 5 ms turns, however
many threads wait elsewhere; so the hog is preempted also when other LWPs are
awake (waiting for the lock) with threads queued, and sits out up to four
slices while they are, bounded so that it still progresses.

Shutdown
--------
``shutdown`` refuses new threads, cancels every live thread (``Cancelled`` is
raised at its blocking point, so ``finally`` blocks run), lets each LWP exit
once it owns no thread, and joins the kernel threads.
"""

import os
import random
import signal
import sys
import threading as _threading
import traceback
import warnings
from _thread import allocate_lock
from _thread import get_ident as _kernel_ident
from threading import Event as _Event  # the real ones: bound before lwp.monkey runs
from threading import Semaphore as _Semaphore
import weakref

from . import fork, park, preempt, upcalls  # noqa: F401 - fork registers its at-fork hook
from .activation import Activations
from .exceptions import Cancelled
from .lwp import LWP, check_spin, default_spin
from .monitor import Monitor, default_threshold
from .thread import GreenThread


def default_lwps():
    """The pool size used when none is given: ``$LWP_LWPS`` or the CPU count."""
    env = os.environ.get("LWP_LWPS")
    if env:
        return _check_lwps(int(env))
    return os.cpu_count() or 1


def _check_lwps(n):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"lwps must be an integer >= 1, got {n!r}")
    return n


class Scheduler:
    """A pool of LWPs and the green threads they run.

    Most programs never see this class: ``lwp.run`` makes one, and ``lwp.spawn``
    outside of ``lwp.run`` uses a default one.

    ``lwps``: pooled LWPs (default ``$LWP_LWPS`` or the CPU count).
    ``seed``: turns on the randomized mode (random placement and run-queue
    order, also ``$LWP_SEED``) that shakes out races; the same seed replays the
    same choices on one LWP.  ``max_lwps``: cap on all LWPs, compensating and
    bound ones included (default ``max(lwps, 256)``).  ``stall_threshold``:
    seconds without a switch after which the monitor calls an LWP stalled
    (default ``$LWP_STALL_MS`` ms, 5).  ``retire_after``: idle seconds after
    which a compensating LWP retires.  ``time_slice``: seconds a green thread
    may run Python without a scheduling point before it is preempted (default
    ``$LWP_SLICE_MS`` ms, 10; 0 turns preemption off; see
    :mod:`lwp._core.preempt`).  ``completion_spin``: seconds an LWP that is
    about to sleep while some thread computes past its slice waits, holding the
    GIL, for its native file or DNS requests to complete (default
    ``$LWP_SPIN_US`` us, 50; 0 never; at most 0.001; see
    ``LWP._spin_for_completions``).  ``monitor=False`` runs without the
    monitor (no stall detection, no compensation, no preemption).
    """

    def __init__(self, lwps=None, *, seed=None, name="lwp", max_lwps=None, stall_threshold=None,
                 retire_after=1.0, monitor=True, time_slice=None, completion_spin=None):
        n = default_lwps() if lwps is None else _check_lwps(lwps)
        self.configured_lwps = n
        self.max_lwps = max(n, 256) if max_lwps is None else _check_lwps(max_lwps)
        if self.max_lwps < n:
            raise ValueError(f"max_lwps ({self.max_lwps}) is below lwps ({n})")
        if not retire_after > 0:
            raise ValueError(f"retire_after must be > 0 seconds, got {retire_after!r}")
        self.retire_after = retire_after
        self.spin_ns = round(1e9 * (default_spin() if completion_spin is None
                                    else check_spin(completion_spin)))
        if seed is None and os.environ.get("LWP_SEED"):
            seed = int(os.environ["LWP_SEED"])
        self.name = name
        self.seed = seed
        self._rng = random.Random(seed) if seed is not None else None
        self._lock = allocate_lock()    # guards the LWP lists and _closing
        self._closing = False
        self._pool = []                 # pooled + compensating LWPs (copy-on-write list)
        self._bound = []
        self._created = []              # every LWP ever started, to join at shutdown
        self._next_index = 0
        self._started = _Semaphore(0)
        _schedulers.add(self)
        self._all_stopped = _Event()
        self._running_lwps = 0
        self.activations = Activations(self)
        self.monitor = None
        if monitor:  # made (and its options checked) before any kernel thread starts
            self.monitor = Monitor(self, default_threshold() if stall_threshold is None
                                   else stall_threshold, time_slice=time_slice)
        for _ in range(n):
            self._add_lwp("pooled")
        if self.monitor is not None:
            self.monitor.start()

    def _add_lwp(self, kind):
        with self._lock:
            lwp = LWP(self, self._next_index, kind)
            self._next_index += 1
            self._created.append(lwp)
            self._running_lwps += 1
            self._all_stopped.clear()
            if kind == "bound":
                self._bound = self._bound + [lwp]
            else:
                self._pool = self._pool + [lwp]
        lwp.start()
        self._started.acquire()  # its ident is set: wake-ups can tell local from remote
        self.lwp_added(lwp)
        return lwp

    def _lwp_started(self, lwp):
        self._started.release()

    def _lwp_stopped(self, lwp):
        with self._lock:
            if lwp in self._pool:
                self._pool = [x for x in self._pool if x is not lwp]
            if lwp in self._bound:
                self._bound = [x for x in self._bound if x is not lwp]
            self._running_lwps -= 1
            last = self._running_lwps == 0
        self.lwp_retired(lwp)
        if last:
            self._all_stopped.set()
            _schedulers.discard(self)

    def lwps(self):
        """The LWPs now running (pooled, compensating, then bound)."""
        return self._pool + self._bound

    # -- placement ------------------------------------------------------------------------

    def spawn(self, fn, args=(), kwargs=None, *, name=None, bound=False):
        """Create a green thread and queue it; see :func:`lwp.spawn`."""
        t = GreenThread(fn, args, kwargs or None, name, bound)
        if self._closing:
            raise RuntimeError("the scheduler is shutting down; no new threads")
        if bound:
            self._add_lwp("bound").push_new(t)
        else:
            self._place(t)
        return t

    def _place(self, t):
        here = park.current_lwp()
        if here is not None and here.sched is self and here.kind != "bound" and self._rng is None:
            here.push_new(t)  # the monitor shares a backlog that lasts (backlog_persists)
            return
        while True:
            pool = [x for x in self._pool if x.stalled_since is None] or self._pool
            if self._rng is not None:
                target = self._rng.choice(pool)
            else:
                target = next((x for x in pool if x._sleeping), None) or min(pool, key=LWP.load)
            if target.push_new(t):
                return

    def _wake_idle(self):
        """Wake one sleeping LWP so it steals some of the backlog."""
        for lwp in self._pool:
            if lwp._sleeping:
                with lwp._lock:
                    if lwp._sleeping:
                        lwp._sleeping = False
                        lwp._poke()
                        return

    def _steal_for(self, thief):
        """Move half of the busiest LWP's unstarted threads to ``thief``.

        Called by ``thief``'s hub when it has nothing to run.  Only threads in
        state ``new`` move: they have no greenlet yet.
        """
        if thief.kind == "bound":
            return False
        victim, most = None, 0
        for x in self._pool:  # a loop, not max(key=...): no Python call per LWP at every idle
            if len(x._newq) > most:
                victim, most = x, len(x._newq)
        if victim is None or victim is thief:
            return False
        with victim._lock:
            n = (len(victim._newq) + 1) // 2
            stolen = [victim._newq.popleft() for _ in range(min(n, len(victim._newq)))]
            for t in stolen:
                t._lwp = thief
        if not stolen:
            return False
        with thief._lock:
            thief._newq.extend(stolen)
        thief.steals += len(stolen)
        return True

    # -- upcalls: what happened, and how the scheduler reacts (see upcalls.py) -------------

    def thread_blocked(self, thread, call):
        """A thread handed a blocking call to an activation; its LWP runs on."""
        if upcalls.active():
            upcalls.emit("thread_blocked", thread=thread, call=call)

    def thread_unblocked(self, thread, call):
        if upcalls.active():
            upcalls.emit("thread_unblocked", thread=thread, call=call)

    def lwp_added(self, lwp):
        if upcalls.active():
            upcalls.emit("lwp_added", lwp=lwp, kind=lwp.kind)

    def lwp_retired(self, lwp):
        if upcalls.active():
            upcalls.emit("lwp_retired", lwp=lwp, kind=lwp.kind)

    def lwp_blocked(self, lwp, stalled_for):
        """The monitor saw ``lwp`` stuck: move its unstarted threads away."""
        if upcalls.active():
            upcalls.emit("lwp_blocked", lwp=lwp, thread=lwp.current, stalled_for=stalled_for)
        if not self._preempting():
            self._move_new_threads(lwp, compensate=False)

    def lwp_still_blocked(self, lwp, cause):
        """Monitor, each sample while ``lwp`` stays stuck: keep its queue moving,
        and compensate if its thread is blocked outside Python (see monitor.py):
        add LWPs until ``configured_lwps`` can run (``_shortfall``).  An LWP
        cannot run if it is stalled or looks blocked at this sample
        (``Monitor.looks_blocked``): an LWP added for threads that block one
        after another is lost as soon as it starts one, and counted as able to
        run until it stalled, it held back the next for a whole threshold.

        ``cause`` is ``"blocked"`` (in the kernel or in C), ``"python"`` (a long
        computation) or ``"starved"`` (runnable, waiting for a CPU).  A thread
        running Python is preempted when slices are on: its LWP's other threads
        then run there in turn, which beats moving them to an LWP where they
        would fight it for the GIL at every blocking call.  A starved LWP's
        unstarted threads move to the LWPs already there, but no LWP is added
        for it: a new kernel thread would wait for the same CPUs.
        """
        if cause == "python" and self._preempting():
            return
        self._move_new_threads(lwp, compensate=cause == "blocked")

    def _preempting(self):
        return (self.monitor is not None and self.monitor.time_slice > 0
                and bool(preempt.available()))

    def _move_new_threads(self, lwp, compensate):
        if lwp.kind == "bound" or self._closing:
            return
        with lwp._lock:
            moved = list(lwp._newq)
            lwp._newq.clear()
        unflagged = [x for x in self._pool if x.stalled_since is None]
        stuck = [x for x in unflagged if self.monitor.looks_blocked(x)]
        runnable = [x for x in unflagged if x not in stuck]
        if compensate:
            stranded = len(moved) + sum(len(x._newq) for x in stuck)
            for _ in range(self._shortfall(runnable, stranded)):
                runnable.append(self._add_lwp("compensating"))
        targets = sorted(runnable, key=LWP.load) or [lwp]
        for i, t in enumerate(moved):
            if not targets[i % len(targets)].push_new(t):
                self._place(t)

    def _shortfall(self, runnable, stranded):
        """How many compensating LWPs to add for a blocked LWP: as many as it
        takes for ``configured_lwps`` to be able to run (within ``max_lwps``),
        but no more than the ``stranded`` unstarted threads they can take over
        (moved off the blocked LWP, or queued on LWPs that look blocked too:
        the new ones steal those), or one if only ``runnable`` LWPs have work.
        """
        short = min(self.configured_lwps - len(runnable),
                    self.max_lwps - len(self._pool) - len(self._bound))
        if short <= 0:
            return 0
        if stranded:
            return min(short, stranded)
        return 1 if any(x._newq or x._runq for x in runnable) else 0

    def backlog_persists(self, lwp):
        """Monitor: ``lwp`` has had unstarted threads for a whole sample period.

        Waking an idle LWP to steal them costs a cross-thread wake-up and, under
        the GIL, competition for the interpreter; it pays only for a backlog
        that its own LWP is not draining quickly, so it is not done at spawn.
        """
        self._wake_idle()

    def lwp_unblocked(self, lwp, stalled_for):
        if upcalls.active():
            upcalls.emit("lwp_unblocked", lwp=lwp, stalled_for=stalled_for)

    # -- shutdown -------------------------------------------------------------------------

    def shutdown(self, timeout=5.0):
        """Cancel every live thread, wait for them, stop the LWPs.

        Threads still alive after ``timeout`` seconds (they swallowed
        ``Cancelled``) are abandoned with a :class:`RuntimeWarning` naming them.
        Idempotent.  May not be called from one of this scheduler's threads.
        """
        here = park.current_lwp()
        if here is not None and here.sched is self:
            raise RuntimeError("a scheduler cannot be shut down from one of its own threads")
        with self._lock:
            self._closing = True
        for lwp in self.lwps():
            lwp.call_soon_threadsafe(_cancel_all, lwp)
        stopped = self._all_stopped.wait(timeout)
        if self.monitor is not None:
            self.monitor.stop()
        if not stopped:
            stuck = [t for lwp in self.lwps() for t in lwp.threads()]
            warnings.warn(f"lwp: {len(stuck)} green thread(s) ignored cancellation at "
                          f"shutdown and were abandoned: {stuck[:5]}", RuntimeWarning, stacklevel=2)
            return False
        for lwp in self._created:
            lwp._thread.join(timeout)
        self.activations.close(timeout)
        return True

    # -- introspection --------------------------------------------------------------------

    def stats(self):
        """Per-LWP counters (see :func:`lwp.stats`)."""
        return [lwp.stats() for lwp in self.lwps()]

    def dump(self):
        """Every live green thread with its state, LWP and stack, as text."""
        frames = sys._current_frames()
        me = park.current()
        out = []
        for lwp in self.lwps():
            out.append(f"{lwp!r} kernel thread {lwp.ident}")
            for t in lwp.threads():
                out.append(f"  {t!r}")
                if t is me:
                    frame = sys._getframe(1)
                elif t._glet is not None and lwp.current is t:
                    frame = frames.get(lwp.ident)
                elif t._glet is not None:
                    frame = t._glet.gr_frame
                else:
                    out.append("    (not started)")
                    continue
                if frame is not None:
                    out.extend("    " + line.rstrip("\n").replace("\n", "\n    ")
                               for line in traceback.format_stack(frame))
        return "\n".join(out) + "\n"


def _cancel_all(lwp):
    """Hub callback at shutdown: cancel every thread this LWP holds."""
    for t in lwp.threads():
        t._throw(Cancelled())


# -- the scheduler a call uses ---------------------------------------------------------------

_schedulers = weakref.WeakSet()  # schedulers with running LWPs


def active_schedulers():
    """Every scheduler that has LWPs running (a snapshot)."""
    return list(_schedulers)


_default = None
_default_lock = allocate_lock()
_default_config = {}


def configure(**options):
    """Set the options of the default scheduler, before its first use.

    The default scheduler serves ``lwp.spawn`` called outside ``lwp.run``.
    ``options`` are :class:`Scheduler`'s keyword arguments (``lwps``, ``seed``,
    ``max_lwps``, ``stall_threshold``, ``retire_after``, ``monitor``,
    ``time_slice``, ``completion_spin``); they are
    checked now.  Raises RuntimeError once the default scheduler has started.
    """
    import inspect

    known = set(inspect.signature(Scheduler).parameters) - {"name"}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown scheduler option(s) {sorted(unknown)}; known: {sorted(known)}")
    if options.get("lwps") is not None:
        _check_lwps(options["lwps"])
    with _default_lock:
        if _default is not None:
            raise RuntimeError("the default scheduler is already running; configure() it first")
        _default_config.update(options)


def scheduler():
    """The scheduler of the calling green thread, or the default one (started lazily)."""
    global _default
    lwp = park.current_lwp()
    if lwp is not None:
        return lwp.sched
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Scheduler(name="lwp-default", **_default_config)
                import atexit

                atexit.register(_shutdown_default)
    return _default


def _shutdown_default():
    global _default
    with _default_lock:
        sched, _default = _default, None
    if sched is not None:
        sched.shutdown()


def spawn(fn, /, *args, name=None, bound=False, **kwargs):
    """Start ``fn(*args, **kwargs)`` in a new green thread and return it.

    Works from a green thread (the new thread joins the caller's scheduler) and
    from a plain OS thread (it goes to the default scheduler, started on first
    use and shut down at interpreter exit).  ``name`` names the thread;
    ``bound=True`` gives it an LWP of its own, for code known to block in C.
    (To pass arguments called ``name`` or ``bound`` to ``fn``, use
    :func:`functools.partial`.)
    """
    return scheduler().spawn(fn, args, kwargs, name=name, bound=bound)


def run(main, /, *args, lwps=None, seed=None, max_lwps=None, stall_threshold=None,
        retire_after=1.0, monitor=True, time_slice=None, completion_spin=None, **kwargs):
    """Run ``main(*args, **kwargs)`` on a fresh scheduler and return its result.

    Like :func:`asyncio.run`: the scheduler starts with ``lwps`` LWPs, ``main``
    runs as a green thread, and when it returns (or raises, which re-raises
    here) every thread it left running is cancelled and joined and the LWPs
    stop.  Ctrl-C raises KeyboardInterrupt inside ``main`` so its ``finally``
    blocks run.  While it runs, ``lwp.run`` holds the signal handlers (as
    :class:`asyncio.Runner` holds SIGINT's): a signal's Python handler is
    called where lwp holds no lock, and what it raises is raised in ``main``
    (or, once ``main`` has finished, out of ``lwp.run``).  Cannot be called
    from a green thread.

    Scheduler options (keyword-only; see :class:`Scheduler`): ``lwps``,
    ``seed``, ``max_lwps``, ``stall_threshold``, ``retire_after``, ``monitor``,
    ``time_slice``, ``completion_spin``.
    """
    if park.current_lwp() is not None:
        raise RuntimeError("lwp.run() cannot be called from a green thread")
    sched = Scheduler(lwps, seed=seed, max_lwps=max_lwps, stall_threshold=stall_threshold,
                      retire_after=retire_after, monitor=monitor, time_slice=time_slice,
                      completion_spin=completion_spin)
    signals = _Signals()
    try:
        with signals:
            try:
                return signals.join(sched.spawn(main, args, kwargs, name="main"))
            finally:
                sched.shutdown()
    finally:
        signals.run_pending()  # those that came once main was done: raise here


class _Signals:
    """While ``lwp.run``'s OS thread is in lwp, its signal handlers only take note.

    Python runs a signal handler in the main thread wherever it happens to be,
    and a handler may raise (the default SIGINT handler raises
    KeyboardInterrupt, and so may a program's on SIGTERM): possibly just after
    the main thread took an LWP's lock (to spawn, join, cancel, shut down) and
    before it could release it, which leaves that lock held for ever and hangs
    every LWP.  So, as :class:`asyncio.Runner` does for SIGINT, from spawning
    ``main`` to the end of the shutdown every Python-level handler is replaced
    by one that notes the signal and rings a bell (a lock of this object's
    own), and the real handler is called where no lock is held: while
    ``main`` runs, by :meth:`join`, which throws what it raises into ``main``
    (so Ctrl-C is a KeyboardInterrupt in ``main``, and its ``finally`` blocks
    run); afterwards, by :meth:`run_pending`, where it raises out of
    ``lwp.run``.  Only in the main thread of the main interpreter (the only
    one where handlers run); elsewhere this does nothing.
    """

    def __init__(self):
        self._bell = allocate_lock()
        self._bell.acquire()
        self._pending = []  # (signum, the real handler), in the order they came
        self._saved = {}    # signum -> the real handler, while ours is installed

    def __enter__(self):
        if _kernel_ident() != _threading.main_thread().ident:
            return self
        for signum in signal.valid_signals():
            try:
                handler = signal.getsignal(signum)
            except ValueError:
                continue
            if callable(handler):
                try:
                    signal.signal(signum, self._note_for(signum))
                except (OSError, ValueError):
                    continue
                self._saved[signum] = handler
        return self

    def __exit__(self, *exc):
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _note_for(self, which):
        """The stand-in for ``which``'s handler.  A program's handler may call
        another signal's (``lwp.wsgi`` runs SIGINT's on SIGTERM): it is that one
        whose real handler is noted, with the signal number given."""
        def note(signum, frame):
            self._pending.append((signum, self._saved[which]))
            self._ring()
        return note

    def _ring(self, *_):
        try:
            self._bell.release()
        except RuntimeError:  # rung already, not heard yet
            pass

    def join(self, t):
        """Join green thread ``t``, calling the handlers of the signals that come
        meanwhile and throwing into ``t`` what they raise."""
        if not self._saved:
            return t.join()
        t.add_done_callback(self._ring)
        while not t.done():
            self._bell.acquire()
            while self._pending and not t.done():
                signum, handler = self._pending.pop(0)
                try:
                    handler(signum, None)
                except BaseException as e:
                    t._throw(e)
        return t.join()

    def run_pending(self):
        """Call the handlers of the signals noted but not handled yet (the first
        exception one raises is raised once they have all run)."""
        error = None
        while self._pending:
            signum, handler = self._pending.pop(0)
            try:
                handler(signum, None)
            except BaseException as e:
                error = error or e
        if error is not None:
            raise error


def current():
    """The calling green thread, or None in a plain OS thread."""
    return park.current()


def stats():
    """Per-LWP counters of the caller's scheduler: a list of dicts.

    Keys: ``lwp`` (index), ``kind`` (pooled, compensating, bound),
    ``threads_run``, ``switches``, ``steals`` (threads this LWP took from
    others), ``remote_wakeups`` (wake-ups that came from other kernel threads),
    ``parked_time`` (seconds asleep in epoll), ``live``, ``queued``,
    ``preemptions`` (threads suspended at a safe point after a full time
    slice) and ``preempt_hook_busy`` (overruns not preempted because a
    debugger, profiler or coverage held the trace hook).
    Empty when no scheduler is running.
    """
    lwp = park.current_lwp()
    sched = lwp.sched if lwp is not None else _default
    return sched.stats() if sched is not None else []


def dump(file=None):
    """Print (to ``file``, default stderr) and return every live thread's stack.

    Like Go's goroutine dump: each LWP, then each of its green threads with its
    state and the stack it is running or parked at.
    """
    lwp = park.current_lwp()
    sched = lwp.sched if lwp is not None else _default
    text = sched.dump() if sched is not None else "no lwp scheduler is running\n"
    print(text, end="", file=file if file is not None else sys.stderr)
    return text

