"""Cooperative name resolution: ``getaddrinfo`` and ``getnameinfo``.

libc's resolver blocks (it reads files and talks to DNS servers) and cannot be
polled, so in a green thread these run on native activations, C threads that
call ``getaddrinfo(3)``/``getnameinfo(3)`` without the GIL, while the LWP runs
other threads.  Numeric addresses are converted on the spot: they never block.
Results and errors have exactly the shape of :func:`socket.getaddrinfo` and
:func:`socket.getnameinfo` (``socket.gaierror`` with the libc message).  From a
plain OS thread these are the :mod:`socket` functions.
"""

import socket as _socket
from socket import getaddrinfo as _os_getaddrinfo  # bound before lwp.monkey patches it
from socket import getnameinfo as _os_getnameinfo

from ._core.activation import native_call
from ._core.park import current

__all__ = ["getaddrinfo", "getnameinfo"]


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """Like :func:`socket.getaddrinfo`, without blocking the LWP."""
    if current() is None:
        return _os_getaddrinfo(host, port, family, type, proto, flags)
    try:  # numeric hosts resolve without I/O
        return _os_getaddrinfo(host, port, family, type, proto, flags | _socket.AI_NUMERICHOST)
    except _socket.gaierror as e:
        if e.errno != _socket.EAI_NONAME or flags & _socket.AI_NUMERICHOST:
            raise
    except (TypeError, UnicodeError, OverflowError):
        raise
    return native_call("getaddrinfo", host, port, family, type, proto, flags)


def getnameinfo(sockaddr, flags):
    """Like :func:`socket.getnameinfo`, without blocking the LWP."""
    if current() is None or flags & _socket.NI_NUMERICHOST and flags & _socket.NI_NUMERICSERV:
        return _os_getnameinfo(sockaddr, flags)
    return native_call("getnameinfo", sockaddr, flags)
