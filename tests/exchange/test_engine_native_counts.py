"""The listing index's per-status counts as the native core keeps them.

An engine running the native core gives its ``BrokerOrders`` rows of ``array('q')``, which the C
core writes in place once their layout checked out at import (``_native._counts_in_place()``);
the pure build keeps lists, which the core also updates directly, and any other mutable
sequence goes through the sequence protocol. Every path must leave the counts the pure build
leaves, which the filtered pages read.
"""

from __future__ import annotations

import random
from array import array
from functools import partial

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


def run(build: str, *, rows: str) -> tuple[int, list[list[int]], dict[str, list[str]]]:
    """A seeded flow of 600 commands: a's orders, final counts and every status's page."""
    rng = random.Random(5)
    engine: Engine = make_engine(build, VirtualClock(T0), SequentialIds(), vwap_window_ns=10**9)
    engine.register_broker("a", 10**12, [("S", 10**6)])
    engine.register_broker("b", 10**12, [("S", 10**6)])
    listing = engine._broker_orders["a"]
    open_ids: list[str] = []
    for _ in range(600):
        if rows != "own":  # rows of another kind than the engine's own
            kind = list if rows == "list" else partial(array, "i")
            listing._blocks = [kind(row) for row in listing._blocks]
            listing._supers = [kind(row) for row in listing._supers]
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


@pytest.mark.parametrize("rows", ["own", "list", "other"])
def test_native_counts_match_the_pure_build(rows: str) -> None:
    native = run("native", rows=rows)
    assert native == run("python", rows="own")
    orders, counts, pages = native
    assert orders > 256 and len(counts) == 2 and sum(map(sum, counts)) == orders
    assert all(pages[status] for status in ("pending", "partially_filled", "filled", "cancelled"))


@pytest.mark.parametrize("build", ["native", "python"])
def test_a_new_block_starts_as_the_builds_own_row_of_zeros(build: str) -> None:
    engine = make_engine(build, VirtualClock(T0), SequentialIds(), vwap_window_ns=10**9)
    engine.register_broker("a", 10**12, [("S", 10**6)])
    engine.submit(OrderRequest("limit", "a", "D", "bid", "S", 1, 100, FAR))
    rows = engine._broker_orders["a"]._blocks
    assert len(rows) == 1 and list(rows[0]) == [1, 0, 0, 0, 0]
    if build == "native":
        assert type(rows[0]) is array and rows[0].typecode == "q"
    else:
        assert type(rows[0]) is list
