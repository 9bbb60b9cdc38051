"""Cases on what a thread costs in memory while it waits.

``parked_memory`` starts ``n`` threads that each wait on one shared Event and
reads the process's RSS before the first start and once every thread has
parked; the result is the growth divided by ``n``. It counts everything a
parked thread keeps alive (its stack or frame, the library's thread object,
its handle in the driver's list), which is what a server with many idle
connections pays. The threads are then released and joined, unmeasured, so
that a library which cannot finish them shows up as an error.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from .case import Case
from .measure import rss_bytes
from .threads import Starter, gevent_thread, kernel_thread, lwp_run, lwp_thread

#: Kernel threads are capped at this many: 100,000 of them would exhaust the
#: machine rather than measure it. Bytes per thread are still growth / count.
THREADING_CAP = 2_000

#: Pause after the last thread reports in, so that a thread which has counted
#: itself but not yet blocked (possible on several LWPs or kernel threads) parks.
_SETTLE_S = 0.05

parked_memory = Case(
    name="parked_memory",
    description="RSS growth per thread parked on an Event (n threads, then all released and joined)",
    unit="B/thread",
    params={"n": 100_000},
    quick={"n": 2_000},
)


def _park(
    n: int,
    make_event: Callable[[], Any],
    start: Starter,
    sleep: Callable[[float], Any],
    phases: dict[str, float] | None = None,
) -> float:
    """The measurement for every thread-style library; ``sleep`` yields to it.

    If ``phases`` is given, it receives the RSS growth in bytes and the
    seconds each phase took: starting the ``n`` threads, until all of them
    parked, setting the Event, joining them all.
    """
    event = make_event()
    parked: list[None] = []

    def waiter() -> None:
        parked.append(None)
        event.wait()

    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    joins = [start(waiter) for _ in range(n)]
    t1 = time.perf_counter()
    while len(parked) < n:
        sleep(0.001)
    t2 = time.perf_counter()
    sleep(_SETTLE_S)
    gc.collect()
    grown = rss_bytes() - before
    t3 = time.perf_counter()
    event.set()
    t4 = time.perf_counter()
    for join in joins:
        join()
    t5 = time.perf_counter()
    if phases is not None:
        phases.update(rss_growth=grown, spawn_s=t1 - t0, park_s=t2 - t1, release_s=t4 - t3,
                      join_s=t5 - t4)
    return grown / n


@parked_memory.impl("lwp")
def _lwp(n: int) -> float:
    import lwp

    return lwp_run(_park, n, lwp.Event, lwp_thread, lwp.sleep)


@parked_memory.impl("gevent", requires="gevent")
def _gevent(n: int) -> float:
    import gevent
    from gevent.event import Event

    return _park(n, Event, gevent_thread, gevent.sleep)


@parked_memory.impl("asyncio")
def _asyncio(n: int) -> float:
    import asyncio

    async def main() -> float:
        event = asyncio.Event()
        parked: list[None] = []

        async def waiter() -> None:
            parked.append(None)
            await event.wait()

        gc.collect()
        before = rss_bytes()
        tasks = [asyncio.create_task(waiter()) for _ in range(n)]
        while len(parked) < n:
            await asyncio.sleep(0.001)
        await asyncio.sleep(_SETTLE_S)
        gc.collect()
        grown = rss_bytes() - before
        event.set()
        await asyncio.gather(*tasks)
        return grown / n

    return asyncio.run(main())


@parked_memory.impl("trio", requires="trio")
def _trio(n: int) -> float:
    import trio

    async def main() -> float:
        event = trio.Event()
        parked: list[None] = []

        async def waiter() -> None:
            parked.append(None)
            await event.wait()

        gc.collect()
        before = rss_bytes()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(waiter)
            while len(parked) < n:
                await trio.sleep(0.001)
            await trio.sleep(_SETTLE_S)
            gc.collect()
            grown = rss_bytes() - before
            event.set()
        return grown / n

    return trio.run(main)


@parked_memory.impl("threading", note=f"kernel threads: at most {THREADING_CAP:,} of them, bytes per thread scaled to that count")
def _threading(n: int) -> float:
    import threading

    return _park(min(n, THREADING_CAP), threading.Event, kernel_thread, time.sleep)


def parked_million(n: int = 1_000_000, lwps: int | None = None) -> dict[str, float]:
    """``n`` lwp threads parked on one Event at once: RSS and the time of each phase.

    Not a case of ``python -m lwp.bench`` (a million threads of every peer
    would take gigabytes each); run it on its own with
    ``python -m lwp.bench.cases_memory [--n N] [--lwps N]``.
    """
    import lwp

    phases: dict[str, float] = {}
    kwargs = {} if lwps is None else {"lwps": lwps}
    per_thread = lwp.run(_park, n, lwp.Event, lwp_thread, lwp.sleep, phases, **kwargs)
    return {"threads": n, "bytes_per_thread": per_thread, **phases}


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lwp.bench.cases_memory",
                                     description=parked_million.__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="threads to park (default 1,000,000)")
    parser.add_argument("--lwps", type=int, default=None, help="LWPs (default: lwp's default)")
    args = parser.parse_args()
    if args.n < 1:
        parser.error("--n must be at least 1")
    r = parked_million(args.n, args.lwps)
    print(f"{r['threads']:,} threads parked on one Event: RSS grew {r['rss_growth'] / 2**30:.2f} GiB,"
          f" {r['bytes_per_thread']:,.0f} B/thread\n"
          f"  spawn {r['spawn_s']:.1f} s, all parked after {r['park_s']:.1f} s more,"
          f" Event.set {r['release_s']:.2f} s, join all {r['join_s']:.1f} s")


if __name__ == "__main__":
    _main()
