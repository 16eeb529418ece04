"""§2.4 POST /orders: field validation, check order, balance checks, §6 symbol registration."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from exconf_support import (
    FAR_FUTURE,
    Api,
    D,
    assert_error,
    check_order,
    dumps,
    expires_in,
    loads,
    money,
    new_broker_id,
    new_symbol,
    ts,
)

MONEY_PRECISION = "Monetary values must have at most 2 decimal places"
QTY_MESSAGE = "quantity must be a positive integer"
UNKNOWN_TYPE = "Unknown order type: {}. Must be one of: limit, market"
MISSING = object()


def _with(body: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = dict(body)
    if value is MISSING:
        out.pop(key, None)
    else:
        out[key] = value
    return out


@pytest.fixture
def funded(api: Api) -> tuple[str, str]:
    sym = new_symbol()
    return api.broker(cash="100000.00", holdings={sym: 1000}), sym


LIMIT_INVALID: list[Any] = [
    # (key, value, message or None)
    pytest.param("type", MISSING, None, id="type-missing"),
    pytest.param("type", "stop", UNKNOWN_TYPE.format("stop"), id="type-stop"),
    pytest.param("type", "LIMIT", UNKNOWN_TYPE.format("LIMIT"), id="type-uppercase"),
    pytest.param("type", "", UNKNOWN_TYPE.format(""), id="type-empty"),
    pytest.param("broker_id", MISSING, None, id="broker-missing"),
    pytest.param("broker_id", "bad id", None, id="broker-pattern"),
    pytest.param("broker_id", "x" * 65, None, id="broker-too-long"),
    pytest.param("broker_id", 7, None, id="broker-number"),
    pytest.param("document_number", MISSING, None, id="doc-missing"),
    pytest.param("document_number", "", None, id="doc-empty"),
    pytest.param("document_number", "123-456", None, id="doc-dash"),
    pytest.param("document_number", "a_b", None, id="doc-underscore"),
    pytest.param("document_number", "1" * 33, None, id="doc-too-long"),
    pytest.param("document_number", 12345, None, id="doc-number"),
    pytest.param("side", MISSING, None, id="side-missing"),
    pytest.param("side", "buy", None, id="side-buy"),
    pytest.param("side", "BID", None, id="side-uppercase"),
    pytest.param("side", None, None, id="side-null"),
    pytest.param("symbol", MISSING, None, id="symbol-missing"),
    pytest.param("symbol", "aapl", None, id="symbol-lowercase"),
    pytest.param("symbol", "AB1", None, id="symbol-digit"),
    pytest.param("symbol", "ABCDEFGHIJK", None, id="symbol-too-long"),
    pytest.param("symbol", "", None, id="symbol-empty"),
    pytest.param("symbol", 42, None, id="symbol-number"),
    pytest.param("quantity", MISSING, None, id="qty-missing"),
    pytest.param("quantity", 0, QTY_MESSAGE, id="qty-zero"),
    pytest.param("quantity", -5, QTY_MESSAGE, id="qty-negative"),
    pytest.param("quantity", Decimal("1.5"), QTY_MESSAGE, id="qty-fraction"),
    pytest.param("quantity", "10", QTY_MESSAGE, id="qty-string"),
    pytest.param("quantity", True, QTY_MESSAGE, id="qty-bool"),
    pytest.param("quantity", None, None, id="qty-null"),
    pytest.param("price", MISSING, None, id="price-missing"),
    pytest.param("price", None, None, id="price-null"),
    pytest.param("price", 0, None, id="price-zero"),
    pytest.param("price", Decimal("-1.00"), None, id="price-negative"),
    pytest.param("price", Decimal("10.001"), MONEY_PRECISION, id="price-3-decimals"),
    pytest.param("price", Decimal("0.001"), MONEY_PRECISION, id="price-sub-cent"),
    pytest.param("price", "10.00", None, id="price-string"),
    pytest.param("price", True, None, id="price-bool"),
    pytest.param("expires_at", MISSING, None, id="expires-missing"),
    pytest.param("expires_at", None, None, id="expires-null"),
    pytest.param(
        "expires_at",
        "2020-01-01T00:00:00Z",
        "expires_at must be a future timestamp",
        id="expires-past",
    ),
    pytest.param(
        "expires_at",
        "not-a-time",
        "expires_at must be a valid RFC 3339 timestamp",
        id="expires-garbage",
    ),
    pytest.param(
        "expires_at",
        "2099-01-01",
        "expires_at must be a valid RFC 3339 timestamp",
        id="expires-date-only",
    ),
    pytest.param(
        "expires_at",
        "2099-01-01T00:00:00",
        "expires_at must be a valid RFC 3339 timestamp",
        id="expires-no-offset",
    ),
    pytest.param(
        "expires_at",
        "2099-13-01T00:00:00Z",
        "expires_at must be a valid RFC 3339 timestamp",
        id="expires-month-13",
    ),
    pytest.param("expires_at", 4102444800, None, id="expires-number"),
    pytest.param(
        "expires_at",
        "2099-02-30T00:00:00Z",
        "expires_at must be a valid RFC 3339 timestamp",
        id="expires-feb-30",
    ),
    pytest.param(
        "expires_at",
        "2099-01-01T24:00:00Z",
        "expires_at must be a valid RFC 3339 timestamp",
        id="expires-hour-24",
    ),
    pytest.param(
        "expires_at",
        "2099-01-01T00:00:00+25:00",
        "expires_at must be a valid RFC 3339 timestamp",
        id="expires-offset-25h",
    ),
    pytest.param(
        "expires_at",
        "2099-01-01 00:00:00Z",
        "expires_at must be a valid RFC 3339 timestamp",
        id="expires-space-separator",
    ),
    pytest.param(
        "expires_at", "", "expires_at must be a valid RFC 3339 timestamp", id="expires-empty"
    ),
]


@pytest.mark.parametrize(("key", "value", "message"), LIMIT_INVALID)
def test_limit_field_validation(
    api: Api, funded: tuple[str, str], key: str, value: Any, message: str | None
) -> None:
    broker_id, sym = funded
    body = _with(api.limit_body(broker_id, "bid", sym, 10, "10.00"), key, value)
    before = api.balance(broker_id)
    resp = api.post("/orders", body)
    assert_error(resp, 400, "validation_error", message)
    assert api.balance(broker_id) == before
    assert api.listing(broker_id)["total"] == 0


MARKET_INVALID: list[Any] = [
    pytest.param(
        "price",
        Decimal("10.00"),
        "price must be null or omitted for market orders",
        id="market-with-price",
    ),
    pytest.param(
        "expires_at",
        FAR_FUTURE,
        "expires_at must be null or omitted for market orders",
        id="market-with-expiry",
    ),
    pytest.param("quantity", 0, QTY_MESSAGE, id="market-qty-zero"),
    pytest.param("quantity", Decimal("2.5"), QTY_MESSAGE, id="market-qty-fraction"),
    pytest.param("side", "sell", None, id="market-side-sell"),
    pytest.param("symbol", "abc", None, id="market-bad-symbol"),
]


@pytest.mark.parametrize(("key", "value", "message"), MARKET_INVALID)
def test_market_field_validation(
    api: Api, funded: tuple[str, str], key: str, value: Any, message: str | None
) -> None:
    broker_id, sym = funded
    body = _with(api.market_body(broker_id, "ask", sym, 10), key, value)
    assert_error(api.post("/orders", body), 400, "validation_error", message)


@pytest.mark.parametrize("explicit_null", [True, False])
def test_market_accepts_null_or_absent_price_and_expiry(
    api: Api, funded: tuple[str, str], explicit_null: bool
) -> None:
    broker_id, sym = funded
    buyer = api.broker()
    api.limit(broker_id, "ask", sym, 5, "3.00")
    body = api.market_body(buyer, "bid", sym, 5)
    if explicit_null:
        body.update(price=None, expires_at=None)
    order = api.submit(body)
    assert order["status"] == "filled"
    assert "price" not in order and "expires_at" not in order


@pytest.mark.parametrize(
    ("sent", "rendered"),
    [("150.000", "150.00"), ("150", "150.00"), ("150.5", "150.50"), ("0.01", "0.01")],
)
def test_limit_price_accepted_and_rendered(
    api: Api, funded: tuple[str, str], sent: str, rendered: str
) -> None:
    broker_id, sym = funded
    resp = api.post("/orders", api.limit_body(broker_id, "bid", sym, 1, sent))
    assert resp.status_code == 201, resp.text
    assert re.search(rf'"price":\s*{re.escape(rendered)}[,}}\s]', resp.text), resp.text
    assert money(loads(resp.text)["price"]) == D(rendered)


@pytest.mark.parametrize(
    ("sent", "rendered"),
    [
        ("2099-06-01T12:30:45Z", "2099-06-01T12:30:45Z"),
        ("2099-06-01T12:30:45+00:00", "2099-06-01T12:30:45Z"),
        ("2099-06-01T12:30:45.987Z", "2099-06-01T12:30:45Z"),
        ("2099-06-01T12:30:45.123456+00:00", "2099-06-01T12:30:45Z"),
    ],
)
def test_expires_at_accepted_and_rendered(
    api: Api, funded: tuple[str, str], sent: str, rendered: str
) -> None:
    broker_id, sym = funded
    order = api.submit(api.limit_body(broker_id, "bid", sym, 1, "1.00", expires_at=sent))
    assert order["expires_at"] == rendered
    assert api.order(order["order_id"])["expires_at"] == rendered


@pytest.mark.parametrize("doc", ["a", "A1b2C3", "9" * 32])
def test_document_number_accepted(api: Api, funded: tuple[str, str], doc: str) -> None:
    broker_id, sym = funded
    body = api.limit_body(broker_id, "bid", sym, 1, "1.00")
    body["document_number"] = doc
    assert api.submit(body)["document_number"] == doc


@pytest.mark.parametrize("sym_len", [1, 10])
def test_symbol_length_bounds_accepted(api: Api, sym_len: int) -> None:
    sym = new_symbol(sym_len)
    broker_id = api.broker()
    order = api.limit(broker_id, "bid", sym, 1, "1.00")
    assert order["symbol"] == sym


def test_unknown_broker_404(api: Api) -> None:
    ghost = new_broker_id()
    resp = api.post("/orders", api.limit_body(ghost, "bid", new_symbol(), 1, "1.00"))
    assert_error(resp, 404, "broker_not_found", f"Broker {ghost} does not exist")


def test_validation_precedes_404(api: Api) -> None:
    ghost = new_broker_id()
    resp = api.post("/orders", api.limit_body(ghost, "bid", new_symbol(), 0, "1.00"))
    assert_error(resp, 400, "validation_error", QTY_MESSAGE)


def test_validation_precedes_409(api: Api) -> None:
    poor = api.broker(cash="0")
    resp = api.post("/orders", api.limit_body(poor, "bid", new_symbol(), 10, "10.001"))
    assert_error(resp, 400, "validation_error", MONEY_PRECISION)


def test_insufficient_balance_message(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(cash="99.99")
    resp = api.post("/orders", api.limit_body(broker_id, "bid", sym, 10, "10.00"))
    assert_error(
        resp,
        409,
        "insufficient_balance",
        f"Broker {broker_id} has insufficient available cash for this order",
    )


def test_limit_bid_exact_available_cash_accepted(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(cash="100.00")
    order = api.limit(broker_id, "bid", sym, 10, "10.00")
    assert order["status"] == "pending"
    bal = api.balance(broker_id)
    assert money(bal["available_cash"]) == D("0.00")
    assert money(bal["reserved_cash"]) == D("100.00")


def test_limit_bid_checked_against_available_not_total(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(cash="100.00")
    api.limit(broker_id, "bid", sym, 6, "10.00")
    resp = api.post("/orders", api.limit_body(broker_id, "bid", sym, 5, "10.00"))
    assert_error(resp, 409, "insufficient_balance")
    assert api.limit(broker_id, "bid", sym, 4, "10.00")["status"] == "pending"
    assert money(api.balance(broker_id)["available_cash"]) == D("0.00")


def test_insufficient_holdings_message(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(holdings={sym: 5})
    resp = api.post("/orders", api.limit_body(broker_id, "ask", sym, 6, "1.00"))
    assert_error(
        resp,
        409,
        "insufficient_holdings",
        f"Broker {broker_id} has insufficient available quantity of {sym} for this order",
    )


def test_ask_without_position_is_insufficient_holdings(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker()
    resp = api.post("/orders", api.limit_body(broker_id, "ask", sym, 1, "1.00"))
    assert_error(
        resp,
        409,
        "insufficient_holdings",
        f"Broker {broker_id} has insufficient available quantity of {sym} for this order",
    )


def test_ask_checked_against_available_quantity(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(holdings={sym: 10})
    api.limit(broker_id, "ask", sym, 6, "5.00")
    assert_error(
        api.post("/orders", api.limit_body(broker_id, "ask", sym, 5, "5.00")),
        409,
        "insufficient_holdings",
    )
    assert_error(
        api.post("/orders", api.market_body(broker_id, "ask", sym, 5)),
        409,
        "insufficient_holdings",
    )
    assert api.limit(broker_id, "ask", sym, 4, "5.00")["status"] == "pending"


def test_market_ask_short_on_empty_book_is_insufficient_holdings(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker()
    resp = api.post("/orders", api.market_body(broker_id, "ask", sym, 1))
    assert_error(
        resp,
        409,
        "insufficient_holdings",
        f"Broker {broker_id} has insufficient available quantity of {sym} for this order",
    )


@pytest.mark.parametrize("side", ["bid", "ask"])
def test_no_liquidity_creates_nothing(api: Api, side: str) -> None:
    sym = new_symbol()
    broker_id = api.broker(holdings={sym: 10})
    before = api.balance(broker_id)
    resp = api.post("/orders", api.market_body(broker_id, side, sym, 5))
    assert_error(
        resp, 409, "no_liquidity", f"No matching orders available for market order on {sym}"
    )
    assert api.balance(broker_id) == before
    assert api.listing(broker_id) == {"orders": [], "total": 0, "page": 1, "limit": 20}


def test_no_liquidity_when_only_same_side_rests(api: Api) -> None:
    sym = new_symbol()
    other = api.broker(holdings={sym: 10})
    api.limit(other, "ask", sym, 10, "5.00")
    seller = api.broker(holdings={sym: 10})
    resp = api.post("/orders", api.market_body(seller, "ask", sym, 3))
    assert_error(
        resp, 409, "no_liquidity", f"No matching orders available for market order on {sym}"
    )


def test_market_bid_simulated_cost_check(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 300})
    api.limit(seller, "ask", sym, 100, "10.00")
    api.limit(seller, "ask", sym, 200, "11.00")
    short = api.broker(cash="2649.99")
    resp = api.post("/orders", api.market_body(short, "bid", sym, 250))
    assert_error(
        resp,
        409,
        "insufficient_balance",
        f"Broker {short} has insufficient available cash for this order",
    )
    assert api.listing(short)["total"] == 0
    exact = api.broker(cash="2650.00")
    order = api.market(exact, "bid", sym, 250)
    assert order["status"] == "filled"
    assert money(api.balance(exact)["cash_balance"]) == D("0.00")


def test_market_bid_cost_counts_only_available_liquidity(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 400})
    api.limit(seller, "ask", sym, 400, "10.00")
    buyer = api.broker(cash="4000.00")
    order = api.market(buyer, "bid", sym, 1000)
    assert order["status"] == "cancelled"
    assert order["filled_quantity"] == 400
    assert order["cancelled_quantity"] == 600
    assert money(api.balance(buyer)["cash_balance"]) == D("0.00")


def test_market_bid_uses_available_cash(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 10})
    api.limit(seller, "ask", sym, 10, "10.00")
    buyer = api.broker(cash="100.00")
    api.limit(buyer, "bid", new_symbol(), 1, "50.00")  # reserves 50 elsewhere
    assert_error(
        api.post("/orders", api.market_body(buyer, "bid", sym, 10)), 409, "insufficient_balance"
    )
    assert api.market(buyer, "bid", sym, 5)["status"] == "filled"


def test_balance_check_precedes_no_liquidity(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(holdings={new_symbol(): 5})
    resp = api.post("/orders", api.market_body(broker_id, "ask", sym, 5))
    assert_error(resp, 409, "insufficient_holdings")


# --- §6/§9: symbol registration --------------------------------------------------------------


def _known(api: Api, sym: str) -> bool:
    status = api.get(f"/stocks/{sym}/price").status_code
    assert status in (200, 404)
    return status == 200


def test_symbol_registered_by_accepted_order(api: Api) -> None:
    sym = new_symbol()
    api.limit(api.broker(), "bid", sym, 1, "1.00")
    assert _known(api, sym)


def test_symbol_registered_by_404_rejection(api: Api) -> None:
    sym = new_symbol()
    resp = api.post("/orders", api.limit_body(new_broker_id(), "bid", sym, 1, "1.00"))
    assert resp.status_code == 404
    assert _known(api, sym)


def test_symbol_registered_by_insufficient_balance(api: Api) -> None:
    sym = new_symbol()
    resp = api.post("/orders", api.limit_body(api.broker(cash="0"), "bid", sym, 1, "1.00"))
    assert resp.status_code == 409
    assert _known(api, sym)


def test_symbol_registered_by_insufficient_holdings(api: Api) -> None:
    sym = new_symbol()
    resp = api.post("/orders", api.market_body(api.broker(), "ask", sym, 1))
    assert resp.status_code == 409
    assert _known(api, sym)


def test_symbol_registered_by_no_liquidity(api: Api) -> None:
    sym = new_symbol()
    resp = api.post("/orders", api.market_body(api.broker(), "bid", sym, 1))
    assert_error(resp, 409, "no_liquidity")
    assert _known(api, sym)
    book = api.book(sym)
    assert book["bids"] == [] and book["asks"] == [] and book["spread"] is None


def test_symbol_not_registered_by_validation_error(api: Api) -> None:
    sym = new_symbol()
    resp = api.post("/orders", api.limit_body(api.broker(), "bid", sym, 0, "1.00"))
    assert resp.status_code == 400
    assert not _known(api, sym)


def test_symbol_not_registered_by_invalid_request(api: Api) -> None:
    sym = new_symbol()
    body = api.limit_body(api.broker(), "bid", sym, 1, "1.00")
    resp = api.client.post(
        "/orders", content=dumps(body).encode(), headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 400
    assert not _known(api, sym)


# --- accepted order basics -------------------------------------------------------------------


def test_new_limit_order_fields(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker()
    body = api.limit_body(broker_id, "bid", sym, 25, "12.34", expires_at="2099-03-04T05:06:07Z")
    body["document_number"] = "12345678900"
    resp = api.post("/orders", body)
    assert resp.status_code == 201
    order = check_order(loads(resp.text))
    assert order["type"] == "limit"
    assert order["broker_id"] == broker_id
    assert order["document_number"] == "12345678900"
    assert order["side"] == "bid"
    assert order["symbol"] == sym
    assert order["price"] == D("12.34")
    assert order["quantity"] == 25
    assert order["filled_quantity"] == 0
    assert order["remaining_quantity"] == 25
    assert order["cancelled_quantity"] == 0
    assert order["status"] == "pending"
    assert order["expires_at"] == "2099-03-04T05:06:07Z"
    assert order["cancelled_at"] is None
    assert order["expired_at"] is None
    assert order["average_price"] is None
    assert order["trades"] == []
    ts(order["created_at"])


def test_order_ids_are_unique(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker()
    ids = {api.limit(broker_id, "bid", sym, 1, "1.00")["order_id"] for _ in range(5)}
    assert len(ids) == 5


def test_expires_at_just_ahead_is_accepted(api: Api) -> None:
    sym = new_symbol()
    order = api.limit(api.broker(), "bid", sym, 1, "1.00", expires_at=expires_in(30))
    assert order["status"] == "pending"


def test_leap_second_expires_at_never_500(api: Api, funded: tuple[str, str]) -> None:
    """RFC 3339 allows second 60; accepting it or refusing it as invalid are both fine."""
    broker_id, sym = funded
    body = api.limit_body(broker_id, "bid", sym, 1, "1.00", expires_at="2099-12-31T23:59:60Z")
    resp = api.post("/orders", body)
    if resp.status_code != 201:
        assert_error(resp, 400, "validation_error", "expires_at must be a valid RFC 3339 timestamp")
