"""Preemption: a green thread that computes for too long yields its LWP.

The problem
-----------
A started green thread never moves to another kernel thread (see the essay
in :mod:`lwp._core.scheduler`).  So a thread that runs Python without
reaching a scheduling point -- ``while True: x += 1``, a long parse, a
numeric loop in pure Python -- holds its LWP, and the threads that share
that LWP wait for it, however many other LWPs sit idle.

What happens
------------
Each green thread gets a *time slice* (``time_slice``, default 10 ms,
``$LWP_SLICE_MS``; 0 turns preemption off).  The monitor, which already samples
every LWP's switch counter (:mod:`lwp._core.monitor`), sees an LWP that has not
switched for longer than the slice while it has other work (another started
thread, a new one, a wake-up or a callback) and calls :func:`arm`.  That
installs a one-shot C trace function on the LWP's Python thread state
(``csrc/preempt.c``).  CPython calls it on the LWP's own kernel thread at the
next *line* or *call* event of the running code.  If that is a safe point
(below), the hook removes itself, marks the thread ``runnable`` and switches to
the hub.  The LWP runs its other threads and fires its timers; the thread goes
back on the run queue once the others have had up to one slice of CPU or have
nothing left to do (no thread runnable, no native file or DNS request of theirs
about to complete: a reader that got one 4 KiB read per slice would be starved
too), and resumes later exactly where it stopped.

The GIL is shared the same way between LWPs.  CPython alone hands it between
kernel threads that want it in turns of ``sys.getswitchinterval()``, so a
hog's kernel thread would hold it half the time however many threads wait on
the other LWPs.  So the monitor arms the hook also when the hog is alone on
its LWP, if another LWP wants the GIL (:func:`gil_wanted`), and the preempted
thread sits out up to ``_GIL_SHARE`` slices while one does: its LWP sleeps
(or runs its other threads) and leaves the GIL to the others.  A hog next to
busy LWPs keeps at least one slice in ``_GIL_SHARE + 1`` of its kernel
thread's time, and gets all of it back once they sleep (its LWP looks again
every ``_GRACE``).  A preempted
thread observes nothing but the passing of time: its locals, its exception
state (``sys.exc_info()``), its ``contextvars`` context and its ``lwp.local``
values are those of its own greenlet, which greenlet saves and restores at
every switch; a pending cancellation is *not* delivered at a preemption (it
waits for the thread's next blocking call, as for any running thread).
``lwp.stats()`` counts preemptions per LWP.

Nothing is paid while no slice is overrun: no trace function is installed, the
switch path is unchanged, and the monitor makes one cheap call per busy LWP per
sample.  A slice is wall-clock time since the thread's last switch (time its
LWP spent waiting for the GIL included).  The monitor samples every
``min(stall_threshold, time_slice) / 2`` while an LWP is busy, but it must take
the GIL to look, so next to a CPU-bound thread its samples come
``sys.getswitchinterval()`` later (every 7.5 ms with the defaults); it
preempts at the sample nearest to the slice's end (:func:`overran`), so real
slices are a sample period around ``time_slice`` -- 8 ms measured with the
default 10 ms -- plus the time to the next safe point.

Safe points
-----------
The hook preempts at a ``line`` or ``call`` event (never ``return`` or
``exception``) when all of these hold, and otherwise does not:

* the event is on the hooked LWP, in a green thread (not in the hub), the
  same one that overran its slice (the LWP has not switched since);
* the thread is ``running`` (not finishing: done-callbacks run after the
  thread is ``done``) and is not inside ``with lwp.no_preempt():``;
* no frame between the event and the thread's entry (``GreenThread._run``)
  belongs to lwp itself, or to ``importlib`` (module code run by an import:
  another green thread of the same kernel thread would re-enter the import
  lock as its owner and see a half-initialised module).  lwp's own code
  relies on not being switched away from between its scheduling points, as
  cooperative code does; that includes user code it calls back, e.g. an
  item's ``__lt__`` inside a ``PriorityQueue`` operation.  ``lwp/bench`` and
  the ``python -m lwp`` demo count as user code; a module of lwp that calls
  user code holding no invariant across the call may register the calling
  function with :func:`user_code_entry` (the servers do, for a request
  handler and a WSGI application);
* the LWP's lock is free.

When the event is *inside* lwp (the top frame is lwp's) the hook stays armed
for the next event, at most ``_MAX_STAYS`` of them; in every other refused
case it removes itself at once, and the monitor arms it again at its next
sample if the thread still has not switched.  So a long ``no_preempt``
section costs one hook call per monitor sample, not one per line.

Code that does not return to Python cannot be preempted: a long C call
(``sum(range(10**9))``, a regex, a compression, a C extension's loop, a
blocking system call lwp does not intercept) holds its LWP until it returns
to Python.  There the monitor's stall detection, compensation and report
(:mod:`lwp._core.monitor`) are what helps; ``lwp.blocking`` or
``spawn(bound=True)`` are the cures.

Supported CPythons
------------------
3.11 and 3.12, with the GIL.  The hook is armed from the monitor thread on
another thread's state with ``_PyEval_SetTrace(tstate, ...)``, exported by
both (3.12's own ``PyEval_SetTraceAllThreads`` does the same per thread).
3.13 no longer exports it, so there, on PyPy, on free-threaded builds and
where the native module lacks it, preemption is off and :func:`available`
says why.  Because it reads the thread state, ``lwp._native`` is built for
one CPython version (full C API, not abi3).

On 3.12 ``sys.settrace`` is built on ``sys.monitoring``: while one thread is
armed, every code object in the interpreter is instrumented for the legacy
trace events and the *other* threads pay a callback per line (measured: pure
Python loops run two to three times slower).  That lasts from the overrun to the next safe point, usually
well under a millisecond.  A hook still armed at the next monitor sample means
the thread is outside Python (in C, or blocked) or got no CPU: on 3.12 it is
removed then and armed again after 1, 2, 4 ... up to 64 samples, so a thread
stuck in C costs the others a few per cent at most.  On 3.11 tracing is per
thread and the hook simply waits.

Debuggers, profilers, coverage
------------------------------
They keep working; preemption steps aside.

* The hook is only installed where a thread has *no* trace function, and it
  only ever removes itself (``csrc/preempt.c`` checks the installed function
  is still its own).  Under ``sys.settrace``, ``pdb``, ``coverage`` or a
  debugger that traces, the LWPs they trace are not preempted: the monitor
  counts the overrun in ``preempt_hook_busy`` (``lwp.stats()``), logs it once
  per LWP on the ``lwp.preempt`` logger, and :func:`status` says so.  A tool
  that installs its trace function while the hook is armed simply replaces it.
  Debuggers that trace every thread (debugpy/pydevd) turn preemption off
  everywhere while attached; ``pdb`` only on the LWP it runs in; coverage
  (which needs ``--concurrency=greenlet`` for any greenlet program) on every
  LWP it traces.
* Profilers (``sys.setprofile``, ``cProfile``) use the other slot and do not
  block preemption; they see the preempted thread's switch to the scheduler
  as calls, as they see any switch.
* Between arming and the next event (normally a few bytecodes, unless the
  thread is in a long C call) ``sys.gettrace()`` on that kernel thread returns
  the hook object.  If a tool saves it and installs it back as a Python trace
  function, the hook uninstalls itself at its first call.
* ``sys.settrace`` and arming are audited as ``sys.settrace`` events (the
  monitor thread raises them each time it arms).

Why the switch happens inside the trace callback
-------------------------------------------------
CPython raises ``tstate->tracing`` around a trace callback, which suppresses
every trace and profile event on that kernel thread, and greenlet does not save
that counter per greenlet (``TPythonState.cpp`` saves ``cframe``/
``use_tracing``, recursion depth, frames, context, trash nesting -- not
``tracing``).  Switching away inside the callback as is would leave the other
green threads of the LWP running with tracing suppressed, and no further
preemption possible on it.  So the C hook lowers the counter
(``PyThreadState_LeaveTracing``) for the switch and raises it back
(``PyThreadState_EnterTracing``) once the thread is resumed, before returning
to CPython, which then finds the state it expects.  The alternatives are
worse: an asynchronous exception is not resumable, a flag checked "later" needs
a place that runs later, which is exactly what a CPU-bound loop lacks, and
``Py_AddPendingCall`` only runs in the main thread.  The switch itself is an
ordinary greenlet switch with a C trace callback on the stack, which greenlet
handles like any C frame; the interpreter frame was saved (stack pointer and
instruction) before the callback, as for any trace function.
"""

import logging
import os
import sys
import time

from . import park
from .lwp import LWP
from .thread import RUNNABLE, RUNNING, GreenThread

log = logging.getLogger("lwp.preempt")

DEFAULT_SLICE = 0.010
_GRACE = 0.001     # a preempted thread waits this long at a time for its LWP's native I/O
_GIL_SHARE = 4     # slices a preempted thread sits out at most while another LWP wants the GIL
_MAX_STAYS = 1000  # events the hook waits out inside lwp before giving up until re-armed

# Answers of _Hook._decide and of the native _arm (keep in step with csrc/preempt.c).
_STAY, _DISARM, _PREEMPT = 0, 1, 2
_ARMED, _ALREADY, _BUSY, _NO_THREAD = 0, 1, 2, 3

# On 3.12 sys.settrace is built on sys.monitoring: an armed hook instruments the
# code of every thread (other threads then run two to three times slower), not
# only the hooked one's.
_ARMING_IS_GLOBAL = sys.version_info >= (3, 12)


def default_slice():
    """``$LWP_SLICE_MS`` milliseconds (0 turns preemption off), default 10."""
    env = os.environ.get("LWP_SLICE_MS")
    return check_slice(float(env) / 1000.0) if env else DEFAULT_SLICE


def check_slice(value):
    """Validate a ``time_slice`` option: seconds >= 0 (0: off).  Returns it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"time_slice must be a number of seconds >= 0 (0: off), got {value!r}")
    return value


class Availability:
    """What :func:`available` returns: true if preemption works here, with ``reason`` if not."""

    __slots__ = ("ok", "reason")

    def __init__(self, ok, reason=None):
        self.ok, self.reason = ok, reason

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return "<preemption available>" if self.ok else f"<preemption unavailable: {self.reason}>"


def _load_native():
    if sys.implementation.name != "cpython":
        return Availability(False, f"preemption needs CPython, not {sys.implementation.name}")
    try:
        from lwp._native import ffi, lib
    except ImportError as e:
        return Availability(False, f"the native module lwp._native cannot be imported: {e}")
    if not hasattr(lib, "lwp_preempt_init"):
        return Availability(False, "lwp._native was built without preemption; rebuild it")
    why = lib.lwp_preempt_unsupported()
    if why != ffi.NULL:
        return Availability(False, ffi.string(why).decode())
    if lib.lwp_preempt_init(__name__.encode()) != 0:
        return Availability(False, "the native preemption hook failed to initialise")
    return Availability(True)


_availability = _load_native()
# The native builtins _arm, _disarm, _owner are now module globals (see csrc/preempt.h).


def available():
    """Whether preemption works in this process; if not, ``.reason`` says why.

    The result is true or false; its ``reason`` names the missing piece (an
    unsupported CPython, a native module built without it).  A scheduler with
    ``time_slice=0`` or ``monitor=False`` does not preempt either, whatever
    this says.
    """
    return _availability


class no_preempt:
    """``with lwp.no_preempt():`` -- the calling green thread is not preempted inside.

    For a critical section that must not be interleaved with the other
    threads of the same LWP (a thread still yields where it blocks or calls
    ``lwp.sleep``: this only turns time slices off).  Sections nest, and an
    instance holds no state, so one may be shared.  In a plain OS thread it
    does nothing.
    """

    __slots__ = ()

    def __enter__(self):
        t = park.current()
        if t is not None:
            t._preempt_off += 1
        return self

    def __exit__(self, *exc):
        t = park.current()
        if t is not None:
            t._preempt_off -= 1
        return False


# -- where the hook may switch ---------------------------------------------------------------

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_USER_CODE_IN_PACKAGE = (os.path.join(_PACKAGE, "bench") + os.sep,
                         os.path.join(_PACKAGE, "__main__.py"))
_internal_files = {}  # co_filename -> True if the code belongs to lwp (or to importlib)

# Frames of lwp that call user code with no invariant of theirs held across the
# call: a thread's entry, and what modules register with user_code_entry().
_entries = {GreenThread._run.__code__, LWP._worker.__code__}


def user_code_entry(fn):
    """Let user code called from lwp's function ``fn`` be preempted; returns ``fn``.

    The hook never preempts user code that lwp's own code called back (an item
    compared inside a queue operation), because lwp relies on not being
    switched away from between its scheduling points.  A function of lwp that
    calls user code *holding nothing across the call* (a server calling a
    request handler, a thread's entry) says so with this decorator.
    """
    _entries.add(fn.__code__)
    return fn


def _internal(filename):
    try:
        return _internal_files[filename]
    except KeyError:
        if filename.startswith("<frozen importlib"):
            inside = True
        elif filename.startswith("<"):
            inside = False
        else:
            path = os.path.abspath(filename)
            inside = path.startswith(_PACKAGE) and not path.startswith(_USER_CODE_IN_PACKAGE)
        _internal_files[filename] = inside
        return inside


class _Hook:
    """The trace object of one LWP's one-shot hook (``c_traceobj``).

    ``_decide`` and ``_switch`` run on the LWP's kernel thread, called by the
    C trace function; ``ticks`` is set by the monitor when it arms.
    """

    __slots__ = ("__weakref__", "backoff", "busy_ticks", "held", "lwp", "resumed", "stays", "ticks")

    def __init__(self, lwp):
        self.lwp = lwp
        self.ticks = -1       # the LWP's switch count when armed
        self.stays = 0
        self.busy_ticks = -1  # ticks of the last overrun counted in preempt_hook_busy
        self.resumed = (-1, 0.0)  # (ticks, monotonic time) when a preempted thread resumed
        self.backoff = (-1, 0, 0)  # 3.12: (ticks, samples to skip, skipped) after a silent hook
        self.held = 0         # preempted threads not requeued yet (owner writes; others read a hint)

    def _decide(self, frame):
        """Is the event at ``frame`` a safe point?  _PREEMPT, _STAY (armed) or _DISARM."""
        lwp = self.lwp
        t = lwp.current
        if t is None or lwp.ticks != self.ticks or getattr(park._tls, "lwp", None) is not lwp:
            return _DISARM  # in the hub, or it switched meanwhile: the slice ended anyway
        if _internal(frame.f_code.co_filename) or lwp._lock.locked():
            self.stays += 1  # inside lwp: it reaches user code or a scheduling point soon
            return _STAY if self.stays < _MAX_STAYS else _DISARM
        if t._preempt_off or t._state is not RUNNING:
            return _DISARM
        f = frame.f_back
        while f is not None:
            code = f.f_code
            if code in _entries:
                return _PREEMPT
            if _internal(code.co_filename):
                return _DISARM  # user code called back by lwp, or run by an import
            f = f.f_back
        return _DISARM  # not below a green thread's entry: not ours to switch

    def _switch(self):
        """Suspend the running thread; the hub requeues it (see _requeue).

        Called with the hook disarmed, on the LWP's kernel thread.
        """
        lwp = self.lwp
        t = lwp.current
        with lwp._lock:
            t._state = RUNNABLE
        lwp.preemptions += 1
        self.held += 1
        # A zero-delay timer, not a plain append to the run queue: the hub fires
        # timers in time order, so threads whose sleep or timeout expired while
        # this one ran get in line before it does.
        lwp.call_later(0, self._requeue, t, time.monotonic(), -1)
        lwp.hub.switch()
        self.resumed = (lwp.ticks, time.monotonic())  # its next slice starts now, exactly

    def _requeue(self, t, since, ticks):
        """Hub: put the preempted thread ``t`` back on the run queue, or look again later.

        The other threads of the LWP get up to one slice before ``t`` runs
        again, as long as they have work: threads runnable now (look again
        after the next switch), or native requests (file reads, DNS) in flight
        while some thread ran since the last look (wait up to ``_GRACE`` for
        them: they complete within microseconds to milliseconds, and a reader
        that got one read per slice would be starved too).  The other LWPs
        get up to ``_GIL_SHARE`` slices while they want the GIL (look again
        every ``_GRACE``).  Otherwise ``t`` goes back at once, so an LWP
        whose other threads sleep or wait for sockets wastes no CPU.  While
        threads run the hub polls I/O only every few dozen switches, so this
        polls first.
        """
        lwp = self.lwp
        cq = lwp._completions
        lwp._poll_now()
        monitor = lwp.sched.monitor
        time_slice = monitor.time_slice if monitor is not None else 0
        if time.monotonic() - since < time_slice:
            if lwp._runq or lwp._inbox or lwp._newq or lwp._calls:
                lwp.call_later(0, self._requeue, t, since, lwp.ticks)
                return
            if lwp.ticks != ticks and cq is not None and cq.pending:
                lwp.call_later(min(_GRACE, time_slice), self._requeue, t, since, lwp.ticks)
                return
        if time.monotonic() - since < _GIL_SHARE * time_slice and gil_wanted(lwp):
            lwp.call_later(min(_GRACE, time_slice), self._requeue, t, since, -1)
            return
        self.held -= 1
        lwp._runq.append(t)

    def __call__(self, frame, event, arg):
        """Called only if a tool saved this object from ``sys.gettrace()`` and
        installed it back with ``sys.settrace()``: step aside (and trace nothing)."""
        if sys.gettrace() is self:
            sys.settrace(None)


def _hook(lwp):
    hook = lwp.__dict__.get("_preempt_hook")
    if hook is None:
        hook = lwp.__dict__.setdefault("_preempt_hook", _Hook(lwp))
    return hook


# -- the monitor's side ----------------------------------------------------------------------

def overran(lwp, ticks, now, stalled_for, gap, time_slice):
    """Monitor: has ``lwp``'s running thread used up its slice, to the nearest sample?

    ``stalled_for``: seconds since the monitor first saw ``ticks`` (the LWP
    switched at most ``gap``, the time since the previous sample, before
    that), or None if ``ticks`` changed since the previous sample.  A thread
    resumed after a preemption has an exact start time.  The monitor needs
    the GIL to sample, so under a CPU-bound thread its samples come up to
    ``sys.getswitchinterval()`` (5 ms) late: rounding to the nearest sample
    keeps the average slice near ``time_slice`` instead of a sample or two
    above it.
    """
    hook = lwp.__dict__.get("_preempt_hook")
    resumed_ticks, resumed_at = hook.resumed if hook is not None else (-1, 0.0)
    if resumed_ticks == ticks:
        ran = now - resumed_at
    elif stalled_for is not None:
        ran = stalled_for + gap / 2  # it switched within the gap before the first sight
    else:
        return False  # it switched since the previous sample: its slice has barely begun
    return ran + gap / 2 > time_slice


def gil_wanted(lwp):
    """Whether another LWP of ``lwp``'s scheduler has threads to run and waits for the GIL.

    Asked holding the GIL, so an LWP that is awake is waiting for it (an LWP
    gives the GIL away where it sleeps, in epoll, and is not awake there).
    It counts if it has threads waiting for their turn (queued, or it is in
    its hub), unless the monitor found it stalled (blocked in C) or it holds
    back a preempted thread of its own.  A hog alone on its LWP does not
    count: two such share the GIL as CPython shares it, rather than preempt
    each other at every slice.  A hint, read without locks; without a GIL
    preemption is off and this is never asked.
    """
    for o in lwp.sched.lwps():
        if (o is not lwp and o.busy_since is not None and o.stalled_since is None
                and (o.current is None or o._runq or o._inbox or o._newq)):
            hook = o.__dict__.get("_preempt_hook")
            if hook is None or not hook.held:
                return True
    return False


def arm(lwp):
    """Monitor: ``lwp`` overran its time slice; preempt its thread at the next safe point.

    Called holding the GIL from the monitor thread.  Does nothing if nothing
    else could run on ``lwp`` and no other LWP wants the GIL, if its thread is
    in a ``no_preempt`` section, or if preemption is unavailable.  Returns
    True if the hook is (now) armed.
    """
    if not _availability:
        return False
    t = lwp.current
    ident = lwp.ident
    if t is None or t._preempt_off or ident is None:
        return False
    if not (len(lwp._live) > 1 or lwp._newq or lwp._inbox or lwp._calls or gil_wanted(lwp)):
        return False  # nothing else wants its LWP or the GIL: preempting it would only resume it
    hook = _hook(lwp)
    ticks = lwp.ticks
    if hook.ticks != ticks:
        hook.ticks = ticks
        hook.stays = 0
    if _ARMING_IS_GLOBAL:
        backoff_ticks, wait, waited = hook.backoff
        if backoff_ticks == ticks and waited < wait:
            hook.backoff = (ticks, wait, waited + 1)
            return False
    rc = _arm(ident, hook)  # noqa: F821 - installed by lwp_preempt_init
    if rc == _ALREADY and _ARMING_IS_GLOBAL:
        # Armed a sample ago and no event since: the thread is outside Python (in C,
        # blocked), or got no CPU.  On 3.12 an armed hook makes every thread pay for
        # line events, so remove it and try again after 1, 2, 4 ... 64 samples.
        _disarm(ident)  # noqa: F821
        backoff_ticks, wait, _ = hook.backoff
        hook.backoff = (ticks, min(2 * wait, 64) if backoff_ticks == ticks else 1, 0)
        return False
    if rc == _BUSY and hook.busy_ticks != ticks:
        hook.busy_ticks = ticks
        lwp.preempt_hook_busy += 1
        if lwp.preempt_hook_busy == 1:
            log.info("LWP-%d: another trace function (a debugger, coverage, sys.settrace) "
                     "holds the hook of its kernel thread; its threads are not preempted "
                     "while it does", lwp.index)
    return rc in (_ARMED, _ALREADY)


def disarm(lwp):
    """Remove an armed hook from ``lwp``'s kernel thread (any thread; GIL held)."""
    if _availability and lwp.ident is not None:
        return _disarm(lwp.ident)  # noqa: F821
    return False


def status(lwp):
    """``lwp``'s preemption state: "ready", "armed", "hook taken" (another trace
    function holds it), "not running", or "unavailable: <reason>"."""
    if not _availability:
        return f"unavailable: {_availability.reason}"
    owner = _owner(lwp.ident) if lwp.ident is not None else -1  # noqa: F821
    return {-1: "not running", 0: "ready", 1: "armed", 2: "hook taken"}[owner]


def counters(lwp):
    """``{"preemptions": n, "preempt_hook_busy": n}`` for ``lwp`` (for ``LWP.stats``)."""
    return {"preemptions": lwp.preemptions, "preempt_hook_busy": lwp.preempt_hook_busy}
