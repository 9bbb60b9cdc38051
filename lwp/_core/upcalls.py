"""Upcalls: the scheduler's notices of what happened, after scheduler activations.

In Anderson et al.'s design the kernel tells the user-level scheduler, through
upcalls, that a thread blocked or unblocked and that a processor was added or
preempted.  lwp has no kernel support, so it makes the same events itself:

``thread_blocked``    a green thread entered a call lwp runs on an activation
                      (``thread``, ``call``), so its LWP goes on with others;
``thread_unblocked``  that call finished (``thread``, ``call``);
``lwp_added``         an LWP started (``lwp``, ``kind``: pooled, compensating, bound);
``lwp_blocked``       the monitor saw an LWP pass no scheduling point for longer
                      than its threshold (``lwp``, ``thread``: what it runs,
                      ``stalled_for``: seconds);
``lwp_unblocked``     that LWP switched again (``lwp``, ``stalled_for``);
``lwp_retired``       an LWP stopped (``lwp``, ``kind``).

The scheduler reacts to them itself (see ``Scheduler.lwp_blocked``).  Anyone
may also :func:`subscribe` to watch them, for tracing, metrics or tests.
Subscribers run on whatever kernel thread raised the event (an LWP's hub, the
monitor, an activation's LWP) and must not block; an exception they raise is
reported through ``sys.unraisablehook`` and does not disturb the scheduler.
"""

from _thread import allocate_lock

from .exceptions import report_unraisable

EVENTS = ("thread_blocked", "thread_unblocked", "lwp_added", "lwp_blocked", "lwp_unblocked",
          "lwp_retired")

_lock = allocate_lock()
_subscribers = ()  # replaced, never mutated, so emit() reads it without a lock


def subscribe(callback, events=EVENTS):
    """Call ``callback(event, **info)`` for each upcall in ``events``.

    Returns a function that unsubscribes.  Unknown event names raise ValueError.
    """
    global _subscribers
    events = (events,) if isinstance(events, str) else tuple(events)
    unknown = set(events) - set(EVENTS)
    if unknown:
        raise ValueError(f"unknown upcall event(s) {sorted(unknown)}; known: {EVENTS}")
    if not callable(callback):
        raise TypeError("callback must be callable")
    entry = (callback, frozenset(events))
    with _lock:
        _subscribers = _subscribers + (entry,)

    def unsubscribe():
        global _subscribers
        with _lock:
            _subscribers = tuple(e for e in _subscribers if e is not entry)

    return unsubscribe


def emit(event, **info):
    """Deliver ``event`` to the subscribers that asked for it."""
    for callback, events in _subscribers:
        if event in events:
            try:
                callback(event, **info)
            except BaseException as e:  # noqa: B036 - a subscriber must not break the scheduler
                report_unraisable(e, callback, "Exception in an lwp upcall subscriber")


def active():
    """True if anyone subscribed: lets hot paths skip building ``info``."""
    return bool(_subscribers)

