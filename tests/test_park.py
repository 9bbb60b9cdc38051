"""The park/wake door: one wake-up counts, early wake-ups are kept, OS waiters."""

import threading

import lwp
from lwp._core import park


def test_wake_before_wait_is_not_lost():
    def main():
        w = park.waiter()
        assert w.wake("early") is True
        assert w.wake("second") is False
        return w.wait()

    assert lwp.run(main) == "early"


def test_wake_after_timeout_returns_false():
    def main():
        w = park.waiter()
        assert w.wait(0.001) is park.TIMED_OUT
        return w.wake("late")

    assert lwp.run(main) is False


def test_exception_delivered_by_wake():
    def main():
        w = park.waiter()
        w.wake(exc=ValueError("boom"))
        try:
            w.wait()
        except ValueError as e:
            return str(e)

    assert lwp.run(main) == "boom"


def test_wake_from_other_lwp_and_os_thread():
    def main():
        got = []
        for source in ("lwp", "os"):
            w = park.waiter()
            if source == "lwp":
                lwp.spawn(w.wake, source)
            else:
                threading.Thread(target=w.wake, args=(source,)).start()
            got.append(w.wait(5))
        return got

    assert lwp.run(main, lwps=2) == ["lwp", "os"]


def test_os_waiter_in_plain_thread():
    w = park.waiter()
    assert isinstance(w, park.OSWaiter)
    assert w.wait(0.001) is park.TIMED_OUT
    assert w.wake(1) is False
    w2 = park.waiter()
    threading.Timer(0.01, w2.wake, args=("x",)).start()
    assert w2.wait(5) == "x"


def test_many_concurrent_wakers_exactly_one_wins():
    def main():
        wins = []
        for _ in range(200):
            w = park.waiter()
            racers = [lwp.spawn(lambda: wins.append(w.wake(True))) for _ in range(4)]
            w.wait(5)
            for r in racers:
                r.join(5)
        return wins

    wins = lwp.run(main, lwps=2)
    assert wins.count(True) == 200 and wins.count(False) == 600


def test_checkpoint_lets_others_run():
    def main():
        steps = []
        t = lwp.spawn(lambda: steps.append("other"))
        lwp.checkpoint()
        steps.append("me")
        t.join(5)
        return steps

    assert lwp.run(main, lwps=1) == ["other", "me"]
    lwp.checkpoint()  # in a plain thread: just returns


def test_cross_lwp_wakeups_racing_with_park():
    """A wake-up landing between the park decision and the switch is not resumed twice."""
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # GIL hand-offs everywhere: widen every race window
    try:
        def main():
            a, b = lwp.Event(), lwp.Event()
            rounds = 20_000

            def pong():
                for _ in range(rounds):
                    a.wait(5)
                    a.clear()
                    b.set()

            # bound=True puts pong on its own LWP: every wake-up crosses kernel threads
            t = lwp.spawn(pong, bound=True)
            for _ in range(rounds):
                a.set()
                assert b.wait(5)
                b.clear()
            t.join(10)
            return rounds

        assert lwp.run(main, lwps=1) == 20_000
    finally:
        sys.setswitchinterval(old)


def test_waiter_survives_another_park_of_its_thread():
    """A waiter holds its own outcome: its thread may park elsewhere in between
    (once an error), and a wake-up that came meanwhile is neither lost nor
    delivered to that other park."""
    def main():
        w = park.waiter()
        waker = lwp.spawn(w.wake, "for w")  # runs while main sleeps below
        assert lwp.sleep(0.01) is None       # not woken by w's wake-up
        assert waker.join(5) is True         # that wake-up counted...
        assert w.wait(5) == "for w"          # ...and is kept for w
        assert w.wake("again") is False
        late = park.waiter()
        lwp.sleep(0.001)
        assert late.wait(0.01) is park.TIMED_OUT  # one never woken still times out
        return "ok"

    assert lwp.run(main, lwps=1) == "ok"
