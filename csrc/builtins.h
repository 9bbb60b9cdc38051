/*
 * builtins.h - adding builtin functions to an imported Python module, for the
 * native parts that must run holding the GIL (activations_py.c, preempt.c...):
 * cffi releases it around every call it wraps, a builtin does not.
 */
#ifndef LWP_BUILTINS_H
#define LWP_BUILTINS_H

#include <Python.h>

/* Add defs (NULL-terminated) to sys.modules[module_name], which must be
 * imported already.  0, or -1 with the error printed as unraisable.  The
 * caller holds the GIL. */
int lwp_add_builtins(const char *module_name, PyMethodDef *defs);

/* sys.modules[module_name] (new reference), or NULL with ImportError if it
 * is not imported (or another error).  The caller holds the GIL. */
PyObject *lwp_imported_module(const char *module_name);

#endif /* LWP_BUILTINS_H */
