"""The native core reuses price levels nothing refers to any more, and only those.

When the last reference to an emptied level is the core's own, the level is reset and kept for
the next new price (``th_level_release`` in ``native/structures.c``). These tests pin the two
properties that makes safe: a level some Python code still holds is never reused (it stays the
object it was), and a reused level is indistinguishable from a new one -- including after it
emptied by cancels, which leave the slots of cancelled orders in its deque. The differential tests
compare both builds' books after every command of random flows, where reuse happens constantly.
"""

from __future__ import annotations

from collections import deque

import pytest
from engine_builds import BUILDS, make_engine

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.book import Level
from tradehall.exchange.engine import Engine, OrderRequest

T0 = 1_790_000_000 * 10**9
FAR = T0 + 10**15


def engine_for(build: str) -> Engine:
    engine = make_engine(build, VirtualClock(T0), SequentialIds(), vwap_window_ns=10**9)
    for broker in ("a", "b"):
        engine.register_broker(broker, 10**12, [("S", 10**6)])
    return engine


def limit(broker: str, side: str, quantity: int, price: int) -> OrderRequest:
    return OrderRequest("limit", broker, "D", side, "S", quantity, price, FAR)


def fields(level: Level) -> tuple[object, ...]:
    return (level.price, level.total, level.count, level.dead, list(level.orders))


@pytest.mark.parametrize("build", BUILDS)
def test_a_level_still_held_elsewhere_is_never_reused(build: str) -> None:
    engine = engine_for(build)
    bids = engine._markets["S"].book.bids
    resting, _ = engine.submit(limit("a", "bid", 2, 100))
    held = bids.best_level
    assert held is not None
    engine.submit(limit("b", "ask", 2, 100))  # fills it: the level empties and is dropped
    assert bids.best_level is None
    engine.submit(limit("a", "bid", 3, 101))
    fresh = bids.best_level
    assert fresh is not None and fresh is not held
    assert fields(fresh)[:4] == (101, 3, 1, 0)
    assert held.price == 100 and held.count == 0 and held.total == 0  # as the fill left it
    assert resting.status == "filled"


@pytest.mark.parametrize("build", BUILDS)
def test_a_level_emptied_by_cancels_comes_back_as_new(build: str) -> None:
    engine = engine_for(build)
    bids = engine._markets["S"].book.bids
    first, _ = engine.submit(limit("a", "bid", 1, 100))
    second, _ = engine.submit(limit("a", "bid", 1, 100))
    engine.cancel(second.order_id)  # a dead slot behind a live order
    engine.cancel(first.order_id)  # the level empties with two dead slots in its deque
    assert bids.best_level is None
    for price in (97, 98, 99):  # new levels, some of them the reused one
        order, _ = engine.submit(limit("a", "bid", 4, price))
        level = bids.level(price)
        assert level is not None and type(level) is Level
        assert fields(level) == (price, 4, 1, 0, [order])
        assert type(level.orders) is deque
    best = bids.best_level
    assert best is not None and best.price == 99


def test_both_builds_leave_the_same_book_through_drain_and_reopen_cycles() -> None:
    books = []
    for build in BUILDS:
        engine = engine_for(build)
        for round_ in range(40):
            price = 100 + round_ % 7
            engine.submit(limit("a", "bid", 2, price))
            gone, _ = engine.submit(limit("a", "bid", 1, price))
            engine.cancel(gone.order_id)
            engine.submit(limit("b", "ask", 2, price))  # drains the level
        bids = engine._markets["S"].book.bids
        books.append((len(bids), bids.best_level, engine.trade_count))
    assert books[0] == books[1] == (0, None, 40)
