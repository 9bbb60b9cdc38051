"""The LWP's hub loop and its direct switches between threads."""

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
