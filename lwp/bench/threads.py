"""Starting a thread the same way in every thread-style library.

Thread-style peers (lwp, gevent, kernel threads) share one driver per case;
what differs is only how a thread is started and joined, which a
:data:`Starter` captures. Each starter imports its library when called, so
importing this module imports no peer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

#: Starts ``fn`` in a new thread of some library; returns a callable that joins it.
Starter = Callable[[Callable[[], Any]], Callable[[], Any]]

#: Environment variable through which the harness passes ``--lwps`` to the subprocess.
LWPS_ENV = "LWP_BENCH_LWPS"


def lwp_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
    """A green thread on the running lwp scheduler."""
    import lwp

    return lwp.spawn(fn).join


def gevent_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
    """A greenlet on gevent's hub."""
    import gevent

    return gevent.spawn(fn).join


def kernel_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
    """A ``threading.Thread``, started."""
    import threading

    thread = threading.Thread(target=fn)
    thread.start()
    return thread.join


#: ``lwp.stats()`` as the last :func:`lwp_run`'s ``main`` returned: the child
#: reports it, so each lwp row records how many LWPs ran it and how threads
#: moved between them (steals, remote wake-ups). None if lwp never ran.
last_lwp_stats: list[dict[str, Any]] | None = None


def lwp_run(main: Callable[..., Any], *args: Any, lwps: int | None = None,
            **options: Any) -> Any:
    """``lwp.run(main, *args, **options)`` on a fresh scheduler.

    ``lwps=None`` means the run's ``--lwps`` choice if one was given, else
    lwp's own default; an explicit number (``lwps=1`` for the hand-off cases)
    is kept whatever ``--lwps`` says.  ``options`` are further scheduler
    options (``time_slice=0`` for a row without preemption).
    """
    import lwp

    def measured(*args: Any) -> Any:
        global last_lwp_stats
        result = main(*args)
        last_lwp_stats = lwp.stats()
        return result

    if lwps is None and os.environ.get(LWPS_ENV):
        lwps = int(os.environ[LWPS_ENV])
    if lwps is None:
        return lwp.run(measured, *args, **options)
    return lwp.run(measured, *args, lwps=lwps, **options)
