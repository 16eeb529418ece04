"""The engine's indexes at sizes the property tests never reach: many blocks, shared deadlines,
stale heap keys. Each structure is checked against a brute-force answer over the same orders."""

from __future__ import annotations

import random
from itertools import islice

import pytest
from engine_builds import BUILDS, make_engine

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.book import BookSide
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.indexes import BrokerOrders, ExpiryIndex
from tradehall.exchange.model import ORDER_STATUSES, Order

T0 = 1_790_000_000 * 10**9


def make_order(n: int, *, price: int = 100, expires_at: int = T0 + 10**12) -> Order:
    return Order(
        f"id-{n:08d}", "limit", "b", "d", "bid", "S", 1, price, expires_at, T0 + n, remaining=1
    )


def brute_page(
    orders: list[Order], status: str | None, page: int, limit: int
) -> tuple[list[Order], int]:
    chosen = [o for o in reversed(orders) if status is None or o.status == status]
    return chosen[(page - 1) * limit : page * limit], len(chosen)


@pytest.mark.parametrize("count", [1, 255, 256, 257, 3000, 70_000])
def test_listing_pages_match_a_scan_across_blocks_and_superblocks(count: int) -> None:
    rng = random.Random(count)
    index = BrokerOrders()
    orders = [make_order(n) for n in range(count)]
    for order in orders:
        index.add(order)
    # Move a random share of the orders to other statuses, the way fills and cancels do.
    for order in rng.sample(orders, k=count // 2):
        old = order.status
        order.status = rng.choice(ORDER_STATUSES[1:])
        index.moved(order, old)
    for status in (None, *ORDER_STATUSES):
        total = brute_page(orders, status, 1, 1)[1]
        pages = {1, 2, max(1, total // 50), max(1, total // 100 + 1), total // 50 + 2}
        for page in sorted(pages):
            got = index.page(status, page, 50)
            want = brute_page(orders, status, page, 50)
            assert got[1] == want[1]
            assert [o.order_id for o in got[0]] == [o.order_id for o in want[0]], (status, page)


def test_listing_move_to_the_same_status_changes_nothing() -> None:
    index = BrokerOrders()
    order = make_order(1)
    index.add(order)
    index.moved(order, "pending")
    assert index.page("pending", 1, 10) == ([order], 1)


def test_expiry_sweeps_shared_and_single_deadlines_in_deadline_then_creation_order() -> None:
    rng = random.Random(7)
    index = ExpiryIndex()
    orders = [make_order(n, expires_at=T0 + rng.randrange(40)) for n in range(2000)]
    for order in orders:
        index.add(order)
    gone = rng.sample(orders, k=1500)  # filled or cancelled before their deadline
    for order in gone:
        order.remaining = 0
        index.discard(order)
    alive = [o for o in orders if o.remaining]
    assert len(index) == len(alive)
    assert index.earliest() == min(o.expires_at for o in alive if o.expires_at is not None)
    due = index.pop_due(T0 + 19)
    want = sorted(
        (o for o in alive if o.expires_at is not None and o.expires_at <= T0 + 19),
        key=lambda o: (o.expires_at, o.created_at),
    )
    assert due == want
    assert len(index) == len(alive) - len(due)
    rest = index.pop_due(T0 + 10**6)
    assert len(rest) + len(due) == len(alive) and len(index) == 0
    assert index.earliest() is None


def test_expiry_deadline_freed_and_reused_keeps_one_live_entry() -> None:
    index = ExpiryIndex()
    first, second = make_order(1, expires_at=T0 + 5), make_order(2, expires_at=T0 + 5)
    index.add(first)
    first.remaining = 0
    index.discard(first)
    assert index.earliest() is None
    index.add(second)  # same deadline again: its heap key is pushed a second time
    for n in range(200):  # many short-lived deadlines: stale heap keys pile up, then a rebuild
        other = make_order(10 + n, expires_at=T0 + 1000 + n)
        index.add(other)
        other.remaining = 0
        index.discard(other)
    assert index.earliest() == T0 + 5
    assert index.pop_due(T0 + 10**6) == [second]
    assert index.pop_due(T0 + 10**6) == []


def test_book_side_best_first_with_stale_keys_and_a_rebuilt_heap() -> None:
    rng = random.Random(3)
    side = BookSide(is_bid=True)
    resting: dict[int, list[Order]] = {}
    n = 0
    for _ in range(3000):
        if resting and rng.random() < 0.45:  # take a whole level out, as cancels would
            price = rng.choice(list(resting))
            for order in resting.pop(price):
                remaining = order.remaining
                order.remaining = 0
                side.remove(order, remaining)
        else:
            n += 1
            order = make_order(n, price=rng.randrange(1, 400))
            side.add(order)
            assert order.price is not None
            resting.setdefault(order.price, []).append(order)
        prices = sorted(resting, reverse=True)
        best = side.best()
        assert (best.price if best else None) == (prices[0] if prices else None)
        assert [lv.price for lv in islice(side.levels(), 10)] == prices[:10]
    assert [lv.price for lv in side.levels()] == sorted(resting, reverse=True)
    assert len(side._heap) <= 2 * len(resting) + 65  # stale keys stay bounded


@pytest.mark.parametrize("build", BUILDS)
def test_resting_orders_share_the_level_and_deadline_numbers(build: str) -> None:
    clock = VirtualClock(T0)
    engine = make_engine(build, clock, SequentialIds(), vwap_window_ns=10**9)
    engine.register_broker("b", 10**9, [])
    deadline = T0 + 10**12
    first, _ = engine.submit(OrderRequest("limit", "b", "doc", "bid", "S", 1, 12_345, deadline))
    fresh_doc = "".join(["d", "oc"])  # equal, but another object, as each request decodes
    other, _ = engine.submit(
        OrderRequest("limit", "b", fresh_doc, "bid", "S", 1, int("12345"), int(str(deadline)))
    )
    assert other.price is first.price and other.expires_at is first.expires_at
    assert other.document_number is first.document_number
