/*
 * io_py.h - the socket hot path (lwp/socket.py's _io, recv, recv_into, send,
 * sendall, with the poller calls they make) and the per-event loop of
 * Poller.poll (lwp/_core/poller.py's _deliver_events) as builtins that keep
 * the GIL.
 *
 * The Python stays the reference and is selected by the same switch as the
 * park door (LWP_NATIVE_PARK=0, or PyPy); each function below transcribes
 * the common case of the Python named in its comment, statement for
 * statement, and calls that Python for the rest: a plain OS thread, a
 * non-blocking socket, arguments of other types, a second waiter of one
 * direction, the I/O budget's end, a one-shot registration's event, a
 * closed file's state.  An fd whose state must be adopted, or that is not
 * edge-registered yet, is handed to Poller._adopt and Poller._arm, which
 * return before the C parks: a parked thread keeps no eval-loop frame on
 * its C stack, which greenlet saves with it.  What it saves is the interpretation: the handler's
 * recv, _io, Poller.ready, Poller.wait, Poller.not_ready and LWP.io_spend
 * are Python frames in the reference and none here.  lwp_io_py_init()
 * installs into the Python module named by its argument
 * (lwp._core.poller, fully imported but for the call):
 *
 *   _native_deliver(poller, events) -> as _deliver_events(poller, events)
 *   _native_socket_methods(socket, LWP, io_budget)
 *                        replaces the methods recv, recv_into, send and
 *                        sendall of lwp's socket class by C methods; the
 *                        Python ones stay there as _python_recv, ... and
 *                        are what the C falls back to
 *
 * It reads from that module _gens, _FdState, Poller, TIMED_OUT, _leave and
 * the masks _EDGED, _STICKY, _READ_EDGE, _WRITE, _WCLOSED, and wakes and
 * parks through the door of park_py.c (park_door.h).
 */
#ifndef LWP_IO_PY_H
#define LWP_IO_PY_H

#ifdef __cplusplus
extern "C" {
#endif

/* LWP_CDEF_BEGIN - lwp/_native_build.py hands this part to cffi verbatim. */

/* Add the names listed above to the already imported module
 * sys.modules[module_name]; only after lwp_park_py_init() succeeded.  0,
 * or -1: on PyPy (no CPython C API), or on failure with the Python error
 * printed as unraisable.  Takes the GIL itself. */
int lwp_io_py_init(const char *module_name);

/* LWP_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* LWP_IO_PY_H */
