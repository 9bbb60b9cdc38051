"""sleep and Timeout."""

import pytest

import lwp


def test_sleep_orders_by_deadline():
    def main():
        order = []
        threads = [lwp.spawn(lambda d=d: (lwp.sleep(d), order.append(d))) for d in (0.03, 0.01, 0.02)]
        for t in threads:
            t.join(5)
        return order

    assert lwp.run(main, lwps=1) == [0.01, 0.02, 0.03]


def test_sleep_zero_yields_and_bad_values_raise():
    def main():
        seen = []
        t = lwp.spawn(seen.append, "other")
        lwp.sleep(0)
        for bad in (-1, float("nan")):
            with pytest.raises(ValueError):
                lwp.sleep(bad)
        t.join(5)
        return seen

    assert lwp.run(main, lwps=1) == ["other"]
    lwp.sleep(0.001)  # plain OS thread: time.sleep


def test_timeout_raises_at_blocking_point():
    def main():
        with pytest.raises(lwp.Timeout) as info:
            with lwp.Timeout(0.01):
                lwp.Event().wait()
        return info.value

    t = lwp.run(main)
    assert t.expired and "0.01" in str(t)


def test_timeout_not_expired_changes_nothing():
    def main():
        with lwp.Timeout(5) as t:
            lwp.sleep(0.001)
        lwp.sleep(0.01)
        return t.expired

    assert lwp.run(main) is False


def test_silent_timeout_leaves_block():
    def main():
        reached = []
        with lwp.Timeout(0.01, silent=True) as t:
            lwp.sleep(10)
            reached.append("no")
        return t.expired, reached

    assert lwp.run(main) == (True, [])


def test_nested_timeouts_raise_their_own_instance():
    def main():
        outer = lwp.Timeout(0.01)
        with pytest.raises(lwp.Timeout) as info:
            with outer:
                with lwp.Timeout(10):
                    lwp.sleep(5)
        return info.value is outer

    assert lwp.run(main)


def test_timeout_fired_after_block_does_not_leak():
    def main():
        with lwp.Timeout(0.005):
            x = 0
            import time
            end = time.monotonic() + 0.02
            while time.monotonic() < end:  # never blocks: timer fires later
                x += 1
        lwp.sleep(0.01)  # the stale timeout must not surface here
        return "ok"

    assert lwp.run(main, lwps=1) == "ok"


def test_timeout_none_and_misuse():
    def main():
        with lwp.Timeout(None):
            lwp.sleep(0.001)
        t = lwp.Timeout(1)
        with t:
            pass
        with pytest.raises(RuntimeError):
            t.__enter__()

    lwp.run(main)
    with pytest.raises(RuntimeError):
        with lwp.Timeout(1):
            pass
    with pytest.raises(ValueError):
        lwp.Timeout(-1)
