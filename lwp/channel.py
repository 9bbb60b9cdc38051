"""Channels: Go-style ``Channel`` and ``select``.

::

    ch = Channel()            # unbuffered: send() returns once a receiver took the value
    ch = Channel(10)          # buffered: send() waits only while 10 values are queued
    ch.send(v); v = ch.recv() # both accept timeout= (seconds): TimeoutError when it passes
    ch.try_send(v) -> bool    # never waits
    ch.try_recv() -> (v, ok)  # never waits; ok is False when nothing is queued
    ch.close()                # later sends raise ChannelClosed; receivers drain, then raise
    for v in ch: ...          # receives until the channel is closed and drained

    i, v = select(a.recv_case(), b.send_case(x), timeout=1.0)

They work between green threads on the same or different LWPs and plain OS
threads, like the rest of lwp.

Semantics (the decisions where Go and Python differ)
----------------------------------------------------
* ``send`` on a closed channel raises :class:`ChannelClosed` (Go panics), and so
  do ``try_send`` and a chosen ``send_case`` in :func:`select`.
* ``recv`` on a closed channel returns the values still buffered, then raises
  :class:`ChannelClosed`; ``try_recv`` does the same (it returns
  ``(None, False)`` only while the channel is open and empty), and iteration
  ends there.
* ``close`` is idempotent (Go panics on a double close): it returns True if
  this call closed the channel, False if it was closed already.  Threads
  blocked in ``send`` or ``recv`` when it closes get :class:`ChannelClosed`;
  values already buffered stay receivable.
* ``select`` reports a closed channel on a *receive* case as a value: it
  returns ``(i, CLOSED)``, like Go's ``v, ok := <-ch`` with ``ok == false``
  (a closed channel is always ready, so it is drained first, then reports
  ``CLOSED`` every time: drop it from the cases).  Do not send
  :data:`CLOSED` itself through a channel you select on.
* ``select`` takes cases built by :meth:`Channel.recv_case` and
  :meth:`Channel.send_case`, and returns ``(index, value)``: the index of the
  case performed and the value received (None for a send).  With
  ``default=True`` it returns ``(None, None)`` at once if no case is ready; with
  ``timeout`` it raises :class:`TimeoutError`.  When several cases are ready it
  picks one at random, so none starves.
* Timeouts are seconds (``None``: no limit, ``0``: do not wait) and raise the
  builtin :class:`TimeoutError`.  ``Cancelled`` and ``lwp.Timeout`` may
  interrupt any wait: an interrupted ``send`` delivered nothing and an
  interrupted ``recv`` took nothing.  An operation that completed at the same
  instant is not undone: the wait returns normally and the cancellation is
  raised at the thread's next blocking point.

Design
------
This follows Go's ``runtime/chan.go`` and ``runtime/select.go``.  A channel
keeps a short internal mutex (never held while waiting), a buffer, and two FIFO
queues of *entries*: a blocked sender's entry carries its value, a blocked
receiver's entry is where a value is delivered.  Each entry holds a one-shot
waiter of :mod:`lwp._core.park`.  The side that finds a counterpart entry
performs the whole operation under the channel's mutex: it claims the entry
with ``entry.w.wake((case_index, value))`` and, if that returns True, takes the
sender's value (or has given its own).  ``wake`` returns True exactly once per
waiter, so an entry whose thread timed out, was cancelled, or (for a select)
was already claimed through another channel is skipped: nothing is delivered
twice and nothing is lost.  Values move at the moment of the claim, which is
what makes an unbuffered ``send`` a rendezvous.

A ``select`` that has to wait makes *one* waiter and enqueues an entry for
every case, on every channel, with the case index in the entry; whichever
counterpart wins the wake-up chooses the case.  Exactly like ``selectgo``,
the select locks all its channels at once, in a global order (by ``id``), to
look for a ready case and, if none, to enqueue its entries.  That is what makes
it safe: the thread performing an operation is never itself enqueued anywhere
(a plain operation never is; a select is not yet, while it holds its locks),
so a match only ever claims *one* waiter, the counterpart's, and no two-party
claim is needed.  Every other path holds a single channel mutex, so the global
order excludes deadlocks; ``wake`` takes only the woken thread's LWP lock,
which never waits for a channel.  When the select is woken (or times out, or
is cancelled) it removes its remaining entries one channel at a time;
counterparts meanwhile skip them, as their wake-up returns False.  Entries
live in ordered dicts, so removing one is O(1) and a queue does not grow under
repeated timeouts.

Plain OS threads wait on a kernel lock (``OSWaiter``).  If a signal handler
raises (Ctrl-C) in an OS thread at the instant its operation completed, the
exception propagates anyway: a value delivered to a receiver is then put back
at the head of the channel rather than lost (it may exceed the capacity by
one), and a sender's value stays delivered.
"""

import operator
import random
import types
from _thread import allocate_lock
from collections import OrderedDict, deque

from ._core.park import TIMED_OUT, current_lwp, waiter
from ._core.thread import _check_timeout

__all__ = ["CLOSED", "Channel", "ChannelClosed", "select"]


class ChannelClosed(Exception):
    """Raised by a send on a closed channel, and by a receive on a closed, drained one."""


class _Closed:
    """The value a ``select`` receive case reports for a closed, drained channel.

    Like Go's ``v, ok := <-ch`` with ``ok == false``; compare with ``is CLOSED``.
    """

    __slots__ = ()

    def __repr__(self):
        return "lwp.CLOSED"

    def __reduce__(self):
        return "CLOSED"


CLOSED = _Closed()
"""What :func:`select` returns as the value of a receive case on a closed, drained channel."""

_EMPTY = object()   # internal: nothing to receive right now
_SHUT = object()    # internal: wake-up value of an entry whose channel was closed

_rng = random.Random()


def _timeout_arg(timeout):
    if timeout is not None:
        _check_timeout(timeout)
    return timeout


class _Entry:
    """A blocked operation's registration in a channel queue (Go's ``sudog``)."""

    __slots__ = ("index", "value", "w")

    def __init__(self, w, value, index):
        self.w = w            # the waiter: claimed (woken) once, by whoever completes or ends it
        self.value = value    # the value to send (send entries)
        self.index = index    # the case index of a select (0 for a plain operation)


class _Case:
    """One operation for :func:`select`; made by ``recv_case`` / ``send_case``."""

    __slots__ = ("ch", "send", "value")

    def __init__(self, ch, send, value):
        self.ch = ch
        self.send = send
        self.value = value

    def __repr__(self):
        if self.send:
            return f"<send_case {self.value!r} on {self.ch!r}>"
        return f"<recv_case on {self.ch!r}>"


class Channel:
    """A channel of ``capacity`` buffered values (0: unbuffered, a rendezvous).

    Use from any green thread or plain OS thread.  See the module docstring
    for the semantics of closing and timeouts.
    """

    __slots__ = ("__weakref__", "_buf", "_cap", "_closed", "_mutex", "_recvq", "_sendq")

    def __init__(self, capacity=0):
        capacity = operator.index(capacity)
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self._mutex = allocate_lock()   # short critical sections only; never held while waiting
        self._buf = deque()
        self._cap = capacity
        self._closed = False
        self._recvq = OrderedDict()     # entries of blocked receivers, FIFO
        self._sendq = OrderedDict()     # entries of blocked senders, FIFO

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return (f"<lwp.Channel {state} capacity={self._cap} len={len(self._buf)} "
                f"waiting senders={len(self._sendq)} receivers={len(self._recvq)}>")

    @property
    def capacity(self):
        """The buffer size given at creation (0: unbuffered)."""
        return self._cap

    @property
    def closed(self):
        """True once :meth:`close` was called (buffered values may remain)."""
        return self._closed

    def __len__(self):
        """The number of values buffered now (0 for an unbuffered channel)."""
        return len(self._buf)

    def __bool__(self):
        return True  # not its length: an empty channel is still a channel

    __class_getitem__ = classmethod(types.GenericAlias)  # Channel[int] in annotations

    # -- under self._mutex -------------------------------------------------------------------

    def _offer(self, value):
        """Send without waiting: True if done.  Raises ChannelClosed if closed."""
        if self._closed:
            raise ChannelClosed("send on a closed channel")
        rq = self._recvq
        while rq:
            e = rq.popitem(last=False)[0]
            if e.w.wake((e.index, value)):
                return True
        if len(self._buf) < self._cap:
            self._buf.append(value)
            return True
        return False

    def _take(self):
        """Receive without waiting: a value, ``_SHUT`` if closed and drained, else ``_EMPTY``."""
        buf = self._buf
        sq = self._sendq
        if buf:
            value = buf.popleft()
            while sq and len(buf) < self._cap:  # a slot is free: move a blocked sender's value in
                e = sq.popitem(last=False)[0]
                if e.w.wake((e.index, None)):
                    buf.append(e.value)
            return value
        while sq:
            e = sq.popitem(last=False)[0]
            if e.w.wake((e.index, None)):
                return e.value
        return _SHUT if self._closed else _EMPTY

    # -- operations ---------------------------------------------------------------------------

    def send(self, value, timeout=None):
        """Send ``value``: wait for a receiver (unbuffered) or for room in the buffer.

        Raises :class:`ChannelClosed` if the channel is closed (before or while
        waiting) and :class:`TimeoutError` if ``timeout`` seconds pass; in both
        cases the value was not delivered.
        """
        _timeout_arg(timeout)
        with self._mutex:
            if self._offer(value):
                return
            if timeout == 0:
                raise TimeoutError("channel send timed out")
            e = _Entry(waiter(), value, 0)
            self._sendq[e] = None
        if self._wait(e, self._sendq, timeout) is _SHUT:
            raise ChannelClosed("channel closed while sending")

    def recv(self, timeout=None):
        """Receive a value, waiting for one.

        Raises :class:`ChannelClosed` once the channel is closed and its
        buffer drained, and :class:`TimeoutError` if ``timeout`` seconds pass.
        """
        _timeout_arg(timeout)
        with self._mutex:
            value = self._take()
            if value is _EMPTY:
                if timeout == 0:
                    raise TimeoutError("channel receive timed out")
                e = _Entry(waiter(), None, 0)
                self._recvq[e] = None
        if value is _EMPTY:
            value = self._wait(e, self._recvq, timeout)
        if value is _SHUT:
            raise ChannelClosed("receive on a closed channel")
        return value

    def try_send(self, value):
        """Send if a receiver is waiting or the buffer has room; return whether it did.

        Raises :class:`ChannelClosed` if the channel is closed.
        """
        with self._mutex:
            return self._offer(value)

    def try_recv(self):
        """Receive if a value is ready: ``(value, True)``, else ``(None, False)``.

        Raises :class:`ChannelClosed` if the channel is closed and drained.
        """
        with self._mutex:
            value = self._take()
        if value is _EMPTY:
            return None, False
        if value is _SHUT:
            raise ChannelClosed("receive on a closed channel")
        return value, True

    def close(self):
        """Close the channel; return True, or False if it was closed already.

        Blocked senders and receivers get :class:`ChannelClosed` (a select
        blocked on a receive case returns ``(i, CLOSED)``); buffered values
        remain receivable.
        """
        with self._mutex:
            if self._closed:
                return False
            self._closed = True
            # By the channel's invariant, receivers wait only on an empty buffer.
            waiting = list(self._recvq) + list(self._sendq)
            self._recvq.clear()
            self._sendq.clear()
        for e in waiting:  # unqueued under the mutex, so no other waker sees them
            e.w.wake((e.index, _SHUT))
        return True

    def __iter__(self):
        """Receive values until the channel is closed and drained."""
        while True:
            with self._mutex:
                value = self._take()
                if value is _EMPTY:
                    e = _Entry(waiter(), None, 0)
                    self._recvq[e] = None
            if value is _EMPTY:
                value = self._wait(e, self._recvq, None)
            if value is _SHUT:
                return
            yield value

    def recv_case(self):
        """A receive case for :func:`select`."""
        return _Case(self, False, None)

    def send_case(self, value):
        """A case for :func:`select` that sends ``value``."""
        return _Case(self, True, value)

    # -- waiting --------------------------------------------------------------------------------

    def _wait(self, e, queue, timeout):
        """Wait for ``e`` to be claimed; the value it was woken with.  ``queue`` holds ``e``."""
        try:
            got = e.w.wait(timeout)
        except BaseException:
            with self._mutex:
                queue.pop(e, None)
            late = e.w.late
            if late is not None and queue is self._recvq:
                self._give_back(late[0][1])
            raise
        if got is TIMED_OUT:
            with self._mutex:
                queue.pop(e, None)
            raise TimeoutError(f"channel {'send' if queue is self._sendq else 'receive'} timed out")
        return got[1]

    def _give_back(self, value):
        """Return a value that reached a receiving OS thread as a signal interrupted it."""
        if value is _SHUT:
            return
        with self._mutex:
            rq = self._recvq
            while rq:
                e = rq.popitem(last=False)[0]
                if e.w.wake((e.index, value)):
                    return
            self._buf.appendleft(value)  # may exceed the capacity by one: never lose it


def select(*cases, timeout=None, default=False):
    """Perform exactly one of ``cases``, waiting until one can proceed.

    ``cases`` are made by :meth:`Channel.recv_case` and
    :meth:`Channel.send_case`.  Returns ``(index, value)``: the position of the
    case performed, and the value received (None for a send case); a receive
    case on a closed, drained channel returns ``(index, CLOSED)``.  A chosen
    send case on a closed channel raises :class:`ChannelClosed`.  If several
    cases are ready one is chosen at random.

    ``default=True``: return ``(None, None)`` at once when no case is ready.
    ``timeout``: raise :class:`TimeoutError` after that many seconds (the two
    exclude each other).  A cancellation or ``lwp.Timeout`` leaves every
    channel as if the select had not run.
    """
    if not cases:
        raise ValueError("select() needs at least one case")
    for c in cases:
        if type(c) is not _Case:
            raise TypeError("select() takes cases made by ch.recv_case() or ch.send_case(v), "
                            f"got {type(c).__name__}")
    if timeout is not None:
        if default:
            raise ValueError("select(): pass default=True or a timeout, not both")
        _check_timeout(timeout)
    n = len(cases)
    if n == 1:
        order = (0,)
    else:  # poll order: random, for fairness; replayable under a seeded scheduler
        lwp = current_lwp()
        rng = (lwp.sched._rng if lwp is not None else None) or _rng
        if n == 2:
            order = (0, 1) if rng.random() < 0.5 else (1, 0)
        else:
            order = rng.sample(range(n), n)
    chans = list({id(c.ch): c.ch for c in cases}.values())
    if len(chans) > 1:
        chans.sort(key=id)  # lock order: global, so two selects cannot deadlock
    locked = 0
    try:
        for ch in chans:
            ch._mutex.acquire()
            locked += 1
        # Pass 1: is a case ready?  Nothing of ours is enqueued yet, so nobody can claim us.
        for i in order:
            c = cases[i]
            if c.send:
                if c.ch._offer(c.value):
                    return i, None
            else:
                value = c.ch._take()
                if value is not _EMPTY:
                    return i, (CLOSED if value is _SHUT else value)
        if default:
            return None, None
        if timeout == 0:
            raise TimeoutError("select timed out")
        # Pass 2: enqueue one entry per case, all sharing one waiter.
        w = waiter()
        entries = [_Entry(w, c.value, i) for i, c in enumerate(cases)]
        for c, e in zip(cases, entries):
            (c.ch._sendq if c.send else c.ch._recvq)[e] = None
    finally:
        for ch in chans[:locked]:
            ch._mutex.release()
    try:
        got = w.wait(timeout)
    except BaseException:
        _dequeue(cases, entries)
        late = w.late
        if late is not None and not cases[late[0][0]].send:
            cases[late[0][0]].ch._give_back(late[0][1])
        raise
    # Pass 3: leave the other channels' queues (counterparts skip our entries meanwhile).
    _dequeue(cases, entries)
    if got is TIMED_OUT:
        raise TimeoutError("select timed out")
    i, value = got
    if cases[i].send:
        if value is _SHUT:
            raise ChannelClosed("channel closed while sending")
        return i, None
    return i, (CLOSED if value is _SHUT else value)


def _dequeue(cases, entries):
    for c, e in zip(cases, entries):
        ch = c.ch
        with ch._mutex:
            (ch._sendq if c.send else ch._recvq).pop(e, None)
