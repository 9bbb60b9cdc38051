/*
 * preempt.h - the native half of time-slice preemption (lwp/_core/preempt.py
 * is the other half and explains the design).
 *
 * The monitor thread arms a one-shot C trace function on the Python thread
 * state of an LWP whose green thread overran its slice.  CPython calls it on
 * that LWP's kernel thread at the next "line" or "call" event; it asks the
 * Python side whether this is a safe point, disarms itself (only if the
 * installed trace function is still this one), and, at a safe point, yields
 * to the LWP's scheduler from inside the callback with CPython's per-thread
 * "tracing" guard lifted for the time the green thread is suspended.
 *
 * Supported: CPython 3.11 and 3.12 with the GIL, where _PyEval_SetTrace()
 * (set the trace function of *another* thread state) is exported.  Elsewhere
 * lwp_preempt_init() fails and lwp_preempt_unsupported() says why.
 *
 * cffi releases the GIL around every call it wraps, and arming must run
 * holding it without letting the hooked thread run meanwhile; so cffi sees
 * only the two functions below, and lwp_preempt_init() installs the real
 * entry points (_arm, _disarm, _owner) as builtin functions, which run with
 * the GIL held, into the Python module named by its argument.
 */
#ifndef LWP_PREEMPT_H
#define LWP_PREEMPT_H

#ifdef __cplusplus
extern "C" {
#endif

/* LWP_CDEF_BEGIN - lwp/_native_build.py hands this part to cffi verbatim. */

/* Add the builtins _arm, _disarm and _owner to the already imported module
 * sys.modules[module_name].  Returns 0, -1 if this build of CPython is not
 * supported (see lwp_preempt_unsupported), -2 on any other failure (the
 * Python error is printed as unraisable).  Takes the GIL itself. */
int lwp_preempt_init(const char *module_name);

/* NULL if preemption is supported by the CPython this was compiled for,
 * else a static string saying why not. */
const char *lwp_preempt_unsupported(void);

/* LWP_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* LWP_PREEMPT_H */
