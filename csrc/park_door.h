/*
 * park_door.h - the native park door (csrc/park_py.c) as C functions, for
 * the other native parts built on it (csrc/event_py.c, csrc/park_lock.c,
 * csrc/io_py.c).  Not part of
 * the cffi interface: these run holding the GIL, and only once
 * lwp_park_py_init() has succeeded.
 */
#ifndef LWP_PARK_DOOR_H
#define LWP_PARK_DOOR_H

#include <Python.h>
#include <time.h>

/* time.monotonic()'s clock on Linux, in seconds. */
static inline double lwp_monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* park._tls.lwp, borrowed; NULL for None (park.set_lwp() keeps both). */
PyObject *lwp_park_this_lwp(void);

/* park.waiter(): a green waiter for a green thread, else park.OSWaiter(). */
PyObject *lwp_park_waiter(void);

/* w.wake(value) and w.wait(timeout) of a waiter lwp_park_waiter() made:
 * a green waiter's by a C call, an OSWaiter's through its method. */
PyObject *lwp_park_wake(PyObject *w, PyObject *value);
PyObject *lwp_park_wait(PyObject *w, PyObject *timeout);

/* park.TIMED_OUT, borrowed. */
PyObject *lwp_park_timed_out(void);

/* Match positional and keyword arguments to names[0..max): out[] holds the
 * defaults on entry, borrowed references on return.  0, or -1 (TypeError
 * naming fname). */
int lwp_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames, const char *const *names, Py_ssize_t max,
                   PyObject **out);

#endif /* LWP_PARK_DOOR_H */
