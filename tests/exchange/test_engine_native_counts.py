"""The listing index's per-status counts as the native core keeps them.

Each row of ``BrokerOrders`` counts is an ``array('q')``, which the C core writes in place once
its layout checked out at import (``_native._counts_in_place()``); any other row -- a list, as
older state might hold -- goes through the sequence protocol. Both paths must leave the counts
the pure build leaves, which the filtered pages read.
"""

from __future__ import annotations

import random
from array import array

import pytest
from engine_builds import make_engine

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange import _native
from tradehall.exchange.engine import Engine, OrderRequest
from tradehall.exchange.model import ORDER_STATUSES

T0 = 1_790_000_000 * 10**9
FAR = T0 + 10**15


def test_count_rows_are_written_in_place_on_this_interpreter() -> None:
    assert _native._counts_in_place() is True


def run(build: str, *, list_rows: bool) -> tuple[int, list[list[int]], dict[str, list[str]]]:
    """A seeded flow of 600 commands: a's orders, final counts and every status's page."""
    rng = random.Random(5)
    engine: Engine = make_engine(build, VirtualClock(T0), SequentialIds(), vwap_window_ns=10**9)
    engine.register_broker("a", 10**12, [("S", 10**6)])
    engine.register_broker("b", 10**12, [("S", 10**6)])
    listing = engine._broker_orders["a"]
    open_ids: list[str] = []
    for _ in range(600):
        if list_rows:  # the generic path: rows that are lists of Python ints
            listing._blocks = [list(row) for row in listing._blocks]  # type: ignore[misc]
            listing._supers = [list(row) for row in listing._supers]  # type: ignore[misc]
        roll = rng.random()
        if roll < 0.6 or not open_ids:
            order, _ = engine.submit(OrderRequest("limit", "a", "D", "bid", "S", 2, 100, FAR))
            open_ids.append(order.order_id)
        elif roll < 0.8:
            engine.cancel(open_ids.pop(rng.randrange(len(open_ids))))
        else:  # fills the oldest bids, some partly
            engine.submit(OrderRequest("limit", "b", "D", "ask", "S", 3, 100, FAR))
            open_ids = [i for i in open_ids if engine.orders[i].remaining]
    counts = [list(row) for row in listing._blocks]
    pages = {
        status: [o.order_id for o in listing.page(status, 1, 1000)[0]] for status in ORDER_STATUSES
    }
    return len(listing._all), counts, pages


@pytest.mark.parametrize("list_rows", [False, True], ids=["array-rows", "list-rows"])
def test_native_counts_match_the_pure_build(list_rows: bool) -> None:
    native = run("native", list_rows=list_rows)
    assert native == run("python", list_rows=False)
    orders, counts, pages = native
    assert orders > 256 and len(counts) == 2 and sum(map(sum, counts)) == orders
    assert all(pages[status] for status in ("pending", "partially_filled", "filled", "cancelled"))


def test_a_new_block_starts_as_an_array_of_zeros() -> None:
    engine = make_engine("native", VirtualClock(T0), SequentialIds(), vwap_window_ns=10**9)
    engine.register_broker("a", 10**12, [("S", 10**6)])
    engine.submit(OrderRequest("limit", "a", "D", "bid", "S", 1, 100, FAR))
    rows = engine._broker_orders["a"]._blocks
    assert len(rows) == 1 and type(rows[0]) is array and rows[0].typecode == "q"
    assert list(rows[0]) == [1, 0, 0, 0, 0]
