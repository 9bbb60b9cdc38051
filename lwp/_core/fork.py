"""fork(): give the child process a working lwp.

``fork(2)`` copies only the calling kernel thread.  In the child every other
LWP, the monitor and the activation threads are gone, their locks may be held
by threads that no longer exist, and the eventfds and epoll sets are shared
with the parent.  ``after_fork_in_child`` (registered with
:func:`os.register_at_fork`) repairs each scheduler:

* If the fork was made by one of its green threads, that thread's LWP lives
  on: it gets a fresh eventfd and epoll set (threads waiting for I/O are
  re-registered), the unstarted threads of the lost LWPs move to it, their
  started threads end with :class:`ForkLostError` (their greenlets belonged
  to kernel threads that do not exist here; joiners wake up), calls in flight
  on activations fail with ``ECANCELED``, and new LWPs and a new monitor are
  started to bring the pool back to its configured size.
* Otherwise the scheduler has no kernel thread left in the child: it is
  dropped, like the threads of a forked process.  The default scheduler
  starts again on the next ``lwp.spawn``.
"""

import errno
import os
from _thread import allocate_lock
from threading import Event as _Event  # the real ones: bound before lwp.monkey runs
from threading import Semaphore as _Semaphore

from . import park, poller


class ForkLostError(RuntimeError):
    """A green thread whose LWP did not survive ``fork()`` in the child process."""


def after_fork_in_child():
    from . import scheduler as sched_mod

    poller.after_fork_in_child()
    here = park.current_lwp()
    for sched in sched_mod.active_schedulers():
        if here is not None and here.sched is sched:
            _rebuild(sched, here)
        else:
            _drop(sched)
    with_default = sched_mod._default
    if with_default is not None and (here is None or here.sched is not with_default):
        sched_mod._default = None
    sched_mod._default_lock = allocate_lock()


def _drop(sched):
    from . import scheduler as sched_mod

    sched_mod._schedulers.discard(sched)
    for lwp in sched.lwps():
        _close_fds(lwp)


def _close_fds(lwp):
    try:
        lwp._poller.close()
        os.close(lwp._wakefd)
    except OSError:
        pass


def _rebuild(sched, here):
    from .activation import Activations
    from .monitor import Monitor

    sched._lock = allocate_lock()
    for lwp in sched._created:
        lwp._lock = park.new_lock()
    lost = [lwp for lwp in sched.lwps() if lwp is not here]

    # A private eventfd and epoll set for the survivor; waiting fds move over.
    here._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    here._poller.reopen(here._wakefd)

    _fail_activations(sched, here)
    for lwp in lost:
        with lwp._lock:
            orphans = list(lwp._newq) + [t for t in lwp._inbox if t._glet is None]
            lwp._newq.clear()
        for t in orphans:
            here.push_new(t)
        for t in list(lwp._live):
            t._finish(None, ForkLostError(f"{t!r} was lost: its LWP does not exist after fork()"))
        _close_fds(lwp)

    sched._pool = [here] if here.kind != "bound" else []
    sched._bound = [here] if here.kind == "bound" else []
    sched._created = [here]
    sched._running_lwps = 1
    sched._started = _Semaphore(0)
    sched._all_stopped = _Event()
    sched.activations = Activations(sched)
    while len(sched._pool) < sched.configured_lwps:
        sched._add_lwp("pooled")
    if sched.monitor is not None:
        sched.monitor = Monitor(sched, sched.monitor.threshold, sched.monitor.log_every)
        sched.monitor.start()


def _fail_activations(sched, here):
    """Calls in flight on activations will never complete in the child: fail them."""
    cq = here._completions
    if cq is not None:
        here._wake_hooks.clear()
        here._completions = None
        for rec in list(cq._requests.values()):
            w, _op = rec.cookie
            w.wake(exc=OSError(errno.ECANCELED, "activation lost at fork()"))
    for job in list(sched.activations._python._running):
        job.waiter.wake(exc=OSError(errno.ECANCELED, "activation lost at fork()"))


os.register_at_fork(after_in_child=after_fork_in_child)
