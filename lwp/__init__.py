"""lwp: user-level threads on a pool of kernel threads (LWPs), scheduled M:N.

Write thread-style code; ``lwp.spawn`` starts green threads that a scheduler
runs on a few kernel threads.  A green thread that waits (a lock, a queue, a
socket, a sleep) parks and its LWP runs the others.  See the documentation in
``docs/`` for the concepts and the design.
"""

from . import channel, dns, files, upcalls
from ._core.activation import blocking
from ._core.exceptions import Cancelled, InvalidStateError
from ._core.park import checkpoint
from ._core.preempt import no_preempt
from ._core.scheduler import Scheduler, configure, current, dump, run, spawn, stats
from ._core.thread import ExceptHookArgs, GreenThread, excepthook
from ._core.timeout import Timeout, sleep
from .channel import CLOSED, Channel, ChannelClosed  # select: lwp.channel.select (lwp.select is the module)
from .files import open
from .local import local
from .queue import Empty, Full, LifoQueue, PriorityQueue, Queue, SimpleQueue
from .sync import (Barrier, BoundedSemaphore, BrokenBarrierError, Condition, Event, Lock, RLock,
                   Semaphore)

__version__ = "0.1.0"

__all__ = [
    "CLOSED", "Channel", "ChannelClosed", "channel",
    "Barrier", "BoundedSemaphore", "BrokenBarrierError", "Cancelled", "Condition", "Empty",
    "Event", "ExceptHookArgs", "Full", "GreenThread", "InvalidStateError", "LifoQueue", "Lock",
    "PriorityQueue", "Queue", "RLock", "Scheduler", "Semaphore", "SimpleQueue", "Timeout",
    "blocking", "checkpoint", "configure", "no_preempt", "current", "dump", "excepthook", "local", "open", "run", "sleep",
    "spawn", "stats", "dns", "files", "upcalls",
]
