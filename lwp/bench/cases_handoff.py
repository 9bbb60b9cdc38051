"""Cases on waking another thread: the cost of one hand-off through a primitive.

Both cases time every operation on the waiting side with :data:`clock` (one
call per round trip or item, ~70 ns, paid equally by every peer), so they
report p99 besides the mean. A tenth of ``n`` runs first, unmeasured. lwp
runs on one LWP (``lwps=1``): the fair comparison with the single-threaded
event loops, since a hand-off between two LWPs would also cross kernel
threads.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from .case import Case
from .measure import clock, intervals_us
from .threads import Starter, gevent_thread, kernel_thread, lwp_run, lwp_thread

event_handoff = Case(
    name="event_handoff",
    description=(
        "ping-pong through two Events (A sets ev1, waits ev2; B waits ev1, clears, sets ev2);"
        " time per one-way hand-off, lwp on 1 LWP"
    ),
    unit="us/op",
    params={"n": 20_000},
    quick={"n": 500},
    tail=True,
)

queue_handoff = Case(
    name="queue_handoff",
    description=(
        "producer -> consumer through a bounded queue (maxsize=1); time per item,"
        " lwp on 1 LWP"
    ),
    unit="us/op",
    params={"n": 20_000},
    quick={"n": 500},
    tail=True,
)


def _event_pingpong(n: int, make_event: Callable[[], Any], start: Starter) -> list[float]:
    """``n`` timed round trips between the calling thread and a new one.

    Shared by every thread-style library: only the Event class and the way to
    start a thread differ. Returns the one-way time of each round trip.
    """
    ev1, ev2 = make_event(), make_event()

    def pong() -> None:
        for _ in range(n // 10 + n):
            ev1.wait()
            ev1.clear()
            ev2.set()

    def ping(count: int) -> list[int]:
        stamps = [clock()]
        for _ in range(count):
            ev1.set()
            ev2.wait()
            ev2.clear()
            stamps.append(clock())
        return stamps

    join = start(pong)
    ping(n // 10)
    stamps = ping(n)
    join()
    return intervals_us(stamps, 2)


def _queue_pipeline(n: int, queue: Any, start: Starter) -> list[float]:
    """``n`` timed items from a new producer thread to the calling thread.

    Shared by every thread-style library; ``queue`` is an empty bounded queue
    with blocking ``put`` and ``get``. Returns the consumer-side time of each item.
    """

    def produce() -> None:
        for item in range(n // 10 + n):
            queue.put(item)

    def consume(count: int) -> list[int]:
        stamps = [clock()]
        for _ in range(count):
            queue.get()
            stamps.append(clock())
        return stamps

    join = start(produce)
    consume(n // 10)
    stamps = consume(n)
    join()
    return intervals_us(stamps)


# Decorators apply bottom-up: this order puts the "lwp" row first.
@event_handoff.impl("lwp slices off", library="lwp", time_slice=0,
                    note="time_slice=0: no preemption, what the monitor's slices cost the switch path")
@event_handoff.impl("lwp")
def _lwp_event(n: int, time_slice: float | None = None) -> list[float]:
    import lwp

    return lwp_run(lambda: _event_pingpong(n, lwp.Event, lwp_thread), lwps=1, time_slice=time_slice)


@event_handoff.impl("gevent", requires="gevent")
def _gevent_event(n: int) -> list[float]:
    from gevent.event import Event

    return _event_pingpong(n, Event, gevent_thread)


@event_handoff.impl("asyncio")
def _asyncio_event(n: int) -> list[float]:
    import asyncio

    async def main() -> list[float]:
        ev1, ev2 = asyncio.Event(), asyncio.Event()

        async def pong() -> None:
            for _ in range(n // 10 + n):
                await ev1.wait()
                ev1.clear()
                ev2.set()

        async def ping(count: int) -> list[int]:
            stamps = [clock()]
            for _ in range(count):
                ev1.set()
                await ev2.wait()
                ev2.clear()
                stamps.append(clock())
            return stamps

        other = asyncio.create_task(pong())
        await ping(n // 10)
        stamps = await ping(n)
        await other
        return intervals_us(stamps, 2)

    return asyncio.run(main())


@event_handoff.impl(
    "trio",
    requires="trio",
    note="trio.Event cannot be cleared: each side replaces the Event it woke on, trio's idiom",
)
def _trio_event(n: int) -> list[float]:
    import trio

    async def main() -> list[float]:
        # Shared by both tasks, so that each sees the other's replacement Event.
        ev = SimpleNamespace(one=trio.Event(), two=trio.Event())

        async def pong() -> None:
            for _ in range(n // 10 + n):
                await ev.one.wait()
                ev.one = trio.Event()
                ev.two.set()

        async def ping(count: int) -> list[int]:
            stamps = [clock()]
            for _ in range(count):
                ev.one.set()
                await ev.two.wait()
                ev.two = trio.Event()
                stamps.append(clock())
            return stamps

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pong)
            await ping(n // 10)
            stamps = await ping(n)
        return intervals_us(stamps, 2)

    return trio.run(main)


@event_handoff.impl("threading", note="two kernel threads: each hand-off is an OS wake-up and a GIL hand-over")
def _threading_event(n: int) -> list[float]:
    import threading

    return _event_pingpong(n, threading.Event, kernel_thread)


@event_handoff.impl(
    "greenlet switch",
    library="greenlet",
    requires="greenlet",
    note="the floor: two bare greenlet switches per round trip, no Event and no scheduler",
)
def _greenlet_switch(n: int) -> list[float]:
    from greenlet import getcurrent, greenlet

    main = getcurrent()

    def pong() -> None:
        for _ in range(n // 10 + n):
            main.switch()

    other = greenlet(pong)

    def ping(count: int) -> list[int]:
        stamps = [clock()]
        for _ in range(count):
            other.switch()
            stamps.append(clock())
        return stamps

    ping(n // 10)
    stamps = ping(n)
    other.switch()  # let pong return, so no greenlet is left suspended
    return intervals_us(stamps, 2)


@queue_handoff.impl("lwp")
def _lwp_queue(n: int) -> list[float]:
    import lwp

    return lwp_run(lambda: _queue_pipeline(n, lwp.Queue(maxsize=1), lwp_thread), lwps=1)


@queue_handoff.impl("gevent", requires="gevent")
def _gevent_queue(n: int) -> list[float]:
    from gevent.queue import Queue

    return _queue_pipeline(n, Queue(maxsize=1), gevent_thread)


@queue_handoff.impl("asyncio")
def _asyncio_queue(n: int) -> list[float]:
    import asyncio

    async def main() -> list[float]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)

        async def produce() -> None:
            for item in range(n // 10 + n):
                await queue.put(item)

        async def consume(count: int) -> list[int]:
            stamps = [clock()]
            for _ in range(count):
                await queue.get()
                stamps.append(clock())
            return stamps

        producer = asyncio.create_task(produce())
        await consume(n // 10)
        stamps = await consume(n)
        await producer
        return intervals_us(stamps)

    return asyncio.run(main())


@queue_handoff.impl(
    "trio",
    requires="trio",
    note="trio has no bounded queue: a memory channel of size 0, where each send waits for its receive",
)
def _trio_queue(n: int) -> list[float]:
    import trio

    async def main() -> list[float]:
        send, receive = trio.open_memory_channel(0)

        async def produce() -> None:
            async with send:
                for item in range(n // 10 + n):
                    await send.send(item)

        async def consume(count: int) -> list[int]:
            stamps = [clock()]
            for _ in range(count):
                await receive.receive()
                stamps.append(clock())
            return stamps

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await consume(n // 10)
            stamps = await consume(n)
        return intervals_us(stamps)

    return trio.run(main)


@queue_handoff.impl("threading", note="queue.Queue between two kernel threads")
def _threading_queue(n: int) -> list[float]:
    import queue

    return _queue_pipeline(n, queue.Queue(maxsize=1), kernel_thread)
