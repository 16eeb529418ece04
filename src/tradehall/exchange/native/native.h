/* Shared declarations of the native engine core (tradehall.exchange._native).
 *
 * The core works on the very Python objects the pure engine uses. Their fields are slots
 * (``__slots__`` classes and msgspec structs), so each is read and written at a fixed offset
 * found once, at import, from the class's member descriptor -- exactly what attribute access
 * does after its lookup. Every field holds a strong reference; FIELD() is that storage.
 *
 * Integers stay Python ints (money and quantities are exact at any size): the num_* helpers
 * take a C fast path when both operands fit in a long long and the result does not overflow,
 * and otherwise call the generic number protocol, as the interpreter would.
 */
#ifndef TRADEHALL_NATIVE_H
#define TRADEHALL_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The storage of one slot: a strong reference, or NULL while unset. */
#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* Slot offsets of every field the hot path touches, filled by th_init_offsets(). */
typedef struct {
    /* msgspec structs */
    Py_ssize_t o_order_id, o_type, o_broker_id, o_side, o_symbol, o_quantity, o_price,
        o_expires_at, o_remaining, o_filled, o_status, o_closed_at, o_list_pos, o_trade_log;
    Py_ssize_t r_type, r_broker_id, r_document_number, r_side, r_symbol, r_quantity, r_price,
        r_expires_at;
    /* __slots__ classes */
    Py_ssize_t b_broker_id, b_cash, b_reserved_cash, b_holdings, b_updated_at;
    Py_ssize_t h_quantity, h_reserved;
    Py_ssize_t m_book, m_window;
    Py_ssize_t ob_symbol, ob_bids, ob_asks;
    Py_ssize_t s_heap, s_levels, s_sign, s_best_level, s_is_bid;
    Py_ssize_t l_count, l_dead, l_orders, l_price, l_total;
    Py_ssize_t x_buckets, x_heap, x_live;
    Py_ssize_t k_live, k_orders;
    Py_ssize_t bo_all, bo_blocks, bo_supers, bo_new_row;
    Py_ssize_t w_trades, w_notional, w_quantity, w_last_price, w_last_trade_at, w_window_ns;
    /* the engine's counters, and the state of the id sources served natively */
    Py_ssize_t e_last_ns, e_seq, e_trade_count;
    Py_ssize_t q_next, q_head, rb_batch;
} th_offsets;

extern th_offsets TH;

/* How one msgspec struct class is built (construct.c): directly into its slots when that makes
 * exactly what calling the class would, else by calling it. */
#define TH_MAKER_MAX_FIELDS 24
typedef struct {
    PyObject *cls;      /* strong */
    PyObject *defaults; /* __struct_defaults__ (strong), when direct */
    Py_ssize_t fields, required;
    Py_ssize_t offsets[TH_MAKER_MAX_FIELDS];
    int direct;
} th_maker;

int th_maker_init(th_maker *m, PyObject *cls);
/* The offset of the object slot behind ``cls.<name>``, or -1 (construct.c). */
Py_ssize_t th_member_offset(PyObject *cls, const char *name, int writable);
void th_maker_clear(th_maker *m);
/* ``cls(*args)``: a new reference, or NULL with an exception. */
PyObject *th_make(const th_maker *m, PyObject *const *args, Py_ssize_t n);

/* Classes, functions and constants taken from the Python modules at import (strong refs). */
typedef struct {
    PyObject *Order, *Trade, *TradeExecuted, *OrderFilled, *OrderClosed, *OrderRequest;
    PyObject *Engine, *Level, *Holding, *Bucket, *SystemClock, *SequentialIds, *RandomIds;
    PyObject *ValidationError, *BrokerNotFound, *InsufficientBalance, *InsufficientHoldings,
        *NoLiquidity, *OrderNotFound, *OrderNotCancellable;
    PyObject *deque_append, *deque_popleft, *deque_extend, *deque_clear, *deque_type;
    PyObject *heapify;
    PyObject *append_trade, *urandom, *batch_bytes, *sweep, *sys_intern, *status_index,
        *transitions;
    /* interned strings */
    PyObject *s_limit, *s_market, *s_bid, *s_ask, *s_pending, *s_partially_filled, *s_filled,
        *s_cancelled, *s_expired, *s_order_cancelled, *s_order_expired;
    PyObject *s_market_fn, *s_close, *s_live_orders, *s_pop_due, *s_total, *s_submit_python,
        *s_cancel_python;
    PyObject *s_append, *s_replay_times, *s_replay_ids, *s_read_clock, *s_mint, *s_times,
        *s_new_ids, *s_machine_module;
    PyObject *msg_expires_at;
    PyObject *zero, *one;
    Py_ssize_t trade_log_tuple_max;
    /* _STATUS_INDEX's keys (held) and values, for lookups by identity */
    PyObject *status_keys[8];
    Py_ssize_t status_values[8];
    int status_count;
    /* deque.append / deque.popleft as C functions (METH_O / METH_NOARGS), called directly on
     * exact deques: the same function the method descriptor would call, minus its checks */
    PyCFunction deque_append_fn, deque_popleft_fn;
    /* the structs the core builds on every command */
    th_maker make_order, make_trade, make_trade_executed, make_order_filled, make_order_closed;
} th_globals;

extern th_globals G;

int th_init_offsets(void);
int th_init_counts(void); /* structures.c: array('q') rows written in place, when verified */
int th_counts_in_place(void); /* whether th_init_counts verified that layout */
int th_check_layout(PyObject *classes); /* layout.c: ImportError when a class moved a field */

/* ---- clock and ids (sources.c) ---- */

/* How one engine's clock is read and ids are minted: through the engine's bound methods, or by
 * the fast path for the exact source behind them (kinds are private to sources.c). */
typedef struct {
    int clock_kind, ids_kind;
    PyObject *read_clock; /* Engine._read_clock: the clock's bound time_ns */
    PyObject *new_id;     /* Engine._new_id: the id source's bound new_id */
    PyObject *ids_source; /* a plain id source served by offset (the engine's or a recorder's) */
    /* a machine Recorder as clock and ids: itself, its instance dict, and the bound methods of
     * its underlying clock and ids (``_read_clock`` / ``_mint``) as they were at set-up */
    PyObject *recorder, *rec_dict, *rec_read, *rec_mint;
    int rec_clock_kind, rec_ids_kind;
} th_sources;

int th_sources_init(th_sources *s, PyObject *engine); /* all fields zero before */
void th_sources_clear(th_sources *s);
int th_sources_traverse(th_sources *s, visitproc visit, void *arg);
PyObject *th_read_clock(th_sources *s); /* engine._read_clock(), new reference */
PyObject *th_new_id(th_sources *s);     /* engine._new_id(), new reference */
PyObject *th_format_uuid4s(PyObject *raw); /* tradehall.core.ids.format_uuid4s */

/* ---- field access ---- */

/* A new reference to a slot's value; AttributeError when unset. */
static inline PyObject *th_get(PyObject *obj, Py_ssize_t off)
{
    PyObject *v = FIELD(obj, off);
    if (v == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%.100s' object has an unset field",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    Py_INCREF(v);
    return v;
}

/* A borrowed reference to a slot's value (NULL + AttributeError when unset). Only for
 * objects that stay referenced elsewhere for as long as it is used. */
static inline PyObject *th_peek(PyObject *obj, Py_ssize_t off)
{
    PyObject *v = FIELD(obj, off);
    if (v == NULL)
        PyErr_Format(PyExc_AttributeError, "'%.100s' object has an unset field",
                     Py_TYPE(obj)->tp_name);
    return v;
}

/* Store a new reference (stolen) in a slot, releasing the old value after the store. */
static inline void th_put(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject *old = FIELD(obj, off);
    FIELD(obj, off) = value;
    Py_XDECREF(old);
}

/* Store a borrowed reference in a slot. */
static inline void th_set(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    Py_INCREF(value);
    th_put(obj, off, value);
}

/* ---- numbers ---- */

static inline int th_ll(PyObject *o, long long *out)
{
    if (!PyLong_CheckExact(o))
        return 0;
#if PY_VERSION_HEX < 0x030C0000 && PyLong_SHIFT == 30
    /* 3.11 layout: ob_size is the signed digit count. Up to three 30-bit digits whose top
     * one keeps |v| < 2**63 are read here -- nanosecond timestamps and deadlines need three --
     * and the API call below handles the rest (and reports overflow). */
    Py_ssize_t size = Py_SIZE(o);
    const digit *d = ((PyLongObject *)o)->ob_digit;
    long long v;
    switch (size) {
    case 0: *out = 0; return 1;
    case 1: *out = (long long)d[0]; return 1;
    case -1: *out = -(long long)d[0]; return 1;
    case 2: *out = (long long)d[0] | ((long long)d[1] << 30); return 1;
    case -2: *out = -((long long)d[0] | ((long long)d[1] << 30)); return 1;
    case 3:
    case -3:
        if (d[2] >> 3) /* 2**63 or more */
            break;
        v = (long long)d[0] | ((long long)d[1] << 30) | ((long long)d[2] << 60);
        *out = size < 0 ? -v : v;
        return 1;
    default: break;
    }
#endif
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(o, &overflow);
    return !overflow;
}

static inline PyObject *num_add(PyObject *a, PyObject *b)
{
    long long x, y, r;
    if (th_ll(a, &x) && th_ll(b, &y) && !__builtin_add_overflow(x, y, &r))
        return PyLong_FromLongLong(r);
    return PyNumber_Add(a, b);
}

static inline PyObject *num_sub(PyObject *a, PyObject *b)
{
    long long x, y, r;
    if (th_ll(a, &x) && th_ll(b, &y) && !__builtin_sub_overflow(x, y, &r))
        return PyLong_FromLongLong(r);
    return PyNumber_Subtract(a, b);
}

static inline PyObject *num_mul(PyObject *a, PyObject *b)
{
    long long x, y, r;
    if (th_ll(a, &x) && th_ll(b, &y) && !__builtin_mul_overflow(x, y, &r))
        return PyLong_FromLongLong(r);
    return PyNumber_Multiply(a, b);
}

/* a (op) b as Python compares them: 1, 0, or -1 with an exception. */
static inline int num_cmp(PyObject *a, PyObject *b, int op)
{
    long long x, y;
    if (th_ll(a, &x) && th_ll(b, &y)) {
        switch (op) {
        case Py_LT: return x < y;
        case Py_LE: return x <= y;
        case Py_GT: return x > y;
        case Py_GE: return x >= y;
        case Py_EQ: return x == y;
        default: return x != y;
        }
    }
    return PyObject_RichCompareBool(a, b, op);
}

/* Truth of a value, as ``if value:`` (fast for exact ints). */
static inline int th_true(PyObject *o)
{
    if (PyLong_CheckExact(o))
        return Py_SIZE(o) != 0;
    if (o == Py_None)
        return 0;
    return PyObject_IsTrue(o);
}

/* ``cur + delta`` as a new reference: machine words when it fits, Python ints past that. */
static inline PyObject *th_plus_ll(PyObject *cur, long long delta)
{
    long long x, r;
    if (th_ll(cur, &x) && !__builtin_add_overflow(x, delta, &r))
        return PyLong_FromLongLong(r);
    PyObject *d = PyLong_FromLongLong(delta);
    if (d == NULL)
        return NULL;
    PyObject *res = PyNumber_Add(cur, d);
    Py_DECREF(d);
    return res;
}

/* ``obj[off] += delta`` on an int slot (a C long long delta). */
/* Give ``cur``, the int a slot holds, the value ``r`` in place, when no one else can see it.
 *
 * Counters and balances change on every command, and each change would otherwise allocate a
 * new int and free the old one. An int whose only reference is the slot's (reference count 1)
 * is unobservable: anyone else holding it -- Python code, an event or a state image that read
 * the field, a dict key -- holds a counted reference, and then a new int is made as before.
 * (The core's own borrowed pointers are never used after their slot changes: replacing the int
 * would free it.) CPython applies the same rule to ``s += t`` on strings. Only the 3.11 digit
 * layout is written, only with the same sign and number of digits, and never to give a value
 * CPython keeps one shared object for (-5..256). Returns 1 when done, 0 to make a new int. */
static inline int th_long_set_inplace(PyObject *cur, long long r)
{
#if PY_VERSION_HEX < 0x030C0000 && PyLong_SHIFT == 30
    if (Py_REFCNT(cur) != 1 || !PyLong_CheckExact(cur) || (r >= -5 && r <= 256))
        return 0;
    unsigned long long m = r < 0 ? 0ULL - (unsigned long long)r : (unsigned long long)r;
    Py_ssize_t digits = m < (1ULL << 30) ? 1 : m < (1ULL << 60) ? 2 : 3;
    if (Py_SIZE(cur) != (r < 0 ? -digits : digits))
        return 0;
    digit *d = ((PyLongObject *)cur)->ob_digit;
    for (Py_ssize_t i = 0; i < digits; i++, m >>= 30)
        d[i] = (digit)(m & PyLong_MASK);
    return 1;
#else
    (void)cur;
    (void)r;
    return 0;
#endif
}

/* Store ``r``, the new value of the int slot ``obj[off]`` currently holding ``cur``: in place
 * when no one else can see ``cur``, else as a new int. */
static inline int th_store_ll(PyObject *obj, Py_ssize_t off, PyObject *cur, long long r)
{
    if (th_long_set_inplace(cur, r))
        return 0;
    PyObject *res = PyLong_FromLongLong(r);
    if (res == NULL)
        return -1;
    th_put(obj, off, res);
    return 0;
}

/* Store the result of the generic number protocol (NULL: its error) in a slot. */
static inline int th_store_obj(PyObject *obj, Py_ssize_t off, PyObject *res)
{
    if (res == NULL)
        return -1;
    th_put(obj, off, res);
    return 0;
}

static inline int th_add_ll(PyObject *obj, Py_ssize_t off, long long delta)
{
    PyObject *cur = th_peek(obj, off);
    if (cur == NULL)
        return -1;
    long long x, r;
    if (th_ll(cur, &x) && !__builtin_add_overflow(x, delta, &r))
        return th_store_ll(obj, off, cur, r);
    return th_store_obj(obj, off, th_plus_ll(cur, delta));
}

/* ``obj[off] += value`` / ``-=`` on an int slot (a Python value). */
static inline int th_iadd(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject *cur = th_peek(obj, off);
    if (cur == NULL)
        return -1;
    long long x, y, r;
    if (th_ll(cur, &x) && th_ll(value, &y) && !__builtin_add_overflow(x, y, &r))
        return th_store_ll(obj, off, cur, r);
    return th_store_obj(obj, off, PyNumber_Add(cur, value));
}

static inline int th_isub(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject *cur = th_peek(obj, off);
    if (cur == NULL)
        return -1;
    long long x, y, r;
    if (th_ll(cur, &x) && th_ll(value, &y) && !__builtin_sub_overflow(x, y, &r))
        return th_store_ll(obj, off, cur, r);
    return th_store_obj(obj, off, PyNumber_Subtract(cur, value));
}

/* ``a == b`` for a value against an interned string constant. */
static inline int th_streq(PyObject *a, PyObject *interned)
{
    if (a == interned)
        return 1;
    if (PyUnicode_CheckExact(a))
        return PyUnicode_Compare(a, interned) == 0;
    return PyObject_RichCompareBool(a, interned, Py_EQ);
}

/* Raise ``cls(*args)`` (the error classes of tradehall.exchange.errors). */
static inline void th_raise(PyObject *cls, PyObject *const *args, size_t nargs)
{
    PyObject *exc = PyObject_Vectorcall(cls, args, nargs, NULL);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* A dict item by key, new reference; KeyError (as ``d[key]``) when missing. */
static inline PyObject *th_dict_item(PyObject *d, PyObject *key)
{
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL) {
        if (!PyErr_Occurred()) {
            /* as dict.__getitem__ does: the key in a 1-tuple, so a tuple key stays whole */
            PyObject *args = PyTuple_Pack(1, key);
            if (args != NULL) {
                PyErr_SetObject(PyExc_KeyError, args);
                Py_DECREF(args);
            }
        }
        return NULL;
    }
    Py_INCREF(v);
    return v;
}

/* Call a cached method descriptor / function with the given positional args. */
static inline PyObject *th_call1(PyObject *fn, PyObject *a)
{
    return PyObject_Vectorcall(fn, &a, 1, NULL);
}

static inline PyObject *th_call2(PyObject *fn, PyObject *a, PyObject *b)
{
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(fn, args, 2, NULL);
}

/* Untrack a new tuple none of whose items can ever be in a reference cycle (ints, strings,
 * ``gc=False`` structs, untracked tuples): what the collector does itself on its first pass over
 * the tuple (``_PyTuple_MaybeUntrack``). Done at once, the tuples the engine keeps (trade-window
 * entries, trade logs) never fill the young generation, never survive into the older ones, and
 * so never bring on the full collections that walk every order. */
static inline void th_untrack_atomic(PyObject *tuple)
{
    for (Py_ssize_t i = PyTuple_GET_SIZE(tuple); i--;) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        if (PyObject_IS_GC(item) && (!PyTuple_CheckExact(item) || PyObject_GC_IsTracked(item)))
            return;
    }
    PyObject_GC_UnTrack(tuple);
}

static inline PyObject *th_deque_append(PyObject *dq, PyObject *item)
{
    if (G.deque_append_fn != NULL && Py_IS_TYPE(dq, (PyTypeObject *)G.deque_type))
        return G.deque_append_fn(dq, item);
    return th_call2(G.deque_append, dq, item);
}

static inline PyObject *th_deque_popleft(PyObject *dq)
{
    if (G.deque_popleft_fn != NULL && Py_IS_TYPE(dq, (PyTypeObject *)G.deque_type))
        return G.deque_popleft_fn(dq, NULL);
    return th_call1(G.deque_popleft, dq);
}

/* ---- structure operations (structures.c): each mirrors one Python method ---- */

int th_side_add(PyObject *side, PyObject *order);                       /* BookSide.add */
int th_side_remove(PyObject *side, PyObject *order, PyObject *before);  /* BookSide.remove */
int th_side_drop_level(PyObject *side, PyObject *level);                /* BookSide.drop_level */
void th_level_release(PyObject *level); /* Py_XDECREF, keeping an unreachable level for reuse */
int th_expiry_add(PyObject *index, PyObject *order);                    /* ExpiryIndex.add */
int th_expiry_discard(PyObject *index, PyObject *order);                /* ExpiryIndex.discard */
int th_listing_add(PyObject *listing, PyObject *order);                 /* BrokerOrders.add */
int th_listing_moved(PyObject *listing, PyObject *order, PyObject *old); /* BrokerOrders.moved */
int th_window_add_pass(PyObject *window, PyObject *at, PyObject *entries, PyObject *notional,
                       PyObject *quantity, PyObject *last_price);      /* TradeWindow.add_pass */
PyObject *th_append_trade(PyObject *log, PyObject *trade);              /* model.append_trade */
int th_order_close(PyObject *order, PyObject *status, PyObject *at);    /* Order.close */

#endif
