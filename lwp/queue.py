"""Queues: ``Queue``, ``LifoQueue``, ``PriorityQueue``, ``SimpleQueue``.

These are the standard library's :mod:`queue` classes with their locks and
conditions made of :mod:`lwp.sync` primitives, so they keep every documented
behaviour of :mod:`queue` (``maxsize``, ``block``/``timeout``,
``task_done``/``join``, the :class:`queue.Empty` and :class:`queue.Full`
exceptions) while a waiting green thread parks instead of blocking its LWP.
They work between green threads and plain OS threads alike.
"""

import queue as _stdlib

from .sync import Condition, Lock

Empty = _stdlib.Empty
Full = _stdlib.Full
ShutDown = getattr(_stdlib, "ShutDown", None)

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full"]


class Queue(_stdlib.Queue):
    """A FIFO queue; see :class:`queue.Queue`."""

    def __init__(self, maxsize=0):
        if maxsize is None or maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, got {maxsize!r}")
        super().__init__(maxsize)
        self.mutex = Lock()
        self.not_empty = Condition(self.mutex)
        self.not_full = Condition(self.mutex)
        self.all_tasks_done = Condition(self.mutex)

    def __repr__(self):
        return f"<lwp.{type(self).__name__} size={self.qsize()} maxsize={self.maxsize}>"


class LifoQueue(Queue, _stdlib.LifoQueue):
    """A LIFO queue (a stack); see :class:`queue.LifoQueue`."""


class PriorityQueue(Queue, _stdlib.PriorityQueue):
    """Entries come out lowest first; see :class:`queue.PriorityQueue`."""


class SimpleQueue(Queue):
    """An unbounded FIFO queue without task tracking, like :class:`queue.SimpleQueue`."""

    def __init__(self):
        super().__init__(0)
