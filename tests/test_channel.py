"""Channels and select: rendezvous, buffering, closing, timeouts, cancellation,
OS threads, fairness, and exactly-once delivery under stress."""

import random
import threading
from collections import Counter

import pytest
from helpers import wait_until

import lwp
from lwp import channel as channel_mod
from lwp._core import park
from lwp.channel import CLOSED, Channel, ChannelClosed, select

J = 10  # seconds: bound on every join / wait in these tests


# -- construction and bad input ----------------------------------------------------------------


def test_bad_input():
    with pytest.raises(ValueError):
        Channel(-1)
    with pytest.raises(TypeError):
        Channel(1.5)
    with pytest.raises(TypeError):
        Channel("3")
    ch = Channel(2)
    assert ch.capacity == 2 and len(ch) == 0 and not ch.closed and bool(ch)
    assert "open" in repr(ch) and "capacity=2" in repr(ch)
    with pytest.raises(ValueError):
        select()
    with pytest.raises(TypeError):
        select(ch)
    with pytest.raises(TypeError):
        select(ch.recv_case(), 3)
    with pytest.raises(TypeError):
        select([ch.recv_case()])
    with pytest.raises(ValueError):
        select(ch.recv_case(), timeout=1, default=True)
    with pytest.raises(ValueError):
        select(ch.recv_case(), timeout=-1)
    with pytest.raises(ValueError):
        ch.send(1, timeout=-1)
    with pytest.raises(ValueError):
        ch.recv(timeout=-0.5)
    assert len(ch) == 0  # the bad sends did nothing
    assert "recv_case" in repr(ch.recv_case()) and "send_case 7" in repr(ch.send_case(7))


# -- unbuffered ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lwps", [1, 2])
def test_unbuffered_send_waits_for_receiver(lwps):
    def main():
        ch = Channel()
        done = []

        def sender():
            ch.send("x")
            done.append(True)

        t = lwp.spawn(sender)
        wait_until(lambda: len(ch._sendq) == 1)  # the sender is blocked in send
        lwp.sleep(0.01)
        assert done == [] and len(ch) == 0
        assert ch.recv(timeout=J) == "x"
        t.join(J)
        assert done == [True]

    lwp.run(main, lwps=lwps)


@pytest.mark.parametrize("lwps", [1, 2])
def test_unbuffered_rendezvous_ordering(lwps):
    """A send completes only once its value was taken: the sender is never two ahead."""
    n = 500

    def main():
        ch = Channel()
        state = {"sent": 0}

        def sender():
            for i in range(n):
                ch.send(i, timeout=J)
                state["sent"] += 1

        t = lwp.spawn(sender)
        got = []
        for i in range(n):
            assert state["sent"] <= i  # send #i cannot have returned before recv #i
            got.append(ch.recv(timeout=J))
            assert state["sent"] <= i + 1
        t.join(J)
        assert state["sent"] == n
        return got

    assert lwp.run(main, lwps=lwps) == list(range(n))


def test_buffered_sender_runs_ahead_by_capacity():
    n = 200

    def main():
        ch = Channel(3)
        state = {"sent": 0}

        def sender():
            for i in range(n):
                ch.send(i, timeout=J)
                state["sent"] += 1

        t = lwp.spawn(sender)
        wait_until(lambda: state["sent"] == 3)  # fills the buffer without any receiver
        wait_until(lambda: len(ch._sendq) == 1)
        assert state["sent"] == 3 and len(ch) == 3
        got = []
        for i in range(n):
            assert state["sent"] <= i + 4
            got.append(ch.recv(timeout=J))
        t.join(J)
        return got

    assert lwp.run(main, lwps=2) == list(range(n))


def test_buffered_capacity_and_fifo():
    def main():
        ch = Channel(3)
        for i in range(3):
            ch.send(i, timeout=0)
        assert len(ch) == 3
        assert ch.try_send(99) is False
        with pytest.raises(TimeoutError):
            ch.send(99, timeout=0)
        with pytest.raises(TimeoutError):
            ch.send(99, timeout=0.01)
        assert len(ch._sendq) == 0  # the timed-out send left the queue
        t = lwp.spawn(ch.send, 3)  # blocks: the buffer is full
        wait_until(lambda: len(ch._sendq) == 1)
        assert ch.recv() == 0  # frees a slot: the blocked sender's value moves in
        t.join(J)
        assert len(ch) == 3
        assert [ch.recv(timeout=0) for _ in range(3)] == [1, 2, 3]
        assert ch.try_recv() == (None, False)
        with pytest.raises(TimeoutError):
            ch.recv(timeout=0)

    lwp.run(main, lwps=1)


def test_try_send_try_recv():
    def main():
        ch = Channel()
        assert ch.try_send(1) is False  # unbuffered, nobody waiting
        assert ch.try_recv() == (None, False)
        r = lwp.spawn(ch.recv, J)
        wait_until(lambda: len(ch._recvq) == 1)
        assert ch.try_send("a") is True
        assert r.join(J) == "a"
        s = lwp.spawn(ch.send, "b", J)
        wait_until(lambda: len(ch._sendq) == 1)
        assert ch.try_recv() == ("b", True)
        s.join(J)
        b = Channel(1)
        assert b.try_send(None) is True
        assert b.try_recv() == (None, True)  # None is a value like any other
        b.send(5)
        b.close()
        assert b.try_recv() == (5, True)
        with pytest.raises(ChannelClosed):
            b.try_recv()
        with pytest.raises(ChannelClosed):
            b.try_send(6)

    lwp.run(main, lwps=2)


# -- close and iteration -----------------------------------------------------------------------


def test_close_semantics():
    ch = Channel(2)
    ch.send(1)
    ch.send(2)
    assert ch.close() is True
    assert ch.close() is False  # idempotent
    assert ch.closed and "closed" in repr(ch)
    with pytest.raises(ChannelClosed):
        ch.send(3)
    with pytest.raises(ChannelClosed):
        ch.send(3, timeout=0)
    assert ch.recv() == 1
    assert ch.recv(timeout=0) == 2
    for _ in range(3):
        with pytest.raises(ChannelClosed):
            ch.recv()
    assert list(ch) == []


@pytest.mark.parametrize("lwps", [1, 3])
def test_close_wakes_blocked_receivers_and_senders(lwps):
    def main():
        rx = Channel()
        tx = Channel(1)
        tx.send("buffered")
        receivers = [lwp.spawn(rx.recv) for _ in range(5)]
        senders = [lwp.spawn(tx.send, i) for i in range(5)]
        os_results = []

        def os_recv():
            try:
                rx.recv(timeout=J)
            except ChannelClosed:
                os_results.append("closed")

        ot = threading.Thread(target=os_recv)
        ot.start()
        wait_until(lambda: len(rx._recvq) == 6 and len(tx._sendq) == 5)
        rx.close()
        tx.close()
        for t in receivers + senders:
            with pytest.raises(ChannelClosed):
                t.join(J)
        ot.join(J)
        assert os_results == ["closed"]
        # values of blocked senders were not delivered; buffered ones stay receivable
        assert tx.recv() == "buffered"
        with pytest.raises(ChannelClosed):
            tx.recv()
        assert len(rx._recvq) == len(tx._sendq) == 0

    lwp.run(main, lwps=lwps)


@pytest.mark.parametrize("capacity", [0, 1, 16])
def test_iteration_ends_at_close(capacity):
    def main():
        ch = Channel(capacity)

        def producer():
            for i in range(300):
                ch.send(i)
            ch.close()

        lwp.spawn(producer)
        return list(ch)

    assert lwp.run(main, lwps=2) == list(range(300))


def test_break_out_of_iteration_keeps_the_rest():
    def main():
        ch = Channel(10)
        for i in range(10):
            ch.send(i)
        got = []
        for v in ch:
            got.append(v)
            if v == 4:
                break
        ch.close()
        return got, list(ch)

    assert lwp.run(main) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])


# -- timeouts and stale entries ----------------------------------------------------------------


def test_repeated_timeouts_leave_no_entries():
    def main():
        a, b = Channel(), Channel(1)
        b.send("full")
        for _ in range(100):
            with pytest.raises(TimeoutError):
                a.recv(timeout=0.0005)
            with pytest.raises(TimeoutError):
                a.send(1, timeout=0.0005)
            with pytest.raises(TimeoutError):
                b.send(2, timeout=0.0005)
            with pytest.raises(TimeoutError):
                select(a.recv_case(), a.send_case(3), b.send_case(4), timeout=0.0005)
            with pytest.raises(TimeoutError):
                select(a.recv_case(), timeout=0)
        assert len(a._recvq) == len(a._sendq) == len(b._sendq) == len(b._recvq) == 0
        assert b.recv(timeout=0) == "full"

    lwp.run(main, lwps=1)


def test_lwp_timeout_interrupts_recv_and_select():
    def main():
        ch = Channel()
        with lwp.Timeout(0.01, silent=True) as to:
            ch.recv()
        assert to.expired
        with lwp.Timeout(0.01, silent=True) as to:
            select(ch.recv_case(), ch.send_case(1))
        assert to.expired
        assert len(ch._recvq) == len(ch._sendq) == 0
        assert ch.try_send(1) is False  # no stale receiver swallows it

    lwp.run(main)


# -- select --------------------------------------------------------------------------------------


def test_select_recv_send_default_timeout():
    def main():
        a, b = Channel(1), Channel(1)
        assert select(a.recv_case(), b.recv_case(), default=True) == (None, None)
        with pytest.raises(TimeoutError):
            select(a.recv_case(), b.recv_case(), timeout=0.01)
        b.send("B")
        assert select(a.recv_case(), b.recv_case()) == (1, "B")
        assert select(a.recv_case(), b.recv_case(), default=True) == (None, None)
        assert select(a.send_case("A")) == (0, None)
        assert a.recv() == "A"
        # a send case and a receive case on the same channel
        assert select(a.recv_case(), a.send_case("self")) == (1, None)
        assert select(a.recv_case(), a.send_case("again")) == (0, "self")

        # blocked select woken by a sender on one channel, then by a receiver
        c, d = Channel(), Channel()
        t = lwp.spawn(select, c.recv_case(), d.recv_case(), timeout=J)
        wait_until(lambda: len(d._recvq) == 1)
        d.send("D", timeout=J)
        assert t.join(J) == (1, "D")
        assert len(c._recvq) == 0  # its entry on the other channel is gone
        t = lwp.spawn(select, c.send_case("c"), d.send_case("d"), timeout=J)
        wait_until(lambda: len(c._sendq) == 1)
        assert c.recv(timeout=J) == "c"
        assert t.join(J) == (0, None)
        assert len(d._sendq) == 0
        assert d.try_recv() == (None, False)  # the other send did not happen

    lwp.run(main, lwps=2)


def test_select_matches_another_select():
    def main():
        ch = Channel()
        a = lwp.spawn(select, ch.send_case(42), timeout=J)
        wait_until(lambda: len(ch._sendq) == 1)
        assert select(Channel().recv_case(), ch.recv_case(), timeout=J) == (1, 42)
        assert a.join(J) == (0, None)

    lwp.run(main, lwps=2)


def test_select_on_closed_channels():
    def main():
        a, b = Channel(1), Channel()
        a.send("last")
        a.close()
        assert select(a.recv_case(), b.recv_case()) == (0, "last")  # drains first
        assert select(a.recv_case(), b.recv_case()) == (0, CLOSED)
        assert select(a.recv_case(), default=True) == (0, CLOSED)  # ready, not default
        with pytest.raises(ChannelClosed):
            select(a.send_case(1))
        assert repr(CLOSED) == "lwp.CLOSED"

        # blocked selects woken by close: a receive case reports CLOSED ...
        c = Channel()
        r = lwp.spawn(select, b.recv_case(), c.recv_case(), timeout=J)
        wait_until(lambda: len(c._recvq) == 1)
        c.close()
        assert r.join(J) == (1, CLOSED)
        assert len(b._recvq) == 0
        # ... and a send case raises
        d = Channel()
        s = lwp.spawn(select, b.recv_case(), d.send_case(1), timeout=J)
        wait_until(lambda: len(d._sendq) == 1)
        d.close()
        with pytest.raises(ChannelClosed):
            s.join(J)
        assert len(b._recvq) == 0
        # a send case on a closed channel is ready (to fail) at once
        with pytest.raises(ChannelClosed):
            select(b.recv_case(), c.send_case(1), timeout=J)

    lwp.run(main, lwps=2)


@pytest.mark.parametrize("lwps", [1, 2])
def test_select_fairness(lwps):
    def main():
        a, b, idle = Channel(1), Channel(1), Channel()
        counts = Counter()
        for _ in range(1000):
            a.try_send("a")
            b.try_send("b")
            i, v = select(idle.recv_case(), a.recv_case(), b.recv_case())
            assert v == "ab"[i - 1]
            counts[i] += 1
        a.try_recv()
        b.try_recv()
        # and send cases: both buffers are empty
        sends = Counter()
        for _ in range(1000):
            i, _ = select(a.send_case(0), b.send_case(0), idle.send_case(0))
            sends[i] += 1
            (a if i == 0 else b).recv(timeout=0)
        return counts, sends

    counts, sends = lwp.run(main, lwps=lwps)
    # each ready case is chosen about 500 times in 1000; below 350 has odds < 1e-20
    assert counts[1] > 350 and counts[2] > 350 and counts[0] == 0
    assert sends[0] > 350 and sends[1] > 350 and sends[2] == 0


def test_select_performs_exactly_one_case():
    """A select with a send case on each of several channels, all with receivers
    waiting: exactly one receiver gets a value, the others stay blocked."""

    def main():
        chans = [Channel() for _ in range(4)]
        for _ in range(50):
            receivers = [lwp.spawn(ch.recv) for ch in chans]
            wait_until(lambda: all(len(ch._recvq) == 1 for ch in chans))
            i, _ = select(*(ch.send_case(k) for k, ch in enumerate(chans)), timeout=J)
            assert receivers[i].join(J) == i
            for k, t in enumerate(receivers):
                if k != i:
                    assert len(chans[k]._recvq) == 1  # still waiting: got nothing
                    t.cancel()
                    with pytest.raises(lwp.Cancelled):
                        t.join(J)
            assert all(len(ch._recvq) == len(ch._sendq) == 0 for ch in chans)

    lwp.run(main, lwps=2)


# -- OS threads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, 4])
def test_os_thread_and_green_thread(capacity):
    n = 300

    def main():
        to_green, to_os = Channel(capacity), Channel(capacity)
        os_got = []

        def os_side():
            for i in range(n):
                to_green.send(i, timeout=J)
            to_green.close()
            for v in to_os:
                os_got.append(v)

        t = threading.Thread(target=os_side)
        t.start()
        green_got = list(to_green)
        for v in green_got:
            to_os.send(v * 2, timeout=J)
        to_os.close()
        t.join(J)
        return green_got, os_got

    green_got, os_got = lwp.run(main, lwps=2)
    assert green_got == list(range(n))
    assert os_got == [2 * i for i in range(n)]


def test_select_in_os_thread():
    def main():
        a, b = Channel(), Channel()
        out = []

        def os_side():
            out.append(select(a.recv_case(), b.recv_case(), timeout=J))
            out.append(select(a.send_case("to a"), b.send_case("to b"), timeout=J))
            try:
                select(a.recv_case(), timeout=0.01)
            except TimeoutError:
                out.append("timeout")

        t = threading.Thread(target=os_side)
        t.start()
        b.send("B", timeout=J)
        i, v = select(a.recv_case(), b.recv_case(), timeout=J)
        t.join(J)
        return out, (i, v)

    out, (i, v) = lwp.run(main, lwps=1)
    assert out[0] == (1, "B")
    assert out[1] == (i, None) and v == ("to a", "to b")[i]
    assert out[2] == "timeout"


def test_os_threads_only():
    ch = Channel()
    got = []
    t = threading.Thread(target=lambda: got.extend(ch))
    t.start()
    for i in range(100):
        ch.send(i, timeout=J)
    ch.close()
    t.join(J)
    assert got == list(range(100))


def test_interrupted_os_receiver_gives_the_value_back(monkeypatch):
    """A signal (Ctrl-C) that interrupts an OS thread's recv just as a value was
    delivered: the value goes back to the channel instead of being lost."""

    class InterruptedWaiter:
        def __init__(self):
            self.real = park.OSWaiter()
            self.late = None

        def wake(self, value=None, exc=None):
            return self.real.wake(value, exc)

        def wait(self, timeout=None):
            self.late = (self.real.wait(J), None)  # the hand-off arrived ...
            raise KeyboardInterrupt                # ... as a signal handler raised

    monkeypatch.setattr(channel_mod, "waiter", InterruptedWaiter)
    for how in ("recv", "select"):
        ch = Channel()
        sent = []

        def sender():  # once the receiver waits; never waits itself
            wait_until(lambda: len(ch._recvq) == 1)
            sent.append(ch.try_send(how))

        t = threading.Thread(target=sender)
        t.start()
        with pytest.raises(KeyboardInterrupt):
            if how == "recv":
                ch.recv()
            else:
                select(Channel().recv_case(), ch.recv_case())
        t.join(J)
        assert sent == [True]
        assert ch.try_recv() == (how, True)
        assert len(ch._recvq) == 0


# -- cancellation --------------------------------------------------------------------------------


def test_cancel_blocked_send_recv_select():
    def main():
        ch = Channel()
        s = lwp.spawn(ch.send, "never")
        wait_until(lambda: len(ch._sendq) == 1)
        s.cancel()
        with pytest.raises(lwp.Cancelled):
            s.join(J)
        assert len(ch._sendq) == 0
        assert ch.try_recv() == (None, False)  # the cancelled send delivered nothing

        r = lwp.spawn(ch.recv)
        wait_until(lambda: len(ch._recvq) == 1)
        r.cancel()
        with pytest.raises(lwp.Cancelled):
            r.join(J)
        assert ch.try_send(1) is False  # no stale receiver took it

        full = Channel(1)
        full.send("kept")
        sel = lwp.spawn(select, ch.recv_case(), ch.send_case("x"), full.send_case("y"))
        wait_until(lambda: len(ch._recvq) == 1 and len(ch._sendq) == 1 and len(full._sendq) == 1)
        sel.cancel()
        with pytest.raises(lwp.Cancelled):
            sel.join(J)
        assert len(ch._recvq) == len(ch._sendq) == len(full._sendq) == 0
        assert ch.try_recv() == (None, False)
        assert full.recv(timeout=0) == "kept" and full.try_recv() == (None, False)

    lwp.run(main, lwps=2)


@pytest.mark.parametrize("lwps", [1, 2, 4])
def test_cancel_races_with_delivery(lwps):
    """Cancel a blocked receiver (or sender, or select) while a counterpart tries
    to complete it: the value is delivered exactly when the operation returned."""
    rounds = 150

    def main():
        rng = random.Random(lwps)
        ch, other = Channel(), Channel()
        for i in range(rounds):
            kind = ("recv", "send", "select")[i % 3]
            got, done = [], []
            if kind == "recv":
                def blocked():
                    got.append(ch.recv())
            elif kind == "send":
                def blocked():
                    ch.send(i)
                    done.append(i)
            else:
                def blocked():
                    got.append(select(other.recv_case(), ch.recv_case())[1])
            t = lwp.spawn(blocked)
            q = ch._sendq if kind == "send" else ch._recvq
            wait_until(lambda: len(q) == 1)

            def counterpart():
                if kind == "send":
                    v, ok = ch.try_recv()
                    if ok:
                        got.append(v)
                elif ch.try_send(i):
                    done.append(i)

            racers = [t.cancel, counterpart]
            rng.shuffle(racers)  # who is spawned first
            for r in [lwp.spawn(f) for f in racers]:
                r.join(J)
            try:
                t.join(J)
                completed = True
            except lwp.Cancelled:
                completed = False
            assert got == done == ([i] if completed else [])
            assert len(ch._recvq) == len(ch._sendq) == len(other._recvq) == 0

    lwp.run(main, lwps=lwps, seed=lwps)


# -- stress ------------------------------------------------------------------------------------


def _check_exactly_once(received, expected):
    counts = Counter(received)
    dup = [v for v, c in counts.items() if c > 1]
    assert not dup, f"delivered twice: {dup[:10]}"
    missing = set(expected) - set(counts)
    assert not missing, f"lost: {sorted(missing)[:10]}"
    assert set(counts) == set(expected)


PRODUCERS = CONSUMERS = 1000
ITEMS = 20  # per producer


@pytest.mark.stress
@pytest.mark.parametrize("lwps", [1, 2, 4])
@pytest.mark.parametrize("capacity", [0, 64])
def test_stress_many_producers_and_consumers(lwps, capacity):
    def main():
        ch = Channel(capacity)
        sinks = []

        def producer(p):
            for k in range(ITEMS):
                ch.send((p, k), timeout=J)

        def consumer():
            mine = []
            sinks.append(mine)
            for v in ch:
                mine.append(v)

        consumers = [lwp.spawn(consumer) for _ in range(CONSUMERS)]
        producers = [lwp.spawn(producer, p) for p in range(PRODUCERS)]
        for t in producers:
            t.join(J)
        ch.close()
        for t in consumers:
            t.join(J)
        return [v for mine in sinks for v in mine]

    received = lwp.run(main, lwps=lwps, seed=1000 * lwps + capacity)
    _check_exactly_once(received, [(p, k) for p in range(PRODUCERS) for k in range(ITEMS)])


@pytest.mark.stress
@pytest.mark.parametrize("lwps", [1, 2, 4])
def test_stress_select_over_several_channels(lwps):
    """Producers select over send cases, consumers over receive cases (some with
    timeouts, some plain recv), plus OS-thread producers; closed channels are
    dropped as they report CLOSED."""
    n_os = 4

    def main():
        chans = [Channel(0), Channel(1), Channel(8)]
        sinks = []
        rng = random.Random(lwps)

        def producer(p):
            for k in range(ITEMS):
                picks = rng.sample(chans, rng.randint(1, len(chans)))
                while True:
                    try:
                        select(*(c.send_case((p, k)) for c in picks), timeout=0.05)
                        break
                    except TimeoutError:
                        pass

        def consumer(c_index):
            mine = []
            sinks.append(mine)
            open_chans = list(chans)
            while open_chans:
                if c_index % 5 == 0:  # a plain receiver on one channel
                    try:
                        mine.append(open_chans[0].recv(timeout=0.02))
                    except TimeoutError:
                        continue
                    except ChannelClosed:
                        open_chans.pop(0)
                    continue
                try:
                    i, v = select(*(c.recv_case() for c in open_chans),
                                  timeout=0.02 if c_index % 3 == 0 else None)
                except TimeoutError:
                    continue
                if v is CLOSED:
                    open_chans.pop(i)
                else:
                    mine.append(v)

        consumers = [lwp.spawn(consumer, c) for c in range(CONSUMERS)]
        producers = [lwp.spawn(producer, p) for p in range(PRODUCERS)]
        os_threads = [threading.Thread(target=producer, args=(PRODUCERS + j,))
                      for j in range(n_os)]
        for t in os_threads:
            t.start()
        for t in producers:
            t.join(J)
        for t in os_threads:
            t.join(J)
        for c in chans:
            c.close()
        for t in consumers:
            t.join(J)
        assert all(len(c._recvq) == len(c._sendq) == 0 for c in chans)
        return [v for mine in sinks for v in mine]

    received = lwp.run(main, lwps=lwps, seed=lwps)
    _check_exactly_once(received,
                        [(p, k) for p in range(PRODUCERS + n_os) for k in range(ITEMS)])


@pytest.mark.stress
@pytest.mark.parametrize("lwps", [1, 2, 4])
def test_stress_cancellation_loses_nothing(lwps):
    """Consumers and producers are cancelled at random while items flow: every
    item whose send returned was received exactly once, and no other item was."""

    def main():
        chans = [Channel(0), Channel(4)]
        sinks, sent = [], []
        rng = random.Random(lwps)

        stop = []

        def producer(p):  # until stopped, so a cancelled producer is cancelled mid-traffic
            k = 0
            while not stop:
                if p % 2:
                    chans[k % 2].send((p, k))
                else:
                    select(chans[0].send_case((p, k)), chans[1].send_case((p, k)))
                sent.append((p, k))
                k += 1

        def consumer(c_index):
            mine = []
            sinks.append(mine)
            open_chans = list(chans)
            while open_chans:
                if c_index % 2:
                    try:
                        mine.append(open_chans[-1].recv())
                    except ChannelClosed:
                        open_chans.pop()
                    continue
                i, v = select(*(c.recv_case() for c in open_chans))
                if v is CLOSED:
                    open_chans.pop(i)
                else:
                    mine.append(v)

        consumers = [lwp.spawn(consumer, c) for c in range(CONSUMERS)]
        producers = [lwp.spawn(producer, p) for p in range(PRODUCERS)]
        victims = rng.sample(consumers, CONSUMERS // 3) + rng.sample(producers, PRODUCERS // 3)
        rng.shuffle(victims)
        wait_until(lambda: len(sent) > PRODUCERS)  # traffic is flowing
        for k, t in enumerate(victims):
            t.cancel()
            if k % 150 == 0:  # let traffic go on between cancels (each yield waits for a
                lwp.sleep(0)    # turn behind ~2000 runnable threads)
        wait_until(lambda: len(sent) > PRODUCERS * 5)  # and goes on after the cancels
        stop.append(True)
        for t in producers:
            try:
                t.join(J)
            except lwp.Cancelled:
                pass
        for c in chans:
            c.close()
        for t in consumers:
            try:
                t.join(J)
            except lwp.Cancelled:
                pass
        leftovers = [v for c in chans for v in c]  # buffered values nobody received
        # (a victim that was never blocked again after its cancel may have ended normally)
        assert any(t.cancelled() for t in victims)
        return [v for mine in sinks for v in mine] + leftovers, sent

    received, sent = lwp.run(main, lwps=lwps, seed=lwps)
    _check_exactly_once(received, sent)
