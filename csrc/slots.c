/*
 * slots.c - see slots.h: slots and arguments for the native doors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef PYPY_VERSION

#include <structmember.h>

#include "slots.h"

int lwp_load_fields(PyTypeObject *type, field *fields, int n)
{
    PyObject *found[LWP_MAX_FIELDS];
    int i;

    if (n > LWP_MAX_FIELDS) {
        PyErr_SetString(PyExc_SystemError, "lwp_load_fields: too many fields");
        return -1;
    }
    for (i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttrString((PyObject *)type, fields[i].name);

        if (d != NULL && (!Py_IS_TYPE(d, &PyMemberDescr_Type)
                          || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX
                          || ((PyMemberDescrObject *)d)->d_member->flags != 0)) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, fields[i].name);
            Py_CLEAR(d);
        }
        if (d == NULL) {
            while (i > 0)
                Py_DECREF(found[--i]);
            return -1;
        }
        found[i] = d;
    }
    for (i = 0; i < n; i++) {
        Py_XSETREF(fields[i].descr, found[i]);
        fields[i].member = ((PyMemberDescrObject *)found[i])->d_member;
    }
    return 0;
}

PyObject *lwp_attr_of(const char *module_name, const char *name)
{
    PyObject *module = PyImport_ImportModule(module_name), *v;

    if (module == NULL)
        return NULL;
    v = PyObject_GetAttrString(module, name);
    Py_DECREF(module);
    return v;
}

#endif /* !PYPY_VERSION */
