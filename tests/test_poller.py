"""The per-LWP readiness poller (lwp/_core/poller.py) and fd_closing."""

import errno

import pytest

from helpers import wait_until
import lwp
import lwp.socket as socket
from lwp._core import park


def _lwp_calls(monkeypatch, lwp_obj):
    """Count the callbacks other kernel threads post to ``lwp_obj``."""
    posted = []
    real = lwp_obj.call_soon_threadsafe

    def counting(fn, *args):
        posted.append(getattr(fn, "__name__", fn))
        return real(fn, *args)

    monkeypatch.setattr(lwp_obj, "call_soon_threadsafe", counting)
    return posted


def test_closing_an_fd_disturbs_only_the_lwps_that_waited_on_it(monkeypatch):
    """fd_closing once posted a callback to, and woke, every LWP of every scheduler."""
    def main():
        here = park.current_lwp()
        other = next(x for x in here.sched.lwps() if x is not here)
        posted = _lwp_calls(monkeypatch, other)
        a, b = socket.socketpair()
        try:
            t = lwp.spawn(a.recv, 1)
            wait_until(lambda: t._lwp is not None and t._lwp._poller.busy())
            if t._lwp is not here:
                pytest.skip("the reader was placed on the other LWP")
            a.close()
            with pytest.raises(OSError) as info:
                t.join(5)
            assert info.value.errno == errno.EBADF
        finally:
            a.close()
            b.close()
        return [name for name in posted if "forget" in name]

    assert lwp.run(main, lwps=2) == []


def test_a_closed_fd_leaves_no_state_behind():
    def main():
        poller = park.current_lwp()._poller
        a, b = socket.socketpair()
        fd = a.fileno()
        try:
            t = lwp.spawn(a.recv, 1)
            wait_until(poller.busy)
            b.send(b"x")
            assert t.join(5) == b"x"
            assert fd in poller._fds  # kept between waits: no re-registration
        finally:
            a.close()
            b.close()
        return fd not in poller._fds and not poller.busy()

    assert lwp.run(main, lwps=1)


def test_a_waiter_on_another_lwp_wakes_with_ebadf():
    def main():
        here = park.current_lwp()
        a, b = socket.socketpair()
        try:
            t = lwp.spawn(a.recv, 1, bound=True)  # a kernel thread of its own
            wait_until(lambda: t._lwp not in (None, here) and t._lwp._poller.busy())
            a.close()
            with pytest.raises(OSError) as info:
                t.join(5)
            return info.value.errno
        finally:
            a.close()
            b.close()

    assert lwp.run(main, lwps=1) == errno.EBADF
