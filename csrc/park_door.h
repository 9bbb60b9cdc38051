/*
 * park_door.h - the park/wake door of park_py.c for lwp's other C (io_py.c):
 * park._tls.lwp, and the same calls as park.waiter(), w.wait(timeout) and
 * w.wake(value), made
 * without a Python-level call when the waiter is the native one.  The caller
 * holds the GIL; lwp_park_py_init() has succeeded.
 */
#ifndef LWP_PARK_DOOR_H
#define LWP_PARK_DOOR_H

#include <Python.h>

/* park._tls.lwp, borrowed; NULL for None (see _native_set_lwp). */
PyObject *lwp_park_this_lwp(void);

/* park.waiter(): a new reference, or NULL with an exception set. */
PyObject *lwp_park_waiter(void);

/* w.wait(timeout), for any waiter (timeout: None or seconds). */
PyObject *lwp_park_wait(PyObject *w, PyObject *timeout);

/* w.wake(value), for any waiter. */
PyObject *lwp_park_wake(PyObject *w, PyObject *value);

#endif /* LWP_PARK_DOOR_H */
