"""§7 invariants after seeded random flows, observed only through the public API."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from exconf_support import Api, D, loads, money, new_symbol

ACTIVE = ("pending", "partially_filled")


def _check_invariants(
    api: Api,
    sym: str,
    brokers: dict[str, Decimal],
    seeded: int,
    orders: list[str],
) -> None:
    states = [api.order(oid) for oid in orders]  # api.order checks per-order invariants (#2)
    balances = {b: api.balance(b) for b in brokers}

    # 3: cash conservation
    total_cash = sum(money(bal["cash_balance"]) for bal in balances.values())
    assert total_cash == sum(brokers.values())
    # 4: holdings conservation
    total_qty = sum(
        h["quantity"] for bal in balances.values() for h in bal["holdings"] if h["symbol"] == sym
    )
    assert total_qty == seeded

    # 5: reservation consistency
    reserved_cash: dict[str, Decimal] = defaultdict(lambda: D("0.00"))
    reserved_qty: dict[str, int] = defaultdict(int)
    resting: dict[tuple[str, Decimal], list[int]] = defaultdict(list)
    for order in states:
        if order["status"] not in ACTIVE:
            assert order["remaining_quantity"] == 0
            continue
        assert order["type"] == "limit"
        resting[(order["side"], order["price"])].append(order["remaining_quantity"])
        if order["side"] == "bid":
            reserved_cash[order["broker_id"]] += order["price"] * order["remaining_quantity"]
        else:
            reserved_qty[order["broker_id"]] += order["remaining_quantity"]
    for broker_id, bal in balances.items():
        cash = money(bal["cash_balance"])
        reserved = money(bal["reserved_cash"])
        available = money(bal["available_cash"])
        assert reserved == reserved_cash[broker_id]
        assert available == cash - reserved
        assert available >= 0
        for holding in bal["holdings"]:
            if holding["symbol"] != sym:
                continue
            assert holding["reserved_quantity"] == reserved_qty[broker_id]
            assert holding["available_quantity"] == (
                holding["quantity"] - holding["reserved_quantity"]
            )
            assert holding["available_quantity"] >= 0

    # 1: no crossed book, and the book is exactly the resting orders
    book = api.book(sym, depth=50)
    bids = [(money(lv["price"]), lv["total_quantity"], lv["order_count"]) for lv in book["bids"]]
    asks = [(money(lv["price"]), lv["total_quantity"], lv["order_count"]) for lv in book["asks"]]
    if bids and asks:
        assert bids[0][0] < asks[0][0]
        assert money(book["spread"]) == asks[0][0] - bids[0][0]
    else:
        assert book["spread"] is None
    assert [b[0] for b in bids] == sorted((b[0] for b in bids), reverse=True)
    assert [a[0] for a in asks] == sorted(a[0] for a in asks)
    expected_bids = sorted(
        ((p, sum(q), len(q)) for (s, p), q in resting.items() if s == "bid"), reverse=True
    )
    expected_asks = sorted((p, sum(q), len(q)) for (s, p), q in resting.items() if s == "ask")
    assert bids == expected_bids
    assert asks == expected_asks


@pytest.mark.parametrize("seed", [11, 23, 37, 59])
def test_random_flow_preserves_invariants(api: Api, seed: int) -> None:
    rng = random.Random(seed)
    sym = new_symbol()
    brokers: dict[str, Decimal] = {}
    seeded = 0
    for _ in range(5):
        cash = Decimal(rng.randint(100000, 2000000)) / 100
        qty = rng.choice([0, 50, 120, 300])
        brokers[api.broker(cash=str(cash), holdings={sym: qty} if qty else None)] = cash
        seeded += qty
    ids = list(brokers)
    orders: list[str] = []
    statuses: dict[int, int] = defaultdict(int)

    for step in range(70):
        broker_id = rng.choice(ids)
        action = rng.random()
        if action < 0.65:
            side = rng.choice(["bid", "ask"])
            price = f"{rng.randint(180, 220) * 5 / 100:.2f}"
            body: dict[str, Any] = api.limit_body(broker_id, side, sym, rng.randint(1, 60), price)
        elif action < 0.85:
            body = api.market_body(broker_id, rng.choice(["bid", "ask"]), sym, rng.randint(1, 80))
        else:
            if not orders:
                continue
            resp = api.delete(f"/orders/{rng.choice(orders)}")
            statuses[resp.status_code] += 1
            assert resp.status_code in (200, 409), resp.text
            continue
        resp = api.post("/orders", body)
        statuses[resp.status_code] += 1
        assert resp.status_code in (201, 409), resp.text
        if resp.status_code == 201:
            orders.append(loads(resp.text)["order_id"])
        else:
            assert loads(resp.text)["error"] in (
                "insufficient_balance",
                "insufficient_holdings",
                "no_liquidity",
            )
        if step % 14 == 13:
            _check_invariants(api, sym, brokers, seeded, orders)
    _check_invariants(api, sym, brokers, seeded, orders)
    assert statuses[201] > 10  # the flow really traded
    traded = sum(1 for oid in orders if api.order(oid)["filled_quantity"] > 0)
    assert traded > 0
