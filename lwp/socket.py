"""Cooperative sockets: a drop-in for the :mod:`socket` module.

Everything the standard :mod:`socket` module exports is here (constants,
exceptions, ``inet_*``, ``SocketIO``...), and what can wait is replaced by a
version that parks the calling green thread instead of blocking its LWP:

* :class:`socket`: a subclass of :class:`socket.socket` whose descriptor is
  always in non-blocking mode.  The Python-level timeout keeps the standard
  meaning: ``settimeout(None)`` blocks (cooperatively), ``settimeout(0)`` is
  non-blocking and raises :class:`BlockingIOError`, ``settimeout(t)`` raises
  :class:`TimeoutError` (``socket.timeout``) when one call waits longer than
  ``t`` seconds (``sendall``: the whole call).  ``accept``, ``connect``,
  ``connect_ex``, ``recv``, ``recv_into``, ``recvfrom``, ``recvfrom_into``,
  ``recvmsg``, ``recvmsg_into``, ``send``, ``sendall``, ``sendto``,
  ``sendmsg`` and ``sendfile`` wait the lwp way; ``makefile`` works over them.
  ``close`` wakes the threads parked on the socket with an :class:`OSError`
  (``EBADF``) instead of leaving them hanging.
* :func:`create_connection`, :func:`create_server`, :func:`socketpair`,
  :func:`fromfd` return such sockets.
* :func:`getaddrinfo`, :func:`getnameinfo`, :func:`gethostbyname`,
  :func:`gethostbyname_ex`, :func:`gethostbyaddr`, :func:`getfqdn`: numeric
  addresses and ``"localhost"`` resolve on the spot; other names resolve on
  an activation (:mod:`lwp.dns`, :func:`lwp.blocking`) while the LWP runs other
  threads.  Host names given to ``connect``, ``connect_ex``, ``sendto`` and
  ``bind`` resolve the same way.

The pattern of every call: try the non-blocking system call; on ``EAGAIN``
wait for readiness (:func:`lwp._core.park.wait_readable` /
``wait_writable``, with what is left of the timeout) and try again.  In a
plain OS thread the waits block in ``poll(2)``, so these sockets work there
too, with the standard blocking semantics.

Several green threads may wait on one socket at once, as kernel threads may
block in ``recv`` on one socket: new data (or room) wakes the waiters of that
direction in the order they came, and which thread gets which bytes is up to
the order they run in; those that find nothing wait again.  A socket is
registered once in its LWP's ``epoll`` set, edge-triggered, and a call on a
socket known not to be ready waits first instead of failing with ``EAGAIN``
(:mod:`lwp._core.poller`).  ``close`` (and ``detach``) wake every thread
parked on the descriptor, by these methods or by other means
(``lwp.os.read``, ``wait_readable``), with an :class:`OSError` (``EBADF``).
A thread whose calls keep succeeding without waiting lets the others run
after a few dozen of them, so one busy connection cannot starve the rest.

``recv``, ``recv_into``, ``send`` and ``sendall`` run as C methods when the
native module is built (``csrc/io_py.c``): a transcription of the common case
of the Python below (:meth:`socket._io` with the poller's ``ready``, edge
``wait`` and ``not_ready`` and the LWP's ``io_spend``), which stays the
reference, what the C calls for everything else, and what runs with
``LWP_NATIVE_PARK=0``.  Their ``recv`` and ``send`` system calls are made
holding the GIL (with ``MSG_DONTWAIT``: they cannot block).  A subclass that
overrides ``_io`` must override these methods too.

Limits: a socket handed to a C library that calls the descriptor directly
sees a non-blocking descriptor; ``detach()`` leaves the descriptor
non-blocking.  On an ``AF_UNIX`` stream socket, a ``recv``/``recv_into``
that takes a message carrying file descriptors (``SCM_RIGHTS``, which it
drops) stops short after it, and what follows waits for the peer's next
write: receive such messages with ``recvmsg``.  (``SO_PASSCRED``, with which a
``recv`` also stops at each change of sender, is handled.)
"""

import errno as _errno
import os as _os
import socket as _std
from io import UnsupportedOperation as _UnsupportedOperation
from time import monotonic as _monotonic

import _socket
from socket import *  # noqa: F401,F403 - the drop-in re-exports the standard module
from socket import _GLOBAL_DEFAULT_TIMEOUT  # noqa: F401 - callers compare with it by identity
from socket import SocketIO  # noqa: F401 - not in socket.__all__, but used (makefile)

from ._core import poller as _poller
from ._core.activation import blocking as _blocking
from ._core.lwp import _IO_BUDGET
from ._core.lwp import LWP as _LWP
from ._core.park import current as _current
from ._core.park import current_lwp as _current_lwp
from ._core.park import fd_closing as _fd_closing
from ._core.park import fd_reused as _fd_reused
from ._core.park import wait_readable as _wait_readable
from ._core.park import wait_writable as _wait_writable
from ._core.timeout import sleep as _sleep
from .monkey import get_original as _get_original

__all__ = list(_std.__all__)

# The real objects, even if lwp.monkey has patched the socket module already.
_std_socket = _get_original("socket", "socket")
_std_getaddrinfo = _get_original("socket", "getaddrinfo")
_std_getnameinfo = _get_original("socket", "getnameinfo")
_std_gethostbyname = _get_original("socket", "gethostbyname")
_std_gethostbyname_ex = _get_original("socket", "gethostbyname_ex")
_std_gethostbyaddr = _get_original("socket", "gethostbyaddr")
_std_gethostname = _get_original("socket", "gethostname")

# The C methods: they see the descriptor as non-blocking and raise BlockingIOError.
_ss = _socket.socket
_c_family = _ss.family.__get__
_c_type = _ss.type.__get__
_c_proto = _ss.proto.__get__
_SOCK_NONBLOCK = getattr(_socket, "SOCK_NONBLOCK", 0)
# Options with which an AF_UNIX stream recv stops short at a change of sender.
_UNGLUED = tuple(getattr(_socket, name) for name in ("SO_PASSCRED", "SO_PASSPIDFD")
                 if hasattr(_socket, name))


def _nbytes(buffer):
    """The size in bytes of a bytes-like object."""
    if type(buffer) is bytes or type(buffer) is bytearray:
        return len(buffer)
    with memoryview(buffer) as view:
        return view.nbytes


def _timed_out():
    return TimeoutError("timed out")


class socket(_std_socket):
    """A :class:`socket.socket` whose waits park the green thread.

    Same constructor and methods as the standard class.  The descriptor is in
    non-blocking mode; the timeout set with ``settimeout``/``setblocking``
    (initially :func:`socket.getdefaulttimeout`) is kept at the Python level
    and applied to the cooperative waits.
    """

    __slots__ = ("_timeout", "_stream")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is None:
            if family == -1:
                family = AF_INET
            if type == -1:
                type = SOCK_STREAM
            if proto == -1:
                proto = 0
            type |= _SOCK_NONBLOCK  # born non-blocking: no fcntl (Linux)
        super().__init__(family, type, proto, fileno)
        self._timeout = getdefaulttimeout()
        self._stream = _c_type(self) == SOCK_STREAM  # a short transfer means a buffer limit
        if fileno is not None or not _SOCK_NONBLOCK:
            _ss.settimeout(self, 0.0)
        if fileno is not None and self._stream and _c_family(self) == AF_UNIX:
            # Set before lwp saw it, or inherited from a listener by accept.
            self._stream = not any(_ss.getsockopt(self, SOL_SOCKET, opt) for opt in _UNGLUED)
        _fd_reused(_ss.fileno(self))

    # -- the Python-level timeout --------------------------------------------------------

    def settimeout(self, value):
        """Like :meth:`socket.socket.settimeout`: None blocks, 0 never waits."""
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = value.__float__()
                except AttributeError:
                    raise TypeError("Timeout value must be int, float or None") from None
            value = float(value)
            if not value >= 0.0:  # also refuses NaN
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self):
        """The timeout in seconds (float), or None."""
        return self._timeout

    def setblocking(self, flag):
        """``setblocking(True)`` is ``settimeout(None)``, ``False`` is ``settimeout(0)``."""
        self._timeout = None if flag else 0.0

    def getblocking(self):
        """False only in non-blocking mode (timeout 0)."""
        return self._timeout != 0.0

    @property
    def timeout(self):
        """The timeout (``gettimeout()``)."""
        return self._timeout

    def setsockopt(self, level, optname, value, optlen=None):
        """Like :meth:`socket.socket.setsockopt`.

        With ``SO_PASSCRED`` on, an ``AF_UNIX`` stream ``recv`` stops short
        where the sender changes, so a short read no longer means the buffer
        was drained (see :meth:`_io`).
        """
        if optlen is None:
            _ss.setsockopt(self, level, optname, value)
        else:
            _ss.setsockopt(self, level, optname, value, optlen)
        if level == SOL_SOCKET and optname in _UNGLUED and value:
            self._stream = False

    # -- waiting ----------------------------------------------------------------------------

    def _wait(self, write, deadline):
        """Wait until the socket is readable (writable if ``write``) or ``deadline`` passes.

        Only right after the socket was found not ready in that direction
        (``EAGAIN``, ``EINPROGRESS``, an SSL *want*): a green thread waits
        on the socket's edge registration (see :mod:`lwp._core.poller`).
        """
        fd = _ss.fileno(self)
        if fd < 0:
            raise OSError(_errno.EBADF, "Bad file descriptor")
        if deadline is None:
            remaining = None
        else:
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise _timed_out()
        lwp = _current_lwp()
        if lwp is not None and lwp.current is not None:
            ready = lwp.wait_fd(fd, write, remaining, True)
        else:
            ready = (_wait_writable if write else _wait_readable)(fd, remaining)
        if not ready:
            raise _timed_out()

    def _deadline(self):
        timeout = self._timeout
        return None if timeout is None else _monotonic() + timeout

    def _io(self, method, write, short, *args):
        """``method(self, *args)``, a C call on the non-blocking descriptor, retried
        after each wait until it stops raising BlockingIOError.

        In a green thread, a socket known not to be ready (no edge since it
        was last found so) is waited on first, without a failed call.
        ``short``: for a stream socket, the size below which a transfer drained
        the receive buffer (``recv``) or filled the send buffer (``send``), so
        the socket counts as not ready until its next edge, as in Tokio; 0 when
        a short result tells nothing (datagrams, flags).

        A call made without waiting first is charged to the thread's I/O
        budget (:meth:`lwp._core.lwp.LWP.io_spend`), so a connection whose
        peer always answers at once cannot starve the others.
        """
        lwp = _current_lwp()
        timeout = self._timeout
        if lwp is None or lwp.current is None or timeout == 0.0:
            return self._io_plain(lwp, method, write, *args)
        fd = _ss.fileno(self)
        deadline = None if timeout is None else _monotonic() + timeout
        if lwp.fd_ready(fd, write):
            lwp.io_spend()  # before the call: a Cancelled raised there loses no data
        elif not lwp.wait_fd(fd, write, timeout, True):
            raise _timed_out()
        while True:
            try:
                result = method(self, *args)
            except BlockingIOError:
                self._wait(write, deadline)
                continue
            if short and result and (result if type(result) is int else len(result)) < short:
                lwp.fd_not_ready(fd, write)  # drained (filled) the buffer
            return result

    def _io_plain(self, lwp, method, write, *args):
        """:meth:`_io` in a plain OS thread, or on a non-blocking socket."""
        if lwp is not None and lwp.current is not None:
            lwp.io_spend()
        try:
            return method(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        deadline = self._deadline()
        while True:
            self._wait(write, deadline)
            try:
                return method(self, *args)
            except BlockingIOError:
                pass

    # -- names -----------------------------------------------------------------------------

    def _resolve(self, address):
        """``address`` with a host name replaced by an address, resolved cooperatively."""
        if type(address) is tuple and len(address) >= 2 and type(address[0]) is str:
            host = address[0]
            family = _c_family(self)
            if (family == AF_INET or family == AF_INET6) and host and host != "<broadcast>" \
                    and not _is_numeric(host):
                sa = getaddrinfo(host, address[1], family, _c_type(self), _c_proto(self))[0][4]
                return sa[:2] + address[2:] if len(address) > 2 else sa
        return address

    def bind(self, address):
        """Like :meth:`socket.socket.bind`; a host name is resolved cooperatively."""
        _ss.bind(self, self._resolve(address))

    # -- connections -------------------------------------------------------------------------

    def accept(self):
        """Wait for a connection; return ``(lwp socket, address)``."""
        fd, addr = self._io(_ss._accept, False, 0)
        sock = socket(_c_family(self), _c_type(self), _c_proto(self), fileno=fd)
        return sock, addr

    def connect(self, address):
        """Connect, waiting cooperatively for the handshake (timeout: TimeoutError)."""
        address = self._resolve(address)
        try:
            _ss.connect(self, address)
            return
        except (BlockingIOError, InterruptedError) as e:
            if self._timeout == 0.0:
                raise
            refused_for_now = e.errno == _errno.EAGAIN
        deadline = self._deadline()
        pause = 0.0005
        while refused_for_now:
            # An AF_UNIX listener's backlog is full: nothing is in progress and
            # readiness will not tell when to retry, so back off and retry.
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                raise _timed_out()
            pause = min(pause * 2, 0.05)
            _sleep(pause if remaining is None else min(pause, remaining))
            try:
                _ss.connect(self, address)
                return
            except (BlockingIOError, InterruptedError) as e:
                refused_for_now = e.errno == _errno.EAGAIN
        # In progress: writable means done; SO_ERROR says how (as CPython does).
        self._wait(True, deadline)
        err = _ss.getsockopt(self, SOL_SOCKET, SO_ERROR)
        if err:
            raise OSError(err, _os.strerror(err))

    def connect_ex(self, address):
        """Like :meth:`connect` but return an errno (0 on success) instead of raising."""
        try:
            self.connect(address)
        except TimeoutError as e:
            if e.errno is not None:
                return e.errno
            return _errno.EAGAIN  # what CPython returns when connect_ex times out
        except gaierror:
            raise
        except OSError as e:
            if e.errno is None:
                raise
            return e.errno
        return 0

    # -- receiving ---------------------------------------------------------------------------

    def recv(self, bufsize, flags=0):
        """Receive up to ``bufsize`` bytes; ``b""`` at end of stream."""
        return self._io(_ss.recv, False, 0 if flags or not self._stream else bufsize,
                        bufsize, flags)

    def recv_into(self, buffer, nbytes=0, flags=0):
        """Receive into ``buffer``; return the number of bytes."""
        short = 0 if flags or not self._stream else nbytes or _nbytes(buffer)
        return self._io(_ss.recv_into, False, short, buffer, nbytes, flags)

    def recvfrom(self, bufsize, flags=0):
        """Receive a datagram (or bytes): ``(data, address)``."""
        return self._io(_ss.recvfrom, False, 0, bufsize, flags)

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        """Receive into ``buffer``: ``(nbytes, address)``."""
        return self._io(_ss.recvfrom_into, False, 0, buffer, nbytes, flags)

    if hasattr(_ss, "recvmsg"):
        def recvmsg(self, bufsize, ancbufsize=0, flags=0):
            """Like :meth:`socket.socket.recvmsg`, waiting cooperatively."""
            return self._io(_ss.recvmsg, False, 0, bufsize, ancbufsize, flags)

        def recvmsg_into(self, buffers, ancbufsize=0, flags=0):
            """Like :meth:`socket.socket.recvmsg_into`, waiting cooperatively."""
            return self._io(_ss.recvmsg_into, False, 0, buffers, ancbufsize, flags)

    # -- sending ----------------------------------------------------------------------------

    def send(self, data, flags=0):
        """Send some of ``data``; return how many bytes went."""
        return self._io(_ss.send, True, 0 if flags or not self._stream else _nbytes(data),
                        data, flags)

    def sendall(self, data, flags=0):
        """Send all of ``data``; the timeout applies to the whole call."""
        lwp = _current_lwp()
        if lwp is not None and lwp.current is not None:
            lwp.io_spend()  # see _io
        if type(data) is not bytes:
            self._send_from(data, 0, flags)
            return
        try:
            sent = _ss.send(self, data, flags)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
            sent = 0
        if sent < len(data):  # else the common case: the socket buffer took it all
            self._send_from(data, sent, flags)

    def _send_from(self, data, sent, flags):
        """The rest of :meth:`sendall`: send ``data`` from byte ``sent`` on."""
        deadline = self._deadline()
        with memoryview(data) as view, view.cast("B") as bytes_view:
            total = len(bytes_view)
            while sent < total:
                try:
                    sent += _ss.send(self, bytes_view[sent:], flags)
                except BlockingIOError:
                    if self._timeout == 0.0:
                        raise
                    self._wait(True, deadline)

    def sendto(self, data, flags_or_addr, addr=None):
        """``sendto(data, address)`` or ``sendto(data, flags, address)``."""
        if addr is None:
            flags, addr = 0, flags_or_addr
        else:
            flags = flags_or_addr
        return self._io(_ss.sendto, True, 0, data, flags, self._resolve(addr))

    if hasattr(_ss, "sendmsg"):
        def sendmsg(self, buffers, ancdata=(), flags=0, address=None):
            """Like :meth:`socket.socket.sendmsg`, waiting cooperatively."""
            if address is None:
                return self._io(_ss.sendmsg, True, 0, buffers, ancdata, flags)
            return self._io(_ss.sendmsg, True, 0, buffers, ancdata, flags,
                            self._resolve(address))

    def sendfile(self, file, offset=0, count=None):
        """Send a file (``os.sendfile`` when possible, else a send loop); return bytes sent.

        As in the standard library the timeout applies to each wait, and
        non-blocking sockets are refused (ValueError).
        """
        try:
            return self._sendfile_zerocopy(file, offset, count)
        except _std._GiveupOnSendfile:
            return self._sendfile_use_send(file, offset, count)

    def _sendfile_zerocopy(self, file, offset, count):
        self._check_sendfile_params(file, offset, count)
        if self._timeout == 0.0:
            raise ValueError("non-blocking sockets are not supported")
        try:
            fileno = file.fileno()
        except (AttributeError, _UnsupportedOperation) as err:
            raise _std._GiveupOnSendfile(err)
        try:
            fsize = _os.fstat(fileno).st_size
        except OSError as err:
            raise _std._GiveupOnSendfile(err)
        if not fsize:
            return 0
        blocksize = min(count or fsize, 2 ** 30)
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        break
                try:
                    sent = _os.sendfile(_ss.fileno(self), fileno, offset, blocksize)
                except BlockingIOError:
                    timeout = self._timeout
                    self._wait(True,
                               None if timeout is None else _monotonic() + timeout)
                    continue
                except OSError as err:
                    if total_sent == 0:
                        # Not a regular file, or not supported here: fall back.
                        raise _std._GiveupOnSendfile(err)
                    raise err from None
                if sent == 0:
                    break  # end of file
                offset += sent
                total_sent += sent
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset)

    # -- closing ----------------------------------------------------------------------------

    def _real_close(self, _ss=_ss):
        fd = _ss.fileno(self)
        if fd >= 0:
            _fd_closing(fd)  # threads parked on it wake with EBADF
        _ss.close(self)

    def detach(self):
        """Like :meth:`socket.socket.detach`; threads parked on the socket wake with EBADF.

        The descriptor stays non-blocking.
        """
        fd = _ss.fileno(self)
        if fd >= 0:
            _fd_closing(fd)  # its next owner may close it without telling lwp
        return super().detach()


# The native socket path (see the module doc): recv, recv_into, send and
# sendall become C methods; the Python ones stay as socket._python_recv ...
if _poller.NATIVE:
    _poller._native_socket_methods(socket, _LWP, _IO_BUDGET)


SocketType = _std.SocketType  # the C base type, as in the standard module


# -- module functions ------------------------------------------------------------------------

def socketpair(family=None, type=SOCK_STREAM, proto=0):
    """A pair of connected lwp sockets (default ``AF_UNIX``)."""
    if family is None:
        family = getattr(_socket, "AF_UNIX", AF_INET)
    a, b = _socket.socketpair(family, type, proto)
    try:
        return (socket(family, type, proto, a.detach()), socket(family, type, proto, b.detach()))
    finally:
        a.close()
        b.close()


def fromfd(fd, family, type, proto=0):
    """An lwp socket on a duplicate of ``fd``."""
    return socket(family, type, proto, _os.dup(fd))


def create_connection(address, timeout=_GLOBAL_DEFAULT_TIMEOUT, source_address=None, *,
                      all_errors=False):
    """Connect to ``(host, port)``, trying each address, and return the lwp socket.

    Like :func:`socket.create_connection` (``all_errors`` raises an
    :class:`ExceptionGroup` of every attempt's error, Python >= 3.11).  A
    socket whose connection fails or is interrupted (cancelled) is closed.
    """
    host, port = address
    errors = []
    for af, socktype, proto, _canonname, sa in getaddrinfo(host, port, 0, SOCK_STREAM):
        sock = None
        try:
            sock = socket(af, socktype, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sa)
            errors.clear()
            return sock
        except OSError as exc:
            if not all_errors:
                errors.clear()
            errors.append(exc)
            if sock is not None:
                sock.close()
        except BaseException:
            if sock is not None:
                sock.close()
            raise
    if errors:
        try:
            if not all_errors:
                raise errors[0]
            raise ExceptionGroup("create_connection failed", errors)  # noqa: F821 (>= 3.11)
        finally:
            errors = []
    raise OSError("getaddrinfo returns an empty list")


def create_server(address, *, family=AF_INET, backlog=None, reuse_port=False,
                  dualstack_ipv6=False):
    """A listening lwp TCP socket bound to ``address``; like :func:`socket.create_server`."""
    if reuse_port and not hasattr(_socket, "SO_REUSEPORT"):
        raise ValueError("SO_REUSEPORT not supported on this platform")
    if dualstack_ipv6:
        if not has_dualstack_ipv6():
            raise ValueError("dualstack_ipv6 not supported on this platform")
        if family != AF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = socket(family, SOCK_STREAM)
    try:
        if hasattr(_socket, "SO_REUSEADDR"):
            try:
                sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
            except OSError:
                pass
        if reuse_port:
            sock.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1)
        if has_ipv6 and family == AF_INET6:
            if dualstack_ipv6:
                sock.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 0)
            elif hasattr(_socket, "IPV6_V6ONLY") and hasattr(_socket, "IPPROTO_IPV6"):
                sock.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1)
        try:
            sock.bind(address)
        except OSError as err:
            msg = f"{err.strerror} (while attempting to bind on address {address!r})"
            raise OSError(err.errno, msg) from None
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise


# -- name resolution ------------------------------------------------------------------------

def _is_numeric(host):
    """True if ``host`` (str) is an IPv4 or IPv6 literal."""
    try:
        inet_pton(AF_INET, host)
        return True
    except OSError:
        pass
    try:
        inet_pton(AF_INET6, host)
        return True
    except OSError:
        return False


def _immediate(host):
    """Names that resolve without I/O worth an activation."""
    return host is None or host == "localhost" or (type(host) is str and _is_numeric(host))


def _resolve(name, *args):
    """Run resolver call ``name`` (a :mod:`socket` function name) without stalling the LWP.

    The one place that decides how names are resolved: in a plain OS thread
    the standard function; in a green thread :mod:`lwp.dns` (native
    activations) for ``getaddrinfo``/``getnameinfo``, and the standard
    function on an activation (:func:`lwp.blocking`) for the others.
    """
    std = _STD_RESOLVERS[name]
    if _current() is None:
        return std(*args)
    from . import dns

    native = getattr(dns, name, None)
    if native is not None:
        return native(*args)
    return _blocking(std, *args)


_STD_RESOLVERS = {
    "getaddrinfo": _std_getaddrinfo,
    "getnameinfo": _std_getnameinfo,
    "gethostbyname": _std_gethostbyname,
    "gethostbyname_ex": _std_gethostbyname_ex,
    "gethostbyaddr": _std_gethostbyaddr,
}


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """Like :func:`socket.getaddrinfo`, without stalling the LWP on a name lookup."""
    if _immediate(host):
        return _std_getaddrinfo(host, port, family, type, proto, flags)
    return _resolve("getaddrinfo", host, port, family, type, proto, flags)


def getnameinfo(sockaddr, flags):
    """Like :func:`socket.getnameinfo`, without stalling the LWP on a reverse lookup."""
    if flags & NI_NUMERICHOST and flags & NI_NUMERICSERV:
        return _std_getnameinfo(sockaddr, flags)
    return _resolve("getnameinfo", sockaddr, flags)


def gethostbyname(hostname):
    """Like :func:`socket.gethostbyname`, without stalling the LWP on a name lookup."""
    if _immediate(hostname):
        return _std_gethostbyname(hostname)
    return _resolve("gethostbyname", hostname)


def gethostbyname_ex(hostname):
    """Like :func:`socket.gethostbyname_ex`, without stalling the LWP on a name lookup."""
    return _resolve("gethostbyname_ex", hostname)


def gethostbyaddr(ip_address):
    """Like :func:`socket.gethostbyaddr`, without stalling the LWP on a reverse lookup."""
    return _resolve("gethostbyaddr", ip_address)


def getfqdn(name=""):
    """Like :func:`socket.getfqdn`, with a cooperative reverse lookup."""
    name = name.strip()
    if not name or name in ("0.0.0.0", "::"):
        name = _std_gethostname()
    try:
        hostname, aliases, _ipaddrs = gethostbyaddr(name)
    except OSError:
        return name
    aliases.insert(0, hostname)
    for alias in aliases:
        if "." in alias:
            return alias
    return hostname
