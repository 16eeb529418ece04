"""§2.5 GET /orders/{id}, §2.6 DELETE /orders/{id}, §4.1/§4.2 statuses and cancellation."""

from __future__ import annotations

import pytest
from exconf_support import (
    LIMIT_ORDER_KEYS,
    MARKET_ORDER_KEYS,
    Api,
    D,
    assert_error,
    loads,
    money,
    new_symbol,
    ts,
)


@pytest.mark.parametrize(
    "order_id", ["7d2f5c1e-4b3a-4f6e-9a8b-0c1d2e3f4a5b", "not-a-uuid", "12345"]
)
def test_get_unknown_order(api: Api, order_id: str) -> None:
    assert_error(
        api.get(f"/orders/{order_id}"),
        404,
        "order_not_found",
        f"Order {order_id} does not exist",
    )


@pytest.mark.parametrize("order_id", ["0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b", "not-a-uuid"])
def test_delete_unknown_order(api: Api, order_id: str) -> None:
    assert_error(
        api.delete(f"/orders/{order_id}"),
        404,
        "order_not_found",
        f"Order {order_id} does not exist",
    )


def test_get_returns_same_object_as_post(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 100})
    resting = api.limit(seller, "ask", sym, 100, "9.50")
    buyer = api.broker()
    placed = api.limit(buyer, "bid", sym, 40, "10.00")
    assert api.order(placed["order_id"]) == placed
    resting_now = api.order(resting["order_id"])
    assert resting_now["status"] == "partially_filled"
    assert resting_now["trades"] == placed["trades"]


def test_limit_order_key_set(api: Api) -> None:
    order = api.limit(api.broker(), "bid", new_symbol(), 1, "1.00")
    resp = api.get(f"/orders/{order['order_id']}")
    assert set(loads(resp.text)) == LIMIT_ORDER_KEYS


@pytest.mark.parametrize("outcome", ["filled", "cancelled"])
def test_market_order_key_set(api: Api, outcome: str) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 10})
    api.limit(seller, "ask", sym, 10, "1.00")
    qty = 10 if outcome == "filled" else 15
    order = api.market(api.broker(), "bid", sym, qty)
    assert order["status"] == outcome
    resp = api.get(f"/orders/{order['order_id']}")
    body = loads(resp.text)
    assert set(body) == MARKET_ORDER_KEYS
    for absent in ("price", "expires_at", "cancelled_at", "expired_at"):
        assert absent not in body


def test_ioc_cancelled_market_order(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 10})
    api.limit(seller, "ask", sym, 10, "2.50")
    order = api.market(api.broker(), "bid", sym, 25)
    assert order["status"] == "cancelled"
    assert order["filled_quantity"] == 10
    assert order["remaining_quantity"] == 0
    assert order["cancelled_quantity"] == 15
    assert "cancelled_at" not in order
    assert money(order["average_price"]) == D("2.50")


def test_cancel_pending_bid(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(cash="1000.00")
    order = api.limit(broker_id, "bid", sym, 10, "25.00")
    assert money(api.balance(broker_id)["available_cash"]) == D("750.00")
    resp = api.delete(f"/orders/{order['order_id']}")
    assert resp.status_code == 200, resp.text
    cancelled = loads(resp.text)
    assert set(cancelled) == LIMIT_ORDER_KEYS
    assert cancelled["status"] == "cancelled"
    assert cancelled["filled_quantity"] == 0
    assert cancelled["remaining_quantity"] == 0
    assert cancelled["cancelled_quantity"] == 10
    ts(cancelled["cancelled_at"])
    assert cancelled["expired_at"] is None
    assert cancelled["average_price"] is None
    assert cancelled["trades"] == []
    assert money(cancelled["price"]) == D("25.00")
    assert api.order(order["order_id"]) == cancelled
    bal = api.balance(broker_id)
    assert money(bal["reserved_cash"]) == D("0.00")
    assert money(bal["available_cash"]) == D("1000.00")
    assert api.book(sym)["bids"] == []


def test_cancel_pending_ask_releases_shares(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(holdings={sym: 30})
    order = api.limit(broker_id, "ask", sym, 20, "3.00")
    api.cancel(order["order_id"])
    assert api.holding(broker_id, sym) == {
        "symbol": sym,
        "quantity": 30,
        "reserved_quantity": 0,
        "available_quantity": 30,
    }
    assert api.book(sym)["asks"] == []


def test_cancel_partially_filled_bid(api: Api) -> None:
    sym = new_symbol()
    buyer = api.broker(cash="10000.00")
    bid = api.limit(buyer, "bid", sym, 100, "20.00")
    seller = api.broker(holdings={sym: 30})
    api.limit(seller, "ask", sym, 30, "20.00")
    cancelled = api.cancel(bid["order_id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["filled_quantity"] == 30
    assert cancelled["cancelled_quantity"] == 70
    assert cancelled["remaining_quantity"] == 0
    assert len(cancelled["trades"]) == 1
    assert money(cancelled["average_price"]) == D("20.00")
    bal = api.balance(buyer)
    assert money(bal["cash_balance"]) == D("9400.00")
    assert money(bal["reserved_cash"]) == D("0.00")
    assert money(bal["available_cash"]) == D("9400.00")
    assert api.holding(buyer, sym)["quantity"] == 30  # type: ignore[index]


def test_cancel_twice(api: Api) -> None:
    order = api.limit(api.broker(), "bid", new_symbol(), 1, "1.00")
    api.cancel(order["order_id"])
    oid = order["order_id"]
    assert_error(
        api.delete(f"/orders/{oid}"),
        409,
        "order_not_cancellable",
        f"Order {oid} is already cancelled",
    )


def test_cancel_filled_limit(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 5})
    ask = api.limit(seller, "ask", sym, 5, "1.00")
    api.limit(api.broker(), "bid", sym, 5, "1.00")
    oid = ask["order_id"]
    assert api.order(oid)["status"] == "filled"
    assert_error(
        api.delete(f"/orders/{oid}"),
        409,
        "order_not_cancellable",
        f"Order {oid} is already filled and cannot be cancelled",
    )


def test_cancel_filled_market(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    order = api.market(api.broker(), "bid", sym, 5)
    oid = order["order_id"]
    assert_error(
        api.delete(f"/orders/{oid}"),
        409,
        "order_not_cancellable",
        f"Order {oid} is already filled and cannot be cancelled",
    )


def test_cancel_ioc_cancelled_market(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    order = api.market(api.broker(), "bid", sym, 9)
    oid = order["order_id"]
    assert_error(
        api.delete(f"/orders/{oid}"),
        409,
        "order_not_cancellable",
        f"Order {oid} is already cancelled",
    )
    assert api.order(oid) == order


def test_rejected_cancel_changes_nothing(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 5})
    ask = api.limit(seller, "ask", sym, 5, "1.00")
    buyer = api.broker()
    api.limit(buyer, "bid", sym, 5, "1.00")
    before = (api.balance(seller), api.balance(buyer), api.order(ask["order_id"]))
    assert api.delete(f"/orders/{ask['order_id']}").status_code == 409
    after = (api.balance(seller), api.balance(buyer), api.order(ask["order_id"]))
    assert before == after


def test_cancelled_order_no_longer_matches(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 10})
    ask = api.limit(seller, "ask", sym, 10, "5.00")
    api.cancel(ask["order_id"])
    bid = api.limit(api.broker(), "bid", sym, 10, "5.00")
    assert bid["status"] == "pending"
    assert bid["trades"] == []


def test_trades_chronological_across_passes(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 100})
    ask = api.limit(seller, "ask", sym, 100, "7.00")
    first = api.limit(api.broker(), "bid", sym, 10, "7.00")
    second = api.limit(api.broker(), "bid", sym, 20, "7.00")
    trades = api.order(ask["order_id"])["trades"]
    assert [t["trade_id"] for t in trades] == [
        first["trades"][0]["trade_id"],
        second["trades"][0]["trade_id"],
    ]
    assert [t["quantity"] for t in trades] == [10, 20]
    assert trades[0]["executed_at"] <= trades[1]["executed_at"]
