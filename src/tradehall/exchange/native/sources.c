/* The engine's clock and id source, as the native core reads them.
 *
 * Every command reads the clock once and takes one id per order and per trade. The engine holds
 * them as bound methods (``Engine._read_clock`` / ``Engine._new_id``); calling those is always
 * right, and is what happens for any source not listed here (a VirtualClock, a test double).
 * For the sources the server runs with, the same steps are taken here without the Python call:
 *
 * - an exact ``SystemClock``: clock_gettime(CLOCK_REALTIME), as ``time.time_ns()`` does;
 * - an exact ``SequentialIds`` / ``RandomIds``: served from their own slots (``_next`` / ``_head``,
 *   ``_batch``, by offset), so Python callers of ``new_id`` stay in step;
 * - an exact ``tradehall.exchange.machine.Recorder`` that is both clock and id source (what
 *   ``ExchangeMachine`` gives its engine): ``Recorder.time_ns`` / ``Recorder.new_id`` step by
 *   step -- replaying: the method itself; otherwise the underlying reading or id (by the fast
 *   paths above when the recorder's ``_read_clock`` / ``_mint`` are still the bound methods of a
 *   plain source it was built with), appended to ``_times`` / ``_new_ids`` when recording. The
 *   recorder's attributes are read on every call, so ``ExchangeMachine.execute`` switching
 *   recording on and off, or a replay starting, takes effect at once.
 */
#include "native.h"

#include <time.h>

enum { CLOCK_CALL, CLOCK_SYSTEM, CLOCK_RECORDER };
enum { IDS_CALL, IDS_SEQUENTIAL, IDS_RANDOM, IDS_RECORDER };

/* ------------------------------------------------------------------ plain sources */

/* SystemClock.time_ns; ``method`` (that clock's bound time_ns) should the C call fail. */
static PyObject *system_time_ns(PyObject *method)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        return PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    return PyObject_CallNoArgs(method);
}

static const char HEX[] = "0123456789abcdef";

/* SequentialIds.new_id over its slots: f"{_head}{_next:012x}", _next += 1; ``method`` (that
 * source's bound new_id) for any state this does not cover (an unset slot raises there). */
static PyObject *sequential_id(PyObject *ids, PyObject *method)
{
    PyObject *next = FIELD(ids, TH.q_next), *head = FIELD(ids, TH.q_head);
    long long value;
    if (next == NULL || head == NULL || !PyUnicode_CheckExact(head) ||
        !PyUnicode_IS_COMPACT_ASCII(head) || !th_ll(next, &value) || value < 0 ||
        value >= (1LL << 48))
        return PyObject_CallNoArgs(method); /* wider than 12 digits, or not a plain state */
    Py_ssize_t n = PyUnicode_GET_LENGTH(head);
    PyObject *id = PyUnicode_New(n + 12, 127);
    if (id == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(id);
    memcpy(out, PyUnicode_1BYTE_DATA(head), (size_t)n);
    unsigned long long v = (unsigned long long)value;
    for (int i = 11; i >= 0; i--, v >>= 4)
        out[n + i] = (Py_UCS1)HEX[v & 15];
    if (th_long_set_inplace(next, value + 1)) /* no one else holds the counter */
        return id;
    PyObject *after = PyLong_FromLongLong(value + 1);
    if (after == NULL) {
        Py_DECREF(id);
        return NULL;
    }
    th_put(ids, TH.q_next, after);
    return id;
}

/* ids.format_uuid4s(raw) in C: one version-4 UUID string per 16 bytes, in order. A refill of
 * 256 ids costs a few hundred instructions each this way, against several thousand for the
 * Python f-strings (the machine's Recorder mints one or more random ids per command). */
PyObject *th_format_uuid4s(PyObject *raw)
{
    if (!PyBytes_Check(raw)) {
        PyErr_SetString(PyExc_TypeError, "format_uuid4s wants bytes");
        return NULL;
    }
    const unsigned char *in = (const unsigned char *)PyBytes_AS_STRING(raw);
    Py_ssize_t count = PyBytes_GET_SIZE(raw) / 16;
    PyObject *ids = PyList_New(count);
    for (Py_ssize_t k = 0; ids != NULL && k < count; k++, in += 16) {
        PyObject *id = PyUnicode_New(36, 127);
        if (id == NULL) {
            Py_CLEAR(ids);
            break;
        }
        Py_UCS1 *out = PyUnicode_1BYTE_DATA(id);
        char hex[32];
        for (int i = 0; i < 16; i++) {
            hex[2 * i] = HEX[in[i] >> 4];
            hex[2 * i + 1] = HEX[in[i] & 15];
        }
        memcpy(out, hex, 8);
        out[8] = '-';
        memcpy(out + 9, hex + 8, 4);
        out[13] = '-';
        out[14] = '4'; /* the version; hex[12] is dropped */
        memcpy(out + 15, hex + 13, 3);
        out[18] = '-';
        out[19] = (Py_UCS1) "89ab"[(in[8] >> 4) & 3]; /* the variant, from hex[16] */
        memcpy(out + 20, hex + 17, 3);
        out[23] = '-';
        memcpy(out + 24, hex + 20, 12);
        PyList_SET_ITEM(ids, k, id);
    }
    return ids;
}

/* ids._random_batch(), natively: os.urandom(ids._BATCH_BYTES) formatted by th_format_uuid4s. */
static PyObject *random_batch(void)
{
    PyObject *raw = PyObject_CallOneArg(G.urandom, G.batch_bytes);
    if (raw == NULL)
        return NULL;
    PyObject *ids = th_format_uuid4s(raw);
    Py_DECREF(raw);
    return ids;
}

/* RandomIds.new_id over its slot: pop from _batch, refilled as ids._random_batch() would. */
static PyObject *random_id(PyObject *ids, PyObject *method)
{
    PyObject *batch = FIELD(ids, TH.rb_batch);
    if (batch == NULL || !PyList_CheckExact(batch))
        return PyObject_CallNoArgs(method);
    Py_INCREF(batch);
    if (PyList_GET_SIZE(batch) == 0) {
        Py_DECREF(batch);
        batch = random_batch();
        if (batch == NULL)
            return NULL;
        th_set(ids, TH.rb_batch, batch);
        if (!PyList_CheckExact(batch) || PyList_GET_SIZE(batch) == 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_IndexError, "pop from empty list");
            Py_DECREF(batch);
            return NULL;
        }
    }
    Py_ssize_t last = PyList_GET_SIZE(batch) - 1;
    PyObject *id = PyList_GET_ITEM(batch, last);
    Py_INCREF(id);
    int bad = PyList_SetSlice(batch, last, last + 1, NULL);
    Py_DECREF(batch);
    if (bad) {
        Py_DECREF(id);
        return NULL;
    }
    return id;
}

/* ------------------------------------------------------------------ the Recorder */

/* ``recorder.<name>`` as a new reference: its instance dict, else ordinary attribute lookup
 * (the Recorder class defines none of these names, so the dict is where Python finds them). */
static PyObject *recorder_attr(th_sources *s, PyObject *name)
{
    PyObject *v = PyDict_GetItemWithError(s->rec_dict, name);
    if (v != NULL)
        return Py_NewRef(v);
    return PyErr_Occurred() ? NULL : PyObject_GetAttr(s->recorder, name);
}

/* ``if log is not None: log.append(value)`` (``_times`` / ``_new_ids``). */
static int recorder_log(th_sources *s, PyObject *name, PyObject *value)
{
    PyObject *log = recorder_attr(s, name);
    if (log == NULL)
        return -1;
    int rc = 0;
    if (PyList_CheckExact(log))
        rc = PyList_Append(log, value);
    else if (log != Py_None) {
        PyObject *r = PyObject_CallMethodOneArg(log, G.s_append, value);
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(r);
    }
    Py_DECREF(log);
    return rc;
}

/* Recorder.time_ns */
static PyObject *recorder_time_ns(th_sources *s)
{
    PyObject *replay = recorder_attr(s, G.s_replay_times);
    if (replay == NULL)
        return NULL;
    Py_DECREF(replay); /* only compared with None */
    if (replay != Py_None)
        return PyObject_CallNoArgs(s->read_clock); /* replaying: the method hands back readings */
    PyObject *read = recorder_attr(s, G.s_read_clock);
    if (read == NULL)
        return NULL;
    PyObject *now = read == s->rec_read && s->rec_clock_kind == CLOCK_SYSTEM
                        ? system_time_ns(read)
                        : PyObject_CallNoArgs(read);
    Py_DECREF(read);
    if (now != NULL && recorder_log(s, G.s_times, now) < 0)
        Py_CLEAR(now);
    return now;
}

/* Recorder.new_id */
static PyObject *recorder_new_id(th_sources *s)
{
    PyObject *replay = recorder_attr(s, G.s_replay_ids);
    if (replay == NULL)
        return NULL;
    Py_DECREF(replay);
    if (replay != Py_None)
        return PyObject_CallNoArgs(s->new_id);
    PyObject *mint = recorder_attr(s, G.s_mint);
    if (mint == NULL)
        return NULL;
    PyObject *id;
    if (mint != s->rec_mint)
        id = PyObject_CallNoArgs(mint);
    else if (s->rec_ids_kind == IDS_SEQUENTIAL)
        id = sequential_id(s->ids_source, mint);
    else if (s->rec_ids_kind == IDS_RANDOM)
        id = random_id(s->ids_source, mint);
    else
        id = PyObject_CallNoArgs(mint);
    Py_DECREF(mint);
    if (id != NULL && recorder_log(s, G.s_new_ids, id) < 0)
        Py_CLEAR(id);
    return id;
}

/* ------------------------------------------------------------------ dispatch */

PyObject *th_read_clock(th_sources *s)
{
    switch (s->clock_kind) {
    case CLOCK_SYSTEM: return system_time_ns(s->read_clock);
    case CLOCK_RECORDER: return recorder_time_ns(s);
    default: return PyObject_CallNoArgs(s->read_clock);
    }
}

PyObject *th_new_id(th_sources *s)
{
    switch (s->ids_kind) {
    case IDS_SEQUENTIAL: return sequential_id(s->ids_source, s->new_id);
    case IDS_RANDOM: return random_id(s->ids_source, s->new_id);
    case IDS_RECORDER: return recorder_new_id(s);
    default: return PyObject_CallNoArgs(s->new_id);
    }
}

/* ------------------------------------------------------------------ set-up */

/* Whether ``method`` is ``cls.<name>`` bound to an instance of exactly ``cls``. */
static int bound_to_exact(PyObject *method, PyObject *cls, const char *name)
{
    if (!PyMethod_Check(method) || Py_TYPE(PyMethod_GET_SELF(method)) != (PyTypeObject *)cls)
        return 0;
    PyObject *function = PyDict_GetItemString(((PyTypeObject *)cls)->tp_dict, name);
    return function != NULL && function == PyMethod_GET_FUNCTION(method);
}

/* The kind of a plain id source (``ids``), held in *source when not CALL. */
static int ids_kind_of(PyObject *ids, PyObject **source)
{
    int kind = Py_TYPE(ids) == (PyTypeObject *)G.SequentialIds ? IDS_SEQUENTIAL
               : Py_TYPE(ids) == (PyTypeObject *)G.RandomIds   ? IDS_RANDOM
                                                                : IDS_CALL;
    if (kind != IDS_CALL)
        *source = Py_NewRef(ids);
    return kind;
}

/* The exact machine Recorder serving as both ``clock`` and ``ids``, set up in ``s``: 1 when it
 * is one, 0 when not, -1 with an exception. The machine module is never imported from here:
 * when it is not loaded, no Recorder exists. */
static int setup_recorder(th_sources *s, PyObject *clock, PyObject *ids)
{
    PyObject *module = PyImport_GetModule(G.s_machine_module);
    if (module == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *cls = PyObject_GetAttrString(module, "Recorder");
    Py_DECREF(module);
    if (cls == NULL) {
        PyErr_Clear(); /* a machine module without a Recorder: nothing to serve */
        return 0;
    }
    int rc = 0;
    if (clock != ids || Py_TYPE(clock) != (PyTypeObject *)cls || !PyType_Check(cls) ||
        !bound_to_exact(s->read_clock, cls, "time_ns") ||
        !bound_to_exact(s->new_id, cls, "new_id"))
        goto done;
    rc = -1;
    s->recorder = Py_NewRef(clock);
    if ((s->rec_dict = PyObject_GenericGetDict(clock, NULL)) == NULL ||
        (s->rec_read = recorder_attr(s, G.s_read_clock)) == NULL ||
        (s->rec_mint = recorder_attr(s, G.s_mint)) == NULL)
        goto done;
    s->rec_clock_kind = bound_to_exact(s->rec_read, G.SystemClock, "time_ns") ? CLOCK_SYSTEM
                                                                              : CLOCK_CALL;
    s->rec_ids_kind = IDS_CALL;
    if (PyMethod_Check(s->rec_mint)) {
        PyObject *source = PyMethod_GET_SELF(s->rec_mint);
        PyObject *cls_of = (PyObject *)Py_TYPE(source);
        if ((cls_of == G.SequentialIds || cls_of == G.RandomIds) &&
            bound_to_exact(s->rec_mint, cls_of, "new_id") &&
            (s->rec_ids_kind = ids_kind_of(source, &s->ids_source)) < 0)
            goto done;
    }
    s->clock_kind = CLOCK_RECORDER;
    s->ids_kind = IDS_RECORDER;
    rc = 1;
done:
    Py_DECREF(cls);
    return rc;
}

int th_sources_init(th_sources *s, PyObject *engine)
{
    PyObject *clock = PyObject_GetAttrString(engine, "_clock");
    PyObject *ids = clock == NULL ? NULL : PyObject_GetAttrString(engine, "_ids");
    int rc = -1;
    if (ids == NULL || (s->read_clock = PyObject_GetAttrString(engine, "_read_clock")) == NULL ||
        (s->new_id = PyObject_GetAttrString(engine, "_new_id")) == NULL)
        goto done;
    int recorder = setup_recorder(s, clock, ids);
    if (recorder < 0)
        goto done;
    if (!recorder) {
        s->clock_kind = Py_TYPE(clock) == (PyTypeObject *)G.SystemClock ? CLOCK_SYSTEM
                                                                        : CLOCK_CALL;
        if ((s->ids_kind = ids_kind_of(ids, &s->ids_source)) < 0)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(clock);
    Py_XDECREF(ids);
    return rc;
}

void th_sources_clear(th_sources *s)
{
    Py_CLEAR(s->read_clock);
    Py_CLEAR(s->new_id);
    Py_CLEAR(s->ids_source);
    Py_CLEAR(s->recorder);
    Py_CLEAR(s->rec_dict);
    Py_CLEAR(s->rec_read);
    Py_CLEAR(s->rec_mint);
}

int th_sources_traverse(th_sources *s, visitproc visit, void *arg)
{
    Py_VISIT(s->read_clock);
    Py_VISIT(s->new_id);
    Py_VISIT(s->ids_source);
    Py_VISIT(s->recorder);
    Py_VISIT(s->rec_dict);
    Py_VISIT(s->rec_read);
    Py_VISIT(s->rec_mint);
    return 0;
}
