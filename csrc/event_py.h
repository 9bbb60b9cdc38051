/*
 * event_py.h - lwp.sync.Event in C, over the native park door.
 *
 * lwp/sync.py's Event class holds the reference; the type below mirrors it
 * method for method with the same guarantees (those of threading.Event):
 *
 *   _NativeEvent()   is_set()/isSet(), set(), clear(), wait(timeout=None),
 *                    _at_fork_reinit(), repr, and _waiters (read-only: the
 *                    list of waiters, as the reference's attribute)
 *
 * What it saves is the interpretation of set, wait and clear, and the
 * reference's internal mutex: the flag and the waiter list are only read
 * and written by C that holds the GIL and neither releases it nor runs
 * Python code in between, so the GIL is that mutex.  A green thread's waiter
 * is woken and waited on through park_door.h; an OS thread's park.OSWaiter
 * through its Python methods.  The type may be subclassed.
 *
 * lwp_event_py_init() installs it into the imported Python module named by
 * its argument (lwp.sync) as _NativeEvent, once lwp_park_py_init() has
 * succeeded.  It needs the GIL as that mutex: on a free-threaded build, as
 * on PyPy, it returns -1 and the reference stays in use.
 */
#ifndef LWP_EVENT_PY_H
#define LWP_EVENT_PY_H

#ifdef __cplusplus
extern "C" {
#endif

/* LWP_CDEF_BEGIN - lwp/_native_build.py hands this part to cffi verbatim. */

/* 0, or -1: unsupported here (no error printed), or on failure with the
 * Python error printed as unraisable.  Takes the GIL itself. */
int lwp_event_py_init(const char *module_name);

/* LWP_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* LWP_EVENT_PY_H */
