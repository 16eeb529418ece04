"""Neither engine build leaks: references to shared objects come back, memory does not creep.

A C core that forgets one ``Py_DECREF`` on an error path, or one per trade, passes every
behavioural test and still leaks for ever in a long-running exchange. These run a mixed workload
(trades, rests, cancels, expiry, reads, every kind of rejection, numbers past 64 bits) on one
engine, drop it, and check that

- objects the test owns and passes in (broker ids, a symbol, a document number, prices and a
  quantity, the clock and the id source) and the record classes every order, trade and event
  points at are referenced exactly as often as before;
- the engine itself is freed, and no container the collector tracks outlives it;
- repeating the workload does not grow the memory ``tracemalloc`` sees.

Both builds run it, so the pure build shows the workload itself is leak-free.
"""

from __future__ import annotations

import gc
import random
import sys
import tracemalloc
import weakref
from typing import Any

import pytest
from engine_builds import BUILDS, make_engine
from engine_sources import T0, Sources
from engine_twin import (
    UNKNOWN_ID,
    Advance,
    Cancel,
    Command,
    Expire,
    Query,
    Register,
    Side,
    Submit,
    apply,
)

from tradehall.core.clock import SystemClock, VirtualClock
from tradehall.core.ids import RandomIds, SequentialIds
from tradehall.exchange.book import Level
from tradehall.exchange.engine import OrderRequest, Quote
from tradehall.exchange.events import OrderClosed, OrderFilled, TradeExecuted
from tradehall.exchange.model import ORDER_STATUSES, Broker, Holding, Order, Trade

WINDOW = 2 * 10**9
RECORD_CLASSES = (Order, Trade, TradeExecuted, OrderFilled, OrderClosed, OrderRequest, Quote)
OTHER_CLASSES = (Broker, Holding, Level)
CONSTANTS = (*ORDER_STATUSES, "bid", "ask", "limit", "market", "order.cancelled", "order.expired")


def owned() -> dict[str, Any]:
    """Fresh objects only this test refers to (built at run time: not interned, not cached)."""
    return {
        "broker": "".join(["leak-", "broker"]),
        "other": "".join(["leak-", "other"]),
        "symbol": "".join(["LEAK", "SYM"]),
        "unheld": "".join(["LEAK", "NONE"]),
        "ghost": "".join(["leak-", "ghost"]),
        "document": "".join(["leak-", "document"]),
        "price": int("100001"),
        "big_price": int(str(2**64 + 11)),
        "quantity": int("1001"),
    }


def workload(objects: dict[str, Any], count: int, seed: int) -> list[Command]:
    """A mixed flow over the owned objects, with every rejection the engine has."""
    rng = random.Random(seed)
    broker, other, symbol = objects["broker"], objects["other"], objects["symbol"]
    price, big_price, quantity = objects["price"], objects["big_price"], objects["quantity"]
    document = objects["document"]
    flow: list[Command] = [
        Register(broker, 10**12, ((symbol, 10**7),)),
        Register(other, 10**40, ((symbol, 10**7),)),
        Register(broker, 1, ()),  # BrokerAlreadyExists
    ]
    while len(flow) < count:
        who = rng.choice((broker, other))
        side = rng.choice(("bid", "ask"))
        roll = rng.random()
        if roll < 0.45:
            at = rng.choice((price, price, price + 1, big_price))
            size = rng.choice((quantity, 3, 1))
            flow.append(
                Submit("limit", who, side, symbol, size, at, rng.randrange(1, 12), document)
            )
        elif roll < 0.55:
            flow.append(Submit("market", who, side, symbol, rng.choice((quantity, 5)), None, None))
        elif roll < 0.75:
            flow.append(Cancel(rng.choice((None, *range(300)))))
        elif roll < 0.8:
            flow.append(Advance(rng.choice((1, 4))))
        elif roll < 0.83:
            flow.append(Expire())
        elif roll < 0.9:  # rejections
            flow.append(
                rng.choice(
                    (
                        Submit("limit", objects["ghost"], side, symbol, 1, price, 4),  # 404
                        Submit("limit", broker, "bid", symbol, 10**20, big_price, 4),  # balance
                        Submit("limit", broker, "ask", objects["unheld"], 1, price, 4),  # holdings
                        Submit("market", broker, "bid", objects["unheld"], 1, None, None),  # none
                        Submit("limit", broker, side, symbol, 1, price, 0),  # past deadline
                        Submit("limit", broker, side, symbol, 1, price, None),  # no deadline
                    )
                )
            )
        else:
            flow.append(
                rng.choice(
                    (
                        Query("book", (symbol,)),
                        Query("quote", (symbol, side, quantity)),
                        Query("vwap", (symbol,)),
                        Query("page", (who, rng.choice((None, "filled", "pending")), 1, 5)),
                        Query("broker", (who,)),
                        Query("order", (rng.randrange(1000),)),
                    )
                )
            )
    return flow


def sources(kind: str) -> Sources:
    if kind == "virtual clock, sequential ids":
        clock = VirtualClock(T0)
        return Sources(clock, clock, SequentialIds())
    return Sources(None, SystemClock(), RandomIds())  # the core's fast paths


def run(build: str, source: Sources, flow: list[Command]) -> weakref.ref[Any]:
    """Run ``flow`` on a new engine, then drop everything but a weak reference to the engine.

    A random-id source's unused batch is dropped too, so it does not count as growth.
    """
    engine = make_engine(build, source.clock, source.ids, vwap_window_ns=WINDOW)
    side = Side(build, source, engine)
    far = T0 + 10**18 if source.control is None else None
    for command in flow:
        try:
            apply(side, command, window=WINDOW, far=far)
        except Exception as exc:
            assert type(exc).__module__ == "tradehall.exchange.errors", repr(exc)
    if isinstance(source.ids, RandomIds):
        source.ids._batch = []
    assert engine.trade_count > 50 and len(engine.orders) > 100  # the flow did trade and rest
    return weakref.ref(engine)


KINDS = ("virtual clock, sequential ids", "system clock, random ids")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("build", BUILDS)
def test_shared_objects_get_every_reference_back(build: str, kind: str) -> None:
    objects = owned()
    flow = workload(objects, 1000, seed=11)
    source = sources(kind)
    run(build, source, flow)  # warm-up: caches (msgspec, interning) fill here, not below
    gc.collect()
    watched = {**objects, "clock": source.clock, "ids": source.ids, "unknown id": UNKNOWN_ID}
    # The engine's string constants: every order, event and error refers to some of them.
    watched.update({f"'{text}'": text for text in CONSTANTS})
    watched.update({cls.__name__: cls for cls in RECORD_CLASSES + OTHER_CLASSES})
    before = {name: sys.getrefcount(value) for name, value in watched.items()}
    tracked = []  # containers the collector tracks, after each run
    for _ in range(3):
        engine = run(build, source, flow)
        gc.collect()
        assert engine() is None, "the engine was not freed"
        tracked.append(len(gc.get_objects()))
    assert tracked[0] == tracked[1] == tracked[2], f"containers outlived the engine: {tracked}"
    after = {name: sys.getrefcount(value) for name, value in watched.items()}
    assert after == before, {k: (before[k], after[k]) for k in before if after[k] != before[k]}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("build", BUILDS)
def test_repeated_runs_do_not_grow_memory(build: str, kind: str) -> None:
    objects = owned()
    flow = workload(objects, 800, seed=5)
    source = sources(kind)
    run(build, source, flow)
    gc.collect()
    tracemalloc.start()
    try:
        run(build, source, flow)
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            run(build, source, flow)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    # One leaked trade, order or event per command would be hundreds of kilobytes here; what the
    # interpreter's own caches keep (a few KB, levelling off) stays below.
    assert grown < 16 * 1024, f"{grown} bytes more after 3 more runs"
