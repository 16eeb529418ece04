/* tradehall.exchange._native: the matching engine's hot commands in C.
 *
 * ``Core(engine)`` runs ``submit``, ``cancel`` and ``expire_due`` of one
 * :class:`tradehall.exchange.engine.Engine` over that engine's own structures. Each function
 * here translates the Python method of the same name in engine.py step by step -- same checks
 * in the same order (so a refused command raises the same error and changes nothing), same
 * mutations, same objects stored, same events -- so the two builds keep byte-identical state.
 *
 * Engine counters (``_last_ns``, ``_seq``, ``trade_count``) have one home: the engine's slots,
 * which both builds read and write (here by offset), so commands of the two builds can
 * interleave on one engine. The core reaches the engine through a weak reference:
 * the engine's ``__dict__`` holds the core's bound methods, and a strong reference back would
 * make every engine a reference cycle (freed only by the cycle collector). Calling a core
 * method after its engine is gone raises ReferenceError.
 *
 * Clock and ids: sources.c reads the engine's clock and mints its ids -- natively for the
 * sources the server runs with (SystemClock, SequentialIds / RandomIds, and the machine's
 * Recorder over them), through the engine's bound ``_read_clock`` / ``_new_id`` otherwise.
 */
#include "native.h"

#include <structmember.h>

th_offsets TH;
th_globals G;

typedef struct {
    PyObject_HEAD
    PyObject *engine_ref; /* a weak reference: the engine holds our methods, so no cycle */
    PyObject *markets, *brokers, *orders, *broker_orders, *expiry;
    th_sources src; /* the engine's clock and ids (sources.c) */
} Core;

static inline PyObject *read_clock(Core *c)
{
    return th_read_clock(&c->src);
}

static inline PyObject *new_id(Core *c)
{
    return th_new_id(&c->src);
}

/* The engine, a new reference (its counters are slots at TH.e_*: Core() checked its class). */
static PyObject *engine_of(Core *c)
{
    PyObject *engine = PyWeakref_GetObject(c->engine_ref);
    if (engine == NULL)
        return NULL;
    if (engine == Py_None) {
        PyErr_SetString(PyExc_ReferenceError, "the engine of this native core is gone");
        return NULL;
    }
    return Py_NewRef(engine);
}

/* ``now = reading if reading > last else last + 1`` with last = engine._last_ns. */
static PyObject *next_stamp(PyObject *engine, PyObject *reading)
{
    PyObject *last = th_get(engine, TH.e_last_ns);
    if (last == NULL)
        return NULL;
    int later = num_cmp(reading, last, Py_GT);
    PyObject *now = later < 0 ? NULL : later ? (Py_INCREF(reading), reading) : num_add(last, G.one);
    Py_DECREF(last);
    return now;
}

/* ------------------------------------------------------------------ helpers */

/* order.trade_log gains ``trade`` (Engine._match's inline form of Order.record_fill). */
static int log_trade(PyObject *order, PyObject *trade)
{
    PyObject *log = th_peek(order, TH.o_trade_log);
    if (log == NULL)
        return -1;
    if (log == Py_None) {
        PyObject *one = PyTuple_Pack(1, trade);
        if (one == NULL)
            return -1;
        th_untrack_atomic(one);
        th_put(order, TH.o_trade_log, one);
        return 0;
    }
    if (PyList_Check(log))
        return PyList_Append(log, trade);
    PyObject *grown = th_append_trade(log, trade);
    if (grown == NULL)
        return -1;
    th_put(order, TH.o_trade_log, grown);
    return 0;
}

/* ``holdings.get(symbol)``, created empty (``Holding()``) when missing; new reference. */
static PyObject *holding_for(PyObject *broker, PyObject *symbol)
{
    PyObject *holdings = th_peek(broker, TH.b_holdings);
    if (holdings == NULL)
        return NULL;
    PyObject *h = PyDict_GetItemWithError(holdings, symbol);
    if (h != NULL) {
        Py_INCREF(h);
        return h;
    }
    if (PyErr_Occurred())
        return NULL;
    h = PyObject_CallNoArgs(G.Holding);
    if (h != NULL && PyDict_SetItem(holdings, symbol, h) < 0)
        Py_CLEAR(h);
    return h;
}

static int append_event(PyObject *events, const th_maker *make, PyObject *const *args, size_t n)
{
    PyObject *ev = th_make(make, args, (Py_ssize_t)n);
    if (ev == NULL)
        return -1;
    int rc = PyList_Append(events, ev);
    Py_DECREF(ev);
    return rc;
}

/* OrderFilled for one side of a trade (read after both fills, as the Python code does). */
static int append_fill(PyObject *events, PyObject *trade_id, PyObject *o, PyObject *symbol,
                       PyObject *side, PyObject *price, PyObject *quantity, PyObject *now)
{
    PyObject *args[11] = {trade_id,
                          FIELD(o, TH.o_broker_id),
                          FIELD(o, TH.o_order_id),
                          symbol,
                          side,
                          price,
                          quantity,
                          FIELD(o, TH.o_status),
                          FIELD(o, TH.o_filled),
                          FIELD(o, TH.o_remaining),
                          now};
    for (int i = 0; i < 11; i++)
        if (args[i] == NULL) {
            PyErr_SetString(PyExc_AttributeError, "order has an unset field");
            return -1;
        }
    return append_event(events, &G.make_order_filled, args, 11);
}

/* ------------------------------------------------------------------ _match */

/* One trade's fill of one order: remaining = left; filled += quantity; log; status. */
static int fill(PyObject *o, PyObject *left, PyObject *quantity, PyObject *trade)
{
    th_set(o, TH.o_remaining, left);
    if (th_iadd(o, TH.o_filled, quantity) < 0 || log_trade(o, trade) < 0)
        return -1;
    int more = th_true(left);
    if (more < 0)
        return -1;
    th_set(o, TH.o_status, more ? G.s_partially_filled : G.s_filled);
    return 0;
}

/* Engine._match: one iteration of the loop. Returns 1 to go on, 0 to stop, -1 on error. */
static int match_one(Core *c, PyObject *order, PyObject *opposite, PyObject *now,
                     PyObject *events, PyObject *window, int is_bid, int at_own_price,
                     PyObject *limit, PyObject *symbol, PyObject *side, PyObject **price,
                     PyObject **taken_notional, PyObject **taken_quantity)
{
    int rc = -1, cmp;
    PyObject *level = NULL, *level_price = NULL, *queue = NULL, *resting = NULL;
    PyObject *wanted = NULL, *offered = NULL, *quantity = NULL, *notional = NULL;
    PyObject *trade_id = NULL, *trade = NULL, *left = NULL, *was = NULL, *maker = NULL;
    PyObject *held = NULL, *tmp = NULL, *r;

    level = th_get(opposite, TH.s_best_level);
    if (level == NULL)
        goto done;
    if (level == Py_None) {
        rc = 0;
        goto done;
    }
    level_price = th_get(level, TH.l_price);
    if (level_price == NULL)
        goto done;
    if (limit != Py_None) {
        cmp = is_bid ? num_cmp(limit, level_price, Py_LT) : num_cmp(level_price, limit, Py_LT);
        if (cmp) {
            rc = cmp < 0 ? -1 : 0;
            goto done;
        }
    }
    queue = th_get(level, TH.l_orders);
    if (queue == NULL || (resting = PySequence_GetItem(queue, 0)) == NULL)
        goto done;
    for (;;) { /* the slot of an order cancelled by id: skip it */
        PyObject *rem = th_peek(resting, TH.o_remaining);
        cmp = rem == NULL ? -1 : th_true(rem);
        if (cmp < 0)
            goto done;
        if (cmp)
            break;
        r = th_deque_popleft(queue);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
        if (th_add_ll(level, TH.l_dead, -1) < 0)
            goto done;
        Py_DECREF(resting);
        if ((resting = PySequence_GetItem(queue, 0)) == NULL)
            goto done;
    }
    wanted = th_get(order, TH.o_remaining);
    offered = wanted == NULL ? NULL : th_get(resting, TH.o_remaining);
    if (offered == NULL)
        goto done;
    cmp = num_cmp(wanted, offered, Py_LT);
    if (cmp < 0)
        goto done;
    quantity = cmp ? wanted : offered;
    Py_INCREF(quantity);
    Py_SETREF(*price, Py_NewRef(at_own_price ? limit : level_price));
    notional = num_mul(*price, quantity);
    if (notional == NULL)
        goto done;
    PyObject *buy = is_bid ? order : resting, *sell = is_bid ? resting : order;
    trade_id = new_id(c);
    if (trade_id == NULL)
        goto done;
    {
        PyObject *args[6] = {trade_id, *price, quantity, now, FIELD(buy, TH.o_order_id),
                             FIELD(sell, TH.o_order_id)};
        trade = th_make(&G.make_trade, args, 6);
    }
    if (trade == NULL)
        goto done;

    /* Both fills, inline. */
    if ((left = num_sub(wanted, quantity)) == NULL || fill(order, left, quantity, trade) < 0)
        goto done;
    Py_CLEAR(left);
    if ((left = num_sub(offered, quantity)) == NULL)
        goto done;
    was = th_get(resting, TH.o_status);
    if (was == NULL || fill(resting, left, quantity, trade) < 0)
        goto done;
    cmp = PyObject_RichCompareBool(FIELD(resting, TH.o_status), was, Py_NE);
    if (cmp < 0)
        goto done;
    if (cmp) {
        PyObject *listing = th_dict_item(c->broker_orders, FIELD(resting, TH.o_broker_id));
        if (listing == NULL)
            goto done;
        cmp = th_listing_moved(listing, resting, was);
        Py_DECREF(listing);
        if (cmp < 0)
            goto done;
    }
    if (th_isub(level, TH.l_total, quantity) < 0)
        goto done;
    if ((cmp = th_true(left)) < 0)
        goto done;
    if (!cmp) {
        if ((r = th_deque_popleft(queue)) == NULL)
            goto done;
        Py_DECREF(r);
        if (th_add_ll(level, TH.l_count, -1) < 0)
            goto done;
        PyObject *count = th_peek(level, TH.l_count);
        if ((cmp = count == NULL ? -1 : th_true(count)) < 0)
            goto done;
        if (!cmp && th_side_drop_level(opposite, level) < 0)
            goto done;
        if (th_expiry_discard(c->expiry, resting) < 0)
            goto done;
    }

    /* Settlement of the resting side (always a limit order). */
    maker = th_dict_item(c->brokers, FIELD(resting, TH.o_broker_id));
    if (maker == NULL)
        goto done;
    if (is_bid) {
        if (th_iadd(maker, TH.b_cash, notional) < 0)
            goto done;
        PyObject *holdings = th_peek(maker, TH.b_holdings);
        if (holdings == NULL || (held = th_dict_item(holdings, symbol)) == NULL)
            goto done;
        if (th_isub(held, TH.h_quantity, quantity) < 0 ||
            th_isub(held, TH.h_reserved, quantity) < 0)
            goto done;
    }
    else {
        if (th_isub(maker, TH.b_cash, notional) < 0)
            goto done;
        PyObject *rp = th_peek(resting, TH.o_price);
        if (rp == NULL || (tmp = num_mul(rp, quantity)) == NULL ||
            th_isub(maker, TH.b_reserved_cash, tmp) < 0)
            goto done;
        if ((held = holding_for(maker, symbol)) == NULL ||
            th_iadd(held, TH.h_quantity, quantity) < 0)
            goto done;
    }
    th_set(maker, TH.b_updated_at, now);
    Py_XSETREF(tmp, num_add(*taken_notional, notional));
    if (tmp == NULL)
        goto done;
    Py_SETREF(*taken_notional, tmp);
    tmp = num_add(*taken_quantity, quantity);
    if (tmp == NULL)
        goto done;
    Py_SETREF(*taken_quantity, tmp);
    tmp = PyTuple_Pack(3, now, notional, quantity);
    if (tmp == NULL)
        goto done;
    th_untrack_atomic(tmp); /* three ints, kept for the whole VWAP window */
    if (PyList_Append(window, tmp) < 0)
        goto done;

    {
        PyObject *args[6] = {symbol, trade_id, *price, quantity, side, now};
        if (append_event(events, &G.make_trade_executed, args, 6) < 0)
            goto done;
    }
    if (append_fill(events, trade_id, buy, symbol, G.s_bid, *price, quantity, now) < 0 ||
        append_fill(events, trade_id, sell, symbol, G.s_ask, *price, quantity, now) < 0)
        goto done;
    PyObject *rem = th_peek(order, TH.o_remaining);
    if ((cmp = rem == NULL ? -1 : th_true(rem)) < 0)
        goto done;
    rc = cmp ? 1 : 0;
done:
    Py_XDECREF(queue); /* before the level, which can be reused only when nothing holds its deque */
    th_level_release(level);
    Py_XDECREF(level_price);
    Py_XDECREF(resting);
    Py_XDECREF(wanted);
    Py_XDECREF(offered);
    Py_XDECREF(quantity);
    Py_XDECREF(notional);
    Py_XDECREF(trade_id);
    Py_XDECREF(trade);
    Py_XDECREF(left);
    Py_XDECREF(was);
    Py_XDECREF(maker);
    Py_XDECREF(held);
    Py_XDECREF(tmp);
    return rc;
}

/* Engine._match */
static int match(Core *c, PyObject *engine, PyObject *order, PyObject *market, PyObject *opposite,
                 PyObject *now, PyObject *events)
{
    int rc = -1, step;
    PyObject *limit = th_get(order, TH.o_price);
    PyObject *side = limit == NULL ? NULL : th_get(order, TH.o_side);
    PyObject *symbol = side == NULL ? NULL : th_get(order, TH.o_symbol);
    PyObject *taker = NULL, *window = NULL, *held = NULL, *tmp = NULL;
    PyObject *taken_notional = Py_NewRef(G.zero), *taken_quantity = Py_NewRef(G.zero);
    PyObject *price = Py_NewRef(G.zero);
    if (symbol == NULL)
        goto done;
    int is_bid = th_streq(side, G.s_bid);
    if (is_bid < 0)
        goto done;
    int at_own_price = limit != Py_None && !is_bid;
    taker = th_dict_item(c->brokers, FIELD(order, TH.o_broker_id));
    if (taker == NULL || (window = PyList_New(0)) == NULL)
        goto done;
    do {
        step = match_one(c, order, opposite, now, events, window, is_bid, at_own_price, limit,
                         symbol, side, &price, &taken_notional, &taken_quantity);
    } while (step > 0);
    if (step < 0)
        goto done;
    if (PyList_GET_SIZE(window) == 0) {
        rc = 0;
        goto done;
    }
    /* The taker's side of every trade of the pass, at once. */
    PyObject *type = th_peek(order, TH.o_type);
    int is_limit = type == NULL ? -1 : th_streq(type, G.s_limit);
    if (is_limit < 0)
        goto done;
    if (is_bid) {
        if (th_isub(taker, TH.b_cash, taken_notional) < 0)
            goto done;
        if (is_limit) {
            if ((tmp = num_mul(limit, taken_quantity)) == NULL ||
                th_isub(taker, TH.b_reserved_cash, tmp) < 0)
                goto done;
        }
        if ((held = holding_for(taker, symbol)) == NULL ||
            th_iadd(held, TH.h_quantity, taken_quantity) < 0)
            goto done;
    }
    else {
        if (th_iadd(taker, TH.b_cash, taken_notional) < 0)
            goto done;
        PyObject *holdings = th_peek(taker, TH.b_holdings);
        if (holdings == NULL || (held = th_dict_item(holdings, symbol)) == NULL ||
            th_isub(held, TH.h_quantity, taken_quantity) < 0)
            goto done;
        if (is_limit && th_isub(held, TH.h_reserved, taken_quantity) < 0)
            goto done;
    }
    th_set(taker, TH.b_updated_at, now);
    PyObject *trades = th_peek(market, TH.m_window);
    if (trades == NULL ||
        th_window_add_pass(trades, now, window, taken_notional, taken_quantity, price) < 0)
        goto done;
    rc = th_add_ll(engine, TH.e_trade_count, (long long)PyList_GET_SIZE(window));
done:
    Py_XDECREF(limit);
    Py_XDECREF(side);
    Py_XDECREF(symbol);
    Py_XDECREF(taker);
    Py_XDECREF(window);
    Py_XDECREF(held);
    Py_XDECREF(tmp);
    Py_DECREF(taken_notional);
    Py_DECREF(taken_quantity);
    Py_DECREF(price);
    return rc;
}

/* ------------------------------------------------------------------ _close */

/* Engine._close: a new OrderClosed, or NULL with an exception. */
static PyObject *close_order(Core *c, PyObject *order, PyObject *status, PyObject *at,
                             PyObject *now, int swept)
{
    PyObject *result = NULL, *listing = NULL, *market = NULL, *broker = NULL, *tmp = NULL;
    PyObject *remaining = th_get(order, TH.o_remaining);
    PyObject *old_status = remaining == NULL ? NULL : th_get(order, TH.o_status);
    if (old_status == NULL)
        goto done;
    if (th_order_close(order, status, at) < 0)
        goto done;
    listing = th_dict_item(c->broker_orders, FIELD(order, TH.o_broker_id));
    if (listing == NULL || th_listing_moved(listing, order, old_status) < 0)
        goto done;
    market = th_dict_item(c->markets, FIELD(order, TH.o_symbol));
    PyObject *book = market == NULL ? NULL : th_peek(market, TH.m_book);
    if (book == NULL)
        goto done;
    int is_bid = th_streq(FIELD(order, TH.o_side), G.s_bid);
    if (is_bid < 0)
        goto done;
    PyObject *side = th_peek(book, is_bid ? TH.ob_bids : TH.ob_asks);
    if (side == NULL || th_side_remove(side, order, remaining) < 0)
        goto done;
    if (!swept && th_expiry_discard(c->expiry, order) < 0)
        goto done;
    broker = th_dict_item(c->brokers, FIELD(order, TH.o_broker_id));
    if (broker == NULL)
        goto done;
    PyObject *price = FIELD(order, TH.o_price);
    if (price == Py_None) {
        PyErr_SetNone(PyExc_AssertionError);
        goto done;
    }
    if (is_bid) {
        if ((tmp = num_mul(price, remaining)) == NULL ||
            th_isub(broker, TH.b_reserved_cash, tmp) < 0)
            goto done;
    }
    else {
        PyObject *holdings = th_peek(broker, TH.b_holdings);
        if (holdings == NULL || (tmp = th_dict_item(holdings, FIELD(order, TH.o_symbol))) == NULL ||
            th_isub(tmp, TH.h_reserved, remaining) < 0)
            goto done;
    }
    th_set(broker, TH.b_updated_at, now);
    int cancelled = th_streq(status, G.s_cancelled);
    if (cancelled < 0)
        goto done;
    /* cancelled_quantity = quantity - filled - remaining */
    Py_CLEAR(tmp);
    PyObject *partial = num_sub(FIELD(order, TH.o_quantity), FIELD(order, TH.o_filled));
    if (partial == NULL)
        goto done;
    tmp = num_sub(partial, FIELD(order, TH.o_remaining));
    Py_DECREF(partial);
    if (tmp == NULL)
        goto done;
    PyObject *args[11] = {cancelled ? G.s_order_cancelled : G.s_order_expired,
                          FIELD(order, TH.o_broker_id),
                          FIELD(order, TH.o_order_id),
                          FIELD(order, TH.o_symbol),
                          FIELD(order, TH.o_side),
                          FIELD(order, TH.o_price),
                          FIELD(order, TH.o_quantity),
                          FIELD(order, TH.o_filled),
                          tmp,
                          FIELD(order, TH.o_status),
                          at};
    result = th_make(&G.make_order_closed, args, 11);
done:
    Py_XDECREF(remaining);
    Py_XDECREF(old_status);
    Py_XDECREF(listing);
    Py_XDECREF(market);
    Py_XDECREF(broker);
    Py_XDECREF(tmp);
    return result;
}

/* ------------------------------------------------------------------ commands */

/* ``have - held < x * y`` (funds or holdings short of what an order needs): 1, 0, or -1 with
 * an exception. In machine words when every figure fits (no int is made: the check runs on every
 * submit), else with Python ints. An unset field (NULL) is an AttributeError. */
static int short_of(PyObject *have, PyObject *held, PyObject *x, PyObject *y)
{
    if (have == NULL || held == NULL) {
        PyErr_SetString(PyExc_AttributeError, "balance field is unset");
        return -1;
    }
    long long h, r, a, b, free, need;
    if (th_ll(have, &h) && th_ll(held, &r) && th_ll(x, &a) && th_ll(y, &b) &&
        !__builtin_sub_overflow(h, r, &free) && !__builtin_mul_overflow(a, b, &need))
        return free < need;
    PyObject *left = num_sub(have, held);
    PyObject *wanted = left == NULL ? NULL : num_mul(x, y);
    int cmp = wanted == NULL ? -1 : num_cmp(left, wanted, Py_LT);
    Py_XDECREF(left);
    Py_XDECREF(wanted);
    return cmp;
}

/* Engine.submit */
static PyObject *core_submit(Core *c, PyObject *request)
{
    PyObject *engine = engine_of(c);
    if (engine == NULL)
        return NULL;
    if (Py_TYPE(request) != (PyTypeObject *)G.OrderRequest) { /* not the struct: the reference */
        PyObject *r = PyObject_CallMethodOneArg(engine, G.s_submit_python, request);
        Py_DECREF(engine);
        return r;
    }
    PyObject *result = NULL, *now = NULL, *market = NULL, *broker = NULL, *holding = NULL;
    PyObject *own = NULL, *opposite = NULL, *best = NULL, *order = NULL, *events = NULL;
    PyObject *symbol = NULL, *broker_id = NULL, *order_id = NULL, *document = NULL;
    PyObject *b = NULL, *listing = NULL;
    /* OrderRequest is frozen: its fields stay put, so they are borrowed. */
    PyObject *quantity = FIELD(request, TH.r_quantity), *price = FIELD(request, TH.r_price);
    PyObject *expires_at = FIELD(request, TH.r_expires_at);
    PyObject *rsymbol = FIELD(request, TH.r_symbol), *rbroker = FIELD(request, TH.r_broker_id);
    PyObject *reading = read_clock(c);
    int cmp;
    if (reading == NULL || (now = next_stamp(engine, reading)) == NULL)
        goto done;
    int is_limit = th_streq(FIELD(request, TH.r_type), G.s_limit);
    if (is_limit < 0)
        goto done;
    if (is_limit) {
        cmp = expires_at == Py_None ? 1 : num_cmp(expires_at, reading, Py_LE);
        if (cmp) {
            if (cmp > 0)
                th_raise(G.ValidationError, &G.msg_expires_at, 1);
            goto done;
        }
    }
    market = PyDict_GetItemWithError(c->markets, rsymbol);
    if (market != NULL)
        Py_INCREF(market);
    else if (PyErr_Occurred() ||
             (market = PyObject_CallMethodOneArg(engine, G.s_market_fn, rsymbol)) == NULL)
        goto done;
    broker = PyDict_GetItemWithError(c->brokers, rbroker);
    if (broker == NULL) {
        if (!PyErr_Occurred())
            th_raise(G.BrokerNotFound, &rbroker, 1);
        goto done;
    }
    Py_INCREF(broker);
    PyObject *book = th_peek(market, TH.m_book);
    if (book == NULL || (symbol = th_get(book, TH.ob_symbol)) == NULL)
        goto done;
    int is_bid = th_streq(FIELD(request, TH.r_side), G.s_bid);
    if (is_bid < 0)
        goto done;
    own = th_get(book, is_bid ? TH.ob_bids : TH.ob_asks);
    opposite = own == NULL ? NULL : th_get(book, is_bid ? TH.ob_asks : TH.ob_bids);
    if (opposite == NULL)
        goto done;
    /* Balance and holdings are checked before no_liquidity (contract §9). */
    if (!is_bid) {
        PyObject *holdings = th_peek(broker, TH.b_holdings);
        if (holdings == NULL)
            goto done;
        holding = PyDict_GetItemWithError(holdings, symbol);
        if (holding == NULL && PyErr_Occurred())
            goto done;
        Py_XINCREF(holding);
        cmp = holding == NULL ? 1
                              : short_of(FIELD(holding, TH.h_quantity),
                                         FIELD(holding, TH.h_reserved), quantity, G.one);
        if (cmp) {
            if (cmp > 0) {
                PyObject *args[2] = {FIELD(broker, TH.b_broker_id), rsymbol};
                th_raise(G.InsufficientHoldings, args, 2);
            }
            goto done;
        }
    }
    else {
        if (price != Py_None) {
            cmp = short_of(FIELD(broker, TH.b_cash), FIELD(broker, TH.b_reserved_cash), price,
                           quantity);
        }
        else {
            PyObject *quote = th_call2(G.sweep, opposite, quantity);
            b = quote == NULL ? NULL : PyObject_GetAttr(quote, G.s_total);
            Py_XDECREF(quote);
            cmp = b == NULL ? -1
                            : short_of(FIELD(broker, TH.b_cash), FIELD(broker, TH.b_reserved_cash),
                                       b, G.one);
        }
        if (cmp) {
            if (cmp > 0)
                th_raise(G.InsufficientBalance, &FIELD(broker, TH.b_broker_id), 1);
            goto done;
        }
    }
    best = th_get(opposite, TH.s_best_level);
    if (best == NULL)
        goto done;
    if (best == Py_None && !is_limit) {
        th_raise(G.NoLiquidity, &rsymbol, 1);
        goto done;
    }

    /* Valid: from here on, state changes. */
    th_set(engine, TH.e_last_ns, now);
    if (th_add_ll(engine, TH.e_seq, 1) < 0)
        goto done;
    broker_id = th_get(broker, TH.b_broker_id);
    if (broker_id == NULL || (order_id = new_id(c)) == NULL)
        goto done;
    document = FIELD(request, TH.r_document_number);
    if (PyUnicode_CheckExact(document)) { /* one copy per end client, not per order */
        Py_INCREF(document);
        PyUnicode_InternInPlace(&document);
    }
    else if ((document = th_call1(G.sys_intern, document)) == NULL) {
        goto done;
    }
    {
        PyObject *args[11] = {order_id, is_limit ? G.s_limit : G.s_market, broker_id, document,
                              is_bid ? G.s_bid : G.s_ask, symbol, quantity, price, expires_at,
                              now, quantity};
        order = th_make(&G.make_order, args, 11);
    }
    if (order == NULL)
        goto done;
    if (is_limit) {
        Py_CLEAR(b);
        if (is_bid) {
            if ((b = num_mul(quantity, price)) == NULL ||
                th_iadd(broker, TH.b_reserved_cash, b) < 0)
                goto done;
        }
        else if (th_iadd(holding, TH.h_reserved, quantity) < 0) {
            goto done;
        }
    }
    if (PyDict_SetItem(c->orders, FIELD(order, TH.o_order_id), order) < 0)
        goto done;
    th_set(broker, TH.b_updated_at, now);
    if ((events = PyList_New(0)) == NULL)
        goto done;
    if (best != Py_None) {
        cmp = 1;
        if (price != Py_None) {
            PyObject *best_price = th_peek(best, TH.l_price);
            cmp = best_price == NULL ? -1 : num_cmp(price, best_price, is_bid ? Py_GE : Py_LE);
        }
        if (cmp < 0 || (cmp && match(c, engine, order, market, opposite, now, events) < 0))
            goto done;
    }
    PyObject *rem = th_peek(order, TH.o_remaining);
    if ((cmp = rem == NULL ? -1 : th_true(rem)) < 0)
        goto done;
    if (cmp) {
        if (is_limit) {
            if (th_side_add(own, order) < 0 || th_expiry_add(c->expiry, order) < 0)
                goto done;
        }
        else if (th_order_close(order, G.s_cancelled, now) < 0) { /* IOC leftover; no event */
            goto done;
        }
    }
    listing = th_dict_item(c->broker_orders, broker_id);
    if (listing == NULL || th_listing_add(listing, order) < 0)
        goto done;
    result = PyTuple_Pack(2, order, events);
done:
    Py_DECREF(engine);
    Py_XDECREF(reading);
    Py_XDECREF(now);
    Py_XDECREF(market);
    Py_XDECREF(broker);
    Py_XDECREF(holding);
    Py_XDECREF(own);
    Py_XDECREF(opposite);
    Py_XDECREF(best);
    Py_XDECREF(order);
    Py_XDECREF(events);
    Py_XDECREF(symbol);
    Py_XDECREF(broker_id);
    Py_XDECREF(order_id);
    Py_XDECREF(document);
    Py_XDECREF(b);
    Py_XDECREF(listing);
    return result;
}

/* Engine.cancel */
static PyObject *core_cancel(Core *c, PyObject *order_id)
{
    PyObject *order = PyDict_GetItemWithError(c->orders, order_id);
    if (order == NULL) {
        if (!PyErr_Occurred())
            th_raise(G.OrderNotFound, &order_id, 1);
        return NULL;
    }
    Py_INCREF(order);
    PyObject *result = NULL, *reading = NULL, *now = NULL, *closed = NULL, *engine = NULL;
    PyObject *rem = th_peek(order, TH.o_remaining);
    int open = rem == NULL ? -1 : th_true(rem);
    if (open <= 0) { /* filled, cancelled or expired: nothing open */
        if (open == 0) {
            PyObject *args[2] = {order_id, FIELD(order, TH.o_status)};
            th_raise(G.OrderNotCancellable, args, 2);
        }
        goto done;
    }
    if ((engine = engine_of(c)) == NULL || (reading = read_clock(c)) == NULL ||
        (now = next_stamp(engine, reading)) == NULL)
        goto done;
    th_set(engine, TH.e_last_ns, now);
    closed = close_order(c, order, G.s_cancelled, now, now, 0);
    if (closed == NULL)
        goto done;
    PyObject *events = PyList_New(1);
    if (events == NULL)
        goto done;
    PyList_SET_ITEM(events, 0, closed);
    closed = NULL;
    result = PyTuple_Pack(2, order, events);
    Py_DECREF(events);
done:
    Py_DECREF(order);
    Py_XDECREF(engine);
    Py_XDECREF(reading);
    Py_XDECREF(now);
    Py_XDECREF(closed);
    return result;
}

/* Engine.expire_due */
static PyObject *core_expire_due(Core *c, PyObject *Py_UNUSED(ignored))
{
    PyObject *result = NULL, *events = NULL, *due = NULL, *reading = NULL, *now = NULL;
    PyObject *engine = engine_of(c);
    if (engine == NULL)
        return NULL;
    reading = read_clock(c);
    now = reading == NULL ? NULL : next_stamp(engine, reading);
    if (now == NULL)
        goto done;
    due = PyObject_CallMethodOneArg(c->expiry, G.s_pop_due, reading);
    if (due == NULL)
        goto done;
    int any = PyObject_IsTrue(due);
    if (any < 0)
        goto done;
    if (any)
        th_set(engine, TH.e_last_ns, now);
    if ((events = PyList_New(0)) == NULL)
        goto done;
    PyObject *it = PyObject_GetIter(due);
    if (it == NULL)
        goto done;
    PyObject *order;
    while ((order = PyIter_Next(it)) != NULL) {
        PyObject *at = FIELD(order, TH.o_expires_at);
        PyObject *closed = NULL;
        if (at == NULL || at == Py_None)
            PyErr_SetNone(PyExc_AssertionError);
        else {
            Py_INCREF(at);
            closed = close_order(c, order, G.s_expired, at, now, 1);
            Py_DECREF(at);
        }
        Py_DECREF(order);
        if (closed == NULL || PyList_Append(events, closed) < 0) {
            Py_XDECREF(closed);
            break;
        }
        Py_DECREF(closed);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        goto done;
    result = events;
    events = NULL;
done:
    Py_DECREF(engine);
    Py_XDECREF(reading);
    Py_XDECREF(now);
    Py_XDECREF(due);
    Py_XDECREF(events);
    return result;
}

/* ------------------------------------------------------------------ the Core type */

static PyObject *engine_attr(PyObject *engine, const char *name, int want_dict)
{
    PyObject *v = PyObject_GetAttrString(engine, name);
    if (v != NULL && want_dict && !PyDict_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "Engine.%s must be a dict", name);
        Py_CLEAR(v);
    }
    return v;
}

static int core_clear(Core *c)
{
    Py_CLEAR(c->engine_ref);
    Py_CLEAR(c->markets);
    Py_CLEAR(c->brokers);
    Py_CLEAR(c->orders);
    Py_CLEAR(c->broker_orders);
    Py_CLEAR(c->expiry);
    th_sources_clear(&c->src);
    return 0;
}

static int core_traverse(Core *c, visitproc visit, void *arg)
{
    Py_VISIT(c->engine_ref);
    Py_VISIT(c->markets);
    Py_VISIT(c->brokers);
    Py_VISIT(c->orders);
    Py_VISIT(c->broker_orders);
    Py_VISIT(c->expiry);
    return th_sources_traverse(&c->src, visit, arg);
}

static void core_dealloc(Core *c)
{
    PyObject_GC_UnTrack(c);
    core_clear(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *core_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *engine;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Core() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O:Core", &engine))
        return NULL;
    /* The counters are written at the Engine class's slot offsets: only for its instances. */
    if (!PyObject_TypeCheck(engine, (PyTypeObject *)G.Engine)) {
        PyErr_Format(PyExc_TypeError, "Core() needs an Engine, not %.100s",
                     Py_TYPE(engine)->tp_name);
        return NULL;
    }
    Core *c = (Core *)type->tp_alloc(type, 0);
    if (c == NULL)
        return NULL;
    /* The engine is found each command through the weak reference, as the engine itself holds
     * this core's bound methods. */
    if ((c->engine_ref = PyWeakref_NewRef(engine, NULL)) == NULL ||
        (c->markets = engine_attr(engine, "_markets", 1)) == NULL ||
        (c->brokers = engine_attr(engine, "brokers", 1)) == NULL ||
        (c->orders = engine_attr(engine, "orders", 1)) == NULL ||
        (c->broker_orders = engine_attr(engine, "_broker_orders", 1)) == NULL ||
        (c->expiry = engine_attr(engine, "_expiry", 0)) == NULL ||
        th_sources_init(&c->src, engine) < 0) {
        Py_DECREF(c);
        return NULL;
    }
    return (PyObject *)c;
}

static PyMethodDef core_methods[] = {
    {"submit", (PyCFunction)core_submit, METH_O, "Engine.submit, natively."},
    {"cancel", (PyCFunction)core_cancel, METH_O, "Engine.cancel, natively."},
    {"expire_due", (PyCFunction)core_expire_due, METH_NOARGS, "Engine.expire_due, natively."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tradehall.exchange._native.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The hot commands of one engine, in C, over that engine's structures.",
    .tp_new = core_new,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
};

/* ------------------------------------------------------------------ module init */

static PyObject *from_module(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL)
        return NULL;
    PyObject *v = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return v;
}

/* The slot offset of ``cls.name``: it must be a writable member descriptor holding an object. */
static int slot(PyObject *cls, const char *name, Py_ssize_t *out)
{
    *out = th_member_offset(cls, name, 1);
    if (*out >= 0)
        return 0;
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_ImportError, "%s.%s is not a writable object slot",
                     ((PyTypeObject *)cls)->tp_name, name);
    return -1;
}

static int slots(PyObject *cls, const char *const *names, Py_ssize_t *const *outs)
{
    for (int i = 0; names[i] != NULL; i++)
        if (slot(cls, names[i], outs[i]) < 0)
            return -1;
    return 0;
}

int th_init_offsets(void)
{
    PyObject *market = from_module("tradehall.exchange.engine", "_Market");
    PyObject *book = from_module("tradehall.exchange.book", "OrderBook");
    PyObject *side = from_module("tradehall.exchange.book", "BookSide");
    PyObject *broker = from_module("tradehall.exchange.model", "Broker");
    PyObject *expiry = from_module("tradehall.exchange.indexes", "ExpiryIndex");
    PyObject *listing = from_module("tradehall.exchange.indexes", "BrokerOrders");
    PyObject *window = from_module("tradehall.exchange.indexes", "TradeWindow");
    int rc = -1;
    if (!market || !book || !side || !broker || !expiry || !listing || !window)
        goto done;
    {
        const char *const n[] = {"order_id", "type",     "broker_id",  "side",
                                 "symbol",   "quantity", "price",      "expires_at",
                                 "remaining", "filled",  "status",     "closed_at",
                                 "list_pos", "trade_log", NULL};
        Py_ssize_t *const o[] = {&TH.o_order_id, &TH.o_type,     &TH.o_broker_id,  &TH.o_side,
                                 &TH.o_symbol,   &TH.o_quantity, &TH.o_price,      &TH.o_expires_at,
                                 &TH.o_remaining, &TH.o_filled,  &TH.o_status,     &TH.o_closed_at,
                                 &TH.o_list_pos, &TH.o_trade_log};
        if (slots(G.Order, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"type",     "broker_id", "document_number", "side",
                                 "symbol",   "quantity",  "price",           "expires_at",
                                 NULL};
        Py_ssize_t *const o[] = {&TH.r_type,   &TH.r_broker_id, &TH.r_document_number,
                                 &TH.r_side,   &TH.r_symbol,    &TH.r_quantity,
                                 &TH.r_price,  &TH.r_expires_at};
        if (slots(G.OrderRequest, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"broker_id", "cash", "reserved_cash", "holdings", "updated_at",
                                 NULL};
        Py_ssize_t *const o[] = {&TH.b_broker_id, &TH.b_cash, &TH.b_reserved_cash,
                                 &TH.b_holdings, &TH.b_updated_at};
        if (slots(broker, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"quantity", "reserved", NULL};
        Py_ssize_t *const o[] = {&TH.h_quantity, &TH.h_reserved};
        if (slots(G.Holding, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"book", "window", NULL};
        Py_ssize_t *const o[] = {&TH.m_book, &TH.m_window};
        if (slots(market, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"symbol", "bids", "asks", NULL};
        Py_ssize_t *const o[] = {&TH.ob_symbol, &TH.ob_bids, &TH.ob_asks};
        if (slots(book, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"_heap", "_levels", "_sign", "best_level", "is_bid", NULL};
        Py_ssize_t *const o[] = {&TH.s_heap, &TH.s_levels, &TH.s_sign, &TH.s_best_level,
                                 &TH.s_is_bid};
        if (slots(side, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"count", "dead", "orders", "price", "total", NULL};
        Py_ssize_t *const o[] = {&TH.l_count, &TH.l_dead, &TH.l_orders, &TH.l_price,
                                 &TH.l_total};
        if (slots(G.Level, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"_buckets", "_heap", "_live", NULL};
        Py_ssize_t *const o[] = {&TH.x_buckets, &TH.x_heap, &TH.x_live};
        if (slots(expiry, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"live", "orders", NULL};
        Py_ssize_t *const o[] = {&TH.k_live, &TH.k_orders};
        if (slots(G.Bucket, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"_all", "_blocks", "_supers", "_new_row", NULL};
        Py_ssize_t *const o[] = {&TH.bo_all, &TH.bo_blocks, &TH.bo_supers, &TH.bo_new_row};
        if (slots(listing, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"_last_ns", "_seq", "trade_count", NULL};
        Py_ssize_t *const o[] = {&TH.e_last_ns, &TH.e_seq, &TH.e_trade_count};
        if (slots(G.Engine, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"_next", "_head", NULL};
        Py_ssize_t *const o[] = {&TH.q_next, &TH.q_head};
        if (slots(G.SequentialIds, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"_batch", NULL};
        Py_ssize_t *const o[] = {&TH.rb_batch};
        if (slots(G.RandomIds, n, o) < 0)
            goto done;
    }
    {
        const char *const n[] = {"_trades",   "_notional",     "_quantity",
                                 "last_price", "last_trade_at", "window_ns", NULL};
        Py_ssize_t *const o[] = {&TH.w_trades,     &TH.w_notional,      &TH.w_quantity,
                                 &TH.w_last_price, &TH.w_last_trade_at, &TH.w_window_ns};
        if (slots(window, n, o) < 0)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(market);
    Py_XDECREF(book);
    Py_XDECREF(side);
    Py_XDECREF(broker);
    Py_XDECREF(expiry);
    Py_XDECREF(listing);
    Py_XDECREF(window);
    return rc;
}

static int intern_all(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } strings[] = {
        {&G.s_limit, "limit"},
        {&G.s_market, "market"},
        {&G.s_bid, "bid"},
        {&G.s_ask, "ask"},
        {&G.s_order_cancelled, "order.cancelled"},
        {&G.s_order_expired, "order.expired"},
        {&G.s_market_fn, "_market"},
        {&G.s_close, "close"},
        {&G.s_live_orders, "live_orders"},
        {&G.s_pop_due, "pop_due"},
        {&G.s_total, "total"},
        {&G.s_submit_python, "_submit_python"},
        {&G.s_cancel_python, "_cancel_python"},
        {&G.s_append, "append"},
        {&G.s_replay_times, "_replay_times"},
        {&G.s_replay_ids, "_replay_ids"},
        {&G.s_read_clock, "_read_clock"},
        {&G.s_mint, "_mint"},
        {&G.s_times, "_times"},
        {&G.s_new_ids, "_new_ids"},
        {&G.s_machine_module, "tradehall.exchange.machine"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if ((*strings[i].slot = PyUnicode_InternFromString(strings[i].text)) == NULL)
            return -1;
    G.msg_expires_at = PyUnicode_FromString("expires_at must be a future timestamp");
    G.zero = PyLong_FromLong(0);
    G.one = PyLong_FromLong(1);
    return G.msg_expires_at && G.zero && G.one ? 0 : -1;
}

static int load_globals(void)
{
    struct {
        PyObject **slot;
        const char *module, *name;
    } names[] = {
        {&G.Order, "tradehall.exchange.model", "Order"},
        {&G.Trade, "tradehall.exchange.model", "Trade"},
        {&G.Holding, "tradehall.exchange.model", "Holding"},
        {&G.append_trade, "tradehall.exchange.model", "append_trade"},
        {&G.transitions, "tradehall.exchange.model", "TRANSITIONS"},
        {&G.s_pending, "tradehall.exchange.model", "PENDING"},
        {&G.s_partially_filled, "tradehall.exchange.model", "PARTIALLY_FILLED"},
        {&G.s_filled, "tradehall.exchange.model", "FILLED"},
        {&G.s_cancelled, "tradehall.exchange.model", "CANCELLED"},
        {&G.s_expired, "tradehall.exchange.model", "EXPIRED"},
        {&G.TradeExecuted, "tradehall.exchange.events", "TradeExecuted"},
        {&G.OrderFilled, "tradehall.exchange.events", "OrderFilled"},
        {&G.OrderClosed, "tradehall.exchange.events", "OrderClosed"},
        {&G.OrderRequest, "tradehall.exchange.engine", "OrderRequest"},
        {&G.Engine, "tradehall.exchange.engine", "Engine"},
        {&G.sweep, "tradehall.exchange.engine", "_sweep"},
        {&G.Level, "tradehall.exchange.book", "Level"},
        {&G.Bucket, "tradehall.exchange.indexes", "_Bucket"},
        {&G.status_index, "tradehall.exchange.indexes", "_STATUS_INDEX"},
        {&G.SystemClock, "tradehall.core.clock", "SystemClock"},
        {&G.SequentialIds, "tradehall.core.ids", "SequentialIds"},
        {&G.RandomIds, "tradehall.core.ids", "RandomIds"},
        {&G.urandom, "os", "urandom"},
        {&G.batch_bytes, "tradehall.core.ids", "_BATCH_BYTES"},
        {&G.ValidationError, "tradehall.exchange.errors", "ValidationError"},
        {&G.BrokerNotFound, "tradehall.exchange.errors", "BrokerNotFound"},
        {&G.InsufficientBalance, "tradehall.exchange.errors", "InsufficientBalance"},
        {&G.InsufficientHoldings, "tradehall.exchange.errors", "InsufficientHoldings"},
        {&G.NoLiquidity, "tradehall.exchange.errors", "NoLiquidity"},
        {&G.OrderNotFound, "tradehall.exchange.errors", "OrderNotFound"},
        {&G.OrderNotCancellable, "tradehall.exchange.errors", "OrderNotCancellable"},
        {&G.deque_type, "collections", "deque"},
        {&G.heapify, "_heapq", "heapify"},
        {&G.sys_intern, "sys", "intern"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].slot = from_module(names[i].module, names[i].name)) == NULL)
            return -1;
    if (!PyDict_CheckExact(G.status_index) || !PyDict_CheckExact(G.transitions)) {
        PyErr_SetString(PyExc_ImportError, "_STATUS_INDEX / TRANSITIONS must be dicts");
        return -1;
    }
    {
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (G.status_count < 8 && PyDict_Next(G.status_index, &pos, &key, &value)) {
            Py_ssize_t index = PyLong_AsSsize_t(value);
            if (index == -1 && PyErr_Occurred())
                return -1;
            G.status_keys[G.status_count] = Py_NewRef(key);
            G.status_values[G.status_count++] = index;
        }
    }
    G.deque_append = PyObject_GetAttrString(G.deque_type, "append");
    G.deque_popleft = PyObject_GetAttrString(G.deque_type, "popleft");
    G.deque_extend = PyObject_GetAttrString(G.deque_type, "extend");
    G.deque_clear = PyObject_GetAttrString(G.deque_type, "clear");
    if (Py_IS_TYPE(G.deque_append, &PyMethodDescr_Type) &&
        Py_IS_TYPE(G.deque_popleft, &PyMethodDescr_Type)) {
        PyMethodDef *append = ((PyMethodDescrObject *)G.deque_append)->d_method;
        PyMethodDef *popleft = ((PyMethodDescrObject *)G.deque_popleft)->d_method;
        if (append->ml_flags == METH_O && popleft->ml_flags == METH_NOARGS) {
            G.deque_append_fn = append->ml_meth;
            G.deque_popleft_fn = popleft->ml_meth;
        }
    }
    PyObject *max = from_module("tradehall.exchange.model", "TRADE_LOG_TUPLE_MAX");
    if (!G.deque_append || !G.deque_popleft || !G.deque_extend || !G.deque_clear || !max)
        return -1;
    G.trade_log_tuple_max = PyLong_AsSsize_t(max);
    Py_DECREF(max);
    if (PyErr_Occurred() || th_maker_init(&G.make_order, G.Order) < 0 ||
        th_maker_init(&G.make_trade, G.Trade) < 0 ||
        th_maker_init(&G.make_trade_executed, G.TradeExecuted) < 0 ||
        th_maker_init(&G.make_order_filled, G.OrderFilled) < 0 ||
        th_maker_init(&G.make_order_closed, G.OrderClosed) < 0)
        return -1;
    return 0;
}

/* The classes the core builds by position, keyed as layout.c names them. */
static int check_own_layout(void)
{
    PyObject *classes = Py_BuildValue("{sOsOsOsOsOsOsO}", "Order", G.Order, "Trade", G.Trade,
                                      "TradeExecuted", G.TradeExecuted, "OrderFilled",
                                      G.OrderFilled, "OrderClosed", G.OrderClosed, "_Bucket",
                                      G.Bucket, "Level", G.Level);
    if (classes == NULL)
        return -1;
    int rc = th_check_layout(classes);
    Py_DECREF(classes);
    return rc;
}

static PyObject *native_check_layout(PyObject *Py_UNUSED(module), PyObject *classes)
{
    if (th_check_layout(classes) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* {class name: built directly} for the structs the core makes (construct.c). */
static PyObject *native_direct_structs(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    const th_maker *makers[] = {&G.make_order, &G.make_trade, &G.make_trade_executed,
                                &G.make_order_filled, &G.make_order_closed};
    PyObject *result = PyDict_New();
    for (size_t i = 0; result != NULL && i < sizeof makers / sizeof makers[0]; i++) {
        PyObject *name = PyObject_GetAttrString(makers[i]->cls, "__name__");
        if (name == NULL ||
            PyDict_SetItem(result, name, makers[i]->direct ? Py_True : Py_False) < 0)
            Py_CLEAR(result);
        Py_XDECREF(name);
    }
    return result;
}

/* (cls(*args), built directly) through a one-off maker: the test seam of construct.c. */
static PyObject *native_make(PyObject *Py_UNUSED(module), PyObject *const *argv, Py_ssize_t argc)
{
    if (argc != 2 || !PyTuple_CheckExact(argv[1])) {
        PyErr_SetString(PyExc_TypeError, "_make(cls, args: tuple)");
        return NULL;
    }
    th_maker m;
    if (th_maker_init(&m, argv[0]) < 0)
        return NULL;
    PyObject *obj = th_make(&m, &PyTuple_GET_ITEM(argv[1], 0), PyTuple_GET_SIZE(argv[1]));
    PyObject *result = obj == NULL ? NULL : Py_BuildValue("(OO)", obj, m.direct ? Py_True : Py_False);
    Py_XDECREF(obj);
    th_maker_clear(&m);
    return result;
}

static PyObject *native_counts_in_place(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(th_counts_in_place());
}

static PyObject *native_format_uuid4s(PyObject *Py_UNUSED(module), PyObject *raw)
{
    return th_format_uuid4s(raw);
}

static PyMethodDef native_functions[] = {
    {"_format_uuid4s", native_format_uuid4s, METH_O,
     "tradehall.core.ids.format_uuid4s in C, as the core refills RandomIds' batches."},
    {"_counts_in_place", native_counts_in_place, METH_NOARGS,
     "Whether the listing index's array('q') count rows are written in place (their layout "
     "checked at import); otherwise they go through the sequence protocol."},
    {"_make", (PyCFunction)(void (*)(void))native_make, METH_FASTCALL,
     "_make(cls, args) -> (cls(*args), built directly): how the core builds a struct class."},
    {"_direct_structs", native_direct_structs, METH_NOARGS,
     "{class name: whether the core builds it directly into its slots} for Order, Trade and "
     "the events it makes; a class it cannot build directly is called instead."},
    {"_check_layout", native_check_layout, METH_O,
     "Raise ImportError unless the classes in the mapping (by name: Order, Trade, "
     "TradeExecuted, OrderFilled, OrderClosed, _Bucket, Level) have the field order the core "
     "builds them with. The import runs it on the real classes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tradehall.exchange._native",
    .m_doc = "The matching engine's hot commands in C, over the engine's Python structures.",
    .m_size = -1,
    .m_methods = native_functions,
};

PyMODINIT_FUNC PyInit__native(void)
{
    if (intern_all() < 0 || load_globals() < 0 || check_own_layout() < 0 ||
        th_init_offsets() < 0 || th_init_counts() < 0)
        return NULL;
    if (PyType_Ready(&CoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
