"""lwp.queue: Queue, LifoQueue, PriorityQueue, SimpleQueue.

Behaviour checked against the standard library's classes where they must
agree, then between two threads in each context (same LWP, across LWPs,
green <-> OS thread), cancellation and ``lwp.Timeout`` at every blocking call,
and the stress tests (``-m stress``).  No test asserts a duration.
"""

import queue as stdlib_queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import wait_until
from test_sync import CONTEXTS, Partner, run_in

import lwp

QUEUES = [lwp.Queue, lwp.LifoQueue, lwp.PriorityQueue, lwp.SimpleQueue]
ORDER = {lwp.Queue: [3, 1, 2], lwp.LifoQueue: [2, 1, 3], lwp.PriorityQueue: [1, 2, 3],
         lwp.SimpleQueue: [3, 1, 2]}


def run(main, lwps=1, **kw):
    return lwp.run(main, lwps=lwps, **kw)


@pytest.fixture(params=CONTEXTS)
def ctx(request):
    return request.param


# ---------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------


def test_exceptions_are_the_stdlib_ones():
    assert lwp.Empty is stdlib_queue.Empty and lwp.Full is stdlib_queue.Full
    assert lwp.queue.Empty is stdlib_queue.Empty and lwp.queue.Full is stdlib_queue.Full
    assert issubclass(lwp.Queue, stdlib_queue.Queue)
    assert issubclass(lwp.LifoQueue, stdlib_queue.LifoQueue)
    assert issubclass(lwp.PriorityQueue, stdlib_queue.PriorityQueue)


@pytest.mark.parametrize("cls", QUEUES)
def test_order_size_and_nowait(cls):
    q = cls()
    assert q.empty() and q.qsize() == 0 and (cls is lwp.SimpleQueue or not q.full())
    for x in (3, 1):
        q.put(x)
    q.put_nowait(2)
    assert q.qsize() == 3 and not q.empty()
    got = [q.get(), q.get_nowait(), q.get(block=False)]
    assert got == ORDER[cls]
    with pytest.raises(stdlib_queue.Empty):
        q.get_nowait()
    with pytest.raises(stdlib_queue.Empty):
        q.get(False)
    with pytest.raises(stdlib_queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(stdlib_queue.Empty):
        q.get(True, 0)
    assert "size=0" in repr(q)


def test_priority_queue_with_tuples():
    q = lwp.PriorityQueue()
    for item in [(3, "c"), (1, "a"), (2, "b"), (1, "a0")]:
        q.put(item)
    assert [q.get() for _ in range(4)] == [(1, "a"), (1, "a0"), (2, "b"), (3, "c")]


@pytest.mark.parametrize("cls", [lwp.Queue, lwp.LifoQueue, lwp.PriorityQueue])
def test_maxsize_full_and_block_timeout(cls):
    def main():
        q = cls(2)
        assert q.maxsize == 2
        q.put(1)
        q.put(2, timeout=1)
        assert q.full() and q.qsize() == 2
        with pytest.raises(stdlib_queue.Full):
            q.put_nowait(3)
        with pytest.raises(stdlib_queue.Full):
            q.put(3, block=False)
        with pytest.raises(stdlib_queue.Full):
            q.put(3, block=False, timeout=5)  # timeout is ignored when not blocking
        with pytest.raises(stdlib_queue.Full):
            q.put(3, timeout=0.01)
        with pytest.raises(stdlib_queue.Full):
            q.put(3, True, 0)
        assert not q._putters and q.qsize() == 2
        q.maxsize = 1  # shrinking (issue 10110)
        with pytest.raises(stdlib_queue.Full):
            q.put_nowait(3)
        q.maxsize = 3
        q.put_nowait(3)
        assert sorted(q.get() for _ in range(3)) == [1, 2, 3]

    run(main)


@pytest.mark.parametrize("cls", [stdlib_queue.Queue, lwp.Queue], ids=["stdlib", "lwp"])
def test_negative_timeout_raises_like_stdlib(cls):
    q = cls(1)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    q.put(1)
    with pytest.raises(ValueError):
        q.get(timeout=-1)  # even with an item there
    with pytest.raises(ValueError):
        q.put(2, timeout=-1)
    assert q.get(block=False, timeout=-1) == 1  # not checked when not blocking


def test_simple_queue_has_the_stdlib_api():
    public = {name for name in dir(stdlib_queue.SimpleQueue) if not name.startswith("_")}
    assert public == {name for name in dir(lwp.SimpleQueue) if not name.startswith("_")}
    assert lwp.SimpleQueue[int].__origin__ is lwp.SimpleQueue


@pytest.mark.parametrize("cls", QUEUES[:-1])
def test_task_done_and_join(cls):
    def main():
        q = cls()
        with pytest.raises(ValueError):
            q.task_done()
        q.join()  # nothing unfinished: returns at once
        done = []

        def worker():
            while True:
                item = q.get()
                if item < 0:
                    q.task_done()
                    return
                lwp.sleep(0.001)
                done.append(item)
                q.task_done()

        workers = [lwp.spawn(worker) for _ in range(3)]
        for i in range(30):
            q.put(i)
        q.join()
        assert sorted(done) == list(range(30))
        joiners = [lwp.spawn(q.join) for _ in range(3)]  # several joiners at once
        for _ in workers:
            q.put(-1)
        for t in workers + joiners:
            t.join(5)
        q.join()  # joining twice works
        assert q.unfinished_tasks == 0
        with pytest.raises(ValueError):
            q.task_done()

    run(main)


def test_unbounded_maxsize_values():
    for maxsize in (0, -1, -10):  # "less than or equal to zero: the queue size is infinite"
        q = lwp.Queue(maxsize)
        for i in range(100):
            q.put_nowait(i)
        assert not q.full() and q.qsize() == 100
    std = stdlib_queue.Queue(-1)
    std.put_nowait(1)
    assert not std.full()


def test_simple_queue_never_full():
    q = lwp.SimpleQueue()
    for i in range(1000):
        q.put(i, block=False)
    q.put(1000, timeout=0)
    assert q.qsize() == 1001 and [q.get() for _ in range(1001)] == list(range(1001))


def test_queue_releases_items():
    import gc
    import weakref

    class Item:
        pass

    q = lwp.Queue()
    refs = []
    for _ in range(5):
        item = Item()
        refs.append(weakref.ref(item))
        q.put(item)
    del item
    for _ in range(5):
        q.get()
    gc.collect()
    assert all(r() is None for r in refs)


def test_blocked_getters_served_in_fifo_order():
    def main():
        q = lwp.Queue()
        order = []

        def getter(i):
            order.append((i, q.get(timeout=10)))

        ts = []
        for i in range(5):
            ts.append(lwp.spawn(getter, i))
            wait_until(lambda: len(q._getters) == i + 1)
        for x in "abcde":
            q.put(x)
        for t in ts:
            t.join(5)
        return order

    assert run(main) == list(zip(range(5), "abcde"))


def test_blocked_putters_served_in_fifo_order():
    def main():
        q = lwp.Queue(1)
        q.put("first")
        ts = []
        for i in range(5):
            ts.append(lwp.spawn(q.put, i, timeout=10))
            wait_until(lambda: len(q._putters) == i + 1)
        got = [q.get(timeout=10) for _ in range(6)]
        for t in ts:
            t.join(5)
        return got

    assert run(main) == ["first", 0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# Contexts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [lwp.Queue, lwp.SimpleQueue])
def test_ctx_producer_consumer_both_ways(ctx, cls):
    n = 200

    def main():
        q = cls(1) if cls is lwp.Queue else cls()  # maxsize 1: both sides block

        def consumer():
            return [q.get(timeout=10) for _ in range(n)]

        p = Partner(ctx, consumer)
        for i in range(n):
            q.put(i, timeout=10)
        assert p.join() == list(range(n))

        p = Partner(ctx, lambda: [q.put(i, timeout=10) for i in range(n)])
        got = [q.get(timeout=10) for _ in range(n)]
        p.join()
        return got

    assert run_in(ctx, main) == list(range(n))


def test_ctx_get_timeout_and_join(ctx):
    def main():
        q = lwp.Queue()
        with pytest.raises(stdlib_queue.Empty):
            Partner(ctx, lambda: q.get(timeout=0.01)).join()
        assert not q._getters

        def worker():
            for _ in range(10):
                q.get(timeout=10)
                q.task_done()

        p = Partner(ctx, worker)
        for i in range(10):
            q.put(i)
        q.join()
        p.join()

        q.put("x")
        p = Partner(ctx, q.join)  # the partner joins, main finishes the task
        wait_until(lambda: len(q._joiners) == 1)
        assert q.get() == "x"
        q.task_done()
        p.join()

    run_in(ctx, main)


def test_os_threads_only_no_scheduler():
    q = lwp.Queue(3)
    out = []

    def producer(k):
        for i in range(100):
            q.put((k, i), timeout=10)

    def consumer():
        for _ in range(100):
            out.append(q.get(timeout=10))
            q.task_done()

    ts = [threading.Thread(target=producer, args=(k,)) for k in range(3)]
    ts += [threading.Thread(target=consumer) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    q.join()
    assert sorted(out) == [(k, i) for k in range(3) for i in range(100)]


# ---------------------------------------------------------------------------------------------
# Cancellation, Timeout, interrupted OS waiters: no item and no wake-up lost
# ---------------------------------------------------------------------------------------------


def _blocked_queue(kind):
    """(queue, blocking call, parked predicate)."""
    if kind == "get":
        q = lwp.Queue()
        return q, q.get, lambda: len(q._getters) == 1
    if kind == "put":
        q = lwp.Queue(1)
        q.put("full")
        return q, lambda: q.put("more"), lambda: len(q._putters) == 1
    if kind == "join":
        q = lwp.Queue()
        q.put("unfinished")
        return q, q.join, lambda: len(q._joiners) == 1
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["get", "put", "join"])
@pytest.mark.parametrize("where", ["same_lwp", "cross_lwp"])
def test_cancel_parked_queue_call(kind, where):
    def main():
        q, call, parked = _blocked_queue(kind)
        size = q.qsize()
        t = lwp.spawn(call, bound=(where == "cross_lwp"))
        wait_until(parked)
        t.cancel()
        with pytest.raises(lwp.Cancelled):
            t.join(5)
        assert not q._getters and not q._putters and not q._joiners
        assert q.qsize() == size  # nothing taken, nothing added
        # The queue still works.
        if kind == "put":
            assert q.get_nowait() == "full"
        q.put_nowait("y")
        assert "y" in [q.get_nowait() for _ in range(q.qsize())]

    run(main, lwps=2 if where == "cross_lwp" else 1)


@pytest.mark.parametrize("kind", ["get", "put", "join"])
def test_timeout_around_queue_call(kind):
    def main():
        q, call, parked = _blocked_queue(kind)
        size = q.qsize()
        with pytest.raises(lwp.Timeout):
            with lwp.Timeout(0.02):
                call()
        with lwp.Timeout(0.02, silent=True) as to:
            call()
        assert to.expired
        assert not q._getters and not q._putters and not q._joiners and q.qsize() == size

    run(main)


def test_cancelled_getter_loses_no_item():
    """put() and cancel() of a parked getter race: the item is either returned
    by that getter or still there for the next one, every time."""
    def main():
        tally = {"taken": 0, "left": 0}
        for i in range(300):
            q = lwp.Queue()
            got = []
            t = lwp.spawn(lambda: got.append(q.get()))
            wait_until(lambda: len(q._getters) == 1)
            if i % 3 == 0:
                t.cancel()
                q.put(i)
            elif i % 3 == 1:
                q.put(i)
                t.cancel()
            else:
                canceller = lwp.spawn(t.cancel, bound=True)
                q.put(i)
                canceller.join(5)
            try:
                t.join(5)
            except lwp.Cancelled:
                pass
            assert len(got) + q.qsize() == 1, i
            tally["taken" if got else "left"] += 1
        return tally

    tally = run(main, lwps=2, seed=11)
    assert tally["taken"] + tally["left"] == 300 and tally["left"] > 0


def test_cancelled_getter_hands_the_wakeup_to_the_next():
    def main():
        for i in range(200):
            q = lwp.Queue()
            first = lwp.spawn(q.get)
            wait_until(lambda: len(q._getters) == 1)
            second = lwp.spawn(q.get, timeout=10)
            wait_until(lambda: len(q._getters) == 2)
            if i % 2:
                first.cancel()
                q.put("x")
            else:
                q.put("x")
                first.cancel()
            try:
                got_first = first.join(5)
            except lwp.Cancelled:
                got_first = None
            if got_first is not None:
                q.put("x")  # first won the item before its cancellation landed
            assert second.join(5) == "x", i

    run(main, lwps=2, seed=4)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach only the main thread")
@pytest.mark.parametrize("kind", ["get", "put"])
def test_os_waiter_interrupted_by_signal_passes_its_wakeup_on(kind):
    """An OS thread blocked in get() (put()) is woken by a put() (get()) just as a
    signal handler raises in it: the wake-up goes to the next waiter, which
    would otherwise wait with an item (a free slot) in the queue."""
    class Interrupt(Exception):
        pass

    q = lwp.Queue(1)
    if kind == "put":
        q.put("full")
    waiters = q._getters if kind == "get" else q._putters
    result = []

    def second():
        try:
            if kind == "get":
                result.append(q.get(timeout=10))
            else:
                q.put("second", timeout=10)
                result.append("put")
        except stdlib_queue.Empty:
            result.append("Empty")
        except stdlib_queue.Full:
            result.append("Full")

    t2 = threading.Thread(target=second)

    def handler(signum, frame):
        if kind == "get":
            q.put("x")  # wakes the main thread, first in line
        else:
            q.get()
        raise Interrupt

    def trigger():
        wait_until(lambda: len(waiters) == 1, 10)
        t2.start()
        wait_until(lambda: len(waiters) == 2, 10)
        signal.pthread_kill(main_ident, signal.SIGUSR1)

    main_ident = threading.get_ident()
    old = signal.signal(signal.SIGUSR1, handler)
    helper = threading.Thread(target=trigger)
    helper.start()
    try:
        with pytest.raises(Interrupt):
            if kind == "get":
                q.get(timeout=30)
            else:
                q.put("main", timeout=30)
    finally:
        helper.join(10)
        t2.join(15)
        signal.signal(signal.SIGUSR1, old)
    assert result == (["x"] if kind == "get" else ["put"])


@pytest.mark.parametrize("where", ["green", "os"])
def test_simple_queue_put_is_reentrant(where):
    """A put() run by the garbage collector (a __del__ of cyclic garbage) inside
    get() of the same queue, in the same thread, as queue.SimpleQueue allows.

    Collecting at every allocation makes the collector run inside get(), where
    it allocates its waiter (once inside the queue's mutex: a deadlock).  In a
    child process: a deadlock would hang this one.
    """
    code = textwrap.dedent(f"""
        import gc, lwp
        q = lwp.SimpleQueue()
        class Circular:
            def __init__(self):
                self.me = self
            def __del__(self):
                q.put("from __del__")
        def main():
            gc.collect()
            gc.set_threshold(1)
            got = []
            for _ in range(500):
                Circular()
                got.append(q.get(timeout=5))
            gc.set_threshold(700)
            return got.count("from __del__"), q.qsize()
        print(*(main() if {where!r} == "os" else lwp.run(main, lwps=1)))
    """)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlocked")
    assert proc.stdout.split() == ["500", "0"], proc.stderr


@pytest.mark.parametrize("putter", ["green", "os"])
def test_simple_queue_put_reentrant_inside_a_wake_up(putter):
    """A put() run by the collector while its kernel thread holds the getter's
    LWP lock (inside a wake-up of another getter, say) must not wait for that
    lock: the wake-up is deferred (to the putter's hub, or from an OS thread to
    a helper thread), and it is neither lost nor delivered twice.

    Holding the lock around put() is the deterministic stand-in for the
    collector interrupting that critical section.  In a child process: a
    deadlock would hang this one.
    """
    code = textwrap.dedent(f"""
        import lwp, time
        q = lwp.SimpleQueue()
        def put_holding(getter):
            lock = getter._lwp._lock
            with lock:
                q.put("x")
            q.put("y")
        def main():
            getters = [lwp.spawn(q.get, timeout=10) for _ in range(2)]
            lwp.sleep(0.05)
            put_holding(getters[0])
            return sorted(t.join(10) for t in getters), q.qsize()
        if {putter!r} == "green":
            print(*lwp.run(main, lwps=1))
        else:
            sched = lwp.Scheduler(lwps=1)
            getters = [sched.spawn(q.get, (True, 10)) for _ in range(2)]
            time.sleep(0.05)
            put_holding(getters[0])
            print(sorted(t.join(10) for t in getters), q.qsize())
            sched.shutdown()
    """)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlocked")
    assert proc.stdout.split() == ["['x',", "'y']", "0"], proc.stderr


# ---------------------------------------------------------------------------------------------
# Stress (-m stress)
# ---------------------------------------------------------------------------------------------

STRESS = [pytest.param(n, seed, id=f"lwps{n}-seed{seed}")
          for n in (1, 2, 4) for seed in (None, 1, 2)]


def _join_all(threads, timeout=60):
    deadline = time.monotonic() + timeout
    return [t.join(max(0.0, deadline - time.monotonic())) for t in threads]


@pytest.mark.stress
@pytest.mark.parametrize("lwps,seed", STRESS)
def test_stress_queue_every_item_exactly_once(lwps, seed):
    """5,000 producers and 5,000 consumers (10,000 green threads) through a
    bounded queue; every item is delivered exactly once."""
    producers = consumers = 5_000
    per = 2

    def main():
        q = lwp.Queue(64)
        got = []

        def produce(p):
            for i in range(per):
                q.put((p, i), timeout=60)

        def consume():
            mine = [q.get(timeout=60) for _ in range(per)]
            for _ in mine:
                q.task_done()
            got.extend(mine)

        ts = [lwp.spawn(consume) for _ in range(consumers)]
        ts += [lwp.spawn(produce, p) for p in range(producers)]
        _join_all(ts)
        q.join()
        return got, q.qsize()

    got, left = run(main, lwps=lwps, seed=seed)
    assert left == 0 and len(got) == producers * per
    assert sorted(got) == [(p, i) for p in range(producers) for i in range(per)]


@pytest.mark.stress
@pytest.mark.parametrize("lwps,seed", STRESS)
def test_stress_simple_queue_every_item_exactly_once(lwps, seed):
    """SimpleQueue's lock-free put against getters that wait, time out and
    retry: 2,000 green producers and a plain OS thread putting, 2,000 green
    consumers (half of them with 1 ms timeouts); every item exactly once."""
    producers = consumers = 2_000
    per = 2
    os_items = 500

    def main():
        q = lwp.SimpleQueue()
        got = []

        def produce(p):
            for i in range(per):
                q.put((p, i))
                if i % 2:
                    lwp.sleep(0)

        def consume(impatient):
            mine = []
            while len(mine) < per:
                try:
                    mine.append(q.get(timeout=0.001 if impatient else 60))
                except stdlib_queue.Empty:
                    assert impatient
            got.extend(mine)

        extra = consumers // 4  # the OS thread's items go to these
        ts = [lwp.spawn(consume, c % 2 == 1) for c in range(consumers + extra)]
        ts += [lwp.spawn(produce, p) for p in range(producers)]
        os_thread = threading.Thread(
            target=lambda: [q.put((-1, i)) for i in range(os_items)])
        os_thread.start()
        # extra consumers take per items each: leave what they will not take
        for i in range(os_items, extra * per):
            q.put((-2, i))
        _join_all(ts)
        os_thread.join(60)
        return got, q.qsize()

    got, left = run(main, lwps=lwps, seed=seed)
    extra = consumers // 4
    expected = sorted([(p, i) for p in range(producers) for i in range(per)]
                      + [(-1, i) for i in range(os_items)]
                      + [(-2, i) for i in range(os_items, extra * per)])
    assert left == 0 and sorted(got) == expected


@pytest.mark.stress
@pytest.mark.parametrize("lwps,seed", STRESS)
def test_stress_queue_with_timeouts_and_cancellation(lwps, seed):
    """Consumers that time out and consumers that are cancelled, among others
    that keep going: items are delivered once, or left in the queue."""
    n_items, n_consumers = 20_000, 200

    def main():
        q = lwp.Queue()
        got = []

        def consume(k):
            while True:
                try:
                    item = q.get(timeout=0.001 if k % 4 == 0 else 5)
                except stdlib_queue.Empty:
                    if k % 4 == 0 and len(got) < n_items:
                        continue  # timed out: try again
                    return
                if item is None:
                    return
                got.append(item)

        ts = [lwp.spawn(consume, k) for k in range(n_consumers)]
        doomed = ts[1::10]
        for i in range(n_items):
            q.put(i)
            if i % 250 == 0 and doomed:
                doomed.pop().cancel()
        for _ in ts:
            q.put(None)
        for t in ts:
            try:
                t.join(60)
            except lwp.Cancelled:
                pass
        rest = []
        while True:
            try:
                rest.append(q.get_nowait())
            except stdlib_queue.Empty:
                break
        return got, [x for x in rest if x is not None]

    got, rest = run(main, lwps=lwps, seed=seed)
    assert sorted(got + rest) == list(range(n_items))
