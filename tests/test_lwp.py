"""The LWP's hub loop and its direct switches between threads."""

import os

import pytest

import lwp


def _headroom(n=0):
    try:
        return _headroom(n + 1)
    except RecursionError:
        return n


def test_recursion_headroom_does_not_shrink_across_new_threads():
    """New threads that park at once must not inherit each other's stack depth."""
    headroom = []

    def nest(k, ev):
        if k:
            return nest(k - 1, ev)
        headroom.append(_headroom())
        ev.wait()

    def main():
        ev = lwp.Event()
        threads = [lwp.spawn(nest, 20, ev) for _ in range(200)]
        lwp.sleep(0.05)
        ev.set()
        for t in threads:
            t.join(5)  # a RecursionError here fails the test

    lwp.run(main, lwps=1, monitor=False)
    assert len(headroom) == 200
    assert max(headroom) - min(headroom) < 50, (min(headroom), max(headroom))


def _count_spins(lwp_):
    """Count the idle steps of ``lwp_`` that got native completions by spinning."""
    spins = [0]
    spin = lwp_._spin_for_completions

    def counted():
        got = spin()
        spins[0] += got
        return got

    lwp_._spin_for_completions = counted
    return spins


def _read_blocks(path, n):
    spins = _count_spins(lwp._core.park.current_lwp())
    with lwp.open(path, "rb", buffering=0) as f:
        for i in range(n):
            f.seek(i * 4096 % (1 << 16))
            assert len(f.read(4096)) == 4096
    return spins[0]


@pytest.mark.parametrize("completion_spin", [None, 0])
def test_lwp_spins_for_native_completions_next_to_a_hog(tmp_path, completion_spin):
    """Next to a CPU hog, an idle LWP waits for its reads holding the GIL, not in epoll;
    never with ``completion_spin=0``."""
    path = tmp_path / "data"
    path.write_bytes(os.urandom(1 << 16))

    def hog(stop):
        while not stop:
            pass  # Python, no scheduling point

    def main():
        stop = []
        hogger = lwp.spawn(hog, stop, bound=True)  # an LWP of its own: never this one
        try:
            return _read_blocks(path, 200)
        finally:
            stop.append(True)
            hogger.join(5)

    spins = lwp.run(main, lwps=2, completion_spin=completion_spin)
    assert spins >= 1 if completion_spin is None else spins == 0


def test_completion_spin_option_is_checked(monkeypatch):
    from lwp._core.lwp import DEFAULT_SPIN, check_spin, default_spin

    assert check_spin(0) == 0 and check_spin(0.001) == 0.001
    for bad in (-1e-6, 0.0011, "50", None, True, float("nan")):
        with pytest.raises(ValueError):
            check_spin(bad)
    monkeypatch.setenv("LWP_SPIN_US", "20")
    assert default_spin() == 20e-6
    sched = lwp.Scheduler(1, monitor=False)
    try:
        assert sched.spin_ns == 20_000
    finally:
        sched.shutdown()
    monkeypatch.setenv("LWP_SPIN_US", "0")
    assert default_spin() == 0
    monkeypatch.delenv("LWP_SPIN_US")
    assert default_spin() == DEFAULT_SPIN == 50e-6
    with pytest.raises(ValueError):
        lwp.Scheduler(1, completion_spin=1)


def test_lwp_does_not_spin_without_a_hog(tmp_path):
    """With no hog in sight the LWP sleeps in epoll between reads, never spins.

    Slices off and a long stall threshold, so that a loaded test machine that
    deschedules the reader's kernel thread cannot make the monitor see a hog.
    """
    path = tmp_path / "data"
    path.write_bytes(os.urandom(1 << 16))
    assert lwp.run(_read_blocks, path, 200, lwps=2, time_slice=0, stall_threshold=10) == 0


def test_lwp_is_not_current_while_it_shuts_down(monkeypatch):
    """What runs while an LWP tears down (a collector-run ``__del__``, the poller's close)
    must not see it as the current LWP: ``park.wake_or_defer`` would leave a wake-up in
    its ``_calls``, which no loop drains any more."""
    from lwp._core import park
    from lwp._core.poller import Poller

    seen = []
    close = Poller.close

    def spy(self):
        seen.append(park.current_lwp())
        close(self)

    monkeypatch.setattr(Poller, "close", spy)
    lwp.run(lambda: None, lwps=1)
    assert seen == [None]
