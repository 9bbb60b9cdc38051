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
#include "builtins.h"

#ifdef PYPY_VERSION

/* No CPython C API: lwp/_core/native.py falls back to the cffi functions. */
int lwp_activations_py_init(const char *module_name)
{
    (void)module_name;
    return -1;
}

#else /* CPython */

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

static int check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t n)
{
    if (nargs == n)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, n, nargs);
    return -1;
}

/* An integer argument within [lo, hi]; ValueError names it otherwise. */
static int parse_int(PyObject *obj, long long lo, long long hi, const char *what, long long *out)
{
    long long v = PyLong_AsLongLong(obj);

    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s must be %lld to %lld, not %lld", what, lo, hi, v);
        return -1;
    }
    *out = v;
    return 0;
}

/* The first n arguments, all pointers. */
static int parse_ptrs(PyObject *const *args, Py_ssize_t n, void **out)
{
    Py_ssize_t i;

    for (i = 0; i < n; i++)
        if (parse_ptr(args[i], &out[i]) < 0)
            return -1;
    return 0;
}

static PyObject *py_submit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *p[3];

    (void)module;
    if (check_nargs("_submit", nargs, 3) < 0 || parse_ptrs(args, 3, p) < 0)
        return NULL;
    return PyLong_FromLong(lwp_submit(p[0], p[1], p[2]) == 0 ? 0 : errno);
}

static PyObject *py_drain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *p[2];
    long long max;

    (void)module;
    if (check_nargs("_drain", nargs, 3) < 0 || parse_ptrs(args, 2, p) < 0
            || parse_int(args[2], 0, INT32_MAX, "_drain(): max", &max) < 0)
        return NULL;
    return PyLong_FromLong(lwp_cq_drain(p[0], p[1], (int)max));
}

static PyObject *cq_count(PyObject *cq, int (*count)(lwp_cq *))
{
    void *p;

    if (parse_ptr(cq, &p) < 0)
        return NULL;
    return PyLong_FromLong(count(p));
}

static PyObject *py_inflight(PyObject *module, PyObject *cq)
{
    (void)module;
    return cq_count(cq, lwp_cq_inflight);
}

static PyObject *py_ready(PyObject *module, PyObject *cq)
{
    (void)module;
    return cq_count(cq, lwp_cq_ready);
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
    long long wakefd, ns;
    int64_t deadline;
    uint64_t count;
    ssize_t n;

    (void)module;
    if (check_nargs("_spin", nargs, 3) < 0 || parse_ptr(args[0], &cq) < 0
            || parse_int(args[1], 0, INT32_MAX, "_spin(): wakefd", &wakefd) < 0
            || parse_int(args[2], 0, MAX_SPIN_NS, "_spin(): ns", &ns) < 0)
        return NULL;
    deadline = now_ns() + ns;
    while ((ready = lwp_cq_ready(cq)) == 0 && now_ns() < deadline) {
        int i;

        for (i = 0; i < 16; i++)  /* a little less than a microsecond */
            CPU_RELAX();
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

PyObject *lwp_imported_module(const char *module_name)
{
    PyObject *name = PyUnicode_FromString(module_name), *module = NULL;

    if (name != NULL) {
        module = PyImport_GetModule(name);
        if (module == NULL && !PyErr_Occurred())
            PyErr_Format(PyExc_ImportError, "module %s is not imported", module_name);
        Py_DECREF(name);
    }
    return module;
}

int lwp_add_builtins(const char *module_name, PyMethodDef *defs)
{
    PyObject *module = lwp_imported_module(module_name);
    int rc = -1;

    if (module != NULL && PyModule_AddFunctions(module, defs) == 0)
        rc = 0;
    if (rc != 0)
        PyErr_WriteUnraisable(NULL);
    Py_XDECREF(module);
    return rc;
}

int lwp_activations_py_init(const char *module_name)
{
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released it around this call */
    int rc = lwp_add_builtins(module_name, methods);

    PyGILState_Release(gil);
    return rc;
}

#endif /* CPython */
