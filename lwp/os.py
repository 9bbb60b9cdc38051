"""Cooperative ``read`` and ``write`` on pipes, sockets and terminals: ``lwp.os``.

Not a drop-in for all of :mod:`os`: three names.

* :func:`read` and :func:`write` behave like :func:`os.read` and
  :func:`os.write`, but a green thread that would wait parks instead, and its
  LWP runs other threads meanwhile.
* :func:`pipe` is :func:`os.pipe` (descriptors in blocking mode; ``read`` and
  ``write`` here handle either mode).

The descriptor's own mode decides, so semantics do not change:

* **blocking** pipe, socket or terminal: wait cooperatively for readiness,
  then make the call, which then does not block: a read returns what is
  there; a write goes in chunks of at most ``PIPE_BUF`` bytes, each after a
  readiness check (a pipe with room takes that much without blocking), until
  all of ``data`` is written, as a blocking write would.  An error after part
  of the data went returns the count written so far.
* **non-blocking** descriptor (``os.set_blocking(fd, False)``): the plain call,
  which raises :class:`BlockingIOError` as it always does.
* **regular files** (and block devices, directories): the plain call; they
  never wait for readiness.  For files that are slow to read (network
  filesystems, cold disks) use :func:`lwp.open`, which runs file I/O on
  activations.

In a plain OS thread these are the :mod:`os` functions.  Known limits: the
readiness check and the call are two steps, so another process reading the
same pipe in between can make the read block its LWP; a cancelled ``write``
may have written part of ``data``.
"""

import os as _os
import stat as _stat
from select import PIPE_BUF as _PIPE_BUF
from select import POLLIN as _POLLIN
from select import POLLOUT as _POLLOUT

from ._core.park import current as _current
from ._core.park import wait_readable as _wait_readable
from ._core.park import wait_writable as _wait_writable
from .monkey import get_original as _get_original

__all__ = ["read", "write", "pipe"]

# The real ones, even if lwp.monkey has patched os or select already.
_std_read = _get_original("os", "read")
_std_write = _get_original("os", "write")
_std_poll = _get_original("select", "poll")
_get_blocking = _os.get_blocking
_fstat = _os.fstat

pipe = _os.pipe


def _ready(fd, event):
    """True if ``fd`` is ready for ``event`` now (or invalid: the call will say why)."""
    p = _std_poll()
    p.register(fd, event)
    return bool(p.poll(0))


def read(fd, n):
    """Like :func:`os.read`; a green thread waiting for data parks instead of blocking."""
    if _current() is None or not _get_blocking(fd):
        return _std_read(fd, n)
    while not _ready(fd, _POLLIN):
        _wait_readable(fd)
    return _std_read(fd, n)


def write(fd, data):
    """Like :func:`os.write`; a green thread waiting for room parks instead of blocking.

    On a blocking pipe, socket or terminal it returns once all of ``data`` is
    written (see the module documentation).
    """
    if _current() is None or not _get_blocking(fd):
        return _std_write(fd, data)
    mode = _fstat(fd).st_mode
    if not (_stat.S_ISFIFO(mode) or _stat.S_ISSOCK(mode) or _stat.S_ISCHR(mode)):
        return _std_write(fd, data)
    with memoryview(data) as raw, raw.cast("B") as view:
        total = len(view)
        if total == 0:
            return _std_write(fd, data)
        written = 0
        while written < total:
            while not _ready(fd, _POLLOUT):
                _wait_writable(fd)
            try:
                written += _std_write(fd, view[written:written + _PIPE_BUF])
            except OSError:
                if written:
                    return written
                raise
        return written
