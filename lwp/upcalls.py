"""Watch the scheduler's upcalls: ``lwp.upcalls.subscribe(callback)``.

See :mod:`lwp._core.upcalls` for the events and what they carry::

    def trace(event, **info):
        print(event, info)

    unsubscribe = lwp.upcalls.subscribe(trace, events=("lwp_blocked", "lwp_added"))
"""

from ._core.upcalls import EVENTS, subscribe

__all__ = ["EVENTS", "subscribe"]
