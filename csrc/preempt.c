/*
 * preempt.c - see preempt.h for the contract and lwp/_core/preempt.py for
 * the design and its limits.
 *
 * Everything here runs holding the GIL: the builtins because they are
 * builtins (cffi is not in the way), the trace function because CPython
 * calls it from the evaluation loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "builtins.h"
#include "preempt.h"

#if defined(PYPY_VERSION) || defined(Py_LIMITED_API) || defined(Py_GIL_DISABLED)
#  define LWP_PREEMPT_WHY \
    "preemption needs the full C API of CPython with the GIL (not PyPy, not the " \
    "limited API, not free-threaded)"
#elif PY_VERSION_HEX < 0x030B0000
#  define LWP_PREEMPT_WHY \
    "preemption needs CPython 3.11 or 3.12 (PyThreadState_EnterTracing/LeaveTracing " \
    "and the thread state layout it relies on are 3.11+)"
#elif PY_VERSION_HEX >= 0x030D0000
#  define LWP_PREEMPT_WHY \
    "CPython 3.13+ no longer exports _PyEval_SetTrace(), which arms the hook on " \
    "another thread's state"
#endif

#ifdef LWP_PREEMPT_WHY

int lwp_preempt_init(const char *module_name)
{
    (void)module_name;
    return -1;
}

const char *lwp_preempt_unsupported(void)
{
    return LWP_PREEMPT_WHY;
}

#else /* CPython 3.11 or 3.12 */

/* What the hook's _decide(frame) answers (keep in step with preempt.py). */
enum { DECIDE_STAY = 0, DECIDE_DISARM = 1, DECIDE_PREEMPT = 2 };

/* What _arm() answers (keep in step with preempt.py). */
enum { ARM_ARMED = 0, ARM_ALREADY = 1, ARM_BUSY = 2, ARM_NO_THREAD = 3 };

static PyObject *str_decide;  /* interned "_decide" */
static PyObject *str_switch;  /* interned "_switch" */

static int preempt_trace(PyObject *hook, PyFrameObject *frame, int what, PyObject *arg);

/* The thread state of the kernel thread `ident` in this interpreter, or NULL.
 * The caller holds the GIL: with the GIL build every path that unlinks a
 * thread state holds it too, so the list cannot lose an entry under us (a
 * state linked meanwhile by PyGILState_Ensure on a new thread is prepended
 * whole, so the walk sees either the old head or the new one). */
static PyThreadState *find_tstate(unsigned long ident)
{
    PyInterpreterState *interp = PyThreadState_GetInterpreter(PyThreadState_Get());
    PyThreadState *ts;

    for (ts = PyInterpreterState_ThreadHead(interp); ts != NULL; ts = PyThreadState_Next(ts))
        if (ts->thread_id == ident)
            return ts;
    return NULL;
}

/* Remove our trace function from `ts`, and only ours: a debugger, profiler
 * or coverage tool that took the hook meanwhile keeps it.  1 if removed,
 * 0 if it was not ours, -1 with an exception set (an audit hook refused). */
static int disarm(PyThreadState *ts)
{
    if (ts->c_tracefunc != preempt_trace)
        return 0;
    return _PyEval_SetTrace(ts, NULL, NULL) < 0 ? -1 : 1;
}

/*
 * The one-shot hook, on the hooked LWP's own kernel thread.  CPython has
 * raised ts->tracing around this call, which suppresses every trace and
 * profile event on this kernel thread until it returns; greenlet does not
 * save that counter per greenlet.  So the switch to the scheduler happens
 * with the counter lowered again (LeaveTracing) and raised back
 * (EnterTracing) once this green thread is resumed, exactly as CPython
 * expects to find it when the callback returns.
 */
static int preempt_trace(PyObject *hook, PyFrameObject *frame, int what, PyObject *arg)
{
    PyThreadState *ts;
    PyObject *r;
    long decision = DECIDE_DISARM;
    int rc = 0;

    (void)arg;
    if (what != PyTrace_LINE && what != PyTrace_CALL)
        return 0;  /* return and exception events are not safe points */
    if (PyErr_Occurred())
        return 0;  /* never the case at line and call events; be sure */
    ts = PyThreadState_Get();
    Py_INCREF(hook);  /* disarming drops the thread state's reference */

    r = PyObject_CallMethodOneArg(hook, str_decide, (PyObject *)frame);
    if (r != NULL) {
        decision = PyLong_AsLong(r);
        Py_DECREF(r);
    }
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(hook);  /* a bug in lwp, not the user's business */
        decision = DECIDE_DISARM;
    }
    if (decision != DECIDE_STAY && disarm(ts) < 0)
        PyErr_WriteUnraisable(hook);
    if (decision == DECIDE_PREEMPT) {
        PyThreadState_LeaveTracing(ts);
        r = PyObject_CallMethodNoArgs(hook, str_switch);
        PyThreadState_EnterTracing(ts);
        if (r == NULL)
            rc = -1;  /* e.g. GreenletExit thrown into the suspended thread: let it unwind */
        else
            Py_DECREF(r);
    }
    Py_DECREF(hook);
    return rc;
}

static int parse_ident(PyObject *obj, unsigned long *ident)
{
    *ident = PyLong_AsUnsignedLong(obj);
    return (*ident == (unsigned long)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* _arm(ident, hook) -> ARM_*: install the one-shot hook on that thread. */
static PyObject *preempt_arm(PyObject *module, PyObject *args)
{
    PyObject *ident_obj, *hook;
    unsigned long ident;
    PyThreadState *ts;

    (void)module;
    if (!PyArg_ParseTuple(args, "OO:_arm", &ident_obj, &hook) || parse_ident(ident_obj, &ident) < 0)
        return NULL;
    ts = find_tstate(ident);
    if (ts == NULL)
        return PyLong_FromLong(ARM_NO_THREAD);
    if (ts->c_tracefunc == preempt_trace)
        return PyLong_FromLong(ARM_ALREADY);
    if (ts->c_tracefunc != NULL)
        return PyLong_FromLong(ARM_BUSY);  /* sys.settrace, a debugger, coverage: theirs */
    if (_PyEval_SetTrace(ts, preempt_trace, hook) < 0)
        return NULL;
    return PyLong_FromLong(ARM_ARMED);
}

/* _disarm(ident) -> bool: remove our hook from that thread, if it is there. */
static PyObject *preempt_disarm(PyObject *module, PyObject *ident_obj)
{
    unsigned long ident;
    PyThreadState *ts;
    int rc;

    (void)module;
    if (parse_ident(ident_obj, &ident) < 0)
        return NULL;
    ts = find_tstate(ident);
    rc = ts != NULL ? disarm(ts) : 0;
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(rc);
}

/* _owner(ident) -> -1 no such thread, 0 no trace function, 1 ours, 2 another's. */
static PyObject *preempt_owner(PyObject *module, PyObject *ident_obj)
{
    unsigned long ident;
    PyThreadState *ts;

    (void)module;
    if (parse_ident(ident_obj, &ident) < 0)
        return NULL;
    ts = find_tstate(ident);
    if (ts == NULL)
        return PyLong_FromLong(-1);
    if (ts->c_tracefunc == NULL)
        return PyLong_FromLong(0);
    return PyLong_FromLong(ts->c_tracefunc == preempt_trace ? 1 : 2);
}

static PyMethodDef preempt_methods[] = {
    {"_arm", preempt_arm, METH_VARARGS,
     "_arm(ident, hook) -> 0 armed, 1 already armed, 2 hook taken, 3 no such thread"},
    {"_disarm", preempt_disarm, METH_O,
     "_disarm(ident) -> True if lwp's hook was removed from that thread"},
    {"_owner", preempt_owner, METH_O,
     "_owner(ident) -> -1 no such thread, 0 no trace function, 1 lwp's, 2 another's"},
    {NULL, NULL, 0, NULL},
};

int lwp_preempt_init(const char *module_name)
{
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released it around this call */
    int rc = -2;

    if (str_decide == NULL)
        str_decide = PyUnicode_InternFromString("_decide");
    if (str_switch == NULL)
        str_switch = PyUnicode_InternFromString("_switch");
    if (str_decide == NULL || str_switch == NULL)
        PyErr_WriteUnraisable(NULL);
    else if (lwp_add_builtins(module_name, preempt_methods) == 0)
        rc = 0;
    PyGILState_Release(gil);
    return rc;
}

const char *lwp_preempt_unsupported(void)
{
    return NULL;
}

#endif /* CPython 3.11 or 3.12 */
