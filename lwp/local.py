"""``lwp.local``: green-thread-local storage, like :class:`threading.local`.

Each green thread sees its own attributes; a plain OS thread gets its own set
too.  Subclasses may define ``__init__``, which runs once per thread on first
use, with the arguments given to the constructor, as in ``threading.local``.
A green thread's values are dropped when it finishes (or, if it never does,
when the thread object is discarded); an OS thread's when it ends.
"""

import weakref
from _thread import _local

from ._core.park import current

__all__ = ["local"]

_os_thread_keys = _local()  # an owner object for each plain OS thread


class _OSThreadKey:
    __slots__ = ("__weakref__",)


def _owner():
    t = current()
    if t is not None:
        return t
    key = getattr(_os_thread_keys, "key", None)
    if key is None:
        key = _os_thread_keys.key = _OSThreadKey()
    return key


class local:
    """Per-thread attributes.  See the module documentation."""

    __slots__ = ("_local__dicts", "_local__args", "__weakref__")

    def __new__(cls, *args, **kwargs):
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        dicts = weakref.WeakKeyDictionary()
        object.__setattr__(self, "_local__dicts", dicts)
        object.__setattr__(self, "_local__args", (args, kwargs))
        # The creating thread's dict exists before the constructor call runs
        # __init__, so that __init__ runs once there, as in threading.local.
        _new_dict(dicts, _owner())
        return self

    def _local__dict(self):
        dicts = object.__getattribute__(self, "_local__dicts")
        owner = _owner()
        d = dicts.get(owner)
        if d is None:
            d = _new_dict(dicts, owner)
            if type(self).__init__ is not object.__init__:
                args, kwargs = object.__getattribute__(self, "_local__args")
                type(self).__init__(self, *args, **kwargs)
        return d

    def __getattribute__(self, name):
        if name in ("__class__", "__dict__") or name.startswith("_local__"):
            if name == "__dict__":
                return object.__getattribute__(self, "_local__dict")()
            return object.__getattribute__(self, name)
        d = object.__getattribute__(self, "_local__dict")()
        if name in d:
            return d[name]
        attr = getattr(type(self), name, _missing)
        if attr is _missing:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if hasattr(attr, "__get__"):
            return attr.__get__(self, type(self))
        return attr

    def __setattr__(self, name, value):
        if name == "__dict__":
            raise AttributeError("'local' object attribute '__dict__' is read-only")
        desc = getattr(type(self), name, None)
        if desc is not None and hasattr(desc, "__set__"):
            return desc.__set__(self, value)
        object.__getattribute__(self, "_local__dict")()[name] = value

    def __delattr__(self, name):
        d = object.__getattribute__(self, "_local__dict")()
        try:
            del d[name]
        except KeyError:
            raise AttributeError(name) from None


_missing = object()


def _new_dict(dicts, owner):
    """Make ``owner``'s dict in ``dicts``; a green thread's goes when it finishes.

    Dropping it when the thread finishes, rather than only when the thread
    object is collected, frees a value that refers back to its thread (which
    would otherwise keep the thread, and so itself, alive for good).
    """
    d = dicts[owner] = {}
    if not isinstance(owner, _OSThreadKey):
        owner.add_done_callback(_Drop(weakref.ref(dicts)))
    return d


class _Drop:
    """Done-callback: forget the finished thread's dict in one local's store."""

    __slots__ = ("_dicts",)

    def __init__(self, dicts_ref):
        self._dicts = dicts_ref

    def __call__(self, thread):
        dicts = self._dicts()
        if dicts is not None:
            dicts.pop(thread, None)
