/*
 * park_py.c - see park_py.h: the hot path of the park/wake door as builtins.
 *
 * Each function below is the C transcription of the Python method named in
 * its comment, statement for statement; read that one first.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "park_py.h"

#ifdef PYPY_VERSION

/* No CPython C API: lwp/_core/park.py keeps its Python waiter. */
int lwp_park_py_init(const char *module_name)
{
    (void)module_name;
    return -1;
}

#else /* CPython */

#include <structmember.h>

#include "builtins.h"
#include "park_door.h"
#include "park_lock.h"
#include "slots.h"

/* Objects of lwp._core.park, looked up once by lwp_park_py_init (which
 * keeps them alive for good). */
static PyObject *timed_out, *os_waiter;
static PyObject *st_done, *st_parked, *st_runnable, *st_running;
static PyTypeObject *waiter_type;
/* (True, None): the outcome of wake(True), how lwp.sync hands off, made once. */
static PyObject *true_outcome;
static int ready;  /* lwp_park_py_init() succeeded */

/* The slots of GreenThread and LWP that the hot path reads and writes
 * (slots.h: at their offsets). */
enum { T_LWP, T_STATE, T_WAITING, T_PENDING_EXC, T_GLET, N_THREAD_FIELDS };
static field thread_fields[N_THREAD_FIELDS] = {
    {"_lwp", NULL, NULL}, {"_state", NULL, NULL}, {"_waiting", NULL, NULL},
    {"_pending_exc", NULL, NULL}, {"_glet", NULL, NULL},
};
static PyTypeObject *thread_type;  /* lwp._core.thread.GreenThread */

enum { L_LOCK, L_INBOX, L_CALLS, L_NEWQ, L_SHUFFLE, L_RUNQ, L_TIMERS, L_TICKS, L_CURRENT,
       L_IDENT, N_LWP_FIELDS };
static field lwp_fields[N_LWP_FIELDS] = {
    {"_lock", NULL, NULL}, {"_inbox", NULL, NULL}, {"_calls", NULL, NULL},
    {"_newq", NULL, NULL}, {"_shuffle", NULL, NULL}, {"_runq", NULL, NULL},
    {"_timers", NULL, NULL}, {"ticks", NULL, NULL}, {"current", NULL, NULL},
    {"ident", NULL, NULL},
};
/* lwp._core.lwp.LWP and its _FAIRNESS_TICKS, given by _native_lwp_type()
 * when that module is imported, before any LWP runs. */
static PyTypeObject *lwp_type;
static long fairness_ticks;

/* Unbound methods, called with their object as first argument: no lookup.
 * The switch goes through greenlet.switch as the reference's does, not
 * greenlet's C API: PyGreenlet_Switch nests deeper C frames, which greenlet
 * saves with every parked thread (+0.5 KB each, measured). */
static PyObject *deque_append_m, *deque_popleft_m,
    *greenlet_switch_m;
static PyTypeObject *greenlet_type;

static PyObject *s_current, *s_when, *s__take_new, *s__spare, *s_hub, *s_call_later,
    *s_cancel, *s__make_runnable, *s_wake, *s_wait;

typedef struct {
    PyObject_HEAD
    PyObject *thread;   /* the green thread that made the waiter */
    PyObject *outcome;  /* NULL or None, then (value, exc): under the owning LWP's lock */
} waiter;

/* -- small helpers ------------------------------------------------------------ */

/* lock.acquire() if timeout < 0, else lock.acquire(True, timeout), for
 * the LWP's lock (checked to be a _NativeLock): 1 if acquired, 0 if not,
 * -1 on error. */
static int lock_acquire(PyObject *lock, double timeout)
{
    if (!lwp_lock_check(lock)) {
        PyErr_Format(PyExc_TypeError, "not a _NativeLock: %R", lock);
        return -1;
    }
    return lwp_lock_acquire(lock, timeout);
}

/* lock.release(), as in a `finally:` block: an error already set is kept
 * (and returned as -1), one raised by the release only when none was. */
static int lock_release(PyObject *lock)
{
    PyObject *type, *value, *tb;

    if (!PyErr_Occurred())
        return lwp_lock_release(lock);
    PyErr_Fetch(&type, &value, &tb);
    lwp_lock_release(lock);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return -1;
}

/* obj.<field i> is target, as a 0/1 answer; -1 on error. */
static int field_is(PyObject *obj, field *fields, int i, PyObject *target)
{
    PyObject *v = GET(obj, fields, i);
    int is;

    if (v == NULL)
        return -1;
    is = v == target;
    Py_DECREF(v);
    return is;
}

/* len(lwp.<field i>); -1 on error. */
static Py_ssize_t lwp_len(PyObject *lwp, int i)
{
    PyObject *v = GET(lwp, lwp_fields, i);
    Py_ssize_t n;

    if (v == NULL)
        return -1;
    n = PyObject_Length(v);
    Py_DECREF(v);
    return n;
}

/* One argument method call through a cached unbound method. */
static PyObject *call1(PyObject *method, PyObject *self, PyObject *arg)
{
    PyObject *args[2] = {self, arg};

    return PyObject_Vectorcall(method, args, arg == NULL ? 1 : 2, NULL);
}

/* The thread's LWP, checked to be one (new reference). */
static PyObject *lwp_of(PyObject *t)
{
    PyObject *lwp = GET(t, thread_fields, T_LWP);

    if (lwp != NULL && (lwp_type == NULL || !PyObject_TypeCheck(lwp, lwp_type))) {
        PyErr_Format(PyExc_TypeError, "not an LWP: %R", lwp);
        Py_CLEAR(lwp);
    }
    return lwp;
}

int lwp_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *const *names, Py_ssize_t max,
                      PyObject **out)
{
    Py_ssize_t i, j, nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);

    if (nargs > max) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)",
                     fname, max, nargs + nkw);
        return -1;
    }
    for (i = 0; i < nargs; i++)
        out[i] = args[i];
    for (i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);

        for (j = 0; j < max; j++)
            if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0)
                break;
        if (j == max || j < nargs) {
            PyErr_Format(PyExc_TypeError, j == max ? "%s() got an unexpected keyword argument %R"
                         : "%s() got multiple values for argument %R", fname, key);
            return -1;
        }
        out[j] = args[nargs + i];
    }
    return 0;
}

static PyObject *thread_of(waiter *self)
{
    if (self->thread == NULL || !PyObject_TypeCheck(self->thread, thread_type)) {
        PyErr_Format(PyExc_TypeError, "not a green thread: %R", self->thread);
        return NULL;
    }
    Py_INCREF(self->thread);
    return self->thread;
}

static int settled(waiter *self)
{
    return self->outcome != NULL && self->outcome != Py_None;
}

/* -- waiter() ---------------------------------------------------------------- */

/* park._tls.lwp of the calling kernel thread (a strong reference, or NULL),
 * which park.set_lwp() copies here: read without a threading.local look-up. */
static _Thread_local PyObject *this_lwp;

/* _native_set_lwp(lwp or None): park.set_lwp()'s copy. */
static PyObject *py_set_lwp(PyObject *module, PyObject *lwp)
{
    (void)module;
    Py_XSETREF(this_lwp, lwp == Py_None ? NULL : Py_NewRef(lwp));
    Py_RETURN_NONE;
}

PyObject *lwp_park_this_lwp(void)
{
    return this_lwp;
}

/* park.waiter() */
PyObject *lwp_park_waiter(void)
{
    PyObject *lwp, *t;
    waiter *w;

    lwp = Py_XNewRef(this_lwp);
    if (lwp != NULL) {
        t = lwp_type != NULL && PyObject_TypeCheck(lwp, lwp_type)
            ? GET(lwp, lwp_fields, L_CURRENT) : PyObject_GetAttr(lwp, s_current);
        Py_DECREF(lwp);
        if (t == NULL)
            return NULL;
        if (t != Py_None && PyObject_TypeCheck(t, thread_type)) {
            w = PyObject_GC_New(waiter, waiter_type);
            if (w == NULL) {
                Py_DECREF(t);
                return NULL;
            }
            w->thread = t;
            w->outcome = NULL;
            PyObject_GC_Track(w);
            return (PyObject *)w;
        }
        Py_DECREF(t);
    } else {
        Py_XDECREF(lwp);
    }
    return PyObject_CallNoArgs(os_waiter);
}

static PyObject *py_waiter(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return lwp_park_waiter();
}

PyObject *lwp_park_timed_out(void)
{
    return ready ? timed_out : NULL;
}

/* -- wake -------------------------------------------------------------------- */

/* LWP._make_runnable(t), with the local case inlined as in GreenWaiter.wake.
 * The caller holds lwp._lock. */
static int make_runnable(PyObject *lwp, PyObject *t)
{
    PyObject *ident = GET(lwp, lwp_fields, L_IDENT), *runq, *r;
    int local;

    if (ident == NULL)
        return -1;
    local = PyLong_Check(ident) && PyLong_AsUnsignedLong(ident) == PyThread_get_thread_ident();
    Py_DECREF(ident);
    if (PyErr_Occurred())
        return -1;
    if (local) {
        if (SET(t, thread_fields, T_STATE, st_runnable) < 0)
            return -1;
        runq = GET(lwp, lwp_fields, L_RUNQ);
        if (runq == NULL)
            return -1;
        r = call1(deque_append_m, runq, t);
        Py_DECREF(runq);
    } else {
        r = PyObject_CallMethodOneArg(lwp, s__make_runnable, t);
    }
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The body of GreenWaiter.wake under the owning LWP's lock. */
static PyObject *settle(waiter *self, PyObject *t, PyObject *lwp, PyObject *value, PyObject *exc)
{
    PyObject *outcome;
    int is;

    if (settled(self))
        Py_RETURN_FALSE;
    is = field_is(t, thread_fields, T_STATE, st_done);
    if (is != 0)
        return is < 0 ? NULL : Py_NewRef(Py_False);
    if (value == Py_True && exc == Py_None)
        outcome = Py_NewRef(true_outcome);
    else if ((outcome = PyTuple_Pack(2, value, exc)) == NULL)
        return NULL;
    Py_XSETREF(self->outcome, outcome);
    is = field_is(t, thread_fields, T_WAITING, (PyObject *)self);
    if (is < 0)
        return NULL;
    if (is && (SET(t, thread_fields, T_WAITING, Py_None) < 0 || make_runnable(lwp, t) < 0))
        return NULL;
    Py_RETURN_TRUE;
}

/* GreenWaiter.wake(value, exc, timeout), the arguments parsed. */
static PyObject *wake(waiter *self, PyObject *value, PyObject *exc, double timeout)
{
    PyObject *t, *lwp = NULL, *lock = NULL, *result = NULL;
    int got;

    t = thread_of(self);
    if (t == NULL)
        return NULL;
    lwp = lwp_of(t);  /* fixed: the thread has started */
    if (lwp == NULL)
        goto done;
    lock = GET(lwp, lwp_fields, L_LOCK);
    if (lock == NULL)
        goto done;
    got = lock_acquire(lock, timeout);
    if (got <= 0) {
        if (got == 0)
            result = Py_NewRef(Py_None);
        goto done;
    }
    result = settle(self, t, lwp, value, exc);
    if (lock_release(lock) < 0)
        Py_CLEAR(result);
done:
    Py_XDECREF(lock);
    Py_XDECREF(lwp);
    Py_DECREF(t);
    return result;
}

/* GreenWaiter.wake(value=None, exc=None, timeout=-1) */
static PyObject *waiter_wake(waiter *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"value", "exc", "timeout"};
    PyObject *argv[3] = {Py_None, Py_None, NULL};
    double timeout = -1;

    if (lwp_parse_args("wake", args, nargs, kwnames, names, 3, argv) < 0)
        return NULL;
    if (argv[2] != NULL) {
        timeout = PyFloat_AsDouble(argv[2]);
        if (timeout == -1 && PyErr_Occurred())
            return NULL;
    }
    return wake(self, argv[0], argv[1], timeout);
}

PyObject *lwp_park_wake(PyObject *w, PyObject *value)
{
    return Py_IS_TYPE(w, waiter_type) ? wake((waiter *)w, value, Py_None, -1)
        : PyObject_CallMethodOneArg(w, s_wake, value);
}

/* -- wait -------------------------------------------------------------------- */

/* What LWP.park_current does next: switch straight to the head of the run
 * queue (DIRECT, and *ticks holds lwp.ticks), start the next new thread on a
 * spare greenlet (START), or switch to the hub (HUB); -1 on error. */
enum { HUB, DIRECT, START };

static int next_step(PyObject *lwp, long *ticks)
{
    PyObject *v;
    int truth;
    Py_ssize_t runnable, fresh;

    if ((runnable = lwp_len(lwp, L_INBOX)) != 0 || (runnable = lwp_len(lwp, L_CALLS)) != 0)
        return runnable < 0 ? -1 : HUB;
    if ((truth = field_is(lwp, lwp_fields, L_SHUFFLE, Py_True)) != 0)  /* a bool */
        return truth < 0 ? -1 : HUB;
    v = GET(lwp, lwp_fields, L_TICKS);
    if (v == NULL)
        return -1;
    *ticks = PyLong_AsLong(v);
    Py_DECREF(v);
    if (*ticks == -1 && PyErr_Occurred())
        return -1;
    if (*ticks % fairness_ticks == 0)
        return HUB;
    v = GET(lwp, lwp_fields, L_TIMERS);
    if (v == NULL)
        return -1;
    if (PyList_Check(v) && PyList_GET_SIZE(v) > 0) {
        PyObject *when = PyObject_GetAttr(PyList_GET_ITEM(v, 0), s_when);
        double due;

        Py_DECREF(v);
        if (when == NULL)
            return -1;
        due = PyFloat_AsDouble(when);
        Py_DECREF(when);
        if (due == -1 && PyErr_Occurred())
            return -1;
        if (due <= lwp_monotonic())
            return HUB;
    } else {
        Py_DECREF(v);
    }
    runnable = lwp_len(lwp, L_RUNQ);
    fresh = runnable < 0 ? -1 : lwp_len(lwp, L_NEWQ);
    if (fresh < 0)
        return -1;
    if (runnable > 0)
        return fresh == 0 ? DIRECT : HUB;
    if (fresh == 0)
        return HUB;
    v = PyObject_GetAttr(lwp, s__spare);
    if (v == NULL)
        return -1;
    truth = PyObject_IsTrue(v);
    Py_DECREF(v);
    return truth < 0 ? -1 : truth ? START : HUB;
}

/* Pop the head of the run queue and make it current, as park_current and
 * LWP._resume do; its greenlet, or NULL on error. */
static PyObject *resume_next(PyObject *lwp, long ticks)
{
    PyObject *runq = GET(lwp, lwp_fields, L_RUNQ), *next, *r, *glet;
    int err;

    if (runq == NULL)
        return NULL;
    next = call1(deque_popleft_m, runq, NULL);
    Py_DECREF(runq);
    if (next == NULL)
        return NULL;
    r = PyLong_FromLong(ticks + 1);
    err = r == NULL || SET(lwp, lwp_fields, L_TICKS, r) < 0
        || SET(lwp, lwp_fields, L_CURRENT, next) < 0
        || !PyObject_TypeCheck(next, thread_type)
        /* benign unlocked write: wakers only act on _waiting */
        || SET(next, thread_fields, T_STATE, st_running) < 0;
    Py_XDECREF(r);
    if (err && !PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "not a green thread: %R", next);
    glet = err ? NULL : GET(next, thread_fields, T_GLET);
    Py_DECREF(next);  /* not held while parked: only the greenlet, as the reference does */
    return glet;
}

/* LWP.park_current().  Every case switches from here, never from a Python
 * method called from here: that would nest an eval loop's C frame under the
 * switch, which greenlet saves with every parked thread. */
static int park_current(PyObject *lwp)
{
    PyObject *glet = NULL, *r;
    long ticks = 0;
    int step = next_step(lwp, &ticks);

    if (step < 0)
        return -1;
    if (step == DIRECT) {
        glet = resume_next(lwp, ticks);
        if (glet == NULL)
            return -1;
    } else if (step == START) {
        glet = PyObject_CallMethodNoArgs(lwp, s__take_new);
        if (glet == NULL)
            return -1;
        if (glet == Py_None)
            Py_CLEAR(glet);
    }
    if (glet == NULL) {
        glet = PyObject_GetAttr(lwp, s_hub);
        if (glet == NULL)
            return -1;
    }
    if (!PyObject_TypeCheck(glet, greenlet_type)) {
        PyErr_Format(PyExc_TypeError, "not a greenlet: %R", glet);
        r = NULL;
    } else {
        r = call1(greenlet_switch_m, glet, NULL);
    }
    Py_DECREF(glet);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* The park decision of GreenWaiter.wait, under the owning LWP's lock:
 * 1 to park, 0 not to (settled already, or a pending exception now is). */
static int decide(waiter *self, PyObject *t)
{
    PyObject *exc, *outcome;

    if (settled(self))
        return 0;
    exc = GET(t, thread_fields, T_PENDING_EXC);
    if (exc == NULL)
        return -1;
    if (exc == Py_None) {
        Py_DECREF(exc);
        if (SET(t, thread_fields, T_STATE, st_parked) < 0
                || SET(t, thread_fields, T_WAITING, (PyObject *)self) < 0)
            return -1;
        return 1;
    }
    outcome = PyTuple_Pack(2, Py_None, exc);
    Py_DECREF(exc);
    if (outcome == NULL || SET(t, thread_fields, T_PENDING_EXC, Py_None) < 0) {
        Py_XDECREF(outcome);
        return -1;
    }
    Py_XSETREF(self->outcome, outcome);
    return 0;
}

static PyObject *raise_exc(PyObject *exc)
{
    if (PyExceptionInstance_Check(exc))
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    else if (PyExceptionClass_Check(exc))
        PyErr_SetNone(exc);
    else
        PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
    return NULL;
}

/* GreenWaiter.wait(timeout) */
static PyObject *wait(waiter *self, PyObject *timeout)
{
    PyObject *t, *lwp = NULL, *lock = NULL, *timer = NULL, *result = NULL, *value, *exc, *r;
    int parking;

    t = thread_of(self);
    if (t == NULL)
        return NULL;
    lwp = lwp_of(t);
    if (lwp == NULL)
        goto done;
    if (timeout != Py_None) {
        PyObject *wake = PyObject_GetAttr((PyObject *)self, s_wake);

        if (wake == NULL)
            goto done;
        timer = PyObject_CallMethodObjArgs(lwp, s_call_later, timeout, wake, timed_out, NULL);
        Py_DECREF(wake);
        if (timer == NULL)
            goto done;
    }
    lock = GET(lwp, lwp_fields, L_LOCK);
    if (lock == NULL || lock_acquire(lock, -1) < 0)
        goto done;
    parking = decide(self, t);
    if (lock_release(lock) < 0)
        goto done;
    /* Decided under the lock: once _waiting is published a waker may queue the
     * thread at once, so it must park even if it is already runnable again. */
    if (parking && park_current(lwp) < 0)
        goto done;
    if (!settled(self) || !PyTuple_Check(self->outcome) || PyTuple_GET_SIZE(self->outcome) != 2) {
        PyErr_Format(PyExc_RuntimeError, "resumed with the outcome %R", self->outcome);
        goto done;
    }
    value = PyTuple_GET_ITEM(self->outcome, 0);
    exc = PyTuple_GET_ITEM(self->outcome, 1);
    Py_INCREF(value);
    Py_INCREF(exc);
    if (timer != NULL) {
        r = PyObject_CallMethodNoArgs(timer, s_cancel);
        if (r == NULL) {
            Py_DECREF(value);
            Py_DECREF(exc);
            goto done;
        }
        Py_DECREF(r);
    }
    if (exc != Py_None) {
        raise_exc(exc);
        Py_DECREF(value);
    } else {
        result = value;
    }
    Py_DECREF(exc);
done:
    Py_XDECREF(timer);
    Py_XDECREF(lock);
    Py_XDECREF(lwp);
    Py_DECREF(t);
    return result;
}

/* GreenWaiter.wait(timeout=None) */
static PyObject *waiter_wait(waiter *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"timeout"};
    PyObject *timeout = Py_None;

    if (lwp_parse_args("wait", args, nargs, kwnames, names, 1, &timeout) < 0)
        return NULL;
    return wait(self, timeout);
}

PyObject *lwp_park_wait(PyObject *w, PyObject *timeout)
{
    return Py_IS_TYPE(w, waiter_type) ? wait((waiter *)w, timeout)
        : PyObject_CallMethodOneArg(w, s_wait, timeout);
}

/* -- the type ------------------------------------------------------------------ */

static int waiter_traverse(waiter *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->thread);
    Py_VISIT(self->outcome);
    return 0;
}

static int waiter_clear(waiter *self)
{
    Py_CLEAR(self->thread);
    Py_CLEAR(self->outcome);
    return 0;
}

static void waiter_dealloc(waiter *self)
{
    PyTypeObject *type = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    waiter_clear(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyMemberDef waiter_members[] = {
    {"thread", T_OBJECT, offsetof(waiter, thread), READONLY, "the green thread that waits"},
    {"outcome", T_OBJECT, offsetof(waiter, outcome), 0,
     "None, then (value, exc); written under the owning LWP's lock"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef waiter_methods[] = {
    {"wake", (PyCFunction)(void (*)(void))waiter_wake, METH_FASTCALL | METH_KEYWORDS,
     "wake(value=None, exc=None, timeout=-1): GreenWaiter.wake"},
    {"wait", (PyCFunction)(void (*)(void))waiter_wait, METH_FASTCALL | METH_KEYWORDS,
     "wait(timeout=None): GreenWaiter.wait"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot waiter_slots[] = {
    {Py_tp_doc, "The native GreenWaiter of lwp._core.park (csrc/park_py.h)."},
    {Py_tp_dealloc, waiter_dealloc},
    {Py_tp_traverse, waiter_traverse},
    {Py_tp_clear, waiter_clear},
    {Py_tp_members, waiter_members},
    {Py_tp_methods, waiter_methods},
    {0, NULL},
};

static PyType_Spec waiter_spec = {
    "lwp._core.park._NativeGreenWaiter",
    sizeof(waiter),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    waiter_slots,
};

/* -- init ---------------------------------------------------------------------- */

/* _native_lwp_type(LWP, fairness_ticks): called by lwp._core.lwp once it has
 * defined its class, before any LWP runs. */
static PyObject *py_lwp_type(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    long ticks;

    (void)module;
    if (nargs != 2 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "_native_lwp_type(LWP, fairness_ticks)");
        return NULL;
    }
    ticks = PyLong_AsLong(args[1]);
    if (ticks == -1 && PyErr_Occurred())
        return NULL;
    if (ticks <= 0) {
        PyErr_SetString(PyExc_ValueError, "fairness_ticks must be > 0");
        return NULL;
    }
    if (lwp_load_fields((PyTypeObject *)args[0], lwp_fields, N_LWP_FIELDS) < 0)
        return NULL;
    Py_XSETREF(lwp_type, (PyTypeObject *)Py_NewRef(args[0]));
    fairness_ticks = ticks;
    Py_RETURN_NONE;
}

static PyMethodDef functions[] = {
    {"_native_waiter", py_waiter, METH_NOARGS, "_native_waiter(): park.waiter()"},
    {"_native_set_lwp", py_set_lwp, METH_O, "_native_set_lwp(lwp or None): park.set_lwp's copy"},
    {"_native_lwp_type", (PyCFunction)(void (*)(void))py_lwp_type, METH_FASTCALL,
     "_native_lwp_type(LWP, fairness_ticks): the LWP class whose slots the hot path uses"},
    {NULL, NULL, 0, NULL},
};

static int intern_names(void)
{
    static struct { PyObject **var; const char *name; } names[] = {
        {&s_current, "current"}, {&s_when, "when"},
        {&s__take_new, "_take_new"}, {&s__spare, "_spare"}, {&s_hub, "hub"},
        {&s_call_later, "call_later"},
        {&s_cancel, "cancel"}, {&s__make_runnable, "_make_runnable"}, {&s_wake, "wake"},
        {&s_wait, "wait"},
    };
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (*names[i].var == NULL && (*names[i].var = PyUnicode_InternFromString(names[i].name)) == NULL)
            return -1;
    return 0;
}

static int load_methods(void)
{
    static struct { PyObject **var; const char *module, *type, *name; } methods[] = {
        {&deque_append_m, "collections", "deque", "append"},
        {&deque_popleft_m, "collections", "deque", "popleft"},
        {&greenlet_switch_m, "greenlet", "greenlet", "switch"},
    };
    size_t i;

    for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        PyObject *type = lwp_attr_of(methods[i].module, methods[i].type);

        if (type == NULL)
            return -1;
        *methods[i].var = PyObject_GetAttrString(type, methods[i].name);
        Py_DECREF(type);
        if (*methods[i].var == NULL)
            return -1;
    }
    return 0;
}

static int init(const char *module_name)
{
    static struct { PyObject **var; const char *name; } objects[] = {
        {&timed_out, "TIMED_OUT"}, {&os_waiter, "OSWaiter"},
        {&st_done, "DONE"}, {&st_parked, "PARKED"}, {&st_runnable, "RUNNABLE"},
        {&st_running, "RUNNING"},
    };
    PyObject *module;
    PyTypeObject *lock_type = NULL;
    size_t i;
    int rc = -1;

    if (waiter_type != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lwp_park_py_init() called twice");
        return -1;
    }
    if (intern_names() < 0 || load_methods() < 0
            || (true_outcome = PyTuple_Pack(2, Py_True, Py_None)) == NULL
            || (module = lwp_imported_module(module_name)) == NULL)
        return -1;
    for (i = 0; i < sizeof objects / sizeof objects[0]; i++)
        if ((*objects[i].var = PyObject_GetAttrString(module, objects[i].name)) == NULL)
            goto done;
    thread_type = (PyTypeObject *)lwp_attr_of("lwp._core.thread", "GreenThread");
    if (thread_type == NULL || lwp_load_fields(thread_type, thread_fields, N_THREAD_FIELDS) < 0)
        goto done;
    greenlet_type = (PyTypeObject *)lwp_attr_of("greenlet", "greenlet");
    if (greenlet_type == NULL)
        goto done;
    lock_type = lwp_lock_type_new();
    if (lock_type == NULL || PyModule_AddObjectRef(module, "_NativeLock", (PyObject *)lock_type) < 0)
        goto done;
    waiter_type = (PyTypeObject *)PyType_FromSpec(&waiter_spec);
    if (waiter_type == NULL
            || PyObject_SetAttrString((PyObject *)waiter_type, "late", Py_None) < 0
            || PyModule_AddObjectRef(module, "_NativeGreenWaiter", (PyObject *)waiter_type) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(lock_type);
    Py_DECREF(module);
    return rc;
}

int lwp_park_py_init(const char *module_name)
{
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released it around this call */
    int rc = init(module_name);

    if (rc != 0)
        PyErr_WriteUnraisable(NULL);
    else
        rc = lwp_add_builtins(module_name, functions);
    ready = rc == 0;
    PyGILState_Release(gil);
    return rc;
}

#endif /* CPython */
