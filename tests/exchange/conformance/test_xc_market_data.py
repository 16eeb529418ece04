"""§2.7 price (VWAP), §2.8 book, §2.9 quote, §6 unknown/known symbols."""

from __future__ import annotations

import re
from typing import Any

import pytest
from exconf_support import Api, D, assert_error, loads, money, money_or_none, new_symbol, ts

DEPTH_MESSAGE = "depth must be an integer between 1 and 50"
QTY_MESSAGE = "quantity must be a positive integer"
PRICE_KEYS = {"symbol", "current_price", "window", "trades_in_window", "last_trade_at"}
BOOK_KEYS = {"symbol", "bids", "asks", "spread", "snapshot_at"}
QUOTE_KEYS = {
    "symbol",
    "side",
    "quantity_requested",
    "quantity_available",
    "fully_fillable",
    "estimated_total",
    "estimated_average_price",
    "price_levels",
    "quoted_at",
}


def _unlisted(symbol: str) -> str:
    return f"Symbol {symbol} is not listed on this exchange"


def _levels(side: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    out = []
    for level in side:
        assert set(level) == {"price", "total_quantity", "order_count"}
        out.append((str(money(level["price"])), level["total_quantity"], level["order_count"]))
    return out


def _known_symbol(api: Api) -> str:
    sym = new_symbol()
    api.broker(holdings={sym: 1})
    return sym


# --- unknown symbols ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["price", "book", "quote"])
@pytest.mark.parametrize(
    "symbol", ["NEW", "aapl", "ABCDEFGHIJK", "A1", "ZZZZZZZZZY"], ids=lambda s: f"sym-{s}"
)
def test_unknown_symbol_404(api: Api, kind: str, symbol: str) -> None:
    if symbol in ("NEW", "ZZZZZZZZZY"):
        symbol = new_symbol(len(symbol))
    params = {"side": "bid", "quantity": "1"} if kind == "quote" else None
    resp = api.get(f"/stocks/{symbol}/{kind}", params=params)
    assert_error(resp, 404, "symbol_not_found", _unlisted(symbol))


# --- price ---------------------------------------------------------------------------------


def test_price_never_traded(api: Api) -> None:
    sym = _known_symbol(api)
    resp = api.get(f"/stocks/{sym}/price")
    assert resp.status_code == 200
    assert loads(resp.text) == {
        "symbol": sym,
        "current_price": None,
        "window": "5m",
        "trades_in_window": 0,
        "last_trade_at": None,
    }


def test_price_with_resting_orders_only(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(), "bid", sym, 5, "10.00")
    body = api.price(sym)
    assert body["current_price"] is None
    assert body["trades_in_window"] == 0
    assert body["last_trade_at"] is None


def test_price_single_trade_counts_once(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 10}), "ask", sym, 10, "150")
    order = api.limit(api.broker(), "bid", sym, 10, "150.00")
    resp = api.get(f"/stocks/{sym}/price")
    body = loads(resp.text)
    assert set(body) == PRICE_KEYS
    assert money(body["current_price"]) == D("150.00")
    assert re.search(r'"current_price":\s*150\.00[,}\s]', resp.text), resp.text
    assert body["trades_in_window"] == 1
    assert body["window"] == "5m"
    assert ts(body["last_trade_at"]) == order["trades"][0]["executed_at"]


def test_vwap_truncated_over_sweep(api: Api) -> None:
    sym = new_symbol()
    for qty, price in ((100, "10.00"), (200, "11.00"), (50, "12.00")):
        api.limit(api.broker(holdings={sym: qty}), "ask", sym, qty, price)
    order = api.market(api.broker(), "bid", sym, 350)
    body = api.price(sym)
    # 380000 / 350 = 1085.71 cents -> 10.85
    assert money(body["current_price"]) == D("10.85")
    assert body["trades_in_window"] == 3
    assert body["last_trade_at"] == order["trades"][-1]["executed_at"]


def test_vwap_across_passes(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 100})
    api.limit(seller, "ask", sym, 30, "20.00")
    api.limit(api.broker(), "bid", sym, 30, "20.00")
    api.limit(seller, "ask", sym, 10, "30.01")
    last = api.limit(api.broker(), "bid", sym, 10, "31.00")
    body = api.price(sym)
    # (600.00 + 300.10) / 40 = 22.5025 -> 22.50
    assert money(body["current_price"]) == D("22.50")
    assert body["trades_in_window"] == 2
    assert body["last_trade_at"] == last["trades"][0]["executed_at"]


def test_vwap_self_trade_and_limit_ask_price(api: Api) -> None:
    sym = new_symbol()
    buyer = api.broker()
    api.limit(buyer, "bid", sym, 4, "9.00")
    api.limit(api.broker(holdings={sym: 4}), "ask", sym, 4, "7.33")
    body = api.price(sym)
    assert money(body["current_price"]) == D("7.33")
    assert body["trades_in_window"] == 1


# --- book ------------------------------------------------------------------------------------


def test_book_empty_known_symbol(api: Api) -> None:
    sym = _known_symbol(api)
    resp = api.get(f"/stocks/{sym}/book")
    assert resp.status_code == 200
    body = loads(resp.text)
    assert set(body) == BOOK_KEYS
    assert body["symbol"] == sym
    assert body["bids"] == [] and body["asks"] == []
    assert body["spread"] is None
    ts(body["snapshot_at"])


def test_book_aggregation_and_spread(api: Api) -> None:
    sym = new_symbol()
    buyer = api.broker()
    seller = api.broker(holdings={sym: 1000})
    api.limit(buyer, "bid", sym, 100, "10.00")
    api.limit(api.broker(), "bid", sym, 50, "10.00")
    api.limit(buyer, "bid", sym, 70, "9.50")
    api.limit(buyer, "bid", sym, 5, "10.10")
    api.limit(seller, "ask", sym, 30, "11.00")
    api.limit(seller, "ask", sym, 20, "11.00")
    api.limit(seller, "ask", sym, 10, "11.00")
    api.limit(seller, "ask", sym, 40, "12.25")
    api.limit(seller, "ask", sym, 1, "11.50")
    resp = api.get(f"/stocks/{sym}/book")
    body = loads(resp.text)
    assert _levels(body["bids"]) == [("10.10", 5, 1), ("10.00", 150, 2), ("9.50", 70, 1)]
    assert _levels(body["asks"]) == [("11.00", 60, 3), ("11.50", 1, 1), ("12.25", 40, 1)]
    assert money(body["spread"]) == D("0.90")
    assert re.search(r'"spread":\s*0\.90[,}\s]', resp.text), resp.text


def test_book_uses_remaining_quantity(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 100}), "ask", sym, 100, "5.00")
    api.limit(api.broker(holdings={sym: 100}), "ask", sym, 100, "5.00")
    api.limit(api.broker(), "bid", sym, 130, "5.00")
    body = api.book(sym)
    assert _levels(body["asks"]) == [("5.00", 70, 1)]
    assert body["bids"] == []
    assert body["spread"] is None


@pytest.mark.parametrize("only", ["bid", "ask"])
def test_book_one_side_empty(api: Api, only: str) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 5}), only, sym, 5, "5.00")
    body = api.book(sym)
    side, other = ("bids", "asks") if only == "bid" else ("asks", "bids")
    assert _levels(body[side]) == [("5.00", 5, 1)]
    assert body[other] == []
    assert body["spread"] is None


def test_book_excludes_cancelled(api: Api) -> None:
    sym = new_symbol()
    broker = api.broker()
    keep = api.limit(broker, "bid", sym, 5, "5.00")
    drop = api.limit(broker, "bid", sym, 7, "5.00")
    api.cancel(drop["order_id"])
    assert keep["status"] == "pending"
    assert _levels(api.book(sym)["bids"]) == [("5.00", 5, 1)]


def test_book_depth(api: Api) -> None:
    sym = new_symbol()
    buyer = api.broker()
    seller = api.broker(holdings={sym: 100})
    for cents in range(1, 13):
        api.limit(buyer, "bid", sym, 1, f"{cents}.00")
        api.limit(seller, "ask", sym, 1, f"{100 + cents}.00")
    default = api.book(sym)
    assert [lv["price"] for lv in default["bids"]] == [D(f"{c}.00") for c in range(12, 2, -1)]
    assert [lv["price"] for lv in default["asks"]] == [D(f"{100 + c}.00") for c in range(1, 11)]
    three = api.book(sym, depth=3)
    assert [lv["price"] for lv in three["bids"]] == [D("12.00"), D("11.00"), D("10.00")]
    assert [lv["price"] for lv in three["asks"]] == [D("101.00"), D("102.00"), D("103.00")]
    assert money(three["spread"]) == D("89.00")
    assert len(api.book(sym, depth=50)["bids"]) == 12
    assert len(api.book(sym, depth=1)["asks"]) == 1


@pytest.mark.parametrize("depth", ["0", "51", "-1", "abc", "1.0", "", "+5", "1e1", "100"])
def test_book_depth_invalid(api: Api, depth: str) -> None:
    sym = _known_symbol(api)
    resp = api.get(f"/stocks/{sym}/book", params={"depth": depth})
    assert_error(resp, 400, "validation_error", DEPTH_MESSAGE)


def test_book_depth_validation_precedes_unknown_symbol(api: Api) -> None:
    resp = api.get(f"/stocks/{new_symbol()}/book", params={"depth": "0"})
    assert_error(resp, 400, "validation_error", DEPTH_MESSAGE)


# --- quote -----------------------------------------------------------------------------------


def _quote_book(api: Api) -> str:
    sym = new_symbol()
    for qty, price in ((100, "10.00"), (200, "11.00"), (50, "12.00")):
        api.limit(api.broker(holdings={sym: qty}), "ask", sym, qty, price)
    for qty, price in ((10, "9.00"), (20, "8.50"), (30, "8.00")):
        api.limit(api.broker(), "bid", sym, qty, price)
    return sym


def _pl(levels: list[dict[str, Any]]) -> list[tuple[str, int]]:
    out = []
    for level in levels:
        assert set(level) == {"price", "quantity"}
        out.append((str(money(level["price"])), level["quantity"]))
    return out


@pytest.mark.parametrize(
    ("side", "qty", "available", "levels", "total", "average"),
    [
        ("bid", 250, 250, [("10.00", 100), ("11.00", 150)], "2650.00", "10.60"),
        ("bid", 400, 350, [("10.00", 100), ("11.00", 200), ("12.00", 50)], "3800.00", "10.85"),
        ("bid", 100, 100, [("10.00", 100)], "1000.00", "10.00"),
        ("bid", 1, 1, [("10.00", 1)], "10.00", "10.00"),
        ("ask", 15, 15, [("9.00", 10), ("8.50", 5)], "132.50", "8.83"),
        ("ask", 60, 60, [("9.00", 10), ("8.50", 20), ("8.00", 30)], "500.00", "8.33"),
        ("ask", 1000, 60, [("9.00", 10), ("8.50", 20), ("8.00", 30)], "500.00", "8.33"),
    ],
)
def test_quote_walk(
    api: Api,
    side: str,
    qty: int,
    available: int,
    levels: list[tuple[str, int]],
    total: str,
    average: str,
) -> None:
    sym = _quote_book(api)
    resp = api.get(f"/stocks/{sym}/quote", params={"side": side, "quantity": qty})
    assert resp.status_code == 200, resp.text
    body = loads(resp.text)
    assert set(body) == QUOTE_KEYS
    assert body["symbol"] == sym
    assert body["side"] == side
    assert body["quantity_requested"] == qty
    assert body["quantity_available"] == available
    assert body["fully_fillable"] is (available == qty)
    assert _pl(body["price_levels"]) == levels
    assert money(body["estimated_total"]) == D(total)
    assert money(body["estimated_average_price"]) == D(average)
    ts(body["quoted_at"])


@pytest.mark.parametrize("side", ["bid", "ask"])
def test_quote_nothing_available(api: Api, side: str) -> None:
    sym = _known_symbol(api)
    body = api.quote(sym, side, 10)
    assert set(body) == QUOTE_KEYS
    assert body["quantity_requested"] == 10
    assert body["quantity_available"] == 0
    assert body["fully_fillable"] is False
    assert body["estimated_total"] is None
    assert body["estimated_average_price"] is None
    assert body["price_levels"] == []


def test_quote_aggregates_orders_at_a_level(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "2.00")
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "2.00")
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "2.01")
    body = api.quote(sym, "bid", 12)
    assert _pl(body["price_levels"]) == [("2.00", 10), ("2.01", 2)]
    assert money(body["estimated_total"]) == D("24.02")
    assert money(body["estimated_average_price"]) == D("2.00")  # 2402 / 12 = 200.16


def test_quote_changes_nothing(api: Api) -> None:
    sym = _quote_book(api)
    before = api.book(sym)
    api.quote(sym, "bid", 1000)
    api.quote(sym, "ask", 1000)
    after = api.book(sym)
    assert before["bids"] == after["bids"] and before["asks"] == after["asks"]


def test_quote_ignores_balance(api: Api) -> None:
    sym = _quote_book(api)
    body = api.quote(sym, "bid", 350)
    assert body["fully_fillable"] is True
    assert money_or_none(body["estimated_total"]) == D("3800.00")


QUOTE_INVALID = [
    pytest.param({"quantity": "5"}, "side query parameter is required", id="side-missing"),
    pytest.param(
        {"side": "buy", "quantity": "5"},
        "Invalid side: 'buy'. Must be one of: bid, ask",
        id="side-buy",
    ),
    pytest.param(
        {"side": "BID", "quantity": "5"},
        "Invalid side: 'BID'. Must be one of: bid, ask",
        id="side-upper",
    ),
    pytest.param({"side": "bid"}, "quantity query parameter is required", id="qty-missing"),
    pytest.param({"side": "bid", "quantity": "0"}, QTY_MESSAGE, id="qty-zero"),
    pytest.param({"side": "bid", "quantity": "-3"}, QTY_MESSAGE, id="qty-negative"),
    pytest.param({"side": "ask", "quantity": "abc"}, QTY_MESSAGE, id="qty-text"),
    pytest.param({"side": "ask", "quantity": "1.5"}, QTY_MESSAGE, id="qty-fraction"),
    pytest.param({"side": "ask", "quantity": "+2"}, QTY_MESSAGE, id="qty-plus"),
    pytest.param({"side": "ask", "quantity": "1e2"}, QTY_MESSAGE, id="qty-exponent"),
]


@pytest.mark.parametrize(("params", "message"), QUOTE_INVALID)
def test_quote_validation(api: Api, params: dict[str, str], message: str) -> None:
    sym = _known_symbol(api)
    assert_error(api.get(f"/stocks/{sym}/quote", params=params), 400, "validation_error", message)


def test_quote_validation_precedes_unknown_symbol(api: Api) -> None:
    resp = api.get(f"/stocks/{new_symbol()}/quote", params={"quantity": "5"})
    assert_error(resp, 400, "validation_error", "side query parameter is required")


def test_quote_leading_zero_quantity_is_digits(api: Api) -> None:
    sym = _quote_book(api)
    body = loads(api.get(f"/stocks/{sym}/quote", params={"side": "bid", "quantity": "010"}).text)
    assert body["quantity_requested"] == 10


@pytest.mark.parametrize(("side", "qty"), [("bid", 260), ("ask", 45)])
def test_quote_matches_following_market_order(api: Api, side: str, qty: int) -> None:
    sym = _quote_book(api)
    quote = api.quote(sym, side, qty)
    taker = api.broker(holdings={sym: qty})
    before = money(api.balance(taker)["cash_balance"])
    order = api.market(taker, side, sym, qty)
    assert order["filled_quantity"] == quote["quantity_available"]
    assert money(order["average_price"]) == quote["estimated_average_price"]
    executed: dict[str, int] = {}
    for trade in order["trades"]:
        key = str(trade["price"])
        executed[key] = executed.get(key, 0) + trade["quantity"]
    assert list(executed.items()) == _pl(quote["price_levels"])
    moved = abs(money(api.balance(taker)["cash_balance"]) - before)
    assert moved == quote["estimated_total"]
