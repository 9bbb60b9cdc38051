"""Readiness waits: one epoll instance per LWP, shared with its wake-up fd.

Only the owning LWP's kernel thread touches a Poller.  A green thread that wants
an fd to become readable or writable calls :meth:`Poller.wait` on its own LWP's
poller; the LWP's hub calls :meth:`Poller.poll` when it has nothing to run (or,
every few dozen switches, with a zero timeout so busy threads cannot starve I/O).

Two kinds of registration, both kept in the epoll set between waits:

* *One-shot* (``EPOLLONESHOT``, level-triggered), for any fd
  (:func:`~lwp._core.park.wait_readable`, pipes, the servers' listeners):
  each wait re-arms it with ``modify``.  A registration left behind by an fd
  closed behind lwp's back is harmless: the next ``modify`` fails with
  ``ENOENT`` and the fd is registered again.  An event for an fd nobody waits
  on any more is ignored, so callers treat a wake-up as a hint and retry
  their non-blocking call.
* *Edge* (``EPOLLET``, both directions at once), for lwp's own sockets
  (``wait(..., edge=True)``): registered once, never re-armed, as Go's
  netpoller and Tokio do.  The poller keeps, per direction, whether an edge
  came since a caller last found the fd not ready (:meth:`ready`), so a
  socket call that would find nothing is not made: a connection waiting for
  its next request costs no failed ``recv`` and no ``epoll_ctl``.  Only the
  thread that has just found the fd not ready clears that (``edge=True``
  after ``EAGAIN``; :meth:`not_ready` after a short ``recv``/``send`` on a
  stream socket, which drained or filled the buffer, as Tokio does), with
  no scheduling point in between; an edge sets it again before it wakes
  anyone.  So a caller that forgets to clear costs one failed call, never a
  lost wake-up.  A hang-up is a state, not an edge: once seen, that
  direction stays ready.  An error is an edge of both directions, not a
  state: the call that reports it clears it (a UDP socket whose datagram was
  refused receives on).  Once urgent (out-of-band) data came, a short read
  clears nothing: a TCP ``recv`` stops short at the urgent mark.  An fd
  closed behind lwp's back would leave stale state, so lwp's socket class
  tells the table when it takes a number that was watched before
  (:func:`fd_reused`).  It may also leave a stale registration: epoll keeps
  one as long as its *file* lives (in a ``dup``, a child process) and
  reports it under the old number, which no ``epoll_ctl`` can reach any
  more.  So events are hints here too: a stale edge or hang-up costs the
  new fd's calls one ``EAGAIN`` each, never a wait that returns at once.

Several threads may wait for the same direction of the same fd (as kernel
threads may block in ``recv`` on one socket): they are woken one at a time,
first come first served, one per readiness event; the one-shot registration
is re-armed while some still wait, so a level that stays up wakes the next.
An edge wakes every waiter of its direction (in the order they came): an edge
does not repeat, and those that find nothing wait again.

Closing: :func:`fd_closing` must be called before an fd some thread may wait
on is closed.  A process-wide table says which pollers hold state for which fd
number, so only those hear of the close, and counts the closings of each fd
number (its *generation*).  The closing thread's own poller forgets the fd on
the spot; other LWPs are told through ``call_soon_threadsafe``, and until they
get to it the generation keeps them honest: state recorded under an older
generation belongs to a closed file, so its waiters get ``EBADF`` and a
recycled fd number starts afresh, never receiving a stale wake-up or waiter.

Two implementations of the hot path exist, as for the park door
(:mod:`lwp._core.park`): this module and lwp.socket are the reference, and
``csrc/io_py.c`` transcribes their common case in C, used when the native
module is built and ``LWP_NATIVE_PARK`` is not ``0``: the epoll loop's
handling of events (:func:`_deliver_events`; one-shot registrations and
closed files' state go to the Python), and inside lwp.socket's ``recv``,
``recv_into``, ``send`` and ``sendall``, :meth:`Poller.ready`,
:meth:`Poller.not_ready` and the edge case of :meth:`Poller.wait` (a second
waiter of one direction goes to the Python; a fresh or closed file's state
is made by :meth:`Poller._adopt` and registered by :meth:`Poller._arm`,
called from the C before it parks).  The guarantees above hold on both.
"""

import errno
import select
from _thread import allocate_lock
from collections import deque
from select import epoll

from . import park as _park
from .park import TIMED_OUT, waiter

_READ = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
_WRITE = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_EDGE = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLPRI | select.EPOLLET
# Reads (writes) will not wait again.  Not EPOLLERR: a pending error is
# reported once (a refused UDP datagram), then the socket works on.
_RCLOSED = select.EPOLLRDHUP | select.EPOLLHUP
_WCLOSED = select.EPOLLHUP
# Urgent data seen (TCP): a recv stops short at its mark, so a short read no
# longer says the buffer is drained.
_URGENT = select.EPOLLPRI
_STICKY = _RCLOSED | _URGENT    # what _FdState.closed keeps of an edge
_READ_EDGE = _READ | _URGENT    # what is an edge of the read direction
_ONESHOT, _EDGED = 1, 2  # _FdState.registered: how the fd is in the epoll set (0: not)
_MAX_WAIT = 86400.0  # seconds; epoll_wait's timeout overflows past 2**31 ms (~24.8 days)

# The process-wide fd table (see the module doc).  _gens is read without the
# lock (a dict lookup is atomic, also in free-threaded builds); both are
# written under it.
_table_lock = allocate_lock()
_gens = {}      # fd -> how many times fd_closing was called for it
_watchers = {}  # fd -> {Poller: None} of the pollers holding state for it


def _closed_error():
    return OSError(errno.EBADF, "Bad file descriptor: closed while waiting")


def fd_closing(fd, here):
    """Forget ``fd`` everywhere before it is closed; ``here`` is the caller's Poller or None.

    Waiters are woken with ``EBADF``: at once on ``here``, soon on other LWPs.
    Pollers that never saw ``fd`` are not disturbed.
    """
    with _table_lock:
        gen = _gens[fd] = _gens.get(fd, 0) + 1
        watchers = _watchers.pop(fd, None)
    if watchers:
        for p in watchers:
            if p is here:
                p._forget(fd, gen, True)
            else:
                p.owner.call_soon_threadsafe(p._forget, fd, gen, False)


def fd_reused(fd, here):
    """Note that a new file got number ``fd``: if some poller watched the
    number, it was closed behind lwp's back (by the garbage collector, or
    ``os.close``) and that poller's state is stale; forget it everywhere.

    Lock-free and cheap when nobody watched the number (the common case).
    """
    if fd in _watchers:
        fd_closing(fd, here)


def after_fork_in_child():
    """Reset the fd table's lock (its holder may not exist in the child) and watchers."""
    global _table_lock
    _table_lock = allocate_lock()
    _watchers.clear()


class _FdState:
    """What one poller knows of one fd: its waiters and its epoll registration."""

    __slots__ = ("reader", "writer", "gen", "registered", "rready", "wready", "closed")

    def __init__(self, gen):
        self.reader = None  # None, a waiter, or a deque of waiters (first come first)
        self.writer = None
        self.gen = gen
        self.registered = 0  # 0, _ONESHOT or _EDGED
        # Edge registration only: False once the fd was found not ready in that
        # direction, True again at the next edge.  Unknown counts as ready.
        self.rready = True
        self.wready = True
        # Events seen of _RCLOSED/_WCLOSED: an end of stream or a hang-up is a
        # state, not an edge; once seen, that direction stays ready for good.
        # Also _URGENT, for good: short reads tell nothing any more.
        self.closed = 0

    def waiters(self):
        for slot in (self.reader, self.writer):
            if type(slot) is deque:
                yield from slot
            elif slot is not None:
                yield slot


class Poller:
    __slots__ = ("owner", "_ep", "_wakefd", "_fds", "_nwaiting")

    def __init__(self, wakefd, owner):
        self.owner = owner  # the LWP; other kernel threads reach us through it
        self._ep = epoll()
        self._wakefd = wakefd
        self._ep.register(wakefd, select.EPOLLIN)
        self._fds = {}       # fd -> _FdState
        self._nwaiting = 0   # threads parked in wait()

    def close(self):
        with _table_lock:
            for fd in self._fds:
                watchers = _watchers.get(fd)
                if watchers is not None:
                    watchers.pop(self, None)
                    if not watchers:
                        del _watchers[fd]
        self._fds.clear()
        self._ep.close()

    def reopen(self, wakefd):
        """After fork, in the child: a private epoll set and wake-up fd, waiters re-armed.

        The inherited epoll set is shared with the parent, so it is closed (in
        this process only).  Waiters whose fd cannot be registered again are
        woken with the error.
        """
        self._ep.close()
        self._ep = epoll()
        self._wakefd = wakefd
        self._ep.register(wakefd, select.EPOLLIN)
        for fd, st in list(self._fds.items()):
            edge = st.registered == _EDGED
            st.registered = 0
            if st.reader is None and st.writer is None:
                del self._fds[fd]
                continue
            _watchers.setdefault(fd, {})[self] = None
            try:
                self._arm(fd, st, edge)
            except OSError as e:
                for w in st.waiters():
                    w.wake(exc=e)

    def busy(self):
        """True if some thread waits for an fd."""
        return self._nwaiting > 0

    def ready(self, fd, write):
        """False if ``fd`` is known not to be ready in that direction: it is
        edge-registered and no edge came since it was found not ready.

        True means "worth trying the call", not a promise.
        """
        st = self._fds.get(fd)
        return st is None or (st.wready if write else st.rready)

    def not_ready(self, fd, write):
        """The caller just found ``fd`` not ready (a short transfer on a stream
        socket): a later :meth:`ready` is False until the next edge."""
        st = self._fds.get(fd)
        if st is not None and st.registered == _EDGED:
            if write:
                st.wready = st.closed & _WCLOSED != 0
            else:
                st.rready = st.closed & _STICKY != 0

    def wait(self, fd, write, timeout, edge=False):
        """Park the calling green thread until ``fd`` is ready (owner LWP only).

        Returns True when woken by readiness (or hang-up/error: the next I/O call
        will report it), False when ``timeout`` passed first.  Raises OSError
        ``EBADF`` if :func:`fd_closing` is called for ``fd`` meanwhile.
        ``edge``: use the edge registration; only right after the fd was seen
        not ready in that direction (see the module doc).
        """
        st = self._fds.get(fd)
        if st is None or st.gen != _gens.get(fd, 0):
            st = self._adopt(fd, st)
        w = waiter()
        # edge: no shortcut for a hung-up fd.  Its calls fail or return b"",
        # never EAGAIN, so a caller that got EAGAIN waits, even if the number
        # reported a (stale, see the module doc) hang-up.
        if write:
            if edge:
                st.wready = False
            slot = st.writer
            st.writer = w if slot is None else _join(slot, w)
        else:
            if edge:
                st.rready = False
            slot = st.reader
            st.reader = w if slot is None else _join(slot, w)
        self._nwaiting += 1
        try:
            if not edge:
                self._arm(fd, st, False)
            elif st.registered != _EDGED:
                self._arm(fd, st, True)
            return w.wait(timeout) is not TIMED_OUT
        finally:
            self._nwaiting -= 1
            # Still queued after a timeout, an exception or a cancellation:
            # leave.  (A wake-up by readiness has emptied the slot already.)
            if write:
                if st.writer is not None:
                    st.writer = _leave(st.writer, w)
            elif st.reader is not None:
                st.reader = _leave(st.reader, w)

    def _adopt(self, fd, stale):
        """Fresh state for ``fd``; waiters of a ``stale`` one (a closed file's) get EBADF."""
        if stale is not None:
            self._drop(fd, stale)
        with _table_lock:
            st = self._fds[fd] = _FdState(_gens.get(fd, 0))
            _watchers.setdefault(fd, {})[self] = None
        return st

    def _drop(self, fd, st):
        """Forget the state ``st`` of ``fd``, a closed file's: its waiters get EBADF."""
        del self._fds[fd]
        for w in st.waiters():
            w.wake(exc=_closed_error())

    def _arm(self, fd, st, edge):
        """Register ``fd`` (``edge``: for both directions, edge-triggered; else
        one-shot for the directions waited on), or re-arm it."""
        if edge:
            mask = _EDGE
        else:
            mask = select.EPOLLONESHOT
            if st.reader is not None:
                mask |= _READ
            if st.writer is not None:
                mask |= _WRITE
        if st.registered:
            try:
                self._ep.modify(fd, mask)
                st.registered = _EDGED if edge else _ONESHOT
                return
            except FileNotFoundError:  # closed behind lwp's back and the number reused
                pass
        try:
            self._ep.register(fd, mask)
        except FileExistsError:
            self._ep.modify(fd, mask)
        st.registered = _EDGED if edge else _ONESHOT

    def _forget(self, fd, gen, still_open):
        """Drop state for ``fd`` recorded before closing number ``gen``; wake its waiters.

        ``still_open``: called before the close, so the fd can leave epoll now.
        """
        st = self._fds.get(fd)
        if st is None or st.gen >= gen:
            return  # nothing here, or state for a newer file with the same number
        if still_open and st.registered:
            try:
                self._ep.unregister(fd)
            except OSError:
                pass
        self._drop(fd, st)

    def poll(self, timeout):
        """Wait up to ``timeout`` seconds (None: forever) and wake ready waiters.

        Returns True if the LWP's wake-up fd fired.
        """
        if timeout is not None and timeout > _MAX_WAIT:
            timeout = _MAX_WAIT  # epoll takes an int of milliseconds; the hub waits again
        try:
            events = self._ep.poll(-1 if timeout is None else timeout)
        except InterruptedError:
            return False
        return _deliver(self, events)

    def _oneshot_event(self, fd, st, ev):
        """Event ``ev`` of ``fd``, whose one-shot registration ``st`` is current."""
        if ev & _READ and st.reader is not None:
            st.reader = _wake_first(st.reader)
        if ev & _WRITE and st.writer is not None:
            st.writer = _wake_first(st.writer)
        if st.reader is not None or st.writer is not None:
            self._arm(fd, st, False)


def _deliver_events(poller, events):
    """Wake the waiters of ``events``, epoll's ``(fd, mask)`` pairs, on ``poller``:
    True if its wake-up fd is among them.  The reference of ``_native_deliver``
    (``csrc/io_py.c``)."""
    woke = False
    fds = poller._fds
    for fd, ev in events:
        st = fds.get(fd)
        if st is None:  # the wake-up fd has no state
            if fd == poller._wakefd:
                woke = True
            continue
        if st.gen != _gens.get(fd, 0):
            poller._drop(fd, st)  # closed on another LWP, not forgotten here yet
        elif st.registered == _EDGED:
            if ev & _STICKY:
                st.closed |= ev & _STICKY
            if ev & _READ_EDGE:
                _edge(st, False)
            # A socket's every edge says it is writable too; mostly old news.
            if ev & _WRITE and (st.writer is not None or not st.wready):
                _edge(st, True)
        else:
            poller._oneshot_event(fd, st, ev)
    return woke


def _join(slot, w):
    """A ``slot`` holding a waiter or a deque of them, with ``w`` queued last."""
    if type(slot) is deque:
        slot.append(w)
        return slot
    return deque((slot, w))


def _leave(slot, w):
    """``slot`` (a waiter or a deque of them) without ``w``; None if no waiter is left."""
    if slot is w:
        return None
    if type(slot) is deque and w in slot:
        slot.remove(w)
        return slot or None
    return slot


def _wake_first(slot):
    """Wake the first waiter of ``slot`` that still waits; return what is left of it."""
    if type(slot) is not deque:
        slot.wake(True)
        return None
    while slot:
        if slot.popleft().wake(True):
            break
    return slot or None


def _edge(st, write):
    """An edge of ``st`` in one direction: record it (``rready``/``wready``)
    and wake every thread waiting for it, first come first; those that find
    nothing wait again."""
    if write:
        st.wready = True
        slot, st.writer = st.writer, None
    else:
        st.rready = True
        slot, st.reader = st.reader, None
    if slot is None:
        return
    if type(slot) is deque:
        for w in slot:
            w.wake(True)
    else:
        slot.wake(True)


def _load_native():
    """Install the native socket path (``csrc/io_py.h``): ``_native_deliver``
    and ``_native_socket_methods`` (which lwp.socket calls with its class);
    True if it is there to be used.  On the park door's switch: with the
    Python door (``LWP_NATIVE_PARK=0``) the Python here and in lwp.socket is
    what runs."""
    if not _park.NATIVE:
        return False
    from lwp._native import lib

    return hasattr(lib, "lwp_io_py_init") and lib.lwp_io_py_init(__name__.encode()) == 0


NATIVE = _load_native()
_deliver = _native_deliver if NATIVE else _deliver_events  # noqa: F821 - installed by lwp_io_py_init
