"""The monitor: notices LWPs stuck in code lwp cannot see, and compensates.

lwp intercepts the blocking calls it knows.  Others (a C extension waiting in
the kernel, a ``ctypes`` call, a long CPU-bound loop) hold their LWP without
passing a scheduling point.  The monitor is one kernel thread per scheduler,
like Go's ``sysmon``: it samples each LWP's switch counter, and an LWP that is
awake but has not switched for longer than ``threshold`` is *stalled*.  Then:

1. the ``lwp_blocked`` upcall goes out (``Scheduler.lwp_blocked`` reacts);
2. the stalled LWP's unstarted threads move to LWPs that can run them (a
   started thread cannot move: its greenlet is bound to the stalled kernel
   thread);
3. at each later sample the monitor looks where the stalled kernel thread
   is: if its frame, its instruction and its CPU time (the kernel's
   per-thread clock) did not move, and the stall is two thresholds old, it is
   blocked outside Python (in the kernel or in C that released the GIL, not
   merely waiting its turn for the GIL), unless the kernel says the thread
   is runnable (state ``R`` in ``/proc/self/task/<tid>/stat``): then it is
   *starved*, waiting for a CPU the machine has not given it, as under a
   burst of load on few cores.  A blocked thread, and only a blocked one, is
   *compensated*: if fewer LWPs than configured can run while threads wait,
   compensating LWPs start, as many as it takes (no more than there are
   unstarted threads for them, up to ``max_lwps`` in all), as Solaris added
   an LWP on SIGWAITING and Java's ForkJoinPool compensates for a blocked
   worker.  In this count an LWP cannot run once it is stalled, or once it
   *looks blocked*: awake a whole sample without a switch, its kernel thread
   not runnable (``looks_blocked``).  Threads that block one after another
   block each LWP added for them at once; waiting for that LWP to stall too
   would let only one such call start per threshold and configured LWP.  A
   thread that is running Python (a long computation) gets no
   compensation: under the GIL another LWP would only compete with it for the
   interpreter; preemption is the answer there.  Nor does a starved one
   (Go's ``sysmon`` too hands off only a thread blocked in a system call):
   another kernel thread would wait for the same CPUs, and, owning the
   threads moved to it, would outlive the burst and share the GIL for the
   rest of the run.  Its unstarted threads still move to the LWPs already
   there, which cost nothing to use and may have a CPU.  ``/proc`` is read
   only for an LWP that has not switched for a sample, when one of these
   decisions needs it; where it cannot be read, the thread counts as
   blocked;
4. a stall that lasts longer than ``log_after`` (``$LWP_STALL_LOG_MS``,
   default 500 ms) is logged on the ``lwp.monitor`` logger with the stuck
   thread's name and stack, at most once per stall and every ``log_every``
   seconds overall.

When the LWP switches again, ``lwp_unblocked`` goes out.  Compensating LWPs
retire once idle for ``retire_after`` seconds.

The monitor also enforces time slices: an LWP that has not switched for longer
than ``time_slice`` gets its running thread preempted at its next safe point
(:func:`lwp._core.preempt.arm`; see that module), also a thread alone on its
LWP while other LWPs wait for the GIL.  Stall handling is unchanged.

The monitor also flags CPU hogs for the other LWPs: ``Monitor.hog`` is true
while some LWP runs Python past its slice (or is stalled in Python), and for
``HOG_MEMORY`` after.  Then each release of the GIL costs the releasing LWP a
switch interval, so an LWP about to sleep while its native requests are about
to complete waits for them holding the GIL instead (``LWP._idle``).

The monitor also shares work: an LWP that has started no new thread between
two samples while unstarted threads wait in its queue gets an idle LWP woken
to steal half of them (``Scheduler.backlog_persists``).

Cost: the hot path only bumps the LWP's switch counter, which it does anyway.
The monitor polls every ``min(threshold, time_slice) / 2`` while some LWP is
awake and backs off to 10 ms while all sleep, so an idle process wakes it 100
times a second.
"""

import logging
import os
import sys
import time
import traceback
from threading import Event as _Event  # the real one: bound before lwp.monkey runs

from . import preempt
from .lwp import KernelThread

log = logging.getLogger("lwp.monitor")

IDLE_PERIOD = 0.010
HOG_MEMORY = 0.1  # seconds ``Monitor.hog`` stays true after the last sight of a hog


def default_log_after():
    """``$LWP_STALL_LOG_MS`` milliseconds, default 500: stalls shorter are not logged."""
    return float(os.environ.get("LWP_STALL_LOG_MS", "500")) / 1000.0


def default_threshold():
    """``$LWP_STALL_MS`` milliseconds, default 5."""
    return float(os.environ.get("LWP_STALL_MS", "5")) / 1000.0


def task_state(tid):
    """The kernel's one-letter state of this process's thread ``tid`` (``R``
    runnable, ``S`` sleeping, ``D`` in uninterruptible wait, ...), or None
    where ``/proc`` does not say.

    Only the state tells a starved thread from a blocked one: the run-queue
    wait in ``schedstat`` grows only when the thread gets a CPU again, and
    then its CPU clock moves too.
    """
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "tid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ')'
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return state.decode("ascii", "replace") or None


class Monitor:
    # how the monitor asks the kernel for a thread's state; tests substitute a fake
    task_state = staticmethod(task_state)

    def __init__(self, sched, threshold, log_after=None, log_every=10.0, time_slice=None):
        if not threshold > 0:
            raise ValueError(f"stall threshold must be > 0 seconds, got {threshold!r}")
        self.sched = sched
        self.threshold = threshold
        # seconds a thread may run without switching before it is preempted; 0: never
        self.time_slice = (preempt.default_slice() if time_slice is None
                           else preempt.check_slice(time_slice))
        self.log_after = default_log_after() if log_after is None else log_after
        self.log_every = log_every
        self._where = {}      # stalled lwp -> its last _position()
        self._logged = set()  # stalled LWPs already logged for this stall
        self._last_log = -log_every
        self._stop = _Event()
        self._last_check = None  # time of the previous sample
        self._seen = {}     # lwp -> (ticks, monotonic time they last changed)
        self._backlog = {}  # lwp -> threads_run when a backlog was last seen, else None
        self._looks_blocked = {}  # lwp -> looks_blocked(lwp), for this sample
        # True while some LWP runs one thread past its time slice, or is stalled and not
        # known to be blocked outside Python, and for HOG_MEMORY after (a preempted hog
        # switches, then overruns its next slice): another kernel thread that gives the GIL
        # away then waits a switch interval to get it back.  Written by the monitor thread
        # only, read as a hint by LWPs (LWP._spin_for_completions).
        self.hog = False
        self._hog_seen = None  # when a hog was last seen
        self._thread = KernelThread(target=self._run, name=f"{sched.name}-monitor", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _busy_period(self):
        return min(self.threshold, self.time_slice or self.threshold) / 2

    def _run(self):
        period = self._busy_period()
        while not self._stop.wait(period):
            period = self._busy_period() if self.check(time.monotonic()) else min(period * 2, IDLE_PERIOD)

    def check(self, now):
        """One sample of every LWP; returns True if any was awake."""
        awake = hog = False
        gap = 0.0 if self._last_check is None else now - self._last_check  # since the last sample
        self._last_check = now
        self._looks_blocked.clear()
        for lwp in self.sched.lwps():
            if lwp._newq and lwp.busy_since is not None and self._backlog.get(lwp) == lwp.threads_run:
                self.sched.backlog_persists(lwp)
            self._backlog[lwp] = lwp.threads_run if lwp._newq else None
            ticks = lwp.ticks
            last = self._seen.get(lwp)
            if self.time_slice and lwp.busy_since is not None:
                same = last is not None and last[0] == ticks
                ran = now - max(last[1], lwp.busy_since) if same else None
                if preempt.overran(lwp, ticks, now, ran, gap, self.time_slice):
                    hog = True
                    preempt.arm(lwp)  # its thread used up its slice: suspend it at a safe point
            if last is None or last[0] != ticks or lwp.busy_since is None:
                self._seen[lwp] = (ticks, now)
                self._where.pop(lwp, None)
                if lwp.stalled_since is not None:
                    stalled_for = now - lwp.stalled_since
                    lwp.stalled_since = None
                    self.sched.lwp_unblocked(lwp, stalled_for)
                awake = awake or lwp.busy_since is not None
                continue
            awake = True
            stalled_for = now - max(last[1], lwp.busy_since)
            if lwp.stalled_since is None and stalled_for > self.threshold:
                lwp.stalled_since = now - stalled_for
                self._where[lwp] = self._position(lwp)
                self.sched.lwp_blocked(lwp, stalled_for)
            elif lwp.stalled_since is not None:
                where, self._where[lwp] = self._where.get(lwp), self._position(lwp)
                still = (where == self._where[lwp] and where is not None
                         and stalled_for >= 2 * self.threshold)
                cause = "python" if not still else "starved" if self._runnable(lwp) else "blocked"
                hog = hog or cause == "python"
                self.sched.lwp_still_blocked(lwp, cause)
                if stalled_for > self.log_after and lwp not in self._logged:
                    self._logged.add(lwp)
                    self._report(lwp, stalled_for)
            if lwp.stalled_since is None:
                self._logged.discard(lwp)
        for lwp in self.sched.lwps():
            if lwp not in self._seen:  # added by this sample's compensation: watched from now
                self._seen[lwp] = (lwp.ticks, time.monotonic())
        for lwp in [x for x in self._seen if x.ident is not None and not x._thread.is_alive()]:
            for table in (self._seen, self._backlog, self._where):
                table.pop(lwp, None)
            self._logged.discard(lwp)
        if hog:
            self._hog_seen = now
        self.hog = self._hog_seen is not None and now - self._hog_seen < HOG_MEMORY
        return awake

    def looks_blocked(self, lwp):
        """True if ``lwp`` has been awake a whole sample period without a switch
        and its kernel thread is not runnable (not running Python, not waiting
        for a CPU): it cannot take a thread now.  Monitor thread only.

        One sample of evidence, where confirming a blocked LWP takes a stall
        threshold and more: the scheduler counts with it the LWPs that can run
        when it compensates for one already confirmed (``_move_new_threads``).
        A thread waiting that long for the GIL looks the same; an LWP added for
        it takes the unstarted threads queued behind it and, idle, retires.
        ``/proc`` is read at most once per LWP per sample.
        """
        known = self._looks_blocked.get(lwp)
        if known is None:
            last, since = self._seen.get(lwp), lwp.busy_since
            known = (last is not None and since is not None and last[0] == lwp.ticks
                     and self._last_check - max(last[1], since) >= self._busy_period()
                     and self.task_state(lwp._thread.native_id) != "R")
            self._looks_blocked[lwp] = known
        return known

    @staticmethod
    def _position(lwp):
        """Where the LWP's kernel thread is and how much CPU it has used.

        Running Python moves the frame's instruction and uses CPU.  Waiting for
        the GIL uses CPU too, in bursts: the holder must hand it over every
        ``sys.getswitchinterval()``.  Only a thread blocked in the kernel or in
        C code keeps both still from one sample to the next.
        """
        frame = sys._current_frames().get(lwp.ident)
        if frame is None:
            return None
        try:
            cpu = time.clock_gettime(time.pthread_getcpuclockid(lwp.ident))
        except (OSError, AttributeError):  # no per-thread CPU clock here
            cpu = None
        return id(frame), frame.f_lasti, cpu

    def _runnable(self, lwp):
        """True if the kernel has ``lwp``'s thread runnable (it waits for a CPU)."""
        return self.task_state(lwp._thread.native_id) == "R"

    def _report(self, lwp, stalled_for):
        now = time.monotonic()
        if now - self._last_log < self.log_every or not log.isEnabledFor(logging.WARNING):
            return
        self._last_log = now
        thread = lwp.current
        frame = sys._current_frames().get(lwp.ident)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)\n"
        log.warning("LWP-%d stalled for %.1f ms running %r; it did not reach a scheduling "
                    "point (a blocking call lwp does not intercept, or a long computation):\n%s",
                    lwp.index, stalled_for * 1000, thread, stack)
