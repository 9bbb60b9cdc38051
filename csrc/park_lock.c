/*
 * park_lock.c - see park_lock.h: the LWP's lock, taken directly by the C.
 *
 * A POSIX semaphore of value 1, as CPython's own locks are on Linux, used
 * directly: PyThread_acquire_lock_timed() reads the clock to compute a
 * deadline even when it is not to wait, which costs more than the
 * sem_trywait() that takes a free lock.  The Python methods follow
 * CPython's _thread.lock (Modules/_threadmodule.c of 3.11): the same
 * arguments, checks and messages, and the same retry of an interrupted wait
 * after running the signal handlers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "park_lock.h"

#ifndef PYPY_VERSION

#include <errno.h>
#include <math.h>
#include <semaphore.h>
#include <time.h>

#include "park_door.h"

typedef struct {
    PyObject_HEAD
    sem_t sem;    /* 1: free, 0: held */
    char locked;  /* written under the GIL by whoever takes or frees it */
} lock;

static PyTypeObject *lock_type;

int lwp_lock_check(PyObject *obj)
{
    return Py_IS_TYPE(obj, lock_type);
}

int lwp_lock_acquire(PyObject *obj, double timeout)
{
    lock *self = (lock *)obj;
    struct timespec deadline;
    int r, err = 0;

    r = sem_trywait(&self->sem);
    if (r != 0 && timeout != 0) {
        if (timeout > 0) {
            double whole, fraction = modf(timeout, &whole);

            clock_gettime(CLOCK_MONOTONIC, &deadline);
            deadline.tv_sec += (time_t)whole;
            deadline.tv_nsec += (long)(fraction * 1e9);
            if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec += 1;
                deadline.tv_nsec -= 1000000000L;
            }
        }
        for (;;) {
            Py_BEGIN_ALLOW_THREADS
            r = timeout < 0 ? sem_wait(&self->sem)
                : sem_clockwait(&self->sem, CLOCK_MONOTONIC, &deadline);
            err = errno;
            Py_END_ALLOW_THREADS
            if (r == 0 || err != EINTR)
                break;
            if (Py_MakePendingCalls() < 0)  /* a signal handler raised */
                return -1;
        }
        if (r != 0 && err != ETIMEDOUT) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    if (r != 0)
        return 0;
    self->locked = 1;
    return 1;
}

int lwp_lock_release(PyObject *obj)
{
    lock *self = (lock *)obj;

    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return -1;
    }
    self->locked = 0;
    sem_post(&self->sem);
    return 0;
}

/* -- the Python methods ----------------------------------------------------- */

/* acquire(blocking=True, timeout=-1) */
static PyObject *lock_py_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    static const char *const names[] = {"blocking", "timeout"};
    PyObject *argv[2] = {Py_True, NULL};
    double timeout = -1;
    int blocking, got;

    if (nargs != 0 || kwnames != NULL) {
        if (lwp_parse_args("acquire", args, nargs, kwnames, names, 2, argv) < 0)
            return NULL;
        if ((blocking = PyObject_IsTrue(argv[0])) < 0)
            return NULL;
        if (argv[1] != NULL) {
            timeout = PyFloat_AsDouble(argv[1]);
            if (timeout == -1 && PyErr_Occurred())
                return NULL;
        }
        if (!blocking && timeout != -1) {
            PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
            return NULL;
        }
        if (timeout < 0 && timeout != -1) {
            PyErr_SetString(PyExc_ValueError, "timeout value must be positive");
            return NULL;
        }
        if (timeout > (double)PY_TIMEOUT_MAX * 1e-6) {  /* _thread.TIMEOUT_MAX */
            PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
            return NULL;
        }
        if (!blocking)
            timeout = 0;
    }
    got = lwp_lock_acquire(self, timeout);
    return got < 0 ? NULL : PyBool_FromLong(got);
}

static PyObject *lock_py_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return lwp_lock_acquire(self, -1) < 0 ? NULL : Py_NewRef(Py_True);
}

static PyObject *lock_py_release(PyObject *self, PyObject *unused)
{
    (void)unused;
    return lwp_lock_release(self) < 0 ? NULL : Py_NewRef(Py_None);
}

/* __exit__(*exc_info) */
static PyObject *lock_py_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    return lock_py_release(self, NULL);
}

static PyObject *lock_py_locked(PyObject *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(((lock *)self)->locked);
}

static PyObject *lock_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<%s %s object at %p>", ((lock *)self)->locked ? "locked" : "unlocked",
                                Py_TYPE(self)->tp_name, self);
}

static PyObject *lock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    lock *self;

    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "_NativeLock() takes no arguments");
        return NULL;
    }
    self = (lock *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->locked = 0;
    sem_init(&self->sem, 0, 1);  /* cannot fail: not shared, value 1 */
    return (PyObject *)self;
}

static void lock_dealloc(PyObject *obj)
{
    lock *self = (lock *)obj;
    PyTypeObject *type = Py_TYPE(obj);

    sem_destroy(&self->sem);
    type->tp_free(obj);
    Py_DECREF(type);
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_py_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, /, blocking=True, timeout=-1)\n--\n\nAs _thread.lock.acquire."},
    {"release", lock_py_release, METH_NOARGS, "release($self, /)\n--\n\nAs _thread.lock.release."},
    {"locked", lock_py_locked, METH_NOARGS, "locked($self, /)\n--\n\nAs _thread.lock.locked."},
    {"__enter__", lock_py_enter, METH_NOARGS, "__enter__($self, /)\n--\n\nacquire()"},
    {"__exit__", (PyCFunction)(void (*)(void))lock_py_exit, METH_FASTCALL,
     "__exit__($self, /, *exc_info)\n--\n\nrelease()"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot lock_slots[] = {
    {Py_tp_doc, "The lock of an LWP under the native park door (csrc/park_lock.h)."},
    {Py_tp_new, lock_new},
    {Py_tp_dealloc, lock_dealloc},
    {Py_tp_repr, lock_repr},
    {Py_tp_methods, lock_methods},
    {0, NULL},
};

static PyType_Spec lock_spec = {
    "lwp._core.park._NativeLock",
    sizeof(lock),
    0,
    Py_TPFLAGS_DEFAULT,
    lock_slots,
};

PyTypeObject *lwp_lock_type_new(void)
{
    if (lock_type == NULL)
        lock_type = (PyTypeObject *)PyType_FromSpec(&lock_spec);
    Py_XINCREF(lock_type);
    return lock_type;
}

#endif /* PYPY_VERSION */
