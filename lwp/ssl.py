"""Cooperative TLS: a drop-in for the :mod:`ssl` module.

Every name of the standard :mod:`ssl` module is here; these differ:

* :class:`SSLSocket`: a :class:`ssl.SSLSocket` over an :class:`lwp.socket.socket`.
  The handshake, ``read``/``recv``/``recv_into``, ``write``/``send``/``sendall``,
  ``unwrap``, ``connect`` and ``accept`` park the calling green thread while
  TLS waits for the network, and keep the socket's timeout semantics (0:
  :class:`ssl.SSLWantReadError`/:class:`ssl.SSLWantWriteError` as usual;
  ``t``: :class:`TimeoutError` "The read operation timed out"...).
* :class:`SSLContext`: a :class:`ssl.SSLContext` whose ``wrap_socket`` returns
  :class:`SSLSocket` (any socket may be given: it is taken over).
* :func:`create_default_context` and :func:`wrap_socket` (where the standard
  module still has it) return and use :class:`SSLContext`.
* :func:`get_server_certificate` connects and handshakes over lwp sockets.

How: the descriptor under an lwp socket is non-blocking, so OpenSSL, called
through the C ``_ssl`` module on that descriptor, never blocks; it reports
*want read* or *want write* instead, and the call waits for that readiness
the lwp way and retries.  A TLS record may need reads to make a write
progress and writes to make a read progress (renegotiation, TLS 1.3 session
tickets), hence both waits in every loop.

``SSLObject`` and ``MemoryBIO`` (``SSLContext.wrap_bio``) do no I/O and need
nothing; ``sendfile`` over TLS is the standard send loop, over the cooperative
``send``.
"""

import errno as _errno
import ssl as _std
from ssl import *  # noqa: F401,F403 - the drop-in re-exports the standard module
from ssl import (CERT_NONE, SSLEOFError, SSLError, SSLWantReadError, SSLWantWriteError,
                 SSLZeroReturnError)
from time import monotonic as _monotonic

from . import socket as _lwp_socket
from .monkey import get_original as _get_original

_StdSSLSocket = _get_original("ssl", "SSLSocket")
_StdSSLContext = _get_original("ssl", "SSLContext")
_std_create_default_context = _get_original("ssl", "create_default_context")
_std_wrap_socket = getattr(_std, "wrap_socket", None)
if _std_wrap_socket is not None:
    _std_wrap_socket = _get_original("ssl", "wrap_socket")

_NOT_SSL = {"AF_INET", "AF_INET6", "Enum", "IntEnum", "IntFlag", "SOCK_STREAM", "SOL_SOCKET",
            "SO_TYPE", "create_connection", "namedtuple", "socket", "socket_error"}
__all__ = sorted(n for n in dir(_std) if not n.startswith("_") and n not in _NOT_SSL
                 and not isinstance(getattr(_std, n), type(_std)))

_C = _std._SSLContext  # the C context type: its descriptors, without the Python layer
_ss = _lwp_socket._ss  # the C socket type: its methods act on the descriptor directly


class SSLSocket(_StdSSLSocket, _lwp_socket.socket):
    """A TLS socket whose waits park the green thread; made by :meth:`SSLContext.wrap_socket`."""

    @classmethod
    def _create(cls, sock, server_side=False, do_handshake_on_connect=True,
                suppress_ragged_eofs=True, server_hostname=None, context=None, session=None):
        # The standard _create, except that the socket layer is lwp's, and that
        # the socket is closed on any failure (a cancelled handshake included).
        if sock.getsockopt(_lwp_socket.SOL_SOCKET, _lwp_socket.SO_TYPE) != _lwp_socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side:
            if server_hostname:
                raise ValueError("server_hostname can only be specified in client mode")
            if session is not None:
                raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        kwargs = dict(family=sock.family, type=sock.type, proto=sock.proto, fileno=sock.fileno())
        self = cls.__new__(cls, **kwargs)
        _lwp_socket.socket.__init__(self, **kwargs)
        timeout = sock.gettimeout()
        self._parked = getattr(sock, "_parked", False)  # an LWP may still watch the fd
        sock.detach()
        self._context = context
        self._session = session
        self._closed = False
        self._sslobj = None
        self.server_side = server_side
        self.server_hostname = context._encode_hostname(server_hostname)
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs
        try:
            try:
                self.getpeername()
            except OSError as e:
                if e.errno != _errno.ENOTCONN:
                    raise
                connected = False
                self._refuse_early_data()
            else:
                connected = True
            self.settimeout(timeout)
            self._connected = connected
            if connected:
                self._sslobj = self._context._wrap_socket(
                    self, server_side, self.server_hostname, owner=self, session=self._session)
                if do_handshake_on_connect:
                    if self.gettimeout() == 0.0:
                        raise ValueError("do_handshake_on_connect should not be specified for "
                                         "non-blocking sockets")
                    self.do_handshake()
        except BaseException:
            self.close()
            raise
        return self

    def _refuse_early_data(self):
        """An unconnected socket must not hold data: it would pass for TLS data later
        (CPython gh-108310)."""
        try:
            data = _ss.recv(self, 1)
        except OSError as e:
            if e.errno not in (_errno.ENOTCONN, _errno.EINVAL, _errno.EAGAIN):
                raise
            return
        if data:
            reason = "Closed before TLS handshake with data in recv buffer."
            err = SSLError(_errno.ENOTCONN, reason)
            err.reason = reason
            err.library = None
            raise err

    # -- the one loop: retry an OpenSSL call after the readiness it wants ------------------

    def _retry(self, what, fn, *args, timeout=False):
        """``fn(*args)``, waiting and retrying while it wants to read or write.

        ``what`` names the operation in the timeout message; ``timeout``
        overrides the socket's (False: use the socket's).
        """
        if timeout is False:
            timeout = self._timeout
        deadline = None
        while True:
            try:
                return fn(*args)
            except SSLWantReadError:
                if timeout == 0.0:
                    raise
                write = False
            except SSLWantWriteError:
                if timeout == 0.0:
                    raise
                write = True
            if deadline is None and timeout is not None:
                deadline = _monotonic() + timeout
            try:
                self._wait(write, deadline)
            except TimeoutError:
                raise TimeoutError(f"The {what} operation timed out") from None

    def do_handshake(self, block=False):
        """Perform the TLS handshake (``block=True``: even on a non-blocking socket)."""
        self._check_connected()
        timeout = self._timeout
        if timeout == 0.0 and block:
            timeout = None
        self._retry("handshake", self._sslobj.do_handshake, timeout=timeout)

    def read(self, len=1024, buffer=None):
        """Read up to ``len`` bytes (into ``buffer`` if given); ``b""``/0 at the end."""
        return self._retry("read", _StdSSLSocket.read, self, len, buffer)

    def write(self, data):
        """Write ``data``; return how many bytes were taken."""
        return self._retry("write", _StdSSLSocket.write, self, data)

    def send(self, data, flags=0):
        """Send some of ``data`` (through TLS once wrapped)."""
        self._checkClosed()
        if self._sslobj is None:
            return _lwp_socket.socket.send(self, data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {self.__class__}")
        return self.write(data)

    def unwrap(self):
        """Shut TLS down (close_notify both ways) and return the plain socket (self)."""
        if not self._sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        try:
            s = self._retry("read", self._sslobj.shutdown)
        except (SSLEOFError, SSLZeroReturnError):
            s = self  # the peer closed first: TLS is down all the same
        except OSError as e:
            if e.errno != 0:
                raise
            s = self
        self._sslobj = None
        return s

    def accept(self):
        """Accept a connection and wrap it server-side: ``(SSLSocket, address)``."""
        newsock, addr = _lwp_socket.socket.accept(self)
        newsock = type(self)._create(
            sock=newsock, server_side=True, do_handshake_on_connect=self.do_handshake_on_connect,
            suppress_ragged_eofs=self.suppress_ragged_eofs, context=self.context)
        return newsock, addr


class SSLContext(_StdSSLContext):
    """:class:`ssl.SSLContext` whose ``wrap_socket`` returns lwp's :class:`SSLSocket`."""

    sslsocket_class = SSLSocket

    # The standard setters call ``super(SSLContext, SSLContext)``, naming the
    # class through the ssl module: once lwp.monkey has put this class there,
    # that finds the standard setter again, for ever.  These go to _ssl directly.

    if hasattr(_C, "minimum_version"):
        @property
        def minimum_version(self):
            return TLSVersion(_C.minimum_version.__get__(self))  # noqa: F405

        @minimum_version.setter
        def minimum_version(self, value):
            if value == TLSVersion.SSLv3:  # noqa: F405
                self.options &= ~Options.OP_NO_SSLv3  # noqa: F405
            _C.minimum_version.__set__(self, value)

        @property
        def maximum_version(self):
            return TLSVersion(_C.maximum_version.__get__(self))  # noqa: F405

        @maximum_version.setter
        def maximum_version(self, value):
            _C.maximum_version.__set__(self, value)

    @property
    def options(self):
        return Options(_C.options.__get__(self))  # noqa: F405

    @options.setter
    def options(self, value):
        _C.options.__set__(self, value)

    @property
    def verify_flags(self):
        return VerifyFlags(_C.verify_flags.__get__(self))  # noqa: F405

    @verify_flags.setter
    def verify_flags(self, value):
        _C.verify_flags.__set__(self, value)

    @property
    def verify_mode(self):
        value = _C.verify_mode.__get__(self)
        try:
            return VerifyMode(value)  # noqa: F405
        except ValueError:
            return value

    @verify_mode.setter
    def verify_mode(self, value):
        _C.verify_mode.__set__(self, value)

    @property
    def _msg_callback(self):
        return _StdSSLContext._msg_callback.fget(self)

    @_msg_callback.setter
    def _msg_callback(self, callback):
        if callback is None:
            _C._msg_callback.__set__(self, None)
            return
        if not hasattr(callback, "__call__"):
            raise TypeError(f"{callback} is not callable.")

        def inner(conn, direction, version, content_type, msg_type, data):
            # As the standard setter: numbers become the ssl module's enums where known.
            try:
                version = TLSVersion(version)  # noqa: F405
            except ValueError:
                pass
            try:
                content_type = _std._TLSContentType(content_type)
            except ValueError:
                pass
            if content_type == _std._TLSContentType.HEADER:
                msg_enum = _std._TLSContentType
            elif content_type == _std._TLSContentType.ALERT:
                msg_enum = _std._TLSAlertType
            else:
                msg_enum = _std._TLSMessageType
            try:
                msg_type = msg_enum(msg_type)
            except ValueError:
                pass
            return callback(conn, direction, version, content_type, msg_type, data)

        inner.user_function = callback
        _C._msg_callback.__set__(self, inner)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    suppress_ragged_eofs=True, server_hostname=None, session=None):
        """Take ``sock`` over and return it as a cooperative :class:`SSLSocket`."""
        return self.sslsocket_class._create(
            sock=sock, server_side=server_side, do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs, server_hostname=server_hostname,
            context=self, session=session)


def _adopt(context):
    """Make a standard context made by the ssl module an lwp :class:`SSLContext`."""
    if type(context) is _StdSSLContext:
        context.__class__ = SSLContext
    return context


def create_default_context(purpose=Purpose.SERVER_AUTH, *, cafile=None, capath=None,  # noqa: F405
                           cadata=None):
    """:func:`ssl.create_default_context`, returning an lwp :class:`SSLContext`."""
    return _adopt(_std_create_default_context(purpose, cafile=cafile, capath=capath,
                                              cadata=cadata))


def _create_unverified_context(*args, **kwargs):
    return _adopt(_std._create_unverified_context(*args, **kwargs))


_create_default_https_context = create_default_context


def get_server_certificate(addr, ssl_version=PROTOCOL_TLS_CLIENT, ca_certs=None,  # noqa: F405
                           timeout=_lwp_socket._GLOBAL_DEFAULT_TIMEOUT):
    """:func:`ssl.get_server_certificate`: the server's certificate, PEM-encoded.

    Connects and handshakes through lwp sockets, so the caller parks; verifies
    the certificate against ``ca_certs`` if given (not the host name, as the
    standard function).
    """
    host, _port = addr
    context = _create_unverified_context(ssl_version, cafile=ca_certs,
                                         cert_reqs=CERT_NONE if ca_certs is None else CERT_REQUIRED)  # noqa: F405
    with (_lwp_socket.create_connection(addr, timeout=timeout) as sock,
          context.wrap_socket(sock, server_hostname=host) as sslsock):
        dercert = sslsock.getpeercert(True)
    return DER_cert_to_PEM_cert(dercert)  # noqa: F405

if _std_wrap_socket is not None:  # removed in Python 3.12
    def wrap_socket(sock, keyfile=None, certfile=None, server_side=False, cert_reqs=CERT_NONE,
                    ssl_version=PROTOCOL_TLS, ca_certs=None, do_handshake_on_connect=True,  # noqa: F405
                    suppress_ragged_eofs=True, ciphers=None):
        """The deprecated :func:`ssl.wrap_socket`, over an lwp :class:`SSLContext`."""
        import warnings

        warnings.warn("ssl.wrap_socket() is deprecated, use SSLContext.wrap_socket()",
                      category=DeprecationWarning, stacklevel=2)
        if server_side and not certfile:
            raise ValueError("certfile must be specified for server-side operations")
        if keyfile and not certfile:
            raise ValueError("certfile must be specified")
        context = SSLContext(ssl_version)
        context.verify_mode = cert_reqs
        if ca_certs:
            context.load_verify_locations(ca_certs)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
        if ciphers:
            context.set_ciphers(ciphers)
        return context.wrap_socket(sock=sock, server_side=server_side,
                                   do_handshake_on_connect=do_handshake_on_connect,
                                   suppress_ragged_eofs=suppress_ragged_eofs)
