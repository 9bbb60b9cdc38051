"""Native activation pool: blocking calls that cannot be polled, run on kernel
threads that never hold the GIL.

Regular-file I/O and name resolution block no matter what epoll says, so an
LWP hands them to an :class:`ActivationPool` (C worker threads, see
``csrc/activations.h``) and goes on running other green threads.  Each LWP
owns a :class:`CompletionQueue` tied to its wake-up eventfd; a worker posts the
finished request there and writes the eventfd when the queue goes from empty
to non-empty.  The LWP then resets the eventfd and calls
:meth:`CompletionQueue.drain`, which turns each finished request into a
:class:`Completion` carrying the caller's cookie.

Contract:

* Submitting returns at once.  Every submitted request comes out of
  ``drain()`` exactly once -- with its result, its error, or ``ECANCELED`` if
  the pool was closed before a worker took it.
* The C memory of a request (struct, buffers, strings) stays alive until its
  completion has been drained, whatever happens to the green thread that
  asked: a waiter cancelled mid-call does not free anything a worker may still
  write.  ``drain()`` returns such late completions like any other; the caller
  simply drops them (a dropped ``open`` completion carries a descriptor that
  the caller must still close).
* Reset the eventfd *before* draining, and drain on every wake-up: a worker
  only writes the eventfd when the queue was empty, so a completion pushed
  between a drain and a later reset would otherwise go unnoticed.
* Shutdown order: ``pool.close()`` (completes everything), then
  ``drain()``/``cq.close()``.  ``cq.close()`` raises while requests are still
  in flight instead of freeing what a worker will write.  A queue dropped with
  requests in flight is kept alive, with its memory, rather than freed.
* An :class:`ActivationPool` may be used from any thread.  A
  :class:`CompletionQueue` belongs to one thread (its LWP): requests aimed at it
  are submitted, and it is drained and closed, from that thread only.
* Submitting, draining and the queue's counters keep the GIL (they are
  builtins, see ``csrc/activations_py.h``, not cffi calls, which release it):
  next to a thread computing on another LWP, every release of the GIL would
  cost the caller a switch interval to get it back.
"""

import atexit
import itertools
import os
import socket
import time
import weakref

from lwp._native import ffi, lib

__all__ = ["ActivationPool", "CompletionQueue", "Completion"]



def _cffi_entry_points():
    """``(_submit, _drain, _inflight, _ready, _spin)`` as cffi calls, which
    release the GIL: what the builtins of ``csrc/activations_py.c`` do, with
    the same arguments and answers, for an interpreter without CPython's C
    API (PyPy)."""
    def submit(pool, cq, req):
        if lib.lwp_submit(ffi.cast("lwp_pool *", pool), ffi.cast("lwp_cq *", cq),
                          ffi.cast("lwp_req *", req)) == 0:
            return 0
        return ffi.errno

    def drain(cq, out, n):
        return lib.lwp_cq_drain(ffi.cast("lwp_cq *", cq), ffi.cast("lwp_req **", out), n)

    def inflight(cq):
        return lib.lwp_cq_inflight(ffi.cast("lwp_cq *", cq))

    def ready(cq):
        return lib.lwp_cq_ready(ffi.cast("lwp_cq *", cq))

    def spin(cq, wakefd, ns):
        if not 0 <= ns <= _MAX_SPIN_NS:
            raise ValueError(f"_spin(): ns must be 0 to {_MAX_SPIN_NS}, not {ns}")
        deadline = time.monotonic_ns() + ns
        while not (n := ready(cq)) and time.monotonic_ns() < deadline:
            pass
        if n:
            try:
                os.eventfd_read(wakefd)  # reset before the caller drains
            except BlockingIOError:
                pass
        return n

    return submit, drain, inflight, ready, spin


_MAX_SPIN_NS = 1_000_000  # as MAX_SPIN_NS in csrc/activations_py.c
_submit, _drain, _inflight, _ready, _spin = _cffi_entry_points()
# On CPython the builtins replace them: same answers, but they keep the GIL.
lib.lwp_activations_py_init(__name__.encode())

_DRAIN_BATCH = 64

# Queues with submitted requests not yet drained.  Holding them here keeps
# their C memory and request buffers alive even if the owner drops them.
_queues_in_use = {}

# Pools still running, closed at interpreter exit so that no worker outlives
# the memory it writes to.
_open_pools = weakref.WeakSet()

# Buffers the kernel fills anyway need not be zeroed first.
_new_buffer = ffi.new_allocator(should_clear_after_alloc=False)


class Completion:
    """One finished request, as returned by :meth:`CompletionQueue.drain`.

    ``cookie`` is the object the submitter passed.  ``error`` is the exception
    the equivalent blocking call would have raised (an :class:`OSError`, or a
    :class:`socket.gaierror` for name resolution), or ``None``; ``value`` is
    the call's result when ``error`` is ``None``, else ``None``.
    """

    __slots__ = ("cookie", "value", "error")

    def __init__(self, cookie, value, error):
        self.cookie = cookie
        self.value = value
        self.error = error

    def __repr__(self):
        return f"Completion(cookie={self.cookie!r}, value={self.value!r}, error={self.error!r})"


class _Request:
    """A submitted request and everything its C struct points to."""

    __slots__ = ("cookie", "req", "convert", "keepalive")

    def __init__(self, cookie, req, convert, keepalive):
        self.cookie = cookie
        self.req = req
        self.convert = convert      # req -> (value, error)
        self.keepalive = keepalive


class CompletionQueue:
    """Where the workers post the finished requests of one LWP.

    ``notify_fd`` must be a non-blocking descriptor that accepts 8-byte writes,
    normally ``os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)``.  The queue
    writes to its own duplicate of it, so a caller closing ``notify_fd`` early
    can never make a worker write into an unrelated file that reused the
    number; the duplicate is closed by :meth:`close`.
    """

    def __init__(self, notify_fd):
        if os.get_blocking(notify_fd):
            raise ValueError("notify_fd must be non-blocking")
        fd = os.dup(notify_fd)
        cq = lib.lwp_cq_new(fd)
        if cq == ffi.NULL:
            err = ffi.errno
            os.close(fd)
            raise OSError(err, os.strerror(err))
        self._fd = fd
        self._cq = cq
        self._addr = _address(cq)  # what the builtins take
        self._requests = {}     # token -> _Request, from submit to drain
        self._tokens = itertools.count()
        self._out = ffi.new("lwp_req *[]", _DRAIN_BATCH)
        self._out_addr = _address(self._out)

    @property
    def closed(self):
        return self._cq is None

    @property
    def in_flight(self):
        """Requests submitted for this queue that no worker has finished yet."""
        self._check_open()
        return _inflight(self._addr)

    @property
    def pending(self):
        """True while some request submitted for this queue is not drained yet."""
        return bool(self._requests)

    def wait_ready(self, max_wait_ns):
        """Wait up to ``max_wait_ns`` nanoseconds, *holding the GIL*, for a
        finished request; return how many wait to be drained.

        For an LWP about to sleep while its requests are expected within
        microseconds: sleeping in epoll gives the GIL away, and next to a
        thread computing on another LWP getting it back costs a switch
        interval.  When the answer is non-zero, ``notify_fd`` has been reset
        (it is the same eventfd), so the caller may drain at once.  At most
        1 ms (``ValueError`` beyond).
        """
        self._check_open()
        return _spin(self._addr, self._fd, max_wait_ns)

    def drain(self):
        """Return the finished requests as :class:`Completion` objects, oldest
        first, without blocking; ``[]`` if there are none.

        Reset ``notify_fd`` *before* calling this, never after: the eventfd is
        written only when the queue goes from empty to non-empty.  Each
        request's C memory is freed here, once its result is copied out.
        Completions whose waiter has gone away are returned all the same; the
        caller drops them.
        """
        self._check_open()
        done = []
        while True:
            n = _drain(self._addr, self._out_addr, _DRAIN_BATCH)
            for i in range(n):
                done.append(self._complete(self._out[i]))
            if n < _DRAIN_BATCH:
                break
        if not self._requests:
            _queues_in_use.pop(id(self), None)
        return done

    def close(self):
        """Free the queue and close its descriptor; idempotent.

        Completions not drained yet are discarded.  While requests are still
        queued or running this raises ``RuntimeError`` and changes nothing:
        close the pool first (which completes them), or wait for them.
        """
        if self._cq is None:
            return
        if _inflight(self._addr) == 0:
            self.drain()
            if lib.lwp_cq_free(self._cq) == 0:
                self._cq = None
                os.close(self._fd)
                return
        raise RuntimeError("requests still in flight; close the ActivationPool first")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        # Only reachable with nothing in flight: _queues_in_use holds busy queues.
        if getattr(self, "_cq", None) is not None:
            self.close()

    def _check_open(self):
        if self._cq is None:
            raise RuntimeError("CompletionQueue is closed")

    def _register(self, cookie, req, convert, keepalive):
        self._check_open()
        token = next(self._tokens)
        req.cookie = token
        self._requests[token] = _Request(cookie, req, convert, keepalive)
        _queues_in_use[id(self)] = self
        return token

    def _unregister(self, token):
        del self._requests[token]
        if not self._requests:
            _queues_in_use.pop(id(self), None)

    def _complete(self, req):
        rec = self._requests.pop(req.cookie)
        try:
            value, error = rec.convert(rec.req)
        except Exception as exc:    # e.g. a canonical name that is not UTF-8
            value, error = None, exc
        finally:
            if rec.req.ai != ffi.NULL:  # only getaddrinfo allocates; a call would release the GIL
                lib.lwp_req_release(rec.req)
        return Completion(rec.cookie, value, error)


class ActivationPool:
    """``nthreads`` native worker threads running blocking calls for LWPs.

    Each submit method queues one request and returns immediately; its
    :class:`Completion` -- tagged with ``cookie``, any object the caller picks
    -- later comes out of ``cq.drain()``.  Submitting to a closed pool or queue
    raises ``RuntimeError``.  The pool is thread-safe.

    In a child created by ``fork()`` the workers do not exist: the inherited
    pool refuses submissions and ``close()`` returns without joining.
    """

    def __init__(self, nthreads):
        if nthreads < 1:
            raise ValueError("nthreads must be at least 1")
        pool = lib.lwp_pool_new(nthreads)
        if pool == ffi.NULL:
            err = ffi.errno
            raise OSError(err, os.strerror(err))
        self._pool = pool
        self._addr = _address(pool)
        self._pid = os.getpid()
        self._closed = False
        _open_pools.add(self)

    @property
    def size(self):
        """The number of worker threads."""
        return lib.lwp_pool_size(self._pool)

    @property
    def closed(self):
        return self._closed

    def close(self):
        """Stop the pool; idempotent and thread-safe.

        Requests no worker has taken yet complete with ``ECANCELED``; running
        ones finish normally (so this waits for the slowest of them).  Returns
        once every worker has exited, after which every request ever submitted
        is waiting in its queue.
        """
        self._closed = True
        if self._pid == os.getpid():
            lib.lwp_pool_shutdown(self._pool)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None and self._pid == os.getpid():
            lib.lwp_pool_free(pool)

    # -- submission ------------------------------------------------------

    def open(self, cq, cookie, path, flags, mode=0o666):
        """Like ``os.open``: value is the new descriptor, non-inheritable
        (``O_CLOEXEC`` is added, as ``os.open`` does)."""
        cpath = ffi.new("char[]", _cstring(os.fsencode(path)))
        req = _new_req(lib.LWP_OP_OPEN)
        req.path = cpath
        req.flags = flags | os.O_CLOEXEC
        req.mode = mode
        self._submit(cq, cookie, req, lambda r: _fd_result(r, path), cpath)

    def close_fd(self, cq, cookie, fd):
        """Like ``os.close``: value is ``None``.  The descriptor is released
        even if an error is reported."""
        req = _new_req(lib.LWP_OP_CLOSE)
        req.fd = fd
        self._submit(cq, cookie, req, _none_result)

    def pread(self, cq, cookie, fd, size, offset):
        """Like ``os.pread``: value is the bytes read (``b""`` at end of file)."""
        buf = _new_buffer("char[]", size)
        req = _new_req(lib.LWP_OP_PREAD)
        req.fd = fd
        req.buf = buf
        req.len = size
        req.offset = offset
        self._submit(cq, cookie, req, lambda r: _bytes_result(r, buf), buf)

    def pwrite(self, cq, cookie, fd, data, offset):
        """Like ``os.pwrite``: value is the number of bytes written.

        ``data`` (any contiguous bytes-like object) is written without a copy
        and stays referenced, and un-resizable, until drained.
        """
        buf = ffi.from_buffer(data)
        req = _new_req(lib.LWP_OP_PWRITE)
        req.fd = fd
        req.buf = buf
        req.len = len(buf)
        req.offset = offset
        self._submit(cq, cookie, req, _int_result, buf)

    def fsync(self, cq, cookie, fd):
        """Like ``os.fsync``: value is ``None``."""
        req = _new_req(lib.LWP_OP_FSYNC)
        req.fd = fd
        self._submit(cq, cookie, req, _none_result)

    def fstat(self, cq, cookie, fd):
        """Like ``os.fstat``: value is an ``os.stat_result``."""
        req = _new_req(lib.LWP_OP_FSTAT)
        req.fd = fd
        self._submit(cq, cookie, req, _stat_result)

    def getaddrinfo(self, cq, cookie, host, port, family=0, type=0, proto=0, flags=0):
        """Like ``socket.getaddrinfo``, same arguments and same value: a list
        of ``(family, type, proto, canonname, sockaddr)``.  Errors are
        ``socket.gaierror(code, message)``, or ``OSError`` for ``EAI_SYSTEM``.
        Bad argument types raise here, as the stdlib does.
        """
        chost = _gai_host(host)
        cserv = _gai_port(port)
        req = _new_req(lib.LWP_OP_GETADDRINFO)
        req.host = chost
        req.service = cserv
        req.family = family
        req.socktype = type
        req.protocol = proto
        req.flags = flags
        self._submit(cq, cookie, req, _addrinfo_result, (chost, cserv))

    def getnameinfo(self, cq, cookie, sockaddr, flags):
        """Like ``socket.getnameinfo``: value is ``(host, port)`` strings.

        As in the stdlib, the host part of ``sockaddr`` must be a numeric
        address; it is parsed here, without any lookup.
        """
        sa, salen = _gni_sockaddr(sockaddr)
        host = ffi.new("char[]", lib.NI_MAXHOST)
        serv = ffi.new("char[]", lib.NI_MAXSERV)
        req = _new_req(lib.LWP_OP_GETNAMEINFO)
        req.addr = ffi.cast("struct sockaddr *", sa)
        req.addrlen = salen
        req.hostbuf = host
        req.hostbuflen = len(host)
        req.servbuf = serv
        req.servbuflen = len(serv)
        req.flags = flags
        self._submit(cq, cookie, req, lambda r: _nameinfo_result(r, host, serv),
                     (sa, host, serv))

    def usleep(self, cq, cookie, microseconds):
        """Occupy a worker for ``microseconds``: value is ``None``.  For tests
        and diagnostics -- a request that is reliably still in flight."""
        req = _new_req(lib.LWP_OP_USLEEP)
        req.usec = microseconds
        self._submit(cq, cookie, req, _none_result)

    def _submit(self, cq, cookie, req, convert, keepalive=None):
        if self._closed or self._pid != os.getpid():
            raise RuntimeError("ActivationPool is closed")
        token = cq._register(cookie, req, convert, keepalive)
        if _submit(self._addr, cq._addr, _address(req)) != 0:
            # Only fails once shut down; the pool never saw the request.
            cq._unregister(token)
            raise RuntimeError("ActivationPool is closed")


@atexit.register
def _close_open_pools():
    for pool in list(_open_pools):
        pool.close()


# -- request construction ------------------------------------------------

def _address(cdata):
    """The address a builtin takes for a pointer or array (no cffi call: keeps the GIL)."""
    return int(ffi.cast("uintptr_t", cdata))


def _new_req(op):
    req = ffi.new("lwp_req *")
    req.op = op
    return req


def _cstring(data):
    if b"\0" in data:
        raise ValueError("embedded null byte")
    return data


def _gai_host(host):
    # The same conversions as CPython's socket.getaddrinfo.
    if host is None:
        return ffi.NULL
    if isinstance(host, str):
        host = host.encode("idna")
    elif not isinstance(host, bytes):
        raise TypeError("getaddrinfo() argument 1 must be string or None")
    return ffi.new("char[]", _cstring(host))


def _gai_port(port):
    if port is None:
        return ffi.NULL
    if type(port) is int:
        port = str(port).encode()
    elif isinstance(port, str):
        port = port.encode()
    elif not isinstance(port, bytes):
        raise OSError("Int or String expected")
    return ffi.new("char[]", _cstring(port))


def _gni_sockaddr(sockaddr):
    """Parse a getnameinfo() sockaddr tuple the way CPython does (numeric
    host only) into a C sockaddr and its length."""
    if not isinstance(sockaddr, tuple):
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    if not 2 <= len(sockaddr) <= 4 or not isinstance(sockaddr[0], str) \
            or not isinstance(sockaddr[1], int):
        raise TypeError("getnameinfo(): illegal sockaddr argument")
    host, port, flowinfo, scope_id = (sockaddr + (0, 0))[:4]
    if not 0 <= flowinfo <= 0xfffff:
        raise OverflowError("getnameinfo(): flowinfo must be 0-1048575.")
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM,
                               0, socket.AI_NUMERICHOST)
    if len(infos) > 1:
        raise OSError("sockaddr resolved to multiple addresses")
    family, _, _, _, addr = infos[0]
    if family == socket.AF_INET:
        if len(sockaddr) != 2:
            raise OSError("IPv4 sockaddr must be 2 tuple")
        sa = ffi.new("struct sockaddr_in *")
        sa.sin_family = family
        sa.sin_port = socket.htons(addr[1])
        ffi.memmove(ffi.addressof(sa, "sin_addr"), socket.inet_pton(family, addr[0]), 4)
    else:
        sa = ffi.new("struct sockaddr_in6 *")
        sa.sin6_family = family
        sa.sin6_port = socket.htons(addr[1])
        sa.sin6_flowinfo = socket.htonl(flowinfo)
        sa.sin6_scope_id = scope_id
        ffi.memmove(ffi.addressof(sa, "sin6_addr"), socket.inet_pton(family, addr[0]), 16)
    return sa, ffi.sizeof(sa[0])


# -- result conversion: req -> (value, error) -----------------------------

def _oserror(err, filename=None):
    if filename is None:
        return OSError(err, os.strerror(err))
    return OSError(err, os.strerror(err), filename)


def _gaierror(code, err):
    if code == socket.EAI_SYSTEM:
        return _oserror(err)
    return socket.gaierror(code, ffi.string(lib.gai_strerror(code)).decode())


def _none_result(req):
    if req.result < 0:
        return None, _oserror(req.error)
    return None, None


def _int_result(req):
    if req.result < 0:
        return None, _oserror(req.error)
    return req.result, None


def _fd_result(req, path):
    if req.result < 0:
        return None, _oserror(req.error, path)
    return req.result, None


def _bytes_result(req, buf):
    if req.result < 0:
        return None, _oserror(req.error)
    return ffi.buffer(buf, req.result)[:], None


def _stat_result(req):
    if req.result < 0:
        return None, _oserror(req.error)
    st = req.st
    seconds, extra = [], {}
    for name, ns in (("atime", st.atime_ns), ("mtime", st.mtime_ns), ("ctime", st.ctime_ns)):
        sec, nsec = divmod(ns, 10**9)
        seconds.append(sec)
        extra["st_" + name] = sec + nsec * 1e-9     # the same float as os.stat
        extra["st_" + name + "_ns"] = ns
    extra.update(st_blksize=st.blksize, st_blocks=st.blocks, st_rdev=st.rdev)
    fields = (st.mode, st.ino, st.dev, st.nlink, st.uid, st.gid, st.size, *seconds)
    return os.stat_result(fields, extra), None


def _as_enum(enum_type, value):
    try:
        return enum_type(value)
    except ValueError:
        return value


def _sockaddr(sa, salen):
    family = sa.sa_family
    if family == socket.AF_INET:
        sin = ffi.cast("struct sockaddr_in *", sa)
        host = socket.inet_ntop(family, ffi.buffer(ffi.addressof(sin, "sin_addr")))
        return host, socket.ntohs(sin.sin_port)
    if family == socket.AF_INET6:
        sin6 = ffi.cast("struct sockaddr_in6 *", sa)
        host = socket.inet_ntop(family, ffi.buffer(ffi.addressof(sin6, "sin6_addr")))
        return (host, socket.ntohs(sin6.sin6_port), socket.ntohl(sin6.sin6_flowinfo),
                sin6.sin6_scope_id)
    return family, ffi.buffer(sa, salen)[:]


def _addrinfo_result(req):
    if req.result != 0:
        return None, _gaierror(req.result, req.error)
    infos = []
    ai = req.ai
    while ai != ffi.NULL:
        canonname = ffi.string(ai.ai_canonname).decode() if ai.ai_canonname != ffi.NULL else ""
        infos.append((_as_enum(socket.AddressFamily, ai.ai_family),
                      _as_enum(socket.SocketKind, ai.ai_socktype),
                      ai.ai_protocol, canonname, _sockaddr(ai.ai_addr, ai.ai_addrlen)))
        ai = ai.ai_next
    return infos, None


def _nameinfo_result(req, host, serv):
    if req.result != 0:
        return None, _gaierror(req.result, req.error)
    return (ffi.string(host).decode(), ffi.string(serv).decode()), None
