/*
 * activations_py.c - see activations_py.h: the hot-path entry points of the
 * activation pool as builtins that keep the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "activations.h"
#include "activations_py.h"

#if defined(__x86_64__) || defined(__i386__)
#  define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#  define CPU_RELAX() __asm__ __volatile__("yield")
#else
#  define CPU_RELAX() ((void)0)
#endif

/* The longest _spin() accepts: it holds the GIL all along. */
#define MAX_SPIN_NS 1000000

static int parse_ptr(PyObject *obj, void **out)
{
    uintptr_t p = (uintptr_t)PyLong_AsUnsignedLongLong(obj);

    if (p == (uintptr_t)-1 && PyErr_Occurred())
        return -1;
    if (p == 0) {
        PyErr_SetString(PyExc_ValueError, "NULL pointer");
        return -1;
    }
    *out = (void *)p;
    return 0;
}

static int parse_ptrs(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t n,
                      const char *name, void **out)
{
    Py_ssize_t i;

    if (nargs != n) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, n, nargs);
        return -1;
    }
    for (i = 0; i < n; i++)
        if (parse_ptr(args[i], &out[i]) < 0)
            return -1;
    return 0;
}

static PyObject *py_submit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *p[3];

    (void)module;
    if (parse_ptrs(args, nargs, 3, "_submit", p) < 0)
        return NULL;
    return PyLong_FromLong(lwp_submit(p[0], p[1], p[2]) == 0 ? 0 : errno);
}

static PyObject *py_drain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *p[2];
    long max;

    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "_drain() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (parse_ptrs(args, 2, 2, "_drain", p) < 0)
        return NULL;
    max = PyLong_AsLong(args[2]);
    if (max == -1 && PyErr_Occurred())
        return NULL;
    if (max < 0 || max > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "_drain(): max out of range");
        return NULL;
    }
    return PyLong_FromLong(lwp_cq_drain(p[0], p[1], (int)max));
}

static PyObject *py_inflight(PyObject *module, PyObject *cq)
{
    void *p;

    (void)module;
    if (parse_ptr(cq, &p) < 0)
        return NULL;
    return PyLong_FromLong(lwp_cq_inflight(p));
}

static PyObject *py_ready(PyObject *module, PyObject *cq)
{
    void *p;

    (void)module;
    if (parse_ptr(cq, &p) < 0)
        return NULL;
    return PyLong_FromLong(lwp_cq_ready(p));
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static PyObject *py_spin(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *cq;
    int ready;
    long wakefd;
    long long ns;
    int64_t deadline;
    uint64_t count;
    ssize_t n;

    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "_spin() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (parse_ptr(args[0], &cq) < 0)
        return NULL;
    wakefd = PyLong_AsLong(args[1]);
    if (wakefd == -1 && PyErr_Occurred())
        return NULL;
    if (wakefd < 0 || wakefd > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "_spin(): bad file descriptor");
        return NULL;
    }
    ns = PyLong_AsLongLong(args[2]);
    if (ns == -1 && PyErr_Occurred())
        return NULL;
    if (ns < 0 || ns > MAX_SPIN_NS) {
        PyErr_Format(PyExc_ValueError, "_spin(): ns must be 0 to %d", MAX_SPIN_NS);
        return NULL;
    }
    deadline = now_ns() + ns;
    while ((ready = lwp_cq_ready(cq)) == 0 && now_ns() < deadline) {
        int i;

        for (i = 0; i < 64 && (ready = lwp_cq_ready(cq)) == 0; i++)
            CPU_RELAX();
        if (ready)
            break;
    }
    if (ready) {
        /* The caller drains next: reset first, or a completion pushed between
         * its drain and a later reset would go unnoticed (activations.h).
         * EAGAIN (nothing to reset) is the only expected failure. */
        do {
            n = read((int)wakefd, &count, sizeof count);
        } while (n < 0 && errno == EINTR);
    }
    return PyLong_FromLong(ready);
}

static PyMethodDef methods[] = {
    {"_submit", (PyCFunction)(void (*)(void))py_submit, METH_FASTCALL,
     "_submit(pool, cq, req) -> 0, or errno (ESHUTDOWN) if the pool refused req"},
    {"_drain", (PyCFunction)(void (*)(void))py_drain, METH_FASTCALL,
     "_drain(cq, out, max) -> number of finished requests stored into out"},
    {"_inflight", py_inflight, METH_O,
     "_inflight(cq) -> requests for cq that no worker has finished"},
    {"_ready", py_ready, METH_O,
     "_ready(cq) -> finished requests waiting in cq"},
    {"_spin", (PyCFunction)(void (*)(void))py_spin, METH_FASTCALL,
     "_spin(cq, wakefd, ns) -> _ready(cq) after waiting up to ns for it; wakefd reset if > 0"},
    {NULL, NULL, 0, NULL},
};

int lwp_activations_py_init(const char *module_name)
{
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released it around this call */
    PyObject *name, *module = NULL;
    int rc = -1;

    name = PyUnicode_FromString(module_name);
    if (name != NULL) {
        module = PyImport_GetModule(name);
        if (module == NULL && !PyErr_Occurred())
            PyErr_Format(PyExc_ImportError, "module %s is not imported", module_name);
        Py_DECREF(name);
    }
    if (module != NULL && PyModule_AddFunctions(module, methods) == 0)
        rc = 0;
    if (rc != 0)
        PyErr_WriteUnraisable(NULL);
    Py_XDECREF(module);
    PyGILState_Release(gil);
    return rc;
}
