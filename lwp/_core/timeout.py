"""Time: ``sleep`` and the ``Timeout`` context manager."""

from time import sleep as _os_sleep  # bound before lwp.monkey can patch it

from . import park
from .thread import _check_timeout, owner_locked


def sleep(seconds=0):
    """Suspend the calling green thread for ``seconds``; its LWP runs others.

    ``sleep(0)`` only yields: the thread goes to the back of its LWP's run
    queue.  Both are scheduling points, where a pending cancellation or
    :class:`Timeout` is raised.  From a plain OS thread this is ``time.sleep``.
    """
    _check_timeout(seconds)
    if seconds == 0:
        park.checkpoint()
    elif park.current() is None:
        _os_sleep(seconds)
    else:
        park.waiter().wait(seconds)


class Timeout(BaseException):
    """Raise in the current green thread if a block takes longer than ``seconds``.

    ::

        with lwp.Timeout(2.5):
            data = sock.recv(1024)   # raises lwp.Timeout after 2.5 s

    The exception is raised at the thread's next (or current) blocking point;
    code that never blocks cannot be interrupted this way.  With
    ``silent=True`` the block is simply left when time is up, and ``expired``
    says whether that happened.  Nested timeouts work: each raises its own
    instance, and an outer one passes through an inner ``with``.  Like
    ``Cancelled`` it is a :class:`BaseException`, so ``except Exception`` does
    not swallow it.  ``seconds=None`` means no limit.
    """

    def __init__(self, seconds=None, *, silent=False):
        _check_timeout(seconds)
        super().__init__(seconds)
        self.seconds = seconds
        self.silent = silent
        self.expired = False
        self._timer = None
        self._thread = None

    def __str__(self):
        return f"timed out after {self.seconds} s"

    def __enter__(self):
        if self._thread is not None:
            raise RuntimeError("a Timeout cannot be entered twice")
        t = park.current()
        if t is None:
            raise RuntimeError("lwp.Timeout works only in a green thread")
        self._thread = t
        if self.seconds is not None:
            self._timer = t._lwp.call_later(self.seconds, self._expire)
        return self

    def _expire(self):
        self.expired = True
        self._thread._throw(self)

    def __exit__(self, typ, value, tb):
        if self._timer is not None:
            self._timer.cancel()
        if self.expired and value is not self:
            # Fired after the block's last blocking point: do not leak it out.
            with owner_locked(self._thread):
                if self._thread._pending_exc is self:
                    self._thread._pending_exc = None
        return value is self and self.silent
