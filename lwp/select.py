"""Cooperative ``select``, ``poll`` and ``epoll``: a drop-in for the :mod:`select` module.

Every name of the standard :mod:`select` module is here; three wait the lwp
way, parking the calling green thread while its LWP runs others:

* :func:`select`: ``select(rlist, wlist, xlist, timeout=None)``.
* :class:`poll`: ``register``/``modify``/``unregister``/``poll(timeout_ms)``.
* :class:`epoll`: the methods of :class:`select.epoll` (a wrapper: the
  standard type cannot be subclassed); ``poll(timeout, maxevents)`` parks.

How: an lwp thread can wait for one descriptor at a time (its LWP's epoll
watches it), but an epoll descriptor is itself pollable, readable while any of
its own descriptors is ready.  So a call first asks the kernel without waiting;
if nothing is ready it parks on one epoll descriptor that watches all the
requested ones (the object's own for :class:`epoll`, a private one for the
duration of the call for ``select`` and ``poll``), then asks again.  The
answer is always the standard call's own, made with a zero timeout.

In a plain OS thread these are the standard blocking calls.  Two green
threads of one LWP may not wait on the same :class:`epoll` object at once.

The channel select is :func:`lwp.channel.select`: the package exports no
``select`` of its own, so ``lwp.select`` is always this module.
"""

import select as _std
from select import *  # noqa: F401,F403 - the drop-in re-exports the standard module
from time import monotonic as _monotonic

from ._core.park import current as _current
from ._core.park import fd_closing as _fd_closing
from ._core.park import wait_readable as _wait_readable
from ._core.park import waiter as _waiter
from ._core.timeout import sleep as _sleep
from .monkey import get_original as _get_original

__all__ = [n for n in dir(_std) if not n.startswith("_")]

# The real ones, even if lwp.monkey has patched the select module already.
_std_select = _get_original("select", "select")
_std_poll = _get_original("select", "poll")
_std_epoll = _get_original("select", "epoll")

_POLL_TO_EPOLL = ~_std.POLLNVAL  # the other poll bits have the same values in epoll (Linux)


def _fileno(obj):
    return obj if isinstance(obj, int) else obj.fileno()


def _seconds(timeout, what):
    """``timeout`` as a number (int or float), like the standard calls accept."""
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return timeout
    try:
        return float(timeout.__float__())
    except AttributeError:
        raise TypeError(f"{what} must be a number or None") from None


def _deadline(timeout):
    return None if timeout is None else _monotonic() + timeout


def _park_on(ep, deadline):
    """Park until epoll object ``ep`` has events; False once ``deadline`` passed."""
    if deadline is None:
        _wait_readable(ep.fileno(), None)
        return True
    remaining = deadline - _monotonic()
    return remaining > 0 and _wait_readable(ep.fileno(), remaining)


def _park_forever():
    _waiter().wait(None)  # nothing will wake it: only a cancellation or lwp.Timeout ends it


def select(rlist, wlist, xlist, timeout=None):
    """Like :func:`select.select`, parking the green thread while nothing is ready."""
    if _current() is None:
        return _std_select(rlist, wlist, xlist, timeout)
    if timeout is not None:
        timeout = _seconds(timeout, "timeout")
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    lists = [x if isinstance(x, (list, tuple)) else list(x) for x in (rlist, wlist, xlist)]
    ready = _std_select(*lists, 0)
    if ready[0] or ready[1] or ready[2] or timeout == 0:
        return ready
    masks = {}
    for objs, bit in zip(lists, (EPOLLIN, EPOLLOUT, EPOLLPRI)):
        for obj in objs:
            fd = _fileno(obj)
            masks[fd] = masks.get(fd, 0) | bit
    if not masks:  # select() on nothing: a sleep
        if timeout is None:
            _park_forever()
        _sleep(timeout)
        return [], [], []
    deadline = _deadline(timeout)
    with _std_epoll() as ep:
        for fd, mask in masks.items():
            ep.register(fd, mask)
        while True:
            if not _park_on(ep, deadline):
                return [], [], []
            ready = _std_select(*lists, 0)
            if ready[0] or ready[1] or ready[2]:
                return ready


class poll:
    """Like :func:`select.poll` objects; ``poll(timeout)`` (milliseconds) parks."""

    __slots__ = ("_poll", "_masks", "__weakref__")

    def __init__(self):
        self._poll = _std_poll()
        self._masks = {}

    def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):
        """Watch ``fd`` (an int or an object with ``fileno()``) for ``eventmask``."""
        self._poll.register(fd, eventmask)
        self._masks[_fileno(fd)] = eventmask

    def modify(self, fd, eventmask):
        """Change the events watched for a registered ``fd``."""
        self._poll.modify(fd, eventmask)
        self._masks[_fileno(fd)] = eventmask

    def unregister(self, fd):
        """Stop watching ``fd``; KeyError if it was not registered."""
        self._poll.unregister(fd)
        del self._masks[_fileno(fd)]

    def poll(self, timeout=None):
        """``[(fd, events)]``; waits up to ``timeout`` ms (None or negative: no limit)."""
        if _current() is None:
            return self._poll.poll(timeout)
        if timeout is not None:
            timeout = _seconds(timeout, "timeout")
            timeout = None if timeout < 0 else timeout / 1000.0
        events = self._poll.poll(0)
        if events or timeout == 0:
            return events
        if not self._masks:
            if timeout is None:
                _park_forever()
            _sleep(timeout)
            return []
        deadline = _deadline(timeout)
        with _std_epoll() as ep:
            for fd, mask in self._masks.items():
                try:
                    ep.register(fd, mask & _POLL_TO_EPOLL)
                except OSError:
                    pass  # closed or a regular file: poll(0) reported it already
            while True:
                if not _park_on(ep, deadline):
                    return []
                events = self._poll.poll(0)
                if events:
                    return events


class epoll:
    """Like :class:`select.epoll`; ``poll(timeout, maxevents)`` parks the green thread.

    Closing it (``close()`` or the ``with`` block) wakes a thread parked in
    ``poll`` with :class:`OSError`.
    """

    __slots__ = ("_ep", "__weakref__")

    def __init__(self, sizehint=-1, flags=0):
        self._ep = _std_epoll(sizehint, flags)

    @classmethod
    def fromfd(cls, fd):
        """An epoll object owning the epoll descriptor ``fd``."""
        self = cls.__new__(cls)
        self._ep = _std_epoll.fromfd(fd)
        return self

    def __repr__(self):
        return f"<lwp.select.epoll fd={-1 if self._ep.closed else self._ep.fileno()}>"

    @property
    def closed(self):
        """True once closed."""
        return self._ep.closed

    def fileno(self):
        """The epoll descriptor."""
        return self._ep.fileno()

    def close(self):
        """Close the epoll descriptor (waking a thread parked in ``poll``)."""
        if not self._ep.closed:
            _fd_closing(self._ep.fileno())
            self._ep.close()

    def __enter__(self):
        if self._ep.closed:
            raise ValueError("I/O operation on closed epoll object")
        return self

    def __exit__(self, *exc):
        self.close()

    def register(self, fd, eventmask=EPOLLIN | EPOLLPRI | EPOLLOUT):
        """Watch ``fd`` for ``eventmask``."""
        self._ep.register(fd, eventmask)

    def modify(self, fd, eventmask):
        """Change the events watched for ``fd``."""
        self._ep.modify(fd, eventmask)

    def unregister(self, fd):
        """Stop watching ``fd``."""
        self._ep.unregister(fd)

    def poll(self, timeout=None, maxevents=-1):
        """``[(fd, events)]``; waits up to ``timeout`` s (None or negative: no limit)."""
        if _current() is None:
            return self._ep.poll(timeout, maxevents)
        if timeout is not None:
            timeout = _seconds(timeout, "timeout")
            if timeout < 0:
                timeout = None
        events = self._ep.poll(0, maxevents)
        if events or timeout == 0:
            return events
        deadline = _deadline(timeout)
        while True:
            if not _park_on(self._ep, deadline):
                return []
            events = self._ep.poll(0, maxevents)
            if events:
                return events

