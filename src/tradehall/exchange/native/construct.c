/* Building the engine's msgspec structs (Order, Trade and the events) without a call.
 *
 * ``Order(*args)`` goes through msgspec's generic constructor: argument counting, keyword and
 * default handling, then the allocation. For the five structs the core builds on every command
 * that work is fixed, so it is done once, here, at import: each field's slot offset and each
 * default value. A construction is then what msgspec's own constructor ends with -- the type's
 * ``tp_alloc`` (zeroed memory, a new reference to the type) and one stored reference per field.
 *
 * That shortcut is only taken when it builds exactly what the constructor would. A maker is
 * *direct* when its class is a msgspec struct outside the cycle collector (``gc=False``: nothing
 * to track), without ``__post_init__``, whose every field is an object slot, and whose defaults
 * are all immutable values (None, bool, int, str: no ``default_factory``, no mutable value that
 * a constructor would copy). Otherwise, or for a class changed later in a way these checks do
 * not cover, it calls the class as before -- slower, never wrong. The differential tests compare
 * the objects both builds make field by field.
 */
#include "native.h"

#include <structmember.h>

/* A default the constructor would store as it is (shared, never copied). */
static int is_plain_default(PyObject *v)
{
    return v == Py_None || PyBool_Check(v) || PyLong_CheckExact(v) || PyUnicode_CheckExact(v);
}

/* The slot offset behind ``cls.<name>``: a member descriptor holding an object (and, when
 * ``writable``, not read-only). -1 when it is not one, or when the class has no such attribute;
 * any other lookup error is left set. */
Py_ssize_t th_member_offset(PyObject *cls, const char *name, int writable)
{
    PyObject *d = PyObject_GetAttrString(cls, name);
    if (d == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError))
            PyErr_Clear();
        return -1;
    }
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if ((m->type == T_OBJECT_EX || m->type == T_OBJECT) && !(writable && (m->flags & READONLY)))
            off = m->offset;
    }
    Py_DECREF(d);
    return off;
}

/* Whether ``cls`` can be built directly; fills ``m`` when it can. -1 only on a Python error. */
static int inspect(th_maker *m, PyObject *cls)
{
    PyTypeObject *type = (PyTypeObject *)cls;
    if (!PyType_Check(cls) || PyType_IS_GC(type) || type->tp_alloc == NULL)
        return 0;
    int has_post_init = PyObject_HasAttrString(cls, "__post_init__");
    PyObject *fields = PyObject_GetAttrString(cls, "__struct_fields__");
    PyObject *defaults = fields == NULL ? NULL : PyObject_GetAttrString(cls, "__struct_defaults__");
    int ok = 0;
    if (defaults == NULL) {
        PyErr_Clear(); /* not a msgspec struct: call it */
        goto done;
    }
    if (has_post_init || !PyTuple_CheckExact(fields) || !PyTuple_CheckExact(defaults))
        goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(fields), nd = PyTuple_GET_SIZE(defaults);
    if (n > TH_MAKER_MAX_FIELDS || nd > n)
        goto done;
    for (Py_ssize_t i = 0; i < nd; i++)
        if (!is_plain_default(PyTuple_GET_ITEM(defaults, i)))
            goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(fields, i));
        Py_ssize_t off = name == NULL ? -1 : th_member_offset(cls, name, 0);
        if (off < (Py_ssize_t)sizeof(PyObject) || off + (Py_ssize_t)sizeof(PyObject *) >
                                                       type->tp_basicsize) {
            if (PyErr_Occurred())
                ok = -1;
            goto done;
        }
        m->offsets[i] = off;
    }
    m->fields = n;
    m->required = n - nd;
    m->defaults = Py_NewRef(defaults);
    ok = 1;
done:
    Py_XDECREF(fields);
    Py_XDECREF(defaults);
    return ok;
}

int th_maker_init(th_maker *m, PyObject *cls)
{
    m->cls = Py_NewRef(cls);
    m->defaults = NULL;
    m->fields = m->required = 0;
    int direct = inspect(m, cls);
    if (direct < 0)
        return -1;
    m->direct = direct;
    return 0;
}

void th_maker_clear(th_maker *m)
{
    Py_CLEAR(m->cls);
    Py_CLEAR(m->defaults);
    m->direct = 0;
}

PyObject *th_make(const th_maker *m, PyObject *const *args, Py_ssize_t n)
{
    if (!m->direct || n < m->required || n > m->fields)
        return PyObject_Vectorcall(m->cls, args, (size_t)n, NULL);
    PyTypeObject *type = (PyTypeObject *)m->cls;
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL)
        return NULL;
    Py_ssize_t i = 0;
    for (; i < n; i++) {
        if (args[i] == NULL) { /* an unset field read by the caller */
            Py_DECREF(obj);
            PyErr_Format(PyExc_AttributeError, "%.100s built from an unset field", type->tp_name);
            return NULL;
        }
        FIELD(obj, m->offsets[i]) = Py_NewRef(args[i]);
    }
    Py_ssize_t first_default = m->fields - PyTuple_GET_SIZE(m->defaults);
    for (; i < m->fields; i++)
        FIELD(obj, m->offsets[i]) = Py_NewRef(PyTuple_GET_ITEM(m->defaults, i - first_default));
    return obj;
}
