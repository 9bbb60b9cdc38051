/*
 * park_lock.h - the lock of an LWP (LWP._lock) when the native park door is
 * on: a kernel lock that the door's C takes directly, with no method call
 * and no argument parsing, and that Python code uses as a _thread.lock:
 *
 *   acquire(blocking=True, timeout=-1) -> bool, release(), locked(),
 *   `with`, repr
 *
 * with _thread.lock's argument checks, errors and interruptibility: a
 * signal whose handler raises interrupts a blocking acquire.  Never held
 * across a switch or while blocking: an LWP's lock guards a few fields for
 * a few instructions.  After fork(), lwp/_core/fork.py gives each LWP a
 * new one.  Not part of the cffi interface: lwp_park_py_init()
 * (csrc/park_py.c) installs the type as lwp._core.park._NativeLock.
 */
#ifndef LWP_PARK_LOCK_H
#define LWP_PARK_LOCK_H

#include <Python.h>

/* The type, made once (new reference); NULL on error. */
PyTypeObject *lwp_lock_type_new(void);

/* 1 if obj is such a lock; the calls below take only those. */
int lwp_lock_check(PyObject *obj);

/* Acquire, waiting at most timeout seconds (< 0: no limit): 1 if acquired,
 * 0 if not, -1 with an exception set (a signal handler raised).  Tries
 * without waiting first, then waits with the GIL released. */
int lwp_lock_acquire(PyObject *lock, double timeout);

/* Release: 0, or -1 with RuntimeError if it was not locked. */
int lwp_lock_release(PyObject *lock);

#endif /* LWP_PARK_LOCK_H */
