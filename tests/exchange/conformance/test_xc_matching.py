"""§3 matching: priority, compatibility, execution price, settlement, average_price, IOC."""

from __future__ import annotations

import re
from typing import Any

import pytest
from exconf_support import Api, D, is_uuid, loads, money, new_symbol


def _levels(side: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(str(money(lv["price"])), lv["total_quantity"], lv["order_count"]) for lv in side]


def _three_asks(api: Api) -> tuple[str, str, list[dict[str, Any]]]:
    """The spec's book: asks 100@10.00, 200@11.00, 50@12.00 (three sellers)."""
    sym = new_symbol()
    asks = []
    for qty, price in ((100, "10.00"), (200, "11.00"), (50, "12.00")):
        seller = api.broker(holdings={sym: qty})
        asks.append(api.limit(seller, "ask", sym, qty, price))
    return sym, asks[0]["broker_id"], asks


def test_price_priority_for_incoming_bid(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 30})
    a12 = api.limit(seller, "ask", sym, 10, "12.00")
    a10 = api.limit(seller, "ask", sym, 10, "10.00")
    a11 = api.limit(seller, "ask", sym, 10, "11.00")
    bid = api.limit(api.broker(), "bid", sym, 30, "12.00")
    assert [t["price"] for t in bid["trades"]] == [D("10.00"), D("11.00"), D("12.00")]
    assert bid["status"] == "filled"
    for ask in (a10, a11, a12):
        assert api.order(ask["order_id"])["status"] == "filled"


def test_price_priority_for_incoming_ask(api: Api) -> None:
    sym = new_symbol()
    buyer = api.broker()
    b9 = api.limit(buyer, "bid", sym, 10, "9.00")
    b11 = api.limit(buyer, "bid", sym, 10, "11.00")
    b10 = api.limit(buyer, "bid", sym, 10, "10.00")
    seller = api.broker(holdings={sym: 20})
    ask = api.limit(seller, "ask", sym, 20, "9.50")
    # limit vs limit trades at the incoming ask price, best bids first
    assert [t["price"] for t in ask["trades"]] == [D("9.50"), D("9.50")]
    assert api.order(b11["order_id"])["status"] == "filled"
    assert api.order(b10["order_id"])["status"] == "filled"
    assert api.order(b9["order_id"])["status"] == "pending"
    assert ask["status"] == "filled"


@pytest.mark.parametrize("side", ["bid", "ask"])
def test_time_priority_within_price(api: Api, side: str) -> None:
    sym = new_symbol()
    makers = [api.broker(holdings={sym: 10}) for _ in range(3)]
    resting = [api.limit(m, side, sym, 10, "5.00") for m in makers]
    taker_side = "ask" if side == "bid" else "bid"
    taker = api.broker(holdings={sym: 15})
    incoming = api.limit(taker, taker_side, sym, 15, "5.00")
    assert incoming["status"] == "filled"
    states = [api.order(o["order_id"]) for o in resting]
    assert [s["status"] for s in states] == ["filled", "partially_filled", "pending"]
    assert [s["filled_quantity"] for s in states] == [10, 5, 0]
    assert [t["quantity"] for t in incoming["trades"]] == [10, 5]


@pytest.mark.parametrize(
    ("incoming_type", "incoming_side", "resting_price", "incoming_price", "expected"),
    [
        pytest.param("limit", "bid", "10.00", "12.00", "10.00", id="limit-bid-vs-ask"),
        pytest.param("limit", "ask", "20.00", "10.00", "10.00", id="limit-ask-vs-bid"),
        pytest.param("market", "bid", "10.55", None, "10.55", id="market-bid-vs-ask"),
        pytest.param("market", "ask", "9.75", None, "9.75", id="market-ask-vs-bid"),
    ],
)
def test_execution_price_table(
    api: Api,
    incoming_type: str,
    incoming_side: str,
    resting_price: str,
    incoming_price: str | None,
    expected: str,
) -> None:
    sym = new_symbol()
    resting_side = "ask" if incoming_side == "bid" else "bid"
    maker = api.broker(cash="10000.00", holdings={sym: 10})
    rest = api.limit(maker, resting_side, sym, 10, resting_price)
    taker = api.broker(cash="10000.00", holdings={sym: 10})
    if incoming_type == "limit":
        assert incoming_price is not None
        order = api.limit(taker, incoming_side, sym, 10, incoming_price)
    else:
        order = api.market(taker, incoming_side, sym, 10)
    assert order["status"] == "filled"
    assert len(order["trades"]) == 1
    trade = order["trades"][0]
    assert money(trade["price"]) == D(expected)
    assert money(order["average_price"]) == D(expected)
    resting_now = api.order(rest["order_id"])
    assert resting_now["trades"] == order["trades"]
    assert money(resting_now["average_price"]) == D(expected)
    cash_moved = D(expected) * 10
    buyer, seller = (taker, maker) if incoming_side == "bid" else (maker, taker)
    assert money(api.balance(buyer)["cash_balance"]) == D("10000.00") - cash_moved
    assert money(api.balance(seller)["cash_balance"]) == D("10000.00") + cash_moved
    assert money(api.balance(buyer)["reserved_cash"]) == D("0.00")
    assert api.holding(buyer, sym)["quantity"] == 20  # type: ignore[index]
    assert api.holding(seller, sym)["quantity"] == 0  # type: ignore[index]


def test_price_improvement_refund_for_resting_bid(api: Api) -> None:
    sym = new_symbol()
    buyer = api.broker(cash="1000.00")
    bid = api.limit(buyer, "bid", sym, 30, "20.00")
    assert money(api.balance(buyer)["available_cash"]) == D("400.00")
    seller = api.broker(holdings={sym: 10})
    api.limit(seller, "ask", sym, 10, "10.00")
    bal = api.balance(buyer)
    assert money(bal["cash_balance"]) == D("900.00")
    assert money(bal["reserved_cash"]) == D("400.00")  # 20.00 x 20 remaining
    assert money(bal["available_cash"]) == D("500.00")
    state = api.order(bid["order_id"])
    assert state["status"] == "partially_filled"
    assert money(state["average_price"]) == D("10.00")


def test_price_improvement_refund_for_incoming_bid(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 10})
    api.limit(seller, "ask", sym, 10, "8.00")
    buyer = api.broker(cash="150.00")
    order = api.limit(buyer, "bid", sym, 15, "10.00")
    assert order["status"] == "partially_filled"
    bal = api.balance(buyer)
    assert money(bal["cash_balance"]) == D("70.00")
    assert money(bal["reserved_cash"]) == D("50.00")
    assert money(bal["available_cash"]) == D("20.00")


def test_no_cross_when_prices_incompatible(api: Api) -> None:
    sym = new_symbol()
    bid = api.limit(api.broker(), "bid", sym, 10, "9.99")
    ask = api.limit(api.broker(holdings={sym: 10}), "ask", sym, 10, "10.00")
    assert bid["status"] == "pending" and ask["status"] == "pending"
    assert ask["trades"] == []
    book = api.book(sym)
    assert _levels(book["bids"]) == [("9.99", 10, 1)]
    assert _levels(book["asks"]) == [("10.00", 10, 1)]
    assert money(book["spread"]) == D("0.01")


def test_incoming_bid_stops_at_first_incompatible(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 300})
    for price in ("10.00", "11.00", "13.00"):
        api.limit(seller, "ask", sym, 100, price)
    buyer = api.broker(cash="10000.00")
    bid = api.limit(buyer, "bid", sym, 300, "12.00")
    assert bid["status"] == "partially_filled"
    assert bid["filled_quantity"] == 200
    assert bid["remaining_quantity"] == 100
    assert money(bid["average_price"]) == D("10.50")
    book = api.book(sym)
    assert _levels(book["bids"]) == [("12.00", 100, 1)]
    assert _levels(book["asks"]) == [("13.00", 100, 1)]
    bal = api.balance(buyer)
    assert money(bal["cash_balance"]) == D("7900.00")
    assert money(bal["reserved_cash"]) == D("1200.00")
    assert money(bal["available_cash"]) == D("6700.00")


def test_partial_fill_of_resting_order_keeps_priority(api: Api) -> None:
    sym = new_symbol()
    first = api.limit(api.broker(holdings={sym: 50}), "ask", sym, 50, "5.00")
    second = api.limit(api.broker(holdings={sym: 50}), "ask", sym, 50, "5.00")
    api.limit(api.broker(), "bid", sym, 20, "5.00")
    api.limit(api.broker(), "bid", sym, 20, "5.00")
    assert api.order(first["order_id"])["filled_quantity"] == 40
    assert api.order(second["order_id"])["filled_quantity"] == 0
    api.limit(api.broker(), "bid", sym, 20, "5.00")
    assert api.order(first["order_id"])["status"] == "filled"
    assert api.order(second["order_id"])["filled_quantity"] == 10


def test_average_price_example_148_30(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 700}), "ask", sym, 700, "148.00")
    api.limit(api.broker(holdings={sym: 300}), "ask", sym, 300, "149.00")
    resp = api.post("/orders", api.limit_body(api.broker(), "bid", sym, 1000, "150.00"))
    assert resp.status_code == 201
    assert re.search(r'"average_price":\s*148\.30[,}\s]', resp.text), resp.text
    assert re.search(r'"price":\s*150\.00[,}\s]', resp.text), resp.text
    order = loads(resp.text)
    assert [(t["price"], t["quantity"]) for t in order["trades"]] == [
        (D("148.00"), 700),
        (D("149.00"), 300),
    ]


def test_average_price_truncates_10_85(api: Api) -> None:
    sym, _, _ = _three_asks(api)
    resp = api.post("/orders", api.limit_body(api.broker(), "bid", sym, 350, "12.00"))
    assert resp.status_code == 201
    order = loads(resp.text)
    assert order["status"] == "filled"
    assert money(order["average_price"]) == D("10.85")
    assert re.search(r'"average_price":\s*10\.85[,}\s]', resp.text), resp.text


def test_average_price_truncation_on_resting_side(api: Api) -> None:
    sym = new_symbol()
    buyer = api.broker()
    bid = api.limit(buyer, "bid", sym, 3, "10.01")
    api.limit(api.broker(holdings={sym: 1}), "ask", sym, 1, "10.00")
    api.limit(api.broker(holdings={sym: 2}), "ask", sym, 2, "10.01")
    # (1000 + 2 * 1001) / 3 = 1000.66 -> 1000 cents
    state = api.order(bid["order_id"])
    assert money(state["average_price"]) == D("10.00")
    assert state["status"] == "filled"


def test_market_sweep_example_250(api: Api) -> None:
    sym, _, asks = _three_asks(api)
    buyer = api.broker(cash="5000.00")
    resp = api.post("/orders", api.market_body(buyer, "bid", sym, 250))
    assert resp.status_code == 201
    order = loads(resp.text)
    assert order["status"] == "filled"
    assert order["filled_quantity"] == 250
    assert order["cancelled_quantity"] == 0
    assert [(t["price"], t["quantity"]) for t in order["trades"]] == [
        (D("10.00"), 100),
        (D("11.00"), 150),
    ]
    assert money(order["average_price"]) == D("10.60")
    assert re.search(r'"average_price":\s*10\.60[,}\s]', resp.text), resp.text
    assert money(api.balance(buyer)["cash_balance"]) == D("2350.00")  # cost 2650.00
    assert _levels(api.book(sym)["asks"]) == [("11.00", 50, 1), ("12.00", 50, 1)]
    assert api.order(asks[1]["order_id"])["status"] == "partially_filled"
    # one pass, one executed_at
    assert len({t["executed_at"] for t in order["trades"]}) == 1


def test_market_sweep_example_400(api: Api) -> None:
    sym, _, asks = _three_asks(api)
    buyer = api.broker(cash="5000.00")
    order = api.market(buyer, "bid", sym, 400)
    assert order["status"] == "cancelled"
    assert order["filled_quantity"] == 350
    assert order["cancelled_quantity"] == 50
    assert order["remaining_quantity"] == 0
    assert len(order["trades"]) == 3
    assert money(order["average_price"]) == D("10.85")
    assert money(api.balance(buyer)["cash_balance"]) == D("1200.00")  # cost 3800.00
    book = api.book(sym)
    assert book["asks"] == [] and book["spread"] is None
    assert all(api.order(a["order_id"])["status"] == "filled" for a in asks)
    assert len({t["executed_at"] for t in order["trades"]}) == 1


def test_market_ask_walks_bids_highest_first(api: Api) -> None:
    sym = new_symbol()
    for price in ("9.00", "10.00", "8.00"):
        api.limit(api.broker(), "bid", sym, 10, price)
    seller = api.broker(holdings={sym: 25})
    order = api.market(seller, "ask", sym, 25)
    assert [(t["price"], t["quantity"]) for t in order["trades"]] == [
        (D("10.00"), 10),
        (D("9.00"), 10),
        (D("8.00"), 5),
    ]
    assert money(api.balance(seller)["cash_balance"]) == D("1000230.00")
    assert api.holding(seller, sym) == {
        "symbol": sym,
        "quantity": 0,
        "reserved_quantity": 0,
        "available_quantity": 0,
    }


def test_market_ask_ioc_leftover_keeps_shares(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(), "bid", sym, 10, "4.00")
    seller = api.broker(cash="0", holdings={sym: 30})
    order = api.market(seller, "ask", sym, 30)
    assert order["status"] == "cancelled"
    assert order["cancelled_quantity"] == 20
    assert api.holding(seller, sym) == {
        "symbol": sym,
        "quantity": 20,
        "reserved_quantity": 0,
        "available_quantity": 20,
    }
    assert money(api.balance(seller)["cash_balance"]) == D("40.00")


def test_market_bid_holds_no_reservation(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "3.00")
    buyer = api.broker(cash="100.00")
    api.market(buyer, "bid", sym, 10)
    bal = api.balance(buyer)
    assert money(bal["cash_balance"]) == D("85.00")
    assert money(bal["reserved_cash"]) == D("0.00")
    assert money(bal["available_cash"]) == D("85.00")


def test_trade_ids_shared_between_sides(api: Api) -> None:
    sym = new_symbol()
    ask = api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    bid = api.limit(api.broker(), "bid", sym, 5, "1.00")
    trade_id = bid["trades"][0]["trade_id"]
    assert is_uuid(trade_id)
    assert api.order(ask["order_id"])["trades"][0]["trade_id"] == trade_id


def test_self_match_is_allowed(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(cash="1000.00", holdings={sym: 10})
    api.limit(broker_id, "ask", sym, 10, "5.00")
    bid = api.limit(broker_id, "bid", sym, 10, "6.00")
    assert bid["status"] == "filled"
    assert money(bid["trades"][0]["price"]) == D("5.00")
    bal = api.balance(broker_id)
    assert money(bal["cash_balance"]) == D("1000.00")
    assert money(bal["reserved_cash"]) == D("0.00")
    assert bal["holdings"] == [
        {"symbol": sym, "quantity": 10, "reserved_quantity": 0, "available_quantity": 10}
    ]


def test_filled_incoming_never_rests(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 10}), "ask", sym, 10, "5.00")
    bid = api.limit(api.broker(), "bid", sym, 10, "5.00")
    assert bid["status"] == "filled"
    book = api.book(sym)
    assert book["bids"] == [] and book["asks"] == []


def test_settlement_totals_for_chain(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(cash="0", holdings={sym: 100})
    buyer = api.broker(cash="10000.00")
    api.limit(seller, "ask", sym, 40, "12.25")
    api.limit(seller, "ask", sym, 60, "12.50")
    order = api.limit(buyer, "bid", sym, 100, "12.50")
    assert order["status"] == "filled"
    assert money(order["average_price"]) == D("12.40")
    assert money(api.balance(seller)["cash_balance"]) == D("1240.00")
    bal = api.balance(buyer)
    assert money(bal["cash_balance"]) == D("8760.00")
    assert money(bal["reserved_cash"]) == D("0.00")
    assert api.holding(buyer, sym)["quantity"] == 100  # type: ignore[index]
