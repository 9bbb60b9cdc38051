"""Helpers shared by the tests."""

import lwp


def wait_until(predicate, timeout=5.0, step=0.001):
    """Poll ``predicate`` (from a green or OS thread) until true; fail after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        lwp.sleep(step)
