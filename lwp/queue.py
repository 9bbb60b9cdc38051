"""Queues: ``Queue``, ``LifoQueue``, ``PriorityQueue``, ``SimpleQueue``.

The standard library's :mod:`queue` classes with their blocking done the lwp
way: every documented behaviour of :mod:`queue` stays (``maxsize``,
``block``/``timeout``, ``put_nowait``/``get_nowait``, ``task_done``/``join``,
the :class:`queue.Empty` and :class:`queue.Full` exceptions themselves, the
``_init``/``_qsize``/``_put``/``_get`` hooks that make the LIFO and priority
variants), while a waiting green thread parks instead of blocking its LWP.
They work between green threads and plain OS threads alike.

Instead of the standard library's three Conditions over one lock, a queue
keeps a short internal mutex and two FIFOs of one-shot waiters (see
:mod:`lwp._core.park`): ``put`` wakes exactly one waiting getter, ``get`` one
waiting putter; a woken thread tries again under the mutex.  A wake-up that
reaches a waiter which has timed out or was cancelled returns False and goes
to the next waiter, so none is lost.
"""

import queue as _stdlib
import time
from _thread import allocate_lock
from collections import deque
from types import GenericAlias

from ._core.park import TIMED_OUT, waiter, wake_or_defer
from .sync import _discard, _hand_off, _wait_for_handoff

Empty = _stdlib.Empty
Full = _stdlib.Full

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full"]


def _deadline(block, timeout):
    if not block:
        return None
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return time.monotonic() + timeout


class Queue(_stdlib.Queue):
    """A FIFO queue; see :class:`queue.Queue`."""

    def __init__(self, maxsize=0):
        if maxsize is None:  # <= 0 means unbounded, as in queue.Queue
            raise ValueError("maxsize must be a number (<= 0: unbounded), got None")
        self.maxsize = maxsize
        self._init(maxsize)
        self.unfinished_tasks = 0
        self.mutex = allocate_lock()  # short critical sections only; never held while waiting
        self._getters = deque()
        self._putters = deque()
        self._joiners = []

    def __repr__(self):
        return f"<lwp.{type(self).__name__} size={self.qsize()} maxsize={self.maxsize}>"

    # put and get take the mutex with acquire/try/finally rather than `with`:
    # half the cost, on the hot path of every hand-off.

    def put(self, item, block=True, timeout=None):
        """Put ``item``, waiting for room if the queue is full (see :meth:`queue.Queue.put`)."""
        deadline = None if timeout is None else _deadline(block, timeout)
        mutex = self.mutex
        while True:
            mutex.acquire()
            try:
                if self.maxsize <= 0 or self._qsize() < self.maxsize:
                    self._put(item)
                    self.unfinished_tasks += 1
                    if self._getters:
                        _hand_off(self._getters)
                    return
                if not block:
                    raise Full
                w = waiter()
                self._putters.append(w)
            finally:
                mutex.release()
            if not self._wait(w, self._putters, deadline):
                raise Full

    def get(self, block=True, timeout=None):
        """Remove and return an item, waiting if the queue is empty (see :meth:`queue.Queue.get`)."""
        deadline = None if timeout is None else _deadline(block, timeout)
        mutex = self.mutex
        while True:
            mutex.acquire()
            try:
                if self._qsize():
                    item = self._get()
                    if self._putters:
                        _hand_off(self._putters)
                    return item
                if not block:
                    raise Empty
                w = waiter()
                self._getters.append(w)
            finally:
                mutex.release()
            if not self._wait(w, self._getters, deadline):
                raise Empty

    def _wait(self, w, waiters, deadline):
        """Wait on ``w``; False if the deadline passed.  ``w`` leaves ``waiters`` unless woken.

        A wake-up that reached an OS thread just as a signal handler raised in
        it goes to the next waiter.
        """
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return _wait_for_handoff(self.mutex, waiters, w, remaining,
                                 lambda: self._pass_on(waiters))

    def _pass_on(self, waiters):
        with self.mutex:
            _hand_off(waiters)

    def task_done(self):
        """Mark one fetched item as processed; see :meth:`queue.Queue.task_done`."""
        with self.mutex:
            unfinished = self.unfinished_tasks - 1
            if unfinished < 0:
                raise ValueError("task_done() called too many times")
            self.unfinished_tasks = unfinished
            joiners = []
            if unfinished == 0:
                joiners, self._joiners = self._joiners, []
        for w in joiners:
            w.wake(True)

    def join(self):
        """Wait until every item put has been marked done with :meth:`task_done`."""
        with self.mutex:
            if not self.unfinished_tasks:
                return
            w = waiter()
            self._joiners.append(w)
        try:
            w.wait()
        except BaseException:
            _discard(self.mutex, self._joiners, w)
            raise


class LifoQueue(Queue, _stdlib.LifoQueue):
    """A LIFO queue (a stack); see :class:`queue.LifoQueue`."""


class PriorityQueue(Queue, _stdlib.PriorityQueue):
    """Entries come out lowest first; see :class:`queue.PriorityQueue`."""


class SimpleQueue:
    """An unbounded FIFO queue, like :class:`queue.SimpleQueue`; ``put`` is reentrant.

    As with the standard library's C implementation, ``put`` may run inside
    another ``put`` or ``get`` of the same queue in the same thread: from a
    ``__del__`` method or a weakref callback that the garbage collector runs
    there (``logging.handlers.QueueHandler`` relies on it).  So ``put`` takes
    no lock of the queue: it appends the item to a deque and wakes the first
    blocked getter, both atomic hand-offs.  A getter publishes its waiter
    first and looks for an item again after, so an item put in between is
    seen by one side or the other.  Like :class:`queue.SimpleQueue` it has no
    ``maxsize``, ``task_done`` or ``join``.
    """

    __slots__ = ("_items", "_getters", "__weakref__")

    def __init__(self):
        self._items = deque()
        self._getters = deque()  # waiters of blocked get() calls, first come first served

    def __repr__(self):
        return f"<lwp.SimpleQueue size={len(self._items)}>"

    __class_getitem__ = classmethod(GenericAlias)

    def put(self, item, block=True, timeout=None):
        """Put ``item``; never blocks (``block`` and ``timeout`` are for compatibility)."""
        self._items.append(item)
        self._wake_getter()

    def put_nowait(self, item):
        self.put(item)

    def _wake_getter(self):
        """Wake the first getter still waiting, if any, without waiting for a lock."""
        getters = self._getters
        while True:
            try:
                w = getters.popleft()  # not `if getters:`, see get()
            except IndexError:
                return
            if wake_or_defer(w, True, self._wake_getter) is not False:
                return  # woken, or deferred: the deferred wake-up moves on if it misses

    def get(self, block=True, timeout=None):
        """Remove and return an item, waiting if the queue is empty (see :meth:`queue.SimpleQueue.get`)."""
        deadline = None if timeout is None else _deadline(block, timeout)
        items = self._items
        while True:
            try:
                return items.popleft()
            except IndexError:
                if not block:
                    raise Empty from None
            w = waiter()
            self._getters.append(w)
            # put() appends its item, then takes a getter: take an item again now
            # that w is published, so that one side or the other sees the other's
            # append.  Both sides use operations that lock the deque (popleft, not
            # a length check): in free-threaded CPython those are the ordered ones.
            try:
                item = items.popleft()
            except IndexError:
                pass
            else:
                self._withdraw(w)
                return item
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                got = w.wait(remaining)
            except BaseException:
                self._withdraw(w)
                raise
            if got is TIMED_OUT:
                self._withdraw(w)
                try:
                    return items.popleft()
                except IndexError:
                    raise Empty from None

    def _withdraw(self, w):
        """Take ``w`` back from the getters, for a get() that will not use its wake-up.

        A put() that took ``w`` may have woken it, and then woke no one else:
        unless this call settles ``w`` first (or a timeout or an exception
        did, and the put() moved on), a wake-up is passed on to the next
        getter; at worst that getter finds no item and waits again.
        """
        try:
            self._getters.remove(w)
        except ValueError:
            if wake_or_defer(w, None, self._wake_getter) is False:
                self._wake_getter()

    def get_nowait(self):
        return self.get(False)

    def empty(self):
        return not self._items

    def qsize(self):
        return len(self._items)
