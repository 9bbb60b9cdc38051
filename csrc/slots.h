/*
 * slots.h - what the native doors (park_py.c, io_py.c) share to read and
 * write the slots of lwp's Python classes and to look their objects up.
 *
 * A slot's member descriptor is looked up once, and the slot then read and
 * written at its offset: a fraction of the cost of PyObject_GetAttr, which
 * looks the name up in the type and the instance first.  The caller holds
 * the GIL.
 */
#ifndef LWP_SLOTS_H
#define LWP_SLOTS_H

#include <Python.h>
#include <structmember.h>

typedef struct {
    const char *name;
    PyObject *descr;     /* the member descriptor, kept alive */
    PyMemberDef *member;
} field;

/* obj.<field>: a new reference, or NULL with AttributeError if unset; and
 * obj.<field> = v (v not NULL).  What PyMember_GetOne and PyMember_SetOne do
 * for a slot (T_OBJECT_EX, never read-only), without their generic checks:
 * obj must be an instance of the type the field was loaded from, and the
 * slot writable and not audited (lwp_load_fields checks). */
static inline PyObject *lwp_slot_get(PyObject *obj, const field *f)
{
    PyObject *v = *(PyObject **)((char *)obj + f->member->offset);

    if (v == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%.200s' object has no attribute '%s'",
                     Py_TYPE(obj)->tp_name, f->name);
        return NULL;
    }
    return Py_NewRef(v);
}

static inline int lwp_slot_set(PyObject *obj, const field *f, PyObject *v)
{
    PyObject **addr = (PyObject **)((char *)obj + f->member->offset), *old = *addr;

    *addr = Py_NewRef(v);
    Py_XDECREF(old);
    return 0;
}

#define GET(obj, fields, i) lwp_slot_get((PyObject *)(obj), &(fields)[i])
#define SET(obj, fields, i, v) lwp_slot_set((PyObject *)(obj), &(fields)[i], (v))

/* Fill fields[0..n) (n <= LWP_MAX_FIELDS) from the member descriptors
 * (slots) of type; on failure (AttributeError, or TypeError for a name
 * that is not a writable slot) fields[] is left as it was. */
#define LWP_MAX_FIELDS 16
int lwp_load_fields(PyTypeObject *type, field *fields, int n);

/* module.name (importing the module), a new reference. */
PyObject *lwp_attr_of(const char *module_name, const char *name);

#endif /* LWP_SLOTS_H */
