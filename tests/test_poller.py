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


def _close_under(reader, sock):
    """Close ``sock`` while ``reader`` (a thread) is parked on it: the errno it fails with."""
    sock.close()
    with pytest.raises(OSError) as info:
        reader.join(5)
    return info.value.errno


def test_closing_an_fd_disturbs_only_the_lwps_that_waited_on_it(monkeypatch):
    """fd_closing once posted a callback to, and woke, every LWP of every scheduler."""
    def main():
        here = park.current_lwp()
        other = next(x for x in here.sched.lwps() if x is not here)
        posted = _lwp_calls(monkeypatch, other)
        a, b = socket.socketpair()
        with a, b:
            t = lwp.spawn(a.recv, 1)
            wait_until(lambda: t._lwp is not None and t._lwp._poller.busy())
            if t._lwp is not here:
                pytest.skip("the reader was placed on the other LWP")
            return _close_under(t, a), [name for name in posted if "forget" in name]

    assert lwp.run(main, lwps=2) == (errno.EBADF, [])


def test_a_closed_fd_leaves_no_state_behind():
    def main():
        poller = park.current_lwp()._poller
        a, b = socket.socketpair()
        fd = a.fileno()
        with a, b:
            t = lwp.spawn(a.recv, 1)
            wait_until(poller.busy)
            b.send(b"x")
            assert t.join(5) == b"x"
            assert fd in poller._fds  # kept between waits: no re-registration
        return fd not in poller._fds and not poller.busy()

    assert lwp.run(main, lwps=1)


def test_a_waiter_on_another_lwp_wakes_with_ebadf():
    def main():
        here = park.current_lwp()
        a, b = socket.socketpair()
        with a, b:
            t = lwp.spawn(a.recv, 1, bound=True)  # a kernel thread of its own
            wait_until(lambda: t._lwp not in (None, here) and t._lwp._poller.busy())
            return _close_under(t, a)

    assert lwp.run(main, lwps=1) == errno.EBADF
