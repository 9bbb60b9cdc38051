"""Cases on the life cycle of a thread: creating one and waiting for it.

``spawn_join`` starts an empty thread (or task) and waits for it, one at a
time, so each operation pays creation, one schedule of the new thread, its
exit and the wake-up of the joiner, and nothing overlaps. Each implementation
first runs a tenth of ``n`` unmeasured, to warm allocators and caches.
"""

from __future__ import annotations

from .case import Case
from .measure import clock, us_per_op
from .threads import Starter, gevent_thread, kernel_thread, lwp_run, lwp_thread

spawn_join = Case(
    name="spawn_join",
    description="spawn + join of an empty thread/task, sequentially in a loop",
    unit="us/op",
    params={"n": 20_000},
    quick={"n": 200},
)


def _empty() -> None:
    return None


async def _empty_async() -> None:
    return None


def _spawn_join(n: int, start: Starter) -> float:
    """The timed loop for every thread-style library."""

    def loop(count: int) -> None:
        for _ in range(count):
            start(_empty)()

    loop(n // 10)
    begin = clock()
    loop(n)
    return us_per_op(begin, clock(), n)


# Decorators apply bottom-up: this order puts the "lwp" row first.
@spawn_join.impl("lwp lwps=1", library="lwp", lwps=1)
@spawn_join.impl("lwp", note="lwp's default number of LWPs, or --lwps")
def _lwp(n: int, lwps: int | None = None) -> float:
    return lwp_run(_spawn_join, n, lwp_thread, lwps=lwps)


@spawn_join.impl("gevent", requires="gevent")
def _gevent(n: int) -> float:
    return _spawn_join(n, gevent_thread)


@spawn_join.impl("asyncio")
def _asyncio(n: int) -> float:
    import asyncio

    async def loop(count: int) -> None:
        for _ in range(count):
            await asyncio.create_task(_empty_async())

    async def main() -> float:
        await loop(n // 10)
        begin = clock()
        await loop(n)
        return us_per_op(begin, clock(), n)

    return asyncio.run(main())


@spawn_join.impl(
    "trio",
    requires="trio",
    note="trio has no join handle: one nursery per task is its way to start one and wait for it",
)
def _trio(n: int) -> float:
    import trio

    async def loop(count: int) -> None:
        for _ in range(count):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_empty_async)

    async def main() -> float:
        await loop(n // 10)
        begin = clock()
        await loop(n)
        return us_per_op(begin, clock(), n)

    return trio.run(main)


@spawn_join.impl("threading", note="a kernel thread per operation")
def _threading(n: int) -> float:
    return _spawn_join(n, kernel_thread)
