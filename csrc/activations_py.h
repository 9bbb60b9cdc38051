/*
 * activations_py.h - the entry points of the activation pool that an LWP
 * calls on its hot path, as builtin functions that keep the GIL.
 *
 * cffi releases the GIL around every call it wraps.  Next to a green thread
 * that computes (a "CPU hog" on another LWP), each release is a chance for
 * the hog's kernel thread to take the GIL, and getting it back costs the LWP
 * a whole switch interval (sys.getswitchinterval(), 5 ms): a GIL convoy.
 * Submitting a request and draining completions take a mutex that workers
 * hold for a few instructions, so there is nothing to gain by releasing the
 * GIL around them.  lwp_activations_py_init() installs them as builtins,
 * which run holding the GIL (or, on a free-threaded build, an attached
 * thread state), into the Python module named by its argument:
 *
 *   _submit(pool, cq, req) -> 0 or an errno value (ESHUTDOWN)
 *   _drain(cq, out, max)   -> n, as lwp_cq_drain()
 *   _inflight(cq)          -> lwp_cq_inflight()
 *   _ready(cq)             -> lwp_cq_ready()
 *   _spin(cq, wakefd, ns)  -> lwp_cq_ready() after waiting up to ns
 *                             nanoseconds for it to be non-zero; when it
 *                             is, wakefd (an eventfd) has been reset
 *
 * The pointer arguments are addresses as Python ints (what
 * int(ffi.cast("uintptr_t", p)) gives): these are private to
 * lwp/_core/native.py, which owns the objects and passes only live ones.
 */
#ifndef LWP_ACTIVATIONS_PY_H
#define LWP_ACTIVATIONS_PY_H

#ifdef __cplusplus
extern "C" {
#endif

/* LWP_CDEF_BEGIN - lwp/_native_build.py hands this part to cffi verbatim. */

/* Add the builtins listed above to the already imported module
 * sys.modules[module_name].  0, or -1: on PyPy (no CPython C API; the
 * caller uses the cffi functions instead), or on failure with the Python
 * error printed as unraisable.  Takes the GIL itself. */
int lwp_activations_py_init(const char *module_name);

/* LWP_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* LWP_ACTIVATIONS_PY_H */
