/*
 * park_py.h - the hot path of the park/wake door (lwp/_core/park.py) as
 * builtins that keep the GIL: a green thread's waiter, its wake-up and its
 * park with the direct switch of LWP.park_current.
 *
 * lwp/_core/park.py holds the reference: the pure-Python waiter() and
 * GreenWaiter, which the names below mirror call for call, with the same
 * locking (the owning LWP's _lock) and the same guarantees.  What the native
 * version saves is the interpretation, and the calls through Python's call
 * protocol: the LWP's lock is a _NativeLock (csrc/park_lock.h) that the C
 * takes directly, and the waiter's wake and wait are C functions too
 * (csrc/park_door.h) for the native lwp.Event (csrc/event_py.h).
 * lwp_park_py_init() installs into the Python module named by its argument
 * (lwp._core.park, fully imported but for the call):
 *
 *   _native_waiter()     -> as park.waiter(): a _NativeGreenWaiter for a
 *                           green thread, else park.OSWaiter()
 *   _native_set_lwp(lwp)  the calling kernel thread's LWP (or None), which
 *                        park.set_lwp() gives as it sets _tls.lwp: the C
 *                        reads it from a C thread-local
 *   _NativeGreenWaiter   the type; instances have .thread and .outcome as
 *                        GreenWaiter's slots, .late (None), and the methods
 *                        wake(value=None, exc=None, timeout=-1) and
 *                        wait(timeout=None) of GreenWaiter
 *   _NativeLock          the type of the LWPs' locks (park.new_lock)
 *
 * It reads from that module TIMED_OUT, OSWaiter and the thread states
 * DONE, PARKED, RUNNABLE and RUNNING, and switches greenlets with
 * greenlet.switch, as the reference does.  Anything off the hot path (a
 * timeout's timer, a park that must pass through the hub, a wake-up from
 * another kernel thread) is done by calling the same Python methods the
 * reference calls.
 */
#ifndef LWP_PARK_PY_H
#define LWP_PARK_PY_H

#ifdef __cplusplus
extern "C" {
#endif

/* LWP_CDEF_BEGIN - lwp/_native_build.py hands this part to cffi verbatim. */

/* Add the names listed above to the already imported module
 * sys.modules[module_name].  0, or -1: on PyPy (no CPython C API), or on
 * failure with the Python error printed as unraisable.  Takes the GIL
 * itself. */
int lwp_park_py_init(const char *module_name);

/* LWP_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* LWP_PARK_PY_H */
