"""Cases on blocking calls: what one call that blocks does to everyone else.

``stall_*``: 8 threads each make an *unpatchable* blocking C call (libc
``usleep(100 ms)`` through ctypes, which no library intercepts) while a
heartbeat thread sleeps 1 ms in a loop, and 20 ms into the stall a new thread
is spawned.  Each library runs the naive code: no explicit offloading.  Three
numbers come from one run: the time until all 8 calls are done, the longest
heartbeat gap, and how long the new thread waited to start.  lwp runs on
2 LWPs: its monitor and compensating LWPs are what is measured.

``offloaded_io*``: 64 threads make 20,000 reads of 4 KiB at random offsets of
a 64 MiB file through each library's way of keeping file I/O off the event
loop (lwp: ``lwp.open``, native activations; gevent: its thread pool;
asyncio/uvloop: ``run_in_executor``; trio: ``to_thread.run_sync``; threads:
``os.pread`` in 64 kernel threads, the practical ceiling).  The
``_cpu_hog`` variant adds one thread spinning in a Python loop for 1 s and
counts the reads completed meanwhile (its workers have 200,000 offsets, so that
no library runs out of work within the second: with 20,000 the figure could
not pass 20,000 reads/s); a cooperative scheduler whose threads share the
hog's kernel thread gets none done (see the preemption issue).
"""

from __future__ import annotations

import ctypes
import os
import random
from typing import Any

from .case import Case
from .measure import clock
from .threads import Starter, gevent_thread, kernel_thread, lwp_run, lwp_thread

CALLS, CALL_US, HEARTBEAT_S = 8, 100_000, 0.001

_STALL_METRICS = {
    "stall_total": ("time until all 8 blocking 100 ms calls are done", "ms"),
    "stall_heartbeat": ("longest gap of a 1 ms heartbeat during the stall", "ms"),
    "stall_spawn_latency": ("wait before a thread spawned 20 ms into the stall runs", "ms"),
}
stall_cases = {
    name: Case(name=name, description=f"{what}; naive code, lwp on 2 LWPs", unit=unit,
               params={"metric": name, "call_us": CALL_US},
               quick={"metric": name, "call_us": CALL_US // 10})
    for name, (what, unit) in _STALL_METRICS.items()
}


def _stall_threads(start: Starter, sleep: Any, call_us: int) -> dict[str, float]:
    """The stall scenario for thread-style libraries (lwp, gevent, kernel threads)."""
    state = {"stop": False, "gap": 0.0}

    def heartbeat() -> None:
        last = clock()
        while not state["stop"]:
            sleep(HEARTBEAT_S)
            now = clock()
            state["gap"] = max(state["gap"], now - last)
            last = now

    hb = start(heartbeat)
    sleep(0.01)
    t0 = clock()
    usleep = ctypes.CDLL(None).usleep
    joins = [start(lambda: usleep(call_us)) for _ in range(CALLS)]
    sleep(0.02)
    ran: list[int] = []
    spawned_at = clock()
    late = start(lambda: ran.append(clock()))
    for join in joins:
        join()
    total = clock() - t0
    late()
    state["stop"] = True
    hb()
    return {"stall_total": total / 1e6, "stall_heartbeat": state["gap"] / 1e6,
            "stall_spawn_latency": (ran[0] - spawned_at) / 1e6}


async def _stall_asyncio(call_us: int) -> dict[str, float]:
    import asyncio

    state = {"stop": False, "gap": 0.0}

    async def heartbeat() -> None:
        last = clock()
        while not state["stop"]:
            await asyncio.sleep(HEARTBEAT_S)
            now = clock()
            state["gap"] = max(state["gap"], now - last)
            last = now

    async def call() -> None:
        ctypes.CDLL(None).usleep(call_us)

    hb = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    t0 = clock()
    calls = [asyncio.create_task(call()) for _ in range(CALLS)]
    await asyncio.sleep(0.02)
    ran: list[int] = []
    spawned_at = clock()

    async def newcomer() -> None:
        ran.append(clock())

    late = asyncio.create_task(newcomer())
    await asyncio.gather(*calls)
    total = clock() - t0
    await late
    state["stop"] = True
    await hb
    return {"stall_total": total / 1e6, "stall_heartbeat": state["gap"] / 1e6,
            "stall_spawn_latency": (ran[0] - spawned_at) / 1e6}


def _register_stall(case: Case) -> None:
    @case.impl("lwp")
    def _lwp(metric: str, call_us: int) -> float:
        import lwp

        return lwp_run(lambda: _stall_threads(lwp_thread, lwp.sleep, call_us), lwps=2)[metric]

    @case.impl("gevent", requires="gevent")
    def _gevent(metric: str, call_us: int) -> float:
        import gevent

        return _stall_threads(gevent_thread, gevent.sleep, call_us)[metric]

    @case.impl("asyncio")
    def _asyncio(metric: str, call_us: int) -> float:
        import asyncio

        return asyncio.run(_stall_asyncio(call_us))[metric]

    @case.impl("uvloop", requires="uvloop")
    def _uvloop(metric: str, call_us: int) -> float:
        import uvloop

        return uvloop.run(_stall_asyncio(call_us))[metric]

    @case.impl("threading", note="a kernel thread per call: the OS runs them all at once")
    def _threading(metric: str, call_us: int) -> float:
        import time

        return _stall_threads(kernel_thread, time.sleep, call_us)[metric]


for _case in stall_cases.values():
    _register_stall(_case)


# -- offloaded file reads ------------------------------------------------------------------

FILE_SIZE, READ_SIZE = 64 << 20, 4096

offloaded_io = Case(
    name="offloaded_io",
    description="64 threads read 4 KiB at random offsets of a 64 MiB file, off the event loop",
    unit="reads/s", better="higher",
    params={"reads": 20_000, "threads": 64, "hog_s": 0.0},
    quick={"reads": 500, "threads": 8, "hog_s": 0.0},
)
offloaded_io_cpu_hog = Case(
    name="offloaded_io_cpu_hog",
    description="offloaded_io while one thread spins in a Python loop (lwp on 2 LWPs)",
    unit="reads/s", better="higher",
    params={"reads": 200_000, "threads": 64, "hog_s": 1.0},
    quick={"reads": 500, "threads": 8, "hog_s": 0.1},
)


def _data_file() -> str:
    """A 64 MiB file of random bytes, made once per machine (tmp dir)."""
    import tempfile

    path = os.path.join(tempfile.gettempdir(), "lwp-bench-64m.bin")
    if not os.path.exists(path) or os.path.getsize(path) != FILE_SIZE:
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            for _ in range(FILE_SIZE >> 20):
                f.write(os.urandom(1 << 20))
        os.replace(tmp, path)
    return path


def _offsets(reads: int) -> list[int]:
    rng = random.Random(42)
    return [rng.randrange(0, FILE_SIZE - READ_SIZE) & ~(READ_SIZE - 1) for _ in range(reads)]


def _hog(state: dict[str, Any], hog_s: float) -> None:
    """Spin in a Python loop for ``hog_s``, reaching no scheduling point, then say stop."""
    deadline = clock() + int(hog_s * 1e9)
    x = 0
    while clock() < deadline:
        x += 1
    state["stop"] = True


def _reads_threads(start: Starter, read_at: Any, reads: int, threads: int, hog_s: float,
                   sleep: Any) -> float:
    """Thread-style driver: ``threads`` workers share the offsets; returns reads/s.

    With ``hog_s``, a thread spins that long and the workers' completed reads
    during that window are counted (they stop when it ends).
    """
    offsets = _offsets(reads)
    state: dict[str, Any] = {"stop": False, "done": 0}

    def worker(i: int) -> None:
        for off in offsets[i::threads]:
            if state["stop"]:
                return
            read_at(off)
            state["done"] += 1

    t0 = clock()
    hogger = start(lambda: _hog(state, hog_s)) if hog_s else None
    joins = [start(lambda i=i: worker(i)) for i in range(threads)]
    for join in joins:
        join()
    elapsed = clock() - t0
    if hogger is not None:
        hogger()
        return state["done"] / hog_s
    return reads / (elapsed / 1e9)


async def _reads_asyncio(reads: int, threads: int, hog_s: float) -> float:
    import asyncio

    fd = os.open(_data_file(), os.O_RDONLY)
    loop = asyncio.get_running_loop()
    offsets = _offsets(reads)
    state: dict[str, Any] = {"stop": False, "done": 0}

    async def worker(i: int) -> None:
        for off in offsets[i::threads]:
            if state["stop"]:
                return
            await loop.run_in_executor(None, os.pread, fd, READ_SIZE, off)
            state["done"] += 1

    async def hogger() -> None:
        _hog(state, hog_s)

    t0 = clock()
    tasks = [asyncio.create_task(worker(i)) for i in range(threads)]
    if hog_s:
        tasks.append(asyncio.create_task(hogger()))
    await asyncio.gather(*tasks)
    elapsed = clock() - t0
    os.close(fd)
    if hog_s:
        return state["done"] / hog_s
    return reads / (elapsed / 1e9)


def _register_io(case: Case) -> None:
    @case.impl("lwp")
    def _lwp(reads: int, threads: int, hog_s: float) -> float:
        import lwp

        path = _data_file()

        def main() -> float:
            files = {}

            def read_at(off: int) -> bytes:
                me = lwp.current()
                f = files.get(me)
                if f is None:
                    f = files[me] = lwp.open(path, "rb", buffering=0)
                f.seek(off)
                return f.read(READ_SIZE)

            try:
                return _reads_threads(lwp_thread, read_at, reads, threads, hog_s, lwp.sleep)
            finally:
                for f in files.values():
                    f.close()

        return lwp_run(main, lwps=2)

    @case.impl("gevent", requires="gevent", note="gevent's hub thread pool")
    def _gevent(reads: int, threads: int, hog_s: float) -> float:
        import gevent

        fd = os.open(_data_file(), os.O_RDONLY)
        pool = gevent.get_hub().threadpool
        try:
            return _reads_threads(gevent_thread,
                                  lambda off: pool.apply(os.pread, (fd, READ_SIZE, off)),
                                  reads, threads, hog_s, gevent.sleep)
        finally:
            os.close(fd)

    @case.impl("asyncio", note="loop.run_in_executor(None, os.pread, ...)")
    def _asyncio(reads: int, threads: int, hog_s: float) -> float:
        import asyncio

        return asyncio.run(_reads_asyncio(reads, threads, hog_s))

    @case.impl("uvloop", requires="uvloop")
    def _uvloop(reads: int, threads: int, hog_s: float) -> float:
        import uvloop

        return uvloop.run(_reads_asyncio(reads, threads, hog_s))

    @case.impl("threading", note="os.pread in kernel threads: the ceiling")
    def _threading(reads: int, threads: int, hog_s: float) -> float:
        import time

        fd = os.open(_data_file(), os.O_RDONLY)
        try:
            return _reads_threads(kernel_thread, lambda off: os.pread(fd, READ_SIZE, off),
                                  reads, threads, hog_s, time.sleep)
        finally:
            os.close(fd)


_register_io(offloaded_io)
_register_io(offloaded_io_cpu_hog)
