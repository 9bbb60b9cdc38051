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
3. if fewer LWPs than configured can run while threads wait, a *compensating*
   LWP is started (up to ``max_lwps`` in all), as Solaris added an LWP on
   SIGWAITING and Java's ForkJoinPool compensates for a blocked worker;
4. the stuck thread's name and stack are logged on the ``lwp.monitor`` logger,
   at most once per stall and ``log_every`` seconds overall.

When the LWP switches again, ``lwp_unblocked`` goes out.  Compensating LWPs
retire once idle for ``retire_after`` seconds.

Cost: the hot path only bumps the LWP's switch counter, which it does anyway.
The monitor polls every ``threshold / 2`` while some LWP is awake and backs off
to 10 ms while all sleep, so an idle process wakes it 100 times a second.
"""

import logging
import os
import sys
import threading
import time
import traceback

log = logging.getLogger("lwp.monitor")

IDLE_PERIOD = 0.010


def default_threshold():
    """``$LWP_STALL_MS`` milliseconds, default 5."""
    return float(os.environ.get("LWP_STALL_MS", "5")) / 1000.0


class Monitor:
    def __init__(self, sched, threshold, log_every=10.0):
        if not threshold > 0:
            raise ValueError(f"stall threshold must be > 0 seconds, got {threshold!r}")
        self.sched = sched
        self.threshold = threshold
        self.log_every = log_every
        self._last_log = -log_every
        self._stop = threading.Event()
        self._seen = {}  # lwp -> (ticks, monotonic time they last changed)
        self._thread = threading.Thread(target=self._run, name=f"{sched.name}-monitor", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _run(self):
        period = self.threshold / 2
        while not self._stop.wait(period):
            period = self.threshold / 2 if self.check(time.monotonic()) else min(period * 2, IDLE_PERIOD)

    def check(self, now):
        """One sample of every LWP; returns True if any was awake."""
        awake = False
        for lwp in self.sched.lwps():
            ticks = lwp.ticks
            last = self._seen.get(lwp)
            if last is None or last[0] != ticks or lwp.busy_since is None:
                self._seen[lwp] = (ticks, now)
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
                self._report(lwp, stalled_for)
                self.sched.lwp_blocked(lwp, stalled_for)
            elif lwp.stalled_since is not None:
                self.sched.lwp_still_blocked(lwp)
        for lwp in [x for x in self._seen if x.ident is not None and not x._thread.is_alive()]:
            del self._seen[lwp]
        return awake

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
