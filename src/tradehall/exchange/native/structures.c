/* The book and index operations of the hot path, in C, over the Python structures.
 *
 * Each function is a line-by-line translation of one Python method named beside it
 * (tradehall/exchange/book.py, indexes.py, model.py): same steps in the same order, same
 * objects stored, same exceptions. Rare branches (heap rebuilds, compaction) are translated
 * too, or call the Python code that does them. All return 0 on success, -1 with an exception.
 */
#include "native.h"

/* The list behind a private list field; a TypeError if the structure is not what the Python
 * code builds (it always is: this only guards the C code against a changed layout). */
static inline PyObject *as_list(PyObject *o)
{
    if (o != NULL && !PyList_Check(o)) {
        PyErr_Format(PyExc_TypeError, "expected a list, got %.100s", Py_TYPE(o)->tp_name);
        return NULL;
    }
    return o;
}

/* An exact-int counter as a C integer; TypeError otherwise (counters are ints built here). */
static inline int as_count(PyObject *o, long long *out)
{
    if (o == NULL)
        return -1;
    if (!th_ll(o, out)) {
        PyErr_SetString(PyExc_TypeError, "engine counter is not a machine-size int");
        return -1;
    }
    return 0;
}

/* The head of CPython's array.array object (Modules/arraymodule.c): not public API, so
 * th_init_counts() checks it on live arrays before the core relies on it. */
typedef struct {
    PyObject_VAR_HEAD
    char *ob_item;
    Py_ssize_t allocated;
    const void *ob_descr; /* one static descriptor per type code */
} th_array_head;

static PyObject *array_type;  /* array.array */
static const void *q_descr;   /* the descriptor of type code 'q', when the layout checked out */

/* Learn array('q')'s layout from two probes, or leave the generic path on. */
int th_init_counts(void)
{
    PyObject *module = PyImport_ImportModule("array");
    if (module == NULL)
        return -1;
    array_type = PyObject_GetAttrString(module, "array");
    Py_DECREF(module);
    if (array_type == NULL)
        return -1;
    PyObject *q1 = PyObject_CallFunction(array_type, "s(LL)", "q", 7LL, 8LL);
    PyObject *q2 = q1 == NULL ? NULL : PyObject_CallFunction(array_type, "s(L)", "q", 9LL);
    PyObject *d = q2 == NULL ? NULL : PyObject_CallFunction(array_type, "s(d)", "d", 1.0);
    int rc = d == NULL ? -1 : 0;
    if (rc == 0 && Py_TYPE(q1) == (PyTypeObject *)array_type) {
        Py_buffer view;
        if (PyObject_GetBuffer(q1, &view, PyBUF_WRITABLE | PyBUF_FORMAT) == 0) {
            const th_array_head *a = (const th_array_head *)q1;
            int fits = view.buf == (void *)a->ob_item && view.itemsize == 8 &&
                       view.len == 16 && view.format != NULL && strcmp(view.format, "q") == 0 &&
                       ((long long *)view.buf)[1] == 8 && Py_SIZE(q1) == 2 &&
                       a->ob_descr == ((const th_array_head *)q2)->ob_descr &&
                       a->ob_descr != ((const th_array_head *)d)->ob_descr;
            PyBuffer_Release(&view);
            if (fits)
                q_descr = a->ob_descr;
        }
        else {
            PyErr_Clear();
        }
    }
    Py_XDECREF(q1);
    Py_XDECREF(q2);
    Py_XDECREF(d);
    return rc;
}

int th_counts_in_place(void)
{
    return q_descr != NULL;
}

/* ``counts[i] += delta`` for one row of a listing index's per-status counts: an array('q')
 * written in place (a status change makes no int object), a list (the pure build's rows, when
 * an engine of that build is handed over), else any mutable sequence. */
static int count_add(PyObject *counts, Py_ssize_t i, long long delta)
{
    if (q_descr != NULL && Py_TYPE(counts) == (PyTypeObject *)array_type &&
        ((th_array_head *)counts)->ob_descr == q_descr) {
        if (i < 0 || i >= Py_SIZE(counts)) {
            PyErr_SetString(PyExc_IndexError, "array index out of range");
            return -1;
        }
        long long *cell = (long long *)((th_array_head *)counts)->ob_item + i, sum;
        if (__builtin_add_overflow(*cell, delta, &sum)) {
            PyErr_SetString(PyExc_OverflowError, "signed integer is greater than maximum");
            return -1;
        }
        *cell = sum;
        return 0;
    }
    if (PyList_CheckExact(counts)) { /* a pure build's row: a list of ints */
        if (i < 0 || i >= PyList_GET_SIZE(counts)) {
            PyErr_SetString(PyExc_IndexError, "list index out of range");
            return -1;
        }
        PyObject *was = PyList_GET_ITEM(counts, i);
        PyObject *now = th_plus_ll(was, delta);
        if (now == NULL)
            return -1;
        PyList_SET_ITEM(counts, i, now);
        Py_DECREF(was);
        return 0;
    }
    PyObject *cur = PySequence_GetItem(counts, i);
    PyObject *res = cur == NULL ? NULL : th_plus_ll(cur, delta);
    Py_XDECREF(cur);
    int rc = res == NULL ? -1 : PySequence_SetItem(counts, i, res);
    Py_XDECREF(res);
    return rc;
}

/* ``lst[i]`` of a list of rows, borrowed; IndexError / TypeError as Python would. */
static PyObject *list_row(PyObject *lst, Py_ssize_t i)
{
    if (as_list(lst) == NULL)
        return NULL;
    if (i < 0 || i >= PyList_GET_SIZE(lst)) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
        return NULL;
    }
    return PyList_GET_ITEM(lst, i);
}

/* listing._new_row(): a new row of zero counts, once every 256 orders. */
static PyObject *new_counts(PyObject *listing)
{
    PyObject *factory = th_peek(listing, TH.bo_new_row);
    return factory == NULL ? NULL : PyObject_CallNoArgs(factory);
}

/* _STATUS_INDEX[status] as a C index. The statuses orders carry are the model's constants,
 * the very keys of _STATUS_INDEX (a constant dict): found by identity first, without hashing. */
static Py_ssize_t status_index(PyObject *status)
{
    for (int i = 0; i < G.status_count; i++)
        if (G.status_keys[i] == status)
            return G.status_values[i];
    PyObject *v = PyDict_GetItemWithError(G.status_index, status);
    if (v == NULL) {
        if (!PyErr_Occurred()) {
            PyObject *args = PyTuple_Pack(1, status);
            if (args != NULL) {
                PyErr_SetObject(PyExc_KeyError, args);
                Py_DECREF(args);
            }
        }
        return -1;
    }
    return PyLong_AsSsize_t(v);
}

/* ------------------------------------------------------------------ heaps */

/* The book sides' and the expiry index's heaps are lists of ints that Python code also keeps
 * with :mod:`heapq` (the pure build, ExpiryIndex.pop_due), so these move the items exactly as
 * heapq's push and pop do -- the same layout after every call -- with the comparison of two
 * machine-size ints done in C (heapq calls the rich comparison for every one).
 *
 * heappush: append, then swap the new item with its parent while it is less than the parent.
 * heappop: the last item replaces the root; the hole at the root moves down to a leaf, each time
 * taking the smaller child (the right one unless left < right); then that item moves up as in
 * heappush, never above where it started. */

/* ``a < b`` between two items of ``heap``: 1, 0, or -1 with an exception. Past the C fast path
 * the comparison is Python's, which could change the list: the items are held meanwhile and a
 * change of size is an error, as heapq makes it. */
static int heap_less(PyObject *heap, PyObject *a, PyObject *b)
{
    long long x, y;
    if (th_ll(a, &x) && th_ll(b, &y))
        return x < y;
    Py_ssize_t size = PyList_GET_SIZE(heap);
    Py_INCREF(a);
    Py_INCREF(b);
    int less = PyObject_RichCompareBool(a, b, Py_LT);
    Py_DECREF(a);
    Py_DECREF(b);
    if (less >= 0 && size != PyList_GET_SIZE(heap)) {
        PyErr_SetString(PyExc_RuntimeError, "list changed size during iteration");
        return -1;
    }
    return less;
}

/* Move the item at ``pos`` up while it is less than its parent, not above ``top``. */
static int heap_up(PyObject *heap, Py_ssize_t top, Py_ssize_t pos)
{
    while (pos > top) {
        Py_ssize_t parent = (pos - 1) >> 1;
        int less = heap_less(heap, PyList_GET_ITEM(heap, pos), PyList_GET_ITEM(heap, parent));
        if (less <= 0)
            return less;
        PyObject *moved = PyList_GET_ITEM(heap, pos);
        PyList_SET_ITEM(heap, pos, PyList_GET_ITEM(heap, parent));
        PyList_SET_ITEM(heap, parent, moved);
        pos = parent;
    }
    return 0;
}

/* heapq.heappush(heap, item) */
static int heap_push(PyObject *heap, PyObject *item)
{
    if (PyList_Append(heap, item) < 0)
        return -1;
    return heap_up(heap, 0, PyList_GET_SIZE(heap) - 1);
}

/* heapq.heappop(heap) for a non-empty heap: the item taken off, a new reference. */
static PyObject *heap_pop(PyObject *heap)
{
    Py_ssize_t last = PyList_GET_SIZE(heap) - 1;
    PyObject *tail = Py_NewRef(PyList_GET_ITEM(heap, last));
    if (PyList_SetSlice(heap, last, last + 1, NULL) < 0) {
        Py_DECREF(tail);
        return NULL;
    }
    if (last == 0)
        return tail;
    PyObject *root = PyList_GET_ITEM(heap, 0); /* the list's reference passes to the caller */
    PyList_SET_ITEM(heap, 0, tail);
    Py_ssize_t pos = 0, end = last, leaves = end >> 1;
    while (pos < leaves) {
        Py_ssize_t child = 2 * pos + 1;
        if (child + 1 < end) {
            int less = heap_less(heap, PyList_GET_ITEM(heap, child),
                                 PyList_GET_ITEM(heap, child + 1));
            if (less < 0) {
                Py_DECREF(root);
                return NULL;
            }
            child += !less;
        }
        PyObject *moved = PyList_GET_ITEM(heap, child);
        PyList_SET_ITEM(heap, child, PyList_GET_ITEM(heap, pos));
        PyList_SET_ITEM(heap, pos, moved);
        pos = child;
    }
    if (heap_up(heap, 0, pos) < 0) {
        Py_DECREF(root);
        return NULL;
    }
    return root;
}

/* ------------------------------------------------------------------ BookSide */

/* Level(price): object.__new__ and Level.__init__'s five stores, without the Python frame (a
 * level is made for about every third order of a busy book: each one drained is made anew).
 *
 * The level and its deque leave the cycle collector at once: a level holds ints and that deque,
 * the deque only orders (``gc=False`` structs), and nothing refers back, so neither can ever be
 * in a cycle. Tracked, the many short-lived levels that survive a young collection pile up as
 * "pending" old objects until they set off a full collection, which then walks every resting
 * order through the deques; untracked, a busy book brings on none (the pure build's levels,
 * made by Python, stay tracked: the collector cannot tell them apart, only spends more time). */
/* Levels no one refers to any more, kept for reuse (see th_level_release). */
#define SPARE_LEVELS_MAX 64
static PyObject *spare_levels[SPARE_LEVELS_MAX];
static int spare_level_count;

static PyObject *new_level(PyObject *price)
{
    PyTypeObject *type = (PyTypeObject *)G.Level;
    if (type->tp_new != PyBaseObject_Type.tp_new) /* a Level with its own __new__: call it */
        return th_call1(G.Level, price);
    if (spare_level_count) { /* as good as new: see th_level_release */
        PyObject *level = spare_levels[--spare_level_count];
        th_set(level, TH.l_price, price);
        return level;
    }
    PyObject *orders = PyObject_CallNoArgs(G.deque_type);
    if (orders == NULL)
        return NULL;
    PyObject *level = type->tp_alloc(type, 0);
    if (level == NULL) {
        Py_DECREF(orders);
        return NULL;
    }
    th_set(level, TH.l_price, price);
    th_put(level, TH.l_orders, orders);
    th_set(level, TH.l_total, G.zero);
    th_set(level, TH.l_count, G.zero);
    th_set(level, TH.l_dead, G.zero);
    PyObject_GC_UnTrack(orders);
    PyObject_GC_UnTrack(level);
    return level;
}

/* Release the caller's reference to a level, keeping the level for reuse by new_level when
 * that was the last one.
 *
 * A level lives from its first order to its last, which in a busy book is a few commands: most
 * orders make a level or empty one. Building one costs a deque (and its first block of slots),
 * and freeing it frees both again. A level whose last reference is ours is unreachable from
 * anything else -- the side's dict, ``best_level``, Python code -- so it can be reset and kept
 * instead: its deque emptied (of the slots of orders cancelled before it emptied) and its
 * counters zeroed, it is exactly what new_level builds. Only levels new_level built are kept
 * (exact class, outside the cycle collector, an exact untracked deque), at most
 * SPARE_LEVELS_MAX of them. */
void th_level_release(PyObject *level)
{
    if (level == NULL)
        return;
    if (Py_REFCNT(level) != 1 || spare_level_count == SPARE_LEVELS_MAX ||
        Py_TYPE(level) != (PyTypeObject *)G.Level || PyObject_GC_IsTracked(level)) {
        Py_DECREF(level);
        return;
    }
    PyObject *orders = FIELD(level, TH.l_orders);
    if (orders == NULL || !Py_IS_TYPE(orders, (PyTypeObject *)G.deque_type) ||
        PyObject_GC_IsTracked(orders) || Py_REFCNT(orders) != 1) {
        Py_DECREF(level);
        return;
    }
    if (PySequence_Size(orders) != 0) {
        PyObject *r = th_call1(G.deque_clear, orders);
        if (r == NULL) { /* cannot happen for a deque; never keep a level half reset */
            PyErr_Clear();
            Py_DECREF(level);
            return;
        }
        Py_DECREF(r);
    }
    th_set(level, TH.l_total, G.zero);
    th_set(level, TH.l_count, G.zero);
    th_set(level, TH.l_dead, G.zero);
    spare_levels[spare_level_count++] = level; /* keeps our reference */
}

/* BookSide.add */
int th_side_add(PyObject *side, PyObject *order)
{
    int rc = -1;
    PyObject *level = NULL, *key = NULL, *r;
    PyObject *price = th_get(order, TH.o_price);
    if (price == NULL)
        return -1;
    if (price == Py_None) {
        PyErr_SetNone(PyExc_AssertionError);
        goto done;
    }
    PyObject *levels = th_peek(side, TH.s_levels);
    if (levels == NULL)
        goto done;
    level = PyDict_GetItemWithError(levels, price);
    if (level != NULL) {
        Py_INCREF(level);
        PyObject *shared = th_peek(level, TH.l_price);
        if (shared == NULL)
            goto done;
        th_set(order, TH.o_price, shared); /* share one int object per price */
    }
    else {
        if (PyErr_Occurred())
            goto done;
        level = new_level(price);
        if (level == NULL || PyDict_SetItem(levels, price, level) < 0)
            goto done;
        PyObject *heap = as_list(th_peek(side, TH.s_heap));
        PyObject *sign = th_peek(side, TH.s_sign);
        if (heap == NULL || sign == NULL)
            goto done;
        Py_INCREF(heap);
        Py_INCREF(sign);
        key = num_mul(sign, price);
        r = key == NULL || heap_push(heap, key) < 0 ? NULL : heap;
        if (r != NULL && PyList_GET_SIZE(heap) > 2 * PyDict_GET_SIZE(levels) + 64) {
            /* heap[:] = [self._sign * key for key in levels]; heapify(heap) */
            PyObject *fresh = PyList_New(0), *k;
            Py_ssize_t pos = 0;
            PyObject *value;
            r = fresh;
            while (r != NULL && PyDict_Next(levels, &pos, &k, &value)) {
                PyObject *item = num_mul(sign, k);
                if (item == NULL || PyList_Append(fresh, item) < 0)
                    r = NULL;
                Py_XDECREF(item);
            }
            if (r != NULL && PyList_SetSlice(heap, 0, PyList_GET_SIZE(heap), fresh) < 0)
                r = NULL;
            Py_XDECREF(fresh);
            if (r != NULL) {
                r = th_call1(G.heapify, heap);
                Py_XDECREF(r);
            }
        }
        Py_DECREF(heap);
        Py_DECREF(sign);
        if (r == NULL)
            goto done;
        PyObject *best = th_peek(side, TH.s_best_level);
        if (best == NULL)
            goto done;
        int better = 1;
        if (best != Py_None) {
            PyObject *flag = th_peek(side, TH.s_is_bid);
            PyObject *best_price = flag == NULL ? NULL : th_get(best, TH.l_price);
            if (best_price == NULL)
                goto done;
            int is_bid = PyObject_IsTrue(flag);
            better = is_bid < 0 ? -1 : num_cmp(price, best_price, is_bid ? Py_GT : Py_LT);
            Py_DECREF(best_price);
            if (better < 0)
                goto done;
        }
        if (better)
            th_set(side, TH.s_best_level, level);
    }
    PyObject *orders = th_peek(level, TH.l_orders);
    if (orders == NULL)
        goto done;
    r = th_deque_append(orders, order);
    if (r == NULL)
        goto done;
    Py_DECREF(r);
    PyObject *remaining = th_get(order, TH.o_remaining);
    if (remaining == NULL)
        goto done;
    int bad = th_iadd(level, TH.l_total, remaining);
    Py_DECREF(remaining);
    if (bad || th_add_ll(level, TH.l_count, 1) < 0)
        goto done;
    rc = 0;
done:
    Py_DECREF(price);
    Py_XDECREF(level);
    Py_XDECREF(key);
    return rc;
}

/* BookSide.drop_level (the caller holds a reference to ``level``) */
int th_side_drop_level(PyObject *side, PyObject *level)
{
    PyObject *levels = th_peek(side, TH.s_levels);
    PyObject *price = th_peek(level, TH.l_price);
    if (levels == NULL || price == NULL)
        return -1;
    Py_INCREF(levels);
    int rc = -1;
    if (PyDict_DelItem(levels, price) < 0)
        goto done;
    if (level == FIELD(side, TH.s_best_level)) {
        PyObject *heap = as_list(th_peek(side, TH.s_heap));
        PyObject *sign = th_peek(side, TH.s_sign);
        if (heap == NULL || sign == NULL)
            goto done;
        Py_INCREF(heap);
        Py_INCREF(sign);
        PyObject *best = Py_None;
        Py_INCREF(best);
        long long sign_value;
        int ascending = th_ll(sign, &sign_value) && sign_value == 1; /* asks: key == price */
        while (PyList_GET_SIZE(heap)) {
            PyObject *key = ascending ? Py_NewRef(PyList_GET_ITEM(heap, 0))
                                      : num_mul(sign, PyList_GET_ITEM(heap, 0));
            if (key == NULL)
                break;
            PyObject *found = PyDict_GetItemWithError(levels, key);
            Py_DECREF(key);
            if (found != NULL) {
                Py_DECREF(best);
                best = found;
                Py_INCREF(best);
                break;
            }
            if (PyErr_Occurred())
                break;
            PyObject *r = heap_pop(heap);
            if (r == NULL)
                break;
            Py_DECREF(r);
        }
        Py_DECREF(heap);
        Py_DECREF(sign);
        if (PyErr_Occurred()) {
            Py_DECREF(best);
            goto done;
        }
        th_put(side, TH.s_best_level, best);
    }
    rc = 0;
done:
    Py_DECREF(levels);
    return rc;
}

/* BookSide.remove */
int th_side_remove(PyObject *side, PyObject *order, PyObject *before)
{
    PyObject *price = th_peek(order, TH.o_price);
    PyObject *levels = th_peek(side, TH.s_levels);
    if (price == NULL || levels == NULL)
        return -1;
    if (price == Py_None) {
        PyErr_SetNone(PyExc_AssertionError);
        return -1;
    }
    PyObject *level = th_dict_item(levels, price);
    if (level == NULL)
        return -1;
    int rc = -1;
    long long count, dead;
    if (th_isub(level, TH.l_total, before) < 0 || th_add_ll(level, TH.l_count, -1) < 0)
        goto done;
    if (as_count(th_peek(level, TH.l_count), &count) < 0)
        goto done;
    if (count == 0) {
        rc = th_side_drop_level(side, level);
        goto done;
    }
    if (th_add_ll(level, TH.l_dead, 1) < 0 || as_count(th_peek(level, TH.l_dead), &dead) < 0)
        goto done;
    if (dead >= 64 && dead > count) { /* compaction (rare): level.orders = deque(live_orders()) */
        PyObject *live = PyObject_CallMethodNoArgs(level, G.s_live_orders);
        PyObject *fresh = live == NULL ? NULL : th_call1(G.deque_type, live);
        Py_XDECREF(live);
        if (fresh == NULL)
            goto done;
        if (!PyObject_GC_IsTracked(level)) /* a level made by new_level(): orders only */
            PyObject_GC_UnTrack(fresh);
        th_put(level, TH.l_orders, fresh);
        th_set(level, TH.l_dead, G.zero);
    }
    rc = 0;
done:
    th_level_release(level);
    return rc;
}

/* ------------------------------------------------------------------ ExpiryIndex */

/* ExpiryIndex.add */
int th_expiry_add(PyObject *index, PyObject *order)
{
    PyObject *deadline = th_get(order, TH.o_expires_at);
    if (deadline == NULL)
        return -1;
    int rc = -1;
    PyObject *bucket = NULL, *r;
    if (deadline == Py_None) {
        PyErr_SetNone(PyExc_AssertionError);
        goto done;
    }
    PyObject *buckets = th_peek(index, TH.x_buckets);
    if (buckets == NULL)
        goto done;
    bucket = PyDict_GetItemWithError(buckets, deadline);
    if (bucket == NULL) {
        if (PyErr_Occurred() || PyDict_SetItem(buckets, deadline, order) < 0)
            goto done;
        PyObject *heap = as_list(th_peek(index, TH.x_heap));
        if (heap == NULL)
            goto done;
        if (heap_push(heap, deadline) < 0)
            goto done;
        heap = FIELD(index, TH.x_heap);
        if (PyList_GET_SIZE(heap) > 64 && PyList_GET_SIZE(heap) > 2 * PyDict_GET_SIZE(buckets)) {
            PyObject *fresh = PyDict_Keys(buckets); /* self._heap = list(buckets) */
            if (fresh == NULL)
                goto done;
            th_put(index, TH.x_heap, fresh);
            r = th_call1(G.heapify, fresh);
            if (r == NULL)
                goto done;
            Py_DECREF(r);
        }
    }
    else {
        Py_INCREF(bucket);
        if (PyObject_TypeCheck(bucket, (PyTypeObject *)G.Bucket)) {
            PyObject *orders = as_list(th_peek(bucket, TH.k_orders));
            if (orders == NULL)
                goto done;
            if (PyList_GET_SIZE(orders) == 0) {
                PyErr_SetString(PyExc_IndexError, "list index out of range");
                goto done;
            }
            PyObject *shared = th_peek(PyList_GET_ITEM(orders, 0), TH.o_expires_at);
            if (shared == NULL)
                goto done;
            th_set(order, TH.o_expires_at, shared); /* share one int object per deadline */
            if (PyList_Append(orders, order) < 0 || th_add_ll(bucket, TH.k_live, 1) < 0)
                goto done;
        }
        else {
            PyObject *shared = th_peek(bucket, TH.o_expires_at);
            if (shared == NULL)
                goto done;
            th_set(order, TH.o_expires_at, shared);
            PyObject *pair = th_call2(G.Bucket, bucket, order);
            if (pair == NULL)
                goto done;
            int bad = PyDict_SetItem(buckets, deadline, pair);
            Py_DECREF(pair);
            if (bad)
                goto done;
        }
    }
    if (th_add_ll(index, TH.x_live, 1) < 0)
        goto done;
    rc = 0;
done:
    Py_DECREF(deadline);
    Py_XDECREF(bucket);
    return rc;
}

/* ExpiryIndex.discard */
int th_expiry_discard(PyObject *index, PyObject *order)
{
    if (th_add_ll(index, TH.x_live, -1) < 0)
        return -1;
    PyObject *deadline = th_get(order, TH.o_expires_at);
    if (deadline == NULL)
        return -1;
    int rc = -1;
    PyObject *bucket = NULL;
    PyObject *buckets = th_peek(index, TH.x_buckets);
    if (buckets == NULL)
        goto done;
    Py_INCREF(buckets);
    if (deadline == Py_None) {
        PyErr_SetNone(PyExc_AssertionError);
        goto done_buckets;
    }
    bucket = th_dict_item(buckets, deadline);
    if (bucket == NULL)
        goto done_buckets;
    if (PyObject_TypeCheck(bucket, (PyTypeObject *)G.Bucket)) {
        long long live;
        if (th_add_ll(bucket, TH.k_live, -1) < 0 || as_count(th_peek(bucket, TH.k_live), &live))
            goto done_buckets;
        if (!live) {
            if (PyDict_DelItem(buckets, deadline) < 0)
                goto done_buckets;
        }
        else {
            PyObject *orders = as_list(th_peek(bucket, TH.k_orders));
            if (orders == NULL)
                goto done_buckets;
            if (PyList_GET_SIZE(orders) > 2 * live + 64) {
                /* bucket.orders = [o for o in bucket.orders if o.remaining] */
                PyObject *kept = PyList_New(0);
                if (kept == NULL)
                    goto done_buckets;
                for (Py_ssize_t i = 0; i < PyList_GET_SIZE(orders); i++) {
                    PyObject *o = PyList_GET_ITEM(orders, i);
                    PyObject *left = th_peek(o, TH.o_remaining);
                    int keep = left == NULL ? -1 : th_true(left);
                    if (keep < 0 || (keep && PyList_Append(kept, o) < 0)) {
                        Py_DECREF(kept);
                        goto done_buckets;
                    }
                }
                th_put(bucket, TH.k_orders, kept);
            }
        }
    }
    else {
        if (bucket != order) {
            PyErr_SetNone(PyExc_AssertionError);
            goto done_buckets;
        }
        if (PyDict_DelItem(buckets, deadline) < 0)
            goto done_buckets;
    }
    rc = 0;
done_buckets:
    Py_DECREF(buckets);
done:
    Py_DECREF(deadline);
    Py_XDECREF(bucket);
    return rc;
}

/* ------------------------------------------------------------------ BrokerOrders */

/* BrokerOrders.add */
int th_listing_add(PyObject *listing, PyObject *order)
{
    PyObject *everything = as_list(th_peek(listing, TH.bo_all));
    if (everything == NULL)
        return -1;
    Py_ssize_t pos = PyList_GET_SIZE(everything);
    PyObject *at = PyLong_FromSsize_t(pos);
    if (at == NULL)
        return -1;
    th_put(order, TH.o_list_pos, at);
    if (PyList_Append(everything, order) < 0)
        return -1;
    if (!(pos & 255)) {
        PyObject *blocks = as_list(th_peek(listing, TH.bo_blocks));
        PyObject *counts = blocks == NULL ? NULL : new_counts(listing);
        int bad = counts == NULL || PyList_Append(blocks, counts) < 0;
        Py_XDECREF(counts);
        if (bad)
            return -1;
        if (!(pos & 65535)) {
            PyObject *supers = as_list(th_peek(listing, TH.bo_supers));
            counts = supers == NULL ? NULL : new_counts(listing);
            bad = counts == NULL || PyList_Append(supers, counts) < 0;
            Py_XDECREF(counts);
            if (bad)
                return -1;
        }
    }
    PyObject *status = th_peek(order, TH.o_status);
    Py_ssize_t index = status == NULL ? -1 : status_index(status);
    if (index < 0 && PyErr_Occurred())
        return -1;
    PyObject *row = list_row(th_peek(listing, TH.bo_blocks), pos >> 8);
    if (row == NULL || count_add(row, index, 1) < 0)
        return -1;
    row = list_row(th_peek(listing, TH.bo_supers), pos >> 16);
    if (row == NULL || count_add(row, index, 1) < 0)
        return -1;
    return 0;
}

/* BrokerOrders.moved */
int th_listing_moved(PyObject *listing, PyObject *order, PyObject *old_status)
{
    PyObject *status = th_peek(order, TH.o_status);
    if (status == NULL)
        return -1;
    int changed = PyObject_RichCompareBool(status, old_status, Py_NE);
    if (changed <= 0)
        return changed;
    Py_INCREF(status);
    Py_ssize_t old = status_index(old_status);
    Py_ssize_t new = old < 0 && PyErr_Occurred() ? -1 : status_index(status);
    Py_DECREF(status);
    if ((old < 0 || new < 0) && PyErr_Occurred())
        return -1;
    long long pos;
    if (as_count(th_peek(order, TH.o_list_pos), &pos) < 0)
        return -1;
    PyObject *row = list_row(th_peek(listing, TH.bo_blocks), (Py_ssize_t)(pos >> 8));
    if (row == NULL || count_add(row, old, -1) < 0 || count_add(row, new, 1) < 0)
        return -1;
    row = list_row(th_peek(listing, TH.bo_supers), (Py_ssize_t)(pos >> 16));
    if (row == NULL || count_add(row, old, -1) < 0 || count_add(row, new, 1) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ TradeWindow */

/* TradeWindow._evict */
static int window_evict(PyObject *window, PyObject *now)
{
    PyObject *span = th_peek(window, TH.w_window_ns);
    PyObject *cutoff = span == NULL ? NULL : num_sub(now, span);
    if (cutoff == NULL)
        return -1;
    int rc = -1;
    PyObject *trades = th_get(window, TH.w_trades);
    if (trades == NULL)
        goto done;
    for (;;) {
        Py_ssize_t size = PyObject_Length(trades);
        if (size < 0)
            goto done_trades;
        if (!size)
            break;
        PyObject *first = PySequence_GetItem(trades, 0);
        PyObject *at = first == NULL ? NULL : PySequence_GetItem(first, 0);
        Py_XDECREF(first);
        if (at == NULL)
            goto done_trades;
        int old = num_cmp(at, cutoff, Py_LT);
        Py_DECREF(at);
        if (old < 0)
            goto done_trades;
        if (!old)
            break;
        PyObject *entry = th_deque_popleft(trades);
        if (entry == NULL)
            goto done_trades;
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3) {
            PyErr_SetString(PyExc_ValueError, "trade window entries are 3-tuples");
            Py_DECREF(entry);
            goto done_trades;
        }
        int bad = th_isub(window, TH.w_notional, PyTuple_GET_ITEM(entry, 1)) < 0 ||
                  th_isub(window, TH.w_quantity, PyTuple_GET_ITEM(entry, 2)) < 0;
        Py_DECREF(entry);
        if (bad)
            goto done_trades;
    }
    rc = 0;
done_trades:
    Py_DECREF(trades);
done:
    Py_DECREF(cutoff);
    return rc;
}

/* TradeWindow.add_pass */
int th_window_add_pass(PyObject *window, PyObject *at, PyObject *entries, PyObject *notional,
                       PyObject *quantity, PyObject *last_price)
{
    PyObject *trades = th_peek(window, TH.w_trades);
    if (trades == NULL)
        return -1;
    PyObject *r = th_call2(G.deque_extend, trades, entries);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    if (th_iadd(window, TH.w_notional, notional) < 0 ||
        th_iadd(window, TH.w_quantity, quantity) < 0)
        return -1;
    th_set(window, TH.w_last_price, last_price);
    th_set(window, TH.w_last_trade_at, at);
    PyObject *span = th_peek(window, TH.w_window_ns);
    PyObject *now = span == NULL ? NULL : num_sub(at, span);
    if (now == NULL)
        return -1;
    int rc = window_evict(window, now);
    Py_DECREF(now);
    return rc;
}

/* ------------------------------------------------------------------ Order */

/* model.append_trade: a new reference to the log with ``trade`` added. */
PyObject *th_append_trade(PyObject *log, PyObject *trade)
{
    if (!PyTuple_CheckExact(log))
        return th_call2(G.append_trade, log, trade);
    Py_ssize_t n = PyTuple_GET_SIZE(log);
    PyObject *grown = n < G.trade_log_tuple_max ? PyTuple_New(n + 1) : PyList_New(n + 1);
    if (grown == NULL)
        return NULL;
    int is_tuple = PyTuple_CheckExact(grown);
    for (Py_ssize_t i = 0; i <= n; i++) {
        PyObject *item = i < n ? PyTuple_GET_ITEM(log, i) : trade;
        Py_INCREF(item);
        if (is_tuple)
            PyTuple_SET_ITEM(grown, i, item);
        else
            PyList_SET_ITEM(grown, i, item);
    }
    if (is_tuple)
        th_untrack_atomic(grown); /* Trade structs are gc=False: kept for the order's life */
    return grown;
}

/* Order.close (its return value, the released quantity, is not used by the engine). */
int th_order_close(PyObject *order, PyObject *status, PyObject *at)
{
    PyObject *current = th_peek(order, TH.o_status);
    if (current == NULL)
        return -1;
    PyObject *allowed = th_dict_item(G.transitions, current);
    if (allowed == NULL)
        return -1;
    int ok = PySequence_Contains(allowed, status);
    Py_DECREF(allowed);
    if (ok < 0)
        return -1;
    if (!ok) { /* let the Python method raise IllegalTransition with its exact message */
        PyObject *r = PyObject_CallMethodObjArgs(order, G.s_close, status, at, NULL);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    th_set(order, TH.o_status, status);
    th_set(order, TH.o_remaining, G.zero);
    int stamp = th_streq(status, G.s_expired);
    if (stamp < 0)
        return -1;
    if (!stamp) {
        PyObject *type = th_peek(order, TH.o_type);
        stamp = type == NULL ? -1 : th_streq(type, G.s_limit);
        if (stamp < 0)
            return -1;
    }
    if (stamp)
        th_set(order, TH.o_closed_at, at);
    return 0;
}
