/*
 * io_py.c - see io_py.h: the socket hot path and the poller's event loop as
 * builtins.
 *
 * Each function below is the C transcription of the Python named in its
 * comment, statement for statement, for the common case; read that first.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "io_py.h"

#ifdef PYPY_VERSION

/* No CPython C API: lwp keeps its Python socket methods and event loop. */
int lwp_io_py_init(const char *module_name)
{
    (void)module_name;
    return -1;
}

#else /* CPython */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <structmember.h>
#include <sys/socket.h>

#include "builtins.h"
#include "park_door.h"
#include "slots.h"

/* Objects of lwp._core.poller and lwp._core.park, looked up once by
 * lwp_io_py_init (which keeps them alive for good). */
static PyObject *gens, *timed_out, *leave_fn, *zero;
static long EDGED, STICKY, READ_EDGE, WRITE, WCLOSED;
static PyTypeObject *poller_type, *deque_type, *ss_type;  /* ss: _socket.socket */

enum { F_READER, F_WRITER, F_GEN, F_REGISTERED, F_RREADY, F_WREADY, F_CLOSED, N_FD_FIELDS };
static field fd_fields[N_FD_FIELDS] = {
    {"reader", NULL, NULL}, {"writer", NULL, NULL}, {"gen", NULL, NULL},
    {"registered", NULL, NULL}, {"rready", NULL, NULL}, {"wready", NULL, NULL},
    {"closed", NULL, NULL},
};
static PyTypeObject *fd_state_type;

enum { P_FDS, P_NWAITING, P_WAKEFD, N_POLLER_FIELDS };
static field poller_fields[N_POLLER_FIELDS] = {
    {"_fds", NULL, NULL}, {"_nwaiting", NULL, NULL}, {"_wakefd", NULL, NULL},
};

/* Given by _native_socket_methods(). */
enum { L_CURRENT, L_TICKS, L_POLLER, L_IO_TICKS, L_IO_LEFT, N_LWP_FIELDS };
static field lwp_fields[N_LWP_FIELDS] = {
    {"current", NULL, NULL}, {"ticks", NULL, NULL}, {"_poller", NULL, NULL},
    {"io_ticks", NULL, NULL}, {"io_left", NULL, NULL},
};
static PyTypeObject *lwp_type;
static PyObject *io_budget, *io_spend_fn;

enum { S_TIMEOUT, S_STREAM, N_SOCK_FIELDS };
static field sock_fields[N_SOCK_FIELDS] = {{"_timeout", NULL, NULL}, {"_stream", NULL, NULL}};

/* The methods of _socket.socket, called with the socket first (no lookup). */
static PyObject *ss_recv, *ss_recv_into, *ss_send, *ss_fileno;

/* The Python reference of each C method, what it falls back to. */
enum { R_RECV, R_RECV_INTO, R_SEND, R_SENDALL, N_REFS };
static PyObject *refs[N_REFS];

static PyObject *s_wait, *s__drop, *s__oneshot_event, *s__send_from, *s__adopt, *s__arm;

/* -- small helpers ------------------------------------------------------------- */

/* obj.<field i> as a C long; -1 with an error set on failure. */
static long get_long(PyObject *obj, field *fields, int i)
{
    PyObject *v = GET(obj, fields, i);
    long n;

    if (v == NULL)
        return -1;
    n = PyLong_AsLong(v);
    Py_DECREF(v);
    return n;
}

static int set_long(PyObject *obj, field *fields, int i, long n)
{
    PyObject *v = PyLong_FromLong(n);
    int rc;

    if (v == NULL)
        return -1;
    rc = SET(obj, fields, i, v);
    Py_DECREF(v);
    return rc;
}

/* fds.get(fd): a new reference, or NULL (with an error set, or not). */
static PyObject *fd_state(PyObject *fds, PyObject *fd)
{
    PyObject *st = PyDict_GetItemWithError(fds, fd);

    if (st != NULL && !Py_IS_TYPE(st, fd_state_type)) {
        PyErr_Format(PyExc_TypeError, "not an _FdState: %R", st);
        return NULL;
    }
    return Py_XNewRef(st);
}

/* st.gen != _gens.get(fd, 0), as 0/1; -1 on error. */
static int stale(PyObject *st, PyObject *fd)
{
    PyObject *gen = GET(st, fd_fields, F_GEN), *now;
    int ne;

    if (gen == NULL)
        return -1;
    now = PyDict_GetItemWithError(gens, fd);
    if (now == NULL && PyErr_Occurred()) {
        Py_DECREF(gen);
        return -1;
    }
    ne = PyObject_RichCompareBool(gen, now == NULL ? zero : now, Py_NE);
    Py_DECREF(gen);
    return ne;
}

/* The poller of an LWP (new reference), checked to be one. */
static PyObject *poller_of(PyObject *lwp)
{
    PyObject *p = GET(lwp, lwp_fields, L_POLLER);

    if (p != NULL && !PyObject_TypeCheck(p, poller_type)) {
        PyErr_Format(PyExc_TypeError, "not a Poller: %R", p);
        Py_CLEAR(p);
    }
    return p;
}

/* poller._fds (new reference), checked to be a dict. */
static PyObject *fds_of(PyObject *poller)
{
    PyObject *fds = GET(poller, poller_fields, P_FDS);

    if (fds != NULL && !PyDict_Check(fds)) {
        PyErr_Format(PyExc_TypeError, "Poller._fds is not a dict: %R", fds);
        Py_CLEAR(fds);
    }
    return fds;
}

/* fn(self, *args, **kwnames): the Python reference of a C method. */
static PyObject *call_ref(int ref, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    Py_ssize_t n = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames)), i;
    PyObject *small[8], **argv = n < 8 ? small : PyMem_New(PyObject *, n + 1), *r;

    if (argv == NULL)
        return PyErr_NoMemory();
    argv[0] = self;
    for (i = 0; i < n; i++)
        argv[i + 1] = args[i];
    r = PyObject_Vectorcall(refs[ref], argv, nargs + 1, kwnames);
    if (argv != small)
        PyMem_Free(argv);
    return r;
}

/* memoryview(buffer).nbytes (socket._nbytes); -1 with an error set. */
static Py_ssize_t nbytes(PyObject *buffer)
{
    Py_buffer view;
    Py_ssize_t n;

    if (PyBytes_CheckExact(buffer))
        return PyBytes_GET_SIZE(buffer);
    if (PyByteArray_CheckExact(buffer))
        return PyByteArray_GET_SIZE(buffer);
    if (PyObject_GetBuffer(buffer, &view, PyBUF_FULL_RO) < 0)
        return -1;
    n = view.len;
    PyBuffer_Release(&view);
    return n;
}

/* value == 0.0 for a socket's timeout (None or a float). */
static int is_zero(PyObject *timeout)
{
    return PyFloat_Check(timeout) && PyFloat_AS_DOUBLE(timeout) == 0.0;
}

/* -- the system calls ------------------------------------------------------------ */

/* _ss.recv(sock, bufsize, flags) and _ss.send(sock, data, flags) as the
 * socket module makes them on a non-blocking descriptor (a failure is an
 * OSError of the errno's class, EINTR retried after the signal handlers
 * ran), but holding the GIL: the call cannot block (MSG_DONTWAIT, even if
 * something made the descriptor blocking), so giving the GIL away and taking
 * it back would be all the cost.  recv receives into a buffer of the kernel
 * thread's (not its C stack, which a small threading.stack_size() may not
 * have room for) and copies what came, where the module allocates bufsize
 * bytes and shrinks them.  Other sizes, types and flags go to the module's
 * method. */
#define RECV_BUFFER 65536
static pthread_key_t recv_buffer_key;  /* its value: the thread's buffer, freed at its exit */

/* The calling thread's receive buffer, or NULL with MemoryError. */
static char *recv_buffer(void)
{
    char *buf = pthread_getspecific(recv_buffer_key);

    if (buf == NULL) {
        buf = malloc(RECV_BUFFER);
        if (buf == NULL || pthread_setspecific(recv_buffer_key, buf) != 0) {
            free(buf);
            PyErr_NoMemory();
            return NULL;
        }
    }
    return buf;
}

static int int_flags(PyObject *flags, int *out)
{
    long v = PyLong_AsLong(flags);

    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (v < INT_MIN || v > INT_MAX)
        return 0;
    *out = (int)v;
    return 1;
}

/* argv: the socket, bufsize, flags */
static PyObject *call_recv(int fd, PyObject *const *argv)
{
    Py_ssize_t size = PyLong_AsSsize_t(argv[1]), n;
    int flags;
    char *buf;

    if (size < 0 || size > RECV_BUFFER || !int_flags(argv[2], &flags)) {
        PyErr_Clear();
        return PyObject_Vectorcall(ss_recv, argv, 3, NULL);
    }
    if ((buf = recv_buffer()) == NULL)
        return NULL;
    while ((n = recv(fd, buf, size, flags | MSG_DONTWAIT)) < 0) {
        if (errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }
    return PyBytes_FromStringAndSize(buf, n);
}

/* argv: the socket, data, flags */
static PyObject *call_send(int fd, PyObject *const *argv)
{
    Py_ssize_t n;
    int flags;

    if (!PyBytes_CheckExact(argv[1]) || !int_flags(argv[2], &flags))
        return PyObject_Vectorcall(ss_send, argv, 3, NULL);
    while ((n = send(fd, PyBytes_AS_STRING(argv[1]), PyBytes_GET_SIZE(argv[1]),
                     flags | MSG_DONTWAIT)) < 0) {
        if (errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }
    return PyLong_FromSsize_t(n);
}

/* argv: the socket, buffer, nbytes, flags */
static PyObject *call_recv_into(int fd, PyObject *const *argv)
{
    (void)fd;
    return PyObject_Vectorcall(ss_recv_into, argv, 4, NULL);
}

typedef PyObject *(*sys_call)(int fd, PyObject *const *argv);

/* method(the socket's descriptor, argv), argv[0] being the socket. */
static PyObject *fd_call(sys_call method, PyObject *const *argv)
{
    PyObject *fd = PyObject_Vectorcall(ss_fileno, argv, 1, NULL);
    long n;

    if (fd == NULL)
        return NULL;
    n = PyLong_AsLong(fd);
    Py_DECREF(fd);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    return method((int)n, argv);
}

/* -- the poller ------------------------------------------------------------------ */

/* _edge(st, write) */
static int edge(PyObject *st, int write)
{
    PyObject *slot, *w, *it, *r;

    if (SET(st, fd_fields, write ? F_WREADY : F_RREADY, Py_True) < 0)
        return -1;
    slot = GET(st, fd_fields, write ? F_WRITER : F_READER);
    if (slot == NULL)
        return -1;
    if (SET(st, fd_fields, write ? F_WRITER : F_READER, Py_None) < 0)
        goto fail;
    if (slot == Py_None) {
        Py_DECREF(slot);
        return 0;
    }
    if (Py_IS_TYPE(slot, deque_type)) {
        it = PyObject_GetIter(slot);
        if (it == NULL)
            goto fail;
        while ((w = PyIter_Next(it)) != NULL) {
            r = lwp_park_wake(w, Py_True);
            Py_DECREF(w);
            if (r == NULL)
                break;
            Py_DECREF(r);
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto fail;
    } else {
        r = lwp_park_wake(slot, Py_True);
        if (r == NULL)
            goto fail;
        Py_DECREF(r);
    }
    Py_DECREF(slot);
    return 0;
fail:
    Py_DECREF(slot);
    return -1;
}

/* The edge case of the loop body of _deliver_events. */
static int edge_event(PyObject *st, long ev)
{
    PyObject *writer, *wready;
    int wake;

    if (ev & STICKY) {
        long closed = get_long(st, fd_fields, F_CLOSED);

        if ((closed == -1 && PyErr_Occurred())
                || set_long(st, fd_fields, F_CLOSED, closed | (ev & STICKY)) < 0)
            return -1;
    }
    if (ev & READ_EDGE && edge(st, 0) < 0)
        return -1;
    if (!(ev & WRITE))
        return 0;
    writer = GET(st, fd_fields, F_WRITER);
    if (writer == NULL)
        return -1;
    wake = writer != Py_None;
    Py_DECREF(writer);
    if (!wake) {
        wready = GET(st, fd_fields, F_WREADY);
        if (wready == NULL)
            return -1;
        wake = PyObject_Not(wready);
        Py_DECREF(wready);
        if (wake < 0)
            return -1;
    }
    return wake ? edge(st, 1) : 0;
}

/* _deliver_events(poller, events) */
static PyObject *py_deliver(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *poller, *events, *fds, *item, *fd, *st, *r;
    Py_ssize_t i;
    long ev;
    int woke = 0, eq, rc;

    (void)module;
    if (nargs != 2 || !PyObject_TypeCheck(args[0], poller_type) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_native_deliver(poller, events: list)");
        return NULL;
    }
    poller = args[0];
    events = args[1];
    fds = fds_of(poller);
    if (fds == NULL)
        return NULL;
    for (i = 0; i < PyList_GET_SIZE(events); i++) {
        item = PyList_GET_ITEM(events, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_Format(PyExc_TypeError, "not an (fd, events) pair: %R", item);
            goto fail;
        }
        fd = PyTuple_GET_ITEM(item, 0);
        ev = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        if (ev == -1 && PyErr_Occurred())
            goto fail;
        st = fd_state(fds, fd);
        if (st == NULL) {  /* the wake-up fd has no state */
            PyObject *wakefd;

            if (PyErr_Occurred() || (wakefd = GET(poller, poller_fields, P_WAKEFD)) == NULL)
                goto fail;
            eq = PyObject_RichCompareBool(fd, wakefd, Py_EQ);
            Py_DECREF(wakefd);
            if (eq < 0)
                goto fail;
            woke |= eq;
            continue;
        }
        rc = stale(st, fd);
        if (rc == 1) {  /* closed on another LWP, not forgotten here yet */
            r = PyObject_CallMethodObjArgs(poller, s__drop, fd, st, NULL);
            Py_XDECREF(r);
            rc = r == NULL ? -1 : 0;
        } else if (rc == 0) {
            long registered = get_long(st, fd_fields, F_REGISTERED);

            if (registered == -1 && PyErr_Occurred()) {
                rc = -1;
            } else if (registered == EDGED) {
                rc = edge_event(st, ev);
            } else {
                r = PyObject_CallMethodObjArgs(poller, s__oneshot_event, fd, st,
                                               PyTuple_GET_ITEM(item, 1), NULL);
                Py_XDECREF(r);
                rc = r == NULL ? -1 : 0;
            }
        }
        Py_DECREF(st);
        if (rc < 0)
            goto fail;
    }
    Py_DECREF(fds);
    return PyBool_FromLong(woke);
fail:
    Py_DECREF(fds);
    return NULL;
}

/* Poller.ready(fd, write) (for an LWP's own poller): 1/0, -1 on error. */
static int ready(PyObject *fds, PyObject *fd, int write)
{
    PyObject *st = fd_state(fds, fd), *v;
    int truth;

    if (st == NULL)
        return PyErr_Occurred() ? -1 : 1;
    v = GET(st, fd_fields, write ? F_WREADY : F_RREADY);
    Py_DECREF(st);
    if (v == NULL)
        return -1;
    truth = PyObject_IsTrue(v);
    Py_DECREF(v);
    return truth;
}

/* Poller.not_ready(fd, write) */
static int not_ready(PyObject *fds, PyObject *fd, int write)
{
    PyObject *st = fd_state(fds, fd);
    long registered, closed;
    int rc = -1;

    if (st == NULL)
        return PyErr_Occurred() ? -1 : 0;
    registered = get_long(st, fd_fields, F_REGISTERED);
    if (registered == -1 && PyErr_Occurred())
        goto done;
    if (registered == EDGED) {
        closed = get_long(st, fd_fields, F_CLOSED);
        if (closed == -1 && PyErr_Occurred())
            goto done;
        if (SET(st, fd_fields, write ? F_WREADY : F_RREADY,
                (closed & (write ? WCLOSED : STICKY)) != 0 ? Py_True : Py_False) < 0)
            goto done;
    }
    rc = 0;
done:
    Py_DECREF(st);
    return rc;
}

/* poller._nwaiting += by */
static int count_waiting(PyObject *poller, long by)
{
    long n = get_long(poller, poller_fields, P_NWAITING);

    if (n == -1 && PyErr_Occurred())
        return -1;
    return set_long(poller, poller_fields, P_NWAITING, n + by);
}

/* The `finally:` of Poller.wait: leave the slot if still queued there.  An
 * error already set is kept. */
static void leave(PyObject *poller, PyObject *st, int write, PyObject *w)
{
    PyObject *type, *value, *tb, *slot, *left = NULL;
    int slot_i = write ? F_WRITER : F_READER;

    PyErr_Fetch(&type, &value, &tb);
    if (count_waiting(poller, -1) < 0)
        goto done;
    slot = GET(st, fd_fields, slot_i);
    if (slot == NULL)
        goto done;
    if (slot != Py_None) {
        left = slot == w ? Py_NewRef(Py_None) : PyObject_CallFunctionObjArgs(leave_fn, slot, w, NULL);
        if (left != NULL)
            SET(st, fd_fields, slot_i, left);
    }
    Py_DECREF(slot);
    Py_XDECREF(left);
done:
    if (type != NULL) {
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
}

/* Poller.wait(fd, write, timeout, edge=True) when nobody waits on fd in
 * that direction; else that Python method.  The state of a new (or closed
 * and reused) fd is adopted, and a socket not yet edge-registered is
 * armed, by calls to the Python that return before the park: a thread
 * parked here keeps no eval-loop frame on its C stack, which greenlet
 * would save with it (a connection's first wait is as light as the rest).
 * 1 if woken by readiness, 0 on timeout, -1 on error. */
static int edge_wait(PyObject *poller, PyObject *fds, PyObject *fd, int write, PyObject *timeout)
{
    PyObject *st = fd_state(fds, fd), *slot, *w, *r;
    long registered;
    int old, busy, truth;

    if (st == NULL && PyErr_Occurred())
        return -1;
    old = st == NULL ? 1 : stale(st, fd);
    if (old < 0)
        goto fail;
    if (old) {  /* st = self._adopt(fd, st) */
        r = PyObject_CallMethodObjArgs(poller, s__adopt, fd, st == NULL ? Py_None : st, NULL);
        Py_XSETREF(st, r);
        if (st == NULL)
            return -1;
        if (!Py_IS_TYPE(st, fd_state_type)) {
            PyErr_Format(PyExc_TypeError, "not an _FdState: %R", st);
            goto fail;
        }
    }
    slot = GET(st, fd_fields, write ? F_WRITER : F_READER);
    if (slot == NULL)
        goto fail;
    busy = slot != Py_None;
    Py_DECREF(slot);
    if (busy) {
        Py_DECREF(st);
        r = PyObject_CallMethodObjArgs(poller, s_wait, fd, write ? Py_True : Py_False,
                                       timeout, Py_True, NULL);
        if (r == NULL)
            return -1;
        truth = PyObject_IsTrue(r);
        Py_DECREF(r);
        return truth;
    }
    registered = get_long(st, fd_fields, F_REGISTERED);
    if (registered == -1 && PyErr_Occurred())
        goto fail;
    w = lwp_park_waiter();
    if (w == NULL)
        goto fail;
    if (SET(st, fd_fields, write ? F_WREADY : F_RREADY, Py_False) < 0
            || SET(st, fd_fields, write ? F_WRITER : F_READER, w) < 0
            || count_waiting(poller, 1) < 0) {
        Py_DECREF(w);
        goto fail;
    }
    r = registered == EDGED ? Py_NewRef(Py_None)  /* else self._arm(fd, st, True) */
        : PyObject_CallMethodObjArgs(poller, s__arm, fd, st, Py_True, NULL);
    if (r != NULL)
        Py_SETREF(r, lwp_park_wait(w, timeout));
    leave(poller, st, write, w);
    Py_DECREF(w);
    Py_DECREF(st);
    if (r == NULL)
        return -1;
    truth = r != timed_out;
    Py_DECREF(r);
    return truth;
fail:
    Py_XDECREF(st);
    return -1;
}

/* edge_wait(), a timeout raised as TimeoutError: 0 once ready, else -1. */
static int wait_ready(PyObject *poller, PyObject *fds, PyObject *fd, int write,
                      PyObject *timeout)
{
    int rc = edge_wait(poller, fds, fd, write, timeout);

    if (rc == 0)
        PyErr_SetString(PyExc_TimeoutError, "timed out");
    return rc > 0 ? 0 : -1;
}

/* -- the socket ------------------------------------------------------------------- */

/* LWP.io_spend(), the common case inlined. */
static int io_spend(PyObject *lwp)
{
    PyObject *ticks = GET(lwp, lwp_fields, L_TICKS), *io_ticks, *r;
    long left;
    int ne;

    if (ticks == NULL)
        return -1;
    io_ticks = GET(lwp, lwp_fields, L_IO_TICKS);
    if (io_ticks == NULL) {
        Py_DECREF(ticks);
        return -1;
    }
    ne = PyObject_RichCompareBool(io_ticks, ticks, Py_NE);
    Py_DECREF(io_ticks);
    if (ne != 0) {
        ne = ne < 0 || SET(lwp, lwp_fields, L_IO_TICKS, ticks) < 0
            || SET(lwp, lwp_fields, L_IO_LEFT, io_budget) < 0 ? -1 : 0;
        Py_DECREF(ticks);
        return ne;
    }
    Py_DECREF(ticks);
    left = get_long(lwp, lwp_fields, L_IO_LEFT);
    if (left == -1 && PyErr_Occurred())
        return -1;
    if (left > 1)
        return set_long(lwp, lwp_fields, L_IO_LEFT, left - 1);
    r = PyObject_CallOneArg(io_spend_fn, lwp);  /* the budget's end: a scheduling point */
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* _current_lwp() if it is an LWP running a green thread (new reference),
 * else NULL (no error). */
static PyObject *green_lwp(void)
{
    PyObject *lwp = lwp_park_this_lwp();

    if (lwp == NULL || lwp_type == NULL || !PyObject_TypeCheck(lwp, lwp_type)
            || *(PyObject **)((char *)lwp + lwp_fields[L_CURRENT].member->offset) == NULL
            || *(PyObject **)((char *)lwp + lwp_fields[L_CURRENT].member->offset) == Py_None)
        return NULL;
    return Py_NewRef(lwp);
}

/* socket._io(method, write, short, *args) in a green thread on a socket
 * with a timeout other than 0 (argv[0] is the socket). */
static PyObject *io(PyObject *lwp, PyObject *timeout, sys_call method, int write,
                    Py_ssize_t short_, PyObject *const *argv)
{
    PyObject *self = argv[0], *fd, *poller = NULL, *fds = NULL, *result = NULL, *r;
    double deadline = 0;
    Py_ssize_t got;
    int rc, fdn;

    fd = PyObject_Vectorcall(ss_fileno, &self, 1, NULL);
    if (fd == NULL)
        return NULL;
    fdn = (int)PyLong_AsLong(fd);
    if (fdn == -1 && PyErr_Occurred())
        goto done;
    if (timeout != Py_None) {
        deadline = PyFloat_AsDouble(timeout);
        if (deadline == -1 && PyErr_Occurred())
            goto done;
        deadline += lwp_monotonic();
    }
    if ((poller = poller_of(lwp)) == NULL || (fds = fds_of(poller)) == NULL)
        goto done;
    rc = ready(fds, fd, write);
    if (rc < 0)
        goto done;
    /* io_spend before the call: a Cancelled raised there loses no data */
    if ((rc > 0 ? io_spend(lwp) : wait_ready(poller, fds, fd, write, timeout)) < 0)
        goto done;
    for (;;) {
        result = method(fdn, argv);
        if (result != NULL || !PyErr_ExceptionMatches(PyExc_BlockingIOError))
            break;
        PyErr_Clear();
        /* self._wait(write, deadline), in C: its Python frame would stay on the
         * C stack of the parked thread (a connection's first recv gets here) */
        if (timeout == Py_None) {
            r = Py_NewRef(Py_None);
        } else {
            double remaining = deadline - lwp_monotonic();

            if (remaining <= 0) {
                PyErr_SetString(PyExc_TimeoutError, "timed out");
                goto done;
            }
            if ((r = PyFloat_FromDouble(remaining)) == NULL)
                goto done;
        }
        rc = wait_ready(poller, fds, fd, write, r);
        Py_DECREF(r);
        if (rc < 0)
            goto done;
    }
    if (result == NULL || short_ == 0)
        goto done;
    rc = PyObject_IsTrue(result);
    if (rc <= 0) {
        if (rc < 0)
            Py_CLEAR(result);
        goto done;
    }
    got = PyLong_CheckExact(result) ? PyLong_AsSsize_t(result) : PyObject_Length(result);
    if ((got == -1 && PyErr_Occurred()) || (got < short_ && not_ready(fds, fd, write) < 0))
        Py_CLEAR(result);  /* drained (filled) the buffer */
done:
    Py_XDECREF(fds);
    Py_XDECREF(poller);
    Py_DECREF(fd);
    return result;
}

/* The checks that open the C methods: 1 and *lwp, *timeout (new
 * references) for the common case, 0 to call the Python method, -1 on error. */
static int common_case(PyObject *self, PyObject **lwp, PyObject **timeout)
{
    *lwp = green_lwp();
    if (*lwp == NULL)
        return 0;
    *timeout = GET(self, sock_fields, S_TIMEOUT);
    if (*timeout != NULL && !is_zero(*timeout))
        return 1;
    Py_XDECREF(*timeout);
    Py_CLEAR(*lwp);
    return PyErr_Occurred() ? -1 : 0;
}

/* 0 if flags is 0 and the socket a stream, else 1; -1 on error. */
static int short_tells_nothing(PyObject *self, PyObject *flags)
{
    PyObject *stream;
    int truth = PyObject_IsTrue(flags);

    if (truth != 0)
        return truth;
    stream = GET(self, sock_fields, S_STREAM);
    if (stream == NULL)
        return -1;
    truth = PyObject_Not(stream);
    Py_DECREF(stream);
    return truth;
}

/* Positional int arguments only, from min to max of them: else the Python
 * method decides (and raises what it raises). */
static int plain_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                      Py_ssize_t first_int, Py_ssize_t min, Py_ssize_t max)
{
    Py_ssize_t i;

    if (kwnames != NULL || nargs < min || nargs > max)
        return 0;
    for (i = first_int; i < nargs; i++)
        if (!PyLong_CheckExact(args[i]))
            return 0;
    return 1;
}

/* What tells the C methods below apart. */
typedef struct {
    int ref;               /* the Python method: R_RECV ... */
    Py_ssize_t first_int;  /* arguments from this one on are ints (flags the last) */
    Py_ssize_t max;        /* how many arguments, at most */
    sys_call call;
    int write;
    /* short (see _io) when flags are 0 on a stream socket; -1 with an error set */
    Py_ssize_t (*size)(PyObject *const *argv);
} io_method;

/* The C method m of the socket: the checks, short, then io(). */
static PyObject *sock_io(const io_method *m, PyObject *self, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *lwp, *timeout, *result = NULL;
    PyObject *argv[4] = {self, zero, zero, zero};
    Py_ssize_t short_ = 0;
    int rc;

    if (!plain_args(args, nargs, kwnames, m->first_int, 1, m->max)
            || (rc = common_case(self, &lwp, &timeout)) == 0)
        return call_ref(m->ref, self, args, nargs, kwnames);
    if (rc < 0)
        return NULL;
    memcpy(argv + 1, args, nargs * sizeof *args);
    rc = short_tells_nothing(self, argv[m->max]);
    if (rc == 0 && (short_ = m->size(argv)) == -1 && PyErr_Occurred())
        rc = -1;
    if (rc >= 0)
        result = io(lwp, timeout, m->call, m->write, short_, argv);
    Py_DECREF(timeout);
    Py_DECREF(lwp);
    return result;
}

static Py_ssize_t bufsize(PyObject *const *argv)
{
    return PyLong_AsSsize_t(argv[1]);
}

/* nbytes or _nbytes(buffer) */
static Py_ssize_t room(PyObject *const *argv)
{
    Py_ssize_t n = PyLong_AsSsize_t(argv[2]);

    return n == 0 ? nbytes(argv[1]) : n;
}

static Py_ssize_t data_size(PyObject *const *argv)
{
    return nbytes(argv[1]);
}

static const io_method RECV = {R_RECV, 0, 2, call_recv, 0, bufsize};
static const io_method RECV_INTO = {R_RECV_INTO, 1, 3, call_recv_into, 0, room};
static const io_method SEND = {R_SEND, 1, 2, call_send, 1, data_size};

/* socket.recv(bufsize, flags=0) */
static PyObject *sock_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    return sock_io(&RECV, self, args, nargs, kwnames);
}

/* socket.recv_into(buffer, nbytes=0, flags=0) */
static PyObject *sock_recv_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    return sock_io(&RECV_INTO, self, args, nargs, kwnames);
}

/* socket.send(data, flags=0) */
static PyObject *sock_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    return sock_io(&SEND, self, args, nargs, kwnames);
}

/* socket.sendall(data, flags=0), for bytes: the rest is _send_from's. */
static PyObject *sock_sendall(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *lwp, *sent_o, *r, *timeout;
    PyObject *argv[3] = {self, NULL, zero};
    Py_ssize_t sent;
    int rc;

    if (!plain_args(args, nargs, kwnames, 1, 1, 2))
        return call_ref(R_SENDALL, self, args, nargs, kwnames);
    argv[1] = args[0];
    if (nargs == 2)
        argv[2] = args[1];
    lwp = green_lwp();
    if (lwp != NULL) {
        rc = io_spend(lwp);  /* see _io */
        Py_DECREF(lwp);
        if (rc < 0)
            return NULL;
    }
    if (!PyBytes_CheckExact(args[0]))
        return PyObject_CallMethodObjArgs(self, s__send_from, args[0], zero, argv[2], NULL);
    sent_o = fd_call(call_send, argv);
    if (sent_o == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_BlockingIOError))
            return NULL;
        timeout = GET(self, sock_fields, S_TIMEOUT);
        if (timeout == NULL)
            return NULL;
        rc = is_zero(timeout);
        Py_DECREF(timeout);
        if (rc)
            return NULL;
        PyErr_Clear();
        sent_o = Py_NewRef(zero);
    }
    sent = PyLong_AsSsize_t(sent_o);
    if (sent == -1 && PyErr_Occurred()) {
        Py_DECREF(sent_o);
        return NULL;
    }
    if (sent < PyBytes_GET_SIZE(args[0])) {  /* else the common case: the buffer took it all */
        r = PyObject_CallMethodObjArgs(self, s__send_from, args[0], sent_o, argv[2], NULL);
        Py_DECREF(sent_o);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    } else {
        Py_DECREF(sent_o);
    }
    Py_RETURN_NONE;
}

static PyMethodDef sock_methods[N_REFS] = {
    {"recv", (PyCFunction)(void (*)(void))sock_recv, METH_FASTCALL | METH_KEYWORDS,
     "recv($self, bufsize, flags=0)\n--\n\n"
     "Receive up to ``bufsize`` bytes; ``b\"\"`` at end of stream."},
    {"recv_into", (PyCFunction)(void (*)(void))sock_recv_into, METH_FASTCALL | METH_KEYWORDS,
     "recv_into($self, buffer, nbytes=0, flags=0)\n--\n\n"
     "Receive into ``buffer``; return the number of bytes."},
    {"send", (PyCFunction)(void (*)(void))sock_send, METH_FASTCALL | METH_KEYWORDS,
     "send($self, data, flags=0)\n--\n\n"
     "Send some of ``data``; return how many bytes went."},
    {"sendall", (PyCFunction)(void (*)(void))sock_sendall, METH_FASTCALL | METH_KEYWORDS,
     "sendall($self, data, flags=0)\n--\n\n"
     "Send all of ``data``; the timeout applies to the whole call."},
};

/* _native_socket_methods(socket, LWP, io_budget): called once by lwp.socket
 * once it has defined its class. */
static PyObject *py_socket_methods(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyTypeObject *cls;
    PyObject *found[N_REFS];
    int i;
    char name[32];

    (void)module;
    if (nargs != 3 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "_native_socket_methods(socket, LWP, io_budget)");
        return NULL;
    }
    if (lwp_type != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the native socket methods are installed already");
        return NULL;
    }
    cls = (PyTypeObject *)args[0];
    if (!PyType_IsSubtype(cls, ss_type)) {
        PyErr_Format(PyExc_TypeError, "not a socket class: %R", cls);
        return NULL;
    }
    if (lwp_load_fields((PyTypeObject *)args[1], lwp_fields, N_LWP_FIELDS) < 0
            || lwp_load_fields(cls, sock_fields, N_SOCK_FIELDS) < 0)
        return NULL;
    for (i = 0; i < N_REFS; i++) {
        found[i] = PyDict_GetItemString(cls->tp_dict, sock_methods[i].ml_name);
        if (found[i] == NULL || !PyFunction_Check(found[i])) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a Python method", cls->tp_name,
                         sock_methods[i].ml_name);
            return NULL;
        }
    }
    io_spend_fn = PyObject_GetAttrString(args[1], "io_spend");
    if (io_spend_fn == NULL)
        return NULL;
    for (i = 0; i < N_REFS; i++) {
        PyObject *descr = PyDescr_NewMethod(cls, &sock_methods[i]);

        refs[i] = Py_NewRef(found[i]);
        PyOS_snprintf(name, sizeof name, "_python_%s", sock_methods[i].ml_name);
        if (descr == NULL || PyObject_SetAttrString((PyObject *)cls, name, refs[i]) < 0
                || PyObject_SetAttrString((PyObject *)cls, sock_methods[i].ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return NULL;
        }
        Py_DECREF(descr);
    }
    io_budget = Py_NewRef(args[2]);
    lwp_type = (PyTypeObject *)Py_NewRef(args[1]);
    Py_RETURN_NONE;
}

static PyMethodDef functions[] = {
    {"_native_deliver", (PyCFunction)(void (*)(void))py_deliver, METH_FASTCALL,
     "_native_deliver(poller, events): _deliver_events"},
    {"_native_socket_methods", (PyCFunction)(void (*)(void))py_socket_methods, METH_FASTCALL,
     "_native_socket_methods(socket, LWP, io_budget): C recv, recv_into, send, sendall"},
    {NULL, NULL, 0, NULL},
};

/* -- init ---------------------------------------------------------------------- */

static int init(const char *module_name)
{
    static struct { PyObject **var; const char *name; } names[] = {
        {&s_wait, "wait"}, {&s__drop, "_drop"},
        {&s__oneshot_event, "_oneshot_event"},
        {&s__send_from, "_send_from"}, {&s__adopt, "_adopt"}, {&s__arm, "_arm"},
    };
    static struct { PyObject **var; const char *name; } objects[] = {
        {&gens, "_gens"}, {&timed_out, "TIMED_OUT"}, {&leave_fn, "_leave"},
        {(PyObject **)&fd_state_type, "_FdState"}, {(PyObject **)&poller_type, "Poller"},
    };
    static struct { long *var; const char *name; } masks[] = {
        {&EDGED, "_EDGED"}, {&STICKY, "_STICKY"}, {&READ_EDGE, "_READ_EDGE"},
        {&WRITE, "_WRITE"}, {&WCLOSED, "_WCLOSED"},
    };
    static struct { PyObject **var; const char *name; } methods[] = {
        {&ss_recv, "recv"}, {&ss_recv_into, "recv_into"}, {&ss_send, "send"},
        {&ss_fileno, "fileno"},
    };
    PyObject *module, *v;
    size_t i;
    int rc = -1;

    if (poller_type != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lwp_io_py_init() called twice");
        return -1;
    }
    if ((errno = pthread_key_create(&recv_buffer_key, free)) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].var = PyUnicode_InternFromString(names[i].name)) == NULL)
            return -1;
    if ((zero = PyLong_FromLong(0)) == NULL || (module = lwp_imported_module(module_name)) == NULL)
        return -1;
    for (i = 0; i < sizeof objects / sizeof objects[0]; i++)
        if ((*objects[i].var = PyObject_GetAttrString(module, objects[i].name)) == NULL)
            goto done;
    if (!PyDict_Check(gens) || !PyType_Check(fd_state_type) || !PyType_Check(poller_type)) {
        PyErr_SetString(PyExc_TypeError, "lwp._core.poller is not what io_py.c reads");
        goto done;
    }
    for (i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        v = PyObject_GetAttrString(module, masks[i].name);
        if (v == NULL)
            goto done;
        *masks[i].var = PyLong_AsLong(v);
        Py_DECREF(v);
        if (*masks[i].var == -1 && PyErr_Occurred())
            goto done;
    }
    if (lwp_load_fields(fd_state_type, fd_fields, N_FD_FIELDS) < 0
            || lwp_load_fields(poller_type, poller_fields, N_POLLER_FIELDS) < 0
            || (deque_type = (PyTypeObject *)lwp_attr_of("collections", "deque")) == NULL
            || (ss_type = (PyTypeObject *)lwp_attr_of("_socket", "socket")) == NULL)
        goto done;
    for (i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if ((*methods[i].var = PyObject_GetAttrString((PyObject *)ss_type, methods[i].name)) == NULL)
            goto done;
    rc = 0;
done:
    Py_DECREF(module);
    return rc;
}

int lwp_io_py_init(const char *module_name)
{
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released it around this call */
    int rc = init(module_name);

    if (rc != 0)
        PyErr_WriteUnraisable(NULL);
    else
        rc = lwp_add_builtins(module_name, functions);
    PyGILState_Release(gil);
    return rc;
}

#endif /* CPython */
