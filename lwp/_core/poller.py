"""Readiness waits: one epoll instance per LWP, shared with its wake-up fd.

Only the owning LWP's kernel thread touches a Poller.  A green thread that wants
an fd to become readable or writable calls :meth:`Poller.wait` on its own LWP's
poller; the LWP's hub calls :meth:`Poller.poll` when it has nothing to run (or,
every few dozen switches, with a zero timeout so busy threads cannot starve I/O).

Registrations use ``EPOLLONESHOT`` and stay in the epoll set between waits
(re-armed with ``modify``), which saves a syscall on every wait.  A closed fd
leaves epoll by itself; an event for an fd nobody waits on any more is ignored,
so callers must treat a wake-up as a hint and retry their non-blocking call.
"""

import select
from select import epoll

from .park import TIMED_OUT, waiter

_READ = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
_WRITE = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_MAX_WAIT = 86400.0  # seconds; epoll_wait's timeout overflows past 2**31 ms (~24.8 days)


class Poller:
    __slots__ = ("_ep", "_wakefd", "_waiting", "_registered")

    def __init__(self, wakefd):
        self._ep = epoll()
        self._wakefd = wakefd
        self._ep.register(wakefd, select.EPOLLIN)
        self._waiting = {}        # fd -> [reader waiter or None, writer waiter or None]
        self._registered = set()  # fds with an epoll registration (possibly disarmed)

    def close(self):
        self._ep.close()

    def busy(self):
        """True if some thread waits for an fd."""
        return bool(self._waiting)

    def wait(self, fd, write, timeout):
        """Park the calling green thread until ``fd`` is ready (owner LWP only).

        Returns True when woken by readiness (or hang-up/error: the next I/O call
        will report it), False when ``timeout`` passed first.  Raises
        RuntimeError if another thread already waits for the same direction of
        the same fd on this LWP: two readers of one socket are a bug.
        """
        slots = self._waiting.get(fd)
        if slots is None:
            slots = self._waiting[fd] = [None, None]
        if slots[write] is not None:
            raise RuntimeError(
                f"fd {fd} already has a green thread waiting to {'write' if write else 'read'}")
        w = slots[write] = waiter()
        try:
            self._arm(fd, slots)
            return w.wait(timeout) is not TIMED_OUT
        finally:
            if slots[write] is w:
                slots[write] = None
                if slots[0] is None and slots[1] is None and self._waiting.get(fd) is slots:
                    del self._waiting[fd]

    def _arm(self, fd, slots):
        mask = select.EPOLLONESHOT
        if slots[0] is not None:
            mask |= _READ
        if slots[1] is not None:
            mask |= _WRITE
        if fd in self._registered:
            try:
                self._ep.modify(fd, mask)
                return
            except FileNotFoundError:  # the fd was closed and its number reused
                pass
        self._ep.register(fd, mask)
        self._registered.add(fd)

    def forget(self, fd):
        """Drop ``fd`` before it is closed, waking its waiters with an error."""
        slots = self._waiting.pop(fd, None)
        if fd in self._registered:
            self._registered.discard(fd)
            try:
                self._ep.unregister(fd)
            except (FileNotFoundError, OSError):
                pass
        if slots is not None:
            for w in slots:
                if w is not None:
                    w.wake(exc=OSError(9, "Bad file descriptor: closed while waiting"))

    def poll(self, timeout):
        """Wait up to ``timeout`` seconds (None: forever) and wake ready waiters.

        Returns True if the LWP's wake-up fd fired.
        """
        woke = False
        if timeout is not None and timeout > _MAX_WAIT:
            timeout = _MAX_WAIT  # epoll takes an int of milliseconds; the hub waits again
        try:
            events = self._ep.poll(-1 if timeout is None else timeout)
        except InterruptedError:
            return False
        for fd, ev in events:
            if fd == self._wakefd:
                woke = True
                continue
            slots = self._waiting.get(fd)
            if slots is None:
                continue
            if ev & _READ and slots[0] is not None:
                w, slots[0] = slots[0], None
                w.wake(True)
            if ev & _WRITE and slots[1] is not None:
                w, slots[1] = slots[1], None
                w.wake(True)
            if slots[0] is None and slots[1] is None:
                del self._waiting[fd]
            else:
                self._arm(fd, slots)
        return woke
