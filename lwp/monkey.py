"""Make the standard library cooperative: ``lwp.monkey.patch_all()``.

After patching, code written for the standard library (``urllib.request``,
``http.client``, ``smtplib``, ``socketserver``, ``requests``…) waits the lwp
way: a green thread that blocks on a socket, a sleep, a lock or a queue parks,
and its LWP runs the others.  Call it first thing, before importing the code
to patch::

    import lwp.monkey
    lwp.monkey.patch_all()

Each ``patch_<module>()`` replaces, in the standard module, every public name
for which the lwp module of the same name (``lwp.socket``, ``lwp.select``…)
has its own version.  What ``threading`` gets: ``Lock``, ``RLock``,
``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Barrier`` and
``local`` become lwp's, which work for green threads *and* real OS threads;
a green thread's ``Thread.join`` of a kernel thread parks (an activation
waits).  ``threading.Thread`` stays a real kernel thread unless ``threads=True`` is
given to :func:`patch_all` or :func:`patch_threading`: then every
``threading.Thread`` (subclasses defined before the patch included) is a green
thread, and so are the workers of ``concurrent.futures.ThreadPoolExecutor``
and ``socketserver.ThreadingMixIn``.  :class:`KernelThread` is the way to a
kernel thread then.

Patching late, learned from gevent's pain: a module that did
``from socket import socket`` before the patch holds the original; every such
module-level reference is rebound too, so it still works.  What cannot be
rebound is a class that already *subclasses* an original (``class
MySocket(socket.socket)`` defined before the patch): for those a
:class:`MonkeyPatchWarning` names the class and the module to import later.

``get_original(module, name)`` returns what was there before; ``unpatch_all()``
restores everything (used by the tests).
"""

import functools
import importlib
import sys
import warnings

from ._core.lwp import KernelThread

__all__ = ["KernelThread", "MonkeyPatchWarning", "available", "get_original", "is_patched", "patch_all", "patch_module",
           "patch_os", "patch_queue", "patch_select", "patch_selectors", "patch_socket",
           "patch_ssl", "patch_subprocess", "patch_threading", "patch_time", "unpatch_all"]


class MonkeyPatchWarning(RuntimeWarning):
    """Something imported before patching keeps the blocking original."""


_originals = {}  # (module name, attribute) -> original object
_rebound = []    # (namespace dict, key, original) rebound in other modules


def _replacements(module_name, threads=False):
    """{name: cooperative object} for a standard module."""
    import lwp

    if module_name == "time":
        return {"sleep": lwp.sleep}
    if module_name == "threading":
        names = {name: getattr(lwp, name) for name in (
            "Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier",
            "local")}
        names.update(_cooperative_join())
        if threads:
            names.update(_green_threading())
        return names
    ours = importlib.import_module(f"lwp.{module_name}")
    std = importlib.import_module(module_name)
    names = getattr(ours, "__all__", None) or [n for n in dir(ours) if not n.startswith("_")]
    return {n: getattr(ours, n) for n in names
            if hasattr(std, n) and getattr(ours, n) is not getattr(std, n)}


def _getattr(module, name):
    """``module.name``, where ``name`` may be ``Class.attribute``."""
    owner, _, attr = name.rpartition(".")
    return getattr(getattr(module, owner) if owner else module, attr)


def _setattr(module, name, value):
    owner, _, attr = name.rpartition(".")
    setattr(getattr(module, owner) if owner else module, attr, value)


def patch_module(module_name):
    """Patch one standard module (``"socket"``, ``"time"``…); idempotent.

    Returns the names replaced.  Warns (:class:`MonkeyPatchWarning`) about
    classes elsewhere that subclass an original and so stay blocking.
    """
    names, suspects = _patch(module_name)
    _warn_about(suspects)
    return names


def _patch(module_name, threads=False):
    std = importlib.import_module(module_name)
    replaced = {}
    for name, new in _replacements(module_name, threads).items():
        key = (module_name, name)
        if key not in _originals:
            _originals[key] = _getattr(std, name)
        if _getattr(std, name) is not new:
            _setattr(std, name, new)
        replaced[_originals[key]] = new
    suspects = _rebind_elsewhere(replaced, module_name)
    return sorted(n for (m, n) in _originals if m == module_name), suspects


def _rebind_elsewhere(replaced, module_name):
    """Rebind ``from module import name`` copies in other modules.

    Returns ``(module name, attribute, class, original)`` for each class defined
    elsewhere that subclasses a replaced original: those cannot be rebound.
    """
    by_id = {id(old): new for old, new in replaced.items() if old is not new}
    old_classes = tuple(old for old in replaced if isinstance(old, type))
    suspects = []
    for modname, mod in list(sys.modules.items()):
        namespace = getattr(mod, "__dict__", None)
        if modname == module_name or modname.split(".")[0] == "lwp" or not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            new = by_id.get(id(value))
            if new is not None:
                namespace[key] = new
                _rebound.append((namespace, key, value))
            elif (old_classes and isinstance(value, type) and value.__module__ == modname
                  and issubclass(value, old_classes)):
                base = next(c for c in old_classes if issubclass(value, c))
                suspects.append((modname, key, value, f"{module_name}.{base.__name__}"))
    return suspects


# Subclasses of an original that are right to keep it: asyncio's running-loop
# holder is per kernel thread by design (an event loop lives in one).
_MEANT_PER_KERNEL_THREAD = {("asyncio.events", "_RunningLoop")}


def _warn_about(suspects):
    for modname, key, cls, original in suspects:
        module = sys.modules.get(modname)
        if getattr(module, key, None) is not cls or (modname, key) in _MEANT_PER_KERNEL_THREAD:
            continue  # replaced meanwhile (patch_ssl replaces ssl.SSLSocket, say), or meant
        effect = ("keeps one value per kernel thread, shared by the green threads of an LWP"
                  if original in ("threading.local", "threading._local") else "it will block its LWP")
        warnings.warn(
            f"{modname}.{key} subclasses {original}, which it captured before lwp.monkey "
            f"patched it; {effect}. Patch before importing {modname}.",
            MonkeyPatchWarning, stacklevel=3)


def patch_time():
    """``time.sleep`` parks the green thread."""
    return patch_module("time")


def patch_threading(threads=False):
    """``threading`` locks, Events, Conditions, Semaphores, Barriers and ``local``.

    With ``threads=True``, ``threading.Thread`` (and ``_thread.start_new_thread``)
    start green threads too: see :ref:`green-threading`.  Patching again
    without it keeps them green.
    """
    names, suspects = _patch("threading", threads)
    _warn_about(suspects)
    return names


def patch_queue():
    """``queue.Queue`` and friends."""
    return patch_module("queue")


def patch_socket():
    """``socket.socket``, ``create_connection``, name resolution…"""
    return patch_module("socket")


def patch_select():
    return patch_module("select")


def patch_selectors():
    return patch_module("selectors")


def patch_ssl():
    return patch_module("ssl")


def patch_subprocess():
    return patch_module("subprocess")


def patch_os():
    """``os.read``/``os.write`` on pipes and sockets."""
    return patch_module("os")


_ALL = ("time", "threading", "queue", "socket", "select", "selectors", "ssl", "subprocess", "os")
_SPECIAL = ("time", "threading")  # patched from lwp's core, not from an lwp.<module>


def available():
    """The standard modules lwp has a cooperative version of, in patching order."""
    import importlib.util

    return [m for m in _ALL if m in _SPECIAL or importlib.util.find_spec(f"lwp.{m}") is not None]


def patch_all(threads=False):
    """Patch every module in :func:`available`; returns {module: names replaced}.

    ``threads=True``: ``threading.Thread`` starts green threads (see
    :func:`patch_threading`).
    """
    done, suspects = {}, []
    for name in available():
        done[name], found = _patch(name, threads and name == "threading")
        suspects.extend(found)
    _warn_about(suspects)
    return done


# -- threading.Thread as a green thread (patch_threading(threads=True)) ----------------------
#
# The threading module is left as it is and its few hooks into _thread are
# replaced, as gevent does: so every Thread subclass, defined before or after
# patching, starts green threads, and current_thread(), enumerate(), join(),
# is_alive(), daemon and the joining of non-daemon threads at exit keep
# working through threading's own code.  The hooks:
#   _start_new_thread  spawns a green thread (a KernelThread still gets a kernel one);
#   get_ident          the green thread's ident inside one, so _active maps it to its Thread;
#   _set_sentinel      the lock threading holds while a thread runs, which the interpreter
#                      releases when a kernel thread dies: here an lwp Lock released when the
#                      green thread finishes (join, is_alive and _shutdown wait on it);
#   _DummyThread       current_thread() in a green thread threading did not start (lwp.spawn):
#                      it leaves threading._active when its green thread ends, where the
#                      standard one would stay for ever;
#   excepthook         quiet about lwp.Cancelled, as about SystemExit.

_join_hooks = {}  # made once, as _green_hooks below


def _cooperative_join():
    """``Thread.join`` of a kernel thread, called from a green thread, waits on an
    activation: threading waits for the interpreter's C lock of the thread, which
    would block the LWP until the thread ends."""
    import threading

    if _join_hooks or not hasattr(threading.Thread, "_wait_for_tstate_lock"):
        return _join_hooks  # Python 3.13 joins through _ThreadHandle: left as it is
    from ._core.activation import blocking
    from ._core.park import current

    kernel_wait = get_original("threading", "Thread._wait_for_tstate_lock")
    kernel_lock = type(get_original("threading", "_allocate_lock")())

    def _wait_for_tstate_lock(self, block=True, timeout=-1):
        if block and type(self._tstate_lock) is kernel_lock and current() is not None:
            return blocking(kernel_wait, self, block, timeout)
        return kernel_wait(self, block, timeout)

    _join_hooks["Thread._wait_for_tstate_lock"] = _wait_for_tstate_lock
    return _join_hooks


_green_hooks = {}  # made once: patching twice must not make a second set


def _green_threading():
    import _thread
    import threading

    if _green_hooks:
        return _green_hooks
    if not hasattr(threading, "_set_sentinel"):
        raise NotImplementedError(
            "patch_threading(threads=True) supports Python 3.10 to 3.12; from 3.13 threading "
            "joins threads through _thread._ThreadHandle, which lwp does not replace yet")
    from ._core.exceptions import Cancelled
    from ._core.park import current
    from ._core.scheduler import spawn
    from .sync import Lock

    start_kernel_thread = get_original("threading", "_start_new_thread")
    kernel_ident = get_original("threading", "get_ident")
    kernel_sentinel = get_original("threading", "_set_sentinel")
    StdDummyThread = get_original("threading", "_DummyThread")

    def start_new_thread(function, args, kwargs=None, /):
        """As ``_thread.start_new_thread``, in a green thread; returns its ident."""
        owner = getattr(function, "__self__", None)
        if isinstance(owner, KernelThread):
            return start_kernel_thread(function, args, *(() if kwargs is None else (kwargs,)))
        if not callable(function):
            raise TypeError("first arg must be callable")
        if not isinstance(args, tuple):
            raise TypeError("2nd arg must be a tuple")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError("optional 3rd arg must be a dictionary")
        name = owner.name if isinstance(owner, threading.Thread) else None
        try:  # spawn's own keywords (name, bound) must not catch the function's
            t = spawn(functools.partial(function, *args, **(kwargs or {})), name=name)
        except RuntimeError as e:  # the scheduler is shutting down
            raise _thread.error(f"can't start new thread: {e}") from None
        return t.ident

    def get_ident():
        """The calling green thread's ident, else the kernel thread's."""
        t = current()
        return t.ident if t is not None else kernel_ident()

    def set_sentinel():
        t = current()
        if t is None:
            return kernel_sentinel()
        lock = Lock()
        t.add_done_callback(lambda _t: lock.release())
        return lock

    class _DummyThread(StdDummyThread):
        """threading's stand-in for a thread it did not start; for a green
        thread, it is forgotten when the thread ends."""

        def __init__(self):
            super().__init__()
            self._green = current()
            if self._green is not None:
                self._green.add_done_callback(self._forget)

        def _forget(self, _t):
            with threading._active_limbo_lock:
                if threading._active.get(self._ident) is self:
                    del threading._active[self._ident]

        def is_alive(self):
            return self._green is None or not self._green.done()

    def excepthook(args, /):
        """threading's excepthook, silent for :class:`lwp.Cancelled` as for
        SystemExit: a green Thread still running when ``lwp.run`` ends is
        cancelled, which is no error to print."""
        if args.exc_type is not None and issubclass(args.exc_type, Cancelled):
            return
        get_original("threading", "excepthook")(args)  # the hook of when it was patched

    _green_hooks.update({"_start_new_thread": start_new_thread, "get_ident": get_ident,
                         "_set_sentinel": set_sentinel, "_DummyThread": _DummyThread,
                         "excepthook": excepthook})
    return _green_hooks


def is_patched(module_name, name=None):
    """True if ``module_name`` (or its attribute ``name``) is patched."""
    return any(m == module_name and (name is None or n == name) for m, n in _originals)


def get_original(module_name, name):
    """The object ``module_name.name`` held before patching (or holds now, if unpatched)."""
    key = (module_name, name)
    if key in _originals:
        return _originals[key]
    return _getattr(importlib.import_module(module_name), name)


def unpatch_all():
    """Put every original back, in the standard modules and where it was rebound."""
    for (module_name, name), original in _originals.items():
        _setattr(sys.modules[module_name], name, original)
    for namespace, key, original in reversed(_rebound):
        namespace[key] = original
    _originals.clear()
    _rebound.clear()
