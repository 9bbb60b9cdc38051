/*
 * event_py.c - see event_py.h: lwp.sync.Event in C.
 *
 * Each method is the C transcription of the method of the same name of
 * lwp/sync.py's Event; read that one first.  The reference's
 * `with self._mutex:` sections are the stretches marked "GIL-atomic": no
 * Python code runs and the GIL is not released there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "event_py.h"

#if defined(PYPY_VERSION) || defined(Py_GIL_DISABLED)

int lwp_event_py_init(const char *module_name)
{
    (void)module_name;
    return -1;
}

#else /* CPython with a GIL */

#include <math.h>
#include <structmember.h>

#include "builtins.h"
#include "park_door.h"

typedef struct {
    PyObject_HEAD
    char flag;
    PyObject *waiters;  /* a list, never NULL */
} event;

static PyTypeObject *event_type;

static PyObject *event_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    event *self = (event *)type->tp_alloc(type, 0);

    (void)args;
    (void)kwds;
    if (self == NULL)
        return NULL;
    self->flag = 0;
    self->waiters = PyList_New(0);
    if (self->waiters == NULL)
        Py_CLEAR(self);
    return (PyObject *)self;
}

/* Event.__init__() takes no arguments; a subclass's __init__ may (tp_new
 * ignores them). */
static int event_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    (void)self;
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Event() takes no arguments");
        return -1;
    }
    return 0;
}

static PyObject *event_repr(event *self)
{
    return PyUnicode_FromFormat("<lwp.Event %s waiters=%zd>", self->flag ? "set" : "unset",
                                PyList_GET_SIZE(self->waiters));
}

/* Event.is_set() */
static PyObject *event_is_set(event *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(self->flag);
}

/* Event.set() */
static PyObject *event_set(event *self, PyObject *unused)
{
    PyObject *waiters, *fresh, *r;
    Py_ssize_t i;

    (void)unused;
    if (PyList_GET_SIZE(self->waiters) == 0) {
        self->flag = 1;
        Py_RETURN_NONE;
    }
    fresh = PyList_New(0);  /* may run the GC, hence before the GIL-atomic part */
    if (fresh == NULL)
        return NULL;
    /* GIL-atomic */
    self->flag = 1;
    waiters = self->waiters;
    self->waiters = fresh;
    /* end */
    for (i = 0; i < PyList_GET_SIZE(waiters); i++) {
        PyObject *w = Py_NewRef(PyList_GET_ITEM(waiters, i));  /* wake may run Python code */

        r = lwp_park_wake(w, Py_True);
        Py_DECREF(w);
        if (r == NULL) {
            Py_DECREF(waiters);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(waiters);
    Py_RETURN_NONE;
}

/* Event.clear() */
static PyObject *event_clear(event *self, PyObject *unused)
{
    (void)unused;
    self->flag = 0;
    Py_RETURN_NONE;
}

/* sync._discard(self._mutex, self._waiters, w); keeps a raised exception. */
static void discard(event *self, PyObject *w)
{
    PyObject *type, *value, *tb;
    Py_ssize_t i, n = PyList_GET_SIZE(self->waiters);

    PyErr_Fetch(&type, &value, &tb);
    for (i = 0; i < n; i++)  /* GIL-atomic: by identity, no __eq__ */
        if (PyList_GET_ITEM(self->waiters, i) == w) {
            /* the caller holds w: deleting it runs no finalizer */
            if (PyList_SetSlice(self->waiters, i, i + 1, NULL) < 0)
                PyErr_WriteUnraisable((PyObject *)self);
            break;
        }
    PyErr_Restore(type, value, tb);
}

/* sync._wait_timeout(timeout), a new reference. */
static PyObject *wait_timeout(PyObject *timeout)
{
    double seconds;

    if (timeout == Py_None)
        return Py_NewRef(timeout);
    seconds = PyFloat_AsDouble(timeout);
    if (seconds == -1 && PyErr_Occurred())
        return NULL;
    if (isnan(seconds)) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return NULL;
    }
    return seconds < 0 ? PyLong_FromLong(0) : Py_NewRef(timeout);
}

/* Event.wait(timeout=None) */
static PyObject *event_wait(event *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    static const char *const names[] = {"timeout"};
    PyObject *timeout = Py_None, *w, *got;

    if (self->flag)
        Py_RETURN_TRUE;
    if ((nargs != 0 || kwnames != NULL)
            && lwp_parse_args("wait", args, nargs, kwnames, names, 1, &timeout) < 0)
        return NULL;
    timeout = wait_timeout(timeout);
    if (timeout == NULL)
        return NULL;
    w = lwp_park_waiter();
    if (w == NULL)
        goto fail;
    /* GIL-atomic */
    if (self->flag) {
        Py_DECREF(w);
        Py_DECREF(timeout);
        Py_RETURN_TRUE;
    }
    if (PyList_Append(self->waiters, w) < 0)
        goto fail;
    /* end */
    got = lwp_park_wait(w, timeout);
    Py_DECREF(timeout);
    if (got == NULL || got == lwp_park_timed_out())
        discard(self, w);
    Py_DECREF(w);
    if (got == NULL)
        return NULL;
    if (got == lwp_park_timed_out()) {
        Py_DECREF(got);
        return PyBool_FromLong(self->flag);
    }
    Py_DECREF(got);
    Py_RETURN_TRUE;
fail:
    Py_XDECREF(w);
    Py_DECREF(timeout);
    return NULL;
}

/* Event._at_fork_reinit(): threading._after_fork calls it in a child
 * process; the flag stays, the waiters (threads of the parent) are gone. */
static PyObject *event_at_fork_reinit(event *self, PyObject *unused)
{
    PyObject *fresh = PyList_New(0);

    (void)unused;
    if (fresh == NULL)
        return NULL;
    Py_SETREF(self->waiters, fresh);
    Py_RETURN_NONE;
}

/* No tp_clear: the list's own breaks any cycle through the waiters. */
static int event_traverse(event *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->waiters);
    return 0;
}

static void event_dealloc(event *self)
{
    PyTypeObject *type = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->waiters);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyMemberDef event_members[] = {
    {"_waiters", T_OBJECT, offsetof(event, waiters), READONLY,
     "the waiters, as the reference's attribute (for the tests)"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef event_methods[] = {
    {"is_set", (PyCFunction)event_is_set, METH_NOARGS,
     "is_set($self, /)\n--\n\nTrue if the flag is set."},
    {"isSet", (PyCFunction)event_is_set, METH_NOARGS,
     "isSet($self, /)\n--\n\nThe old name of is_set()."},
    {"set", (PyCFunction)event_set, METH_NOARGS,
     "set($self, /)\n--\n\nSet the flag and wake every waiter."},
    {"clear", (PyCFunction)event_clear, METH_NOARGS,
     "clear($self, /)\n--\n\nReset the flag."},
    {"wait", (PyCFunction)(void (*)(void))event_wait, METH_FASTCALL | METH_KEYWORDS,
     "wait($self, /, timeout=None)\n--\n\n"
     "Wait until the flag is set; return it (False only on timeout)."},
    {"_at_fork_reinit", (PyCFunction)event_at_fork_reinit, METH_NOARGS,
     "_at_fork_reinit($self, /)\n--\n\nForget the waiters (in a fork child)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot event_slots[] = {
    {Py_tp_doc, "Event()\n--\n\nA flag threads can wait for, like :class:`threading.Event`."},
    {Py_tp_new, event_new},
    {Py_tp_init, event_init},
    {Py_tp_repr, event_repr},
    {Py_tp_dealloc, event_dealloc},
    {Py_tp_traverse, event_traverse},
    {Py_tp_members, event_members},
    {Py_tp_methods, event_methods},
    {0, NULL},
};

static PyType_Spec event_spec = {
    "lwp.sync.Event",
    sizeof(event),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    event_slots,
};

static int init(const char *module_name)
{
    PyObject *module;
    int rc;

    if (event_type != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lwp_event_py_init() called twice");
        return -1;
    }
    if ((module = lwp_imported_module(module_name)) == NULL)
        return -1;
    event_type = (PyTypeObject *)PyType_FromSpec(&event_spec);
    rc = event_type == NULL
        || PyModule_AddObjectRef(module, "_NativeEvent", (PyObject *)event_type) < 0 ? -1 : 0;
    Py_DECREF(module);
    return rc;
}

int lwp_event_py_init(const char *module_name)
{
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released it around this call */
    int rc;

    if (lwp_park_timed_out() == NULL) {
        rc = -1;  /* the park door is not in use */
    } else if ((rc = init(module_name)) != 0) {
        PyErr_WriteUnraisable(NULL);
    }
    PyGILState_Release(gil);
    return rc;
}

#endif /* CPython with a GIL */
