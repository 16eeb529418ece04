/* The layout guard: the field order the core assumes when it builds objects by position.
 *
 * The core constructs Order, Trade and the events with positional arguments, calls the
 * ``_Bucket`` and ``Level`` constructors positionally, and fills a new Level's slots itself. If a
 * field were inserted or reordered in model.py / events.py / book.py / indexes.py, those calls
 * would still succeed -- and build objects with values in the wrong fields. So at import the
 * classes are compared with the orders below, and any difference refuses the import with an
 * ImportError naming the class (the engine then runs its pure-Python methods, and the build test
 * fails wherever a compiler is installed). ``_check_layout(classes)`` runs the same comparison
 * on any ``{name: class}`` mapping, which is how the tests show the guard trips.
 */
#include "native.h"

enum { STRUCT_PREFIX, INIT_ARGS, SLOT_SET };

typedef struct {
    const char *name; /* key in the mapping, and the class named in messages */
    int kind;
    /* STRUCT_PREFIX: the first fields of __struct_fields__, in order, every later one defaulted;
     * INIT_ARGS: __init__'s positional parameters after self, exactly;
     * SLOT_SET: exactly these names in __slots__, in any order (filled by offset) */
    const char *const *fields;
} th_layout;

static const char *const ORDER[] = {"order_id", "type",     "broker_id", "document_number",
                                    "side",     "symbol",   "quantity",  "price",
                                    "expires_at", "created_at", "remaining", NULL};
static const char *const TRADE[] = {"trade_id", "price", "quantity", "executed_at",
                                    "buy_order_id", "sell_order_id", NULL};
static const char *const TRADE_EXECUTED[] = {"symbol", "trade_id", "price", "quantity",
                                             "taker_side", "executed_at", NULL};
static const char *const ORDER_FILLED[] = {"trade_id", "broker_id", "order_id", "symbol",
                                           "side", "price", "quantity", "order_status",
                                           "order_filled_quantity", "order_remaining_quantity",
                                           "executed_at", NULL};
static const char *const ORDER_CLOSED[] = {"event", "broker_id", "order_id", "symbol", "side",
                                           "price", "quantity", "filled_quantity",
                                           "cancelled_quantity", "status", "at", NULL};
static const char *const BUCKET_INIT[] = {"first", "second", NULL};
static const char *const LEVEL_INIT[] = {"price", NULL};
static const char *const LEVEL_SLOTS[] = {"count", "dead", "orders", "price", "total", NULL};

static const th_layout LAYOUTS[] = {
    {"Order", STRUCT_PREFIX, ORDER},
    {"Trade", STRUCT_PREFIX, TRADE},
    {"TradeExecuted", STRUCT_PREFIX, TRADE_EXECUTED},
    {"OrderFilled", STRUCT_PREFIX, ORDER_FILLED},
    {"OrderClosed", STRUCT_PREFIX, ORDER_CLOSED},
    {"_Bucket", INIT_ARGS, BUCKET_INIT},
    {"Level", INIT_ARGS, LEVEL_INIT},
    {"Level", SLOT_SET, LEVEL_SLOTS},
};

static PyObject *names_tuple(const char *const *fields)
{
    Py_ssize_t n = 0;
    while (fields[n] != NULL)
        n++;
    PyObject *t = PyTuple_New(n);
    for (Py_ssize_t i = 0; t != NULL && i < n; i++) {
        PyObject *s = PyUnicode_InternFromString(fields[i]);
        if (s == NULL)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

/* ``sequence[start:stop]`` as a tuple; TypeError naming the class if it is not a sequence. */
static PyObject *tuple_slice(PyObject *seq, Py_ssize_t start, Py_ssize_t stop)
{
    PyObject *t = PySequence_Tuple(seq);
    if (t == NULL)
        return NULL;
    PyObject *part = PyTuple_GetSlice(t, start, stop);
    Py_DECREF(t);
    return part;
}

/* 1 when ``cls`` matches, 0 when not (with *found set to what it has), -1 on error. */
static int matches(const th_layout *l, PyObject *cls, PyObject *expected, PyObject **found,
                   const char **why)
{
    Py_ssize_t n = PyTuple_GET_SIZE(expected);
    int rc = -1;
    if (l->kind == STRUCT_PREFIX) {
        PyObject *fields = PyObject_GetAttrString(cls, "__struct_fields__");
        PyObject *defaults = fields == NULL ? NULL
                                            : PyObject_GetAttrString(cls, "__struct_defaults__");
        Py_ssize_t total = fields == NULL ? -1 : PyObject_Length(fields);
        Py_ssize_t defaulted = defaults == NULL ? -1 : PyObject_Length(defaults);
        if (total >= 0 && defaulted >= 0 && (*found = tuple_slice(fields, 0, n)) != NULL) {
            rc = PyObject_RichCompareBool(*found, expected, Py_EQ);
            *why = "fields (first, in order)";
            if (rc == 1 && total - defaulted > n) { /* a required field past the ones passed */
                Py_SETREF(*found, tuple_slice(fields, 0, total - defaulted));
                *why = "required fields";
                rc = *found == NULL ? -1 : 0;
            }
        }
        Py_XDECREF(fields);
        Py_XDECREF(defaults);
        return rc;
    }
    if (l->kind == INIT_ARGS) {
        PyObject *init = PyObject_GetAttrString(cls, "__init__");
        PyObject *code = init == NULL ? NULL : PyObject_GetAttrString(init, "__code__");
        PyObject *names = code == NULL ? NULL : PyObject_GetAttrString(code, "co_varnames");
        PyObject *count = code == NULL ? NULL : PyObject_GetAttrString(code, "co_argcount");
        Py_ssize_t argc = count == NULL ? -1 : PyLong_AsSsize_t(count);
        if (names != NULL && argc >= 1 && (*found = tuple_slice(names, 1, argc)) != NULL) {
            rc = PyObject_RichCompareBool(*found, expected, Py_EQ);
            *why = "__init__ parameters";
        }
        else if (argc == 0 && !PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "__init__ of %R takes no self", cls);
        }
        Py_XDECREF(init);
        Py_XDECREF(code);
        Py_XDECREF(names);
        Py_XDECREF(count);
        return rc;
    }
    /* SLOT_SET: the class's own __slots__ (not inherited: a subclass would add to them) */
    PyObject *slots = PyObject_GetAttrString(cls, "__slots__");
    PyObject *have = slots == NULL ? NULL
                     : PyUnicode_Check(slots) ? PyTuple_Pack(1, slots)
                                              : PySequence_Tuple(slots);
    PyObject *have_set = have == NULL ? NULL : PyFrozenSet_New(have);
    PyObject *want_set = have_set == NULL ? NULL : PyFrozenSet_New(expected);
    if (want_set != NULL) {
        rc = PyObject_RichCompareBool(have_set, want_set, Py_EQ);
        *found = Py_NewRef(have);
        *why = "__slots__";
    }
    Py_XDECREF(slots);
    Py_XDECREF(have);
    Py_XDECREF(have_set);
    Py_XDECREF(want_set);
    return rc;
}

int th_check_layout(PyObject *classes)
{
    for (size_t i = 0; i < sizeof LAYOUTS / sizeof LAYOUTS[0]; i++) {
        const th_layout *l = &LAYOUTS[i];
        PyObject *cls = PyMapping_GetItemString(classes, l->name);
        PyObject *expected = cls == NULL ? NULL : names_tuple(l->fields);
        PyObject *found = NULL;
        const char *why = "";
        int ok = expected == NULL ? -1 : matches(l, cls, expected, &found, &why);
        if (ok == 0)
            PyErr_Format(PyExc_ImportError,
                         "tradehall.exchange._native: the layout of %s changed: the C core "
                         "assumes %s %R, the class has %R; update exchange/native/ to match "
                         "(until then the engine can only run in pure Python)",
                         l->name, why, expected, found);
        else if (ok < 0 && !PyErr_ExceptionMatches(PyExc_ImportError)) {
            /* not a class the core can read at all: refuse the import all the same */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            PyErr_Format(PyExc_ImportError,
                         "tradehall.exchange._native: cannot check the layout of %s: %S",
                         l->name, value ? value : Py_None);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        Py_XDECREF(cls);
        Py_XDECREF(expected);
        Py_XDECREF(found);
        if (ok != 1)
            return -1;
    }
    return 0;
}
