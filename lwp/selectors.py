"""Cooperative selectors: a drop-in for the :mod:`selectors` module.

Every name of the standard :mod:`selectors` module is here.
:class:`EpollSelector` (also :data:`DefaultSelector`), :class:`PollSelector`
and :class:`SelectSelector` are the standard classes built on the cooperative
calls of :mod:`lwp.select`, so ``selector.select(timeout)`` parks the calling
green thread while its LWP runs others (and blocks, as usual, in a plain OS
thread).  Registration, keys, events and return values are the standard ones.
"""

import selectors as _std
from selectors import *  # noqa: F401,F403 - the drop-in re-exports the standard module

from .select import epoll as _epoll
from .select import poll as _poll
from .select import select as _select
from .monkey import get_original as _get_original

__all__ = [n for n in dir(_std) if not n.startswith("_") and n not in ("ABCMeta", "Mapping",
                                                                       "abstractmethod",
                                                                       "namedtuple", "math",
                                                                       "select", "sys")]


class SelectSelector(_get_original("selectors", "SelectSelector")):
    """``select()``-based selector whose ``select`` parks the green thread."""

    def _select(self, r, w, x, timeout=None):
        return _select(r, w, x, timeout)


class PollSelector(_get_original("selectors", "PollSelector")):
    """``poll()``-based selector whose ``select`` parks the green thread."""

    _selector_cls = _poll


class EpollSelector(_get_original("selectors", "EpollSelector")):
    """``epoll``-based selector whose ``select`` parks the green thread."""

    _selector_cls = _epoll


DefaultSelector = EpollSelector
