"""Input traps: regex anchors, non-ASCII digits, exact decimal arithmetic, odd-but-valid numbers.

Every case follows from the contract's exact rules (§1.2 money, §1.5 identifier regexes, §9
"plain decimal digits only" for query integers), not from any implementation detail.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from exconf_support import Api, D, assert_error, loads, money, new_broker_id, new_symbol

# --- identifiers: the whole value must match, a trailing newline included ---------------------


@pytest.mark.parametrize("suffix", ["\n", " ", "\t", "\u00e9"])
def test_broker_id_must_match_entirely(api: Api, suffix: str) -> None:
    broker_id = new_broker_id() + suffix
    resp = api.post("/brokers", {"broker_id": broker_id, "initial_cash": 1})
    assert_error(resp, 400, "validation_error")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("symbol", "ABC\n"),
        ("symbol", "ÄBC"),
        ("document_number", "123\n"),
        ("document_number", "١٢٣"),
        ("broker_id", "abc\n"),
    ],
)
def test_order_identifiers_must_match_entirely(api: Api, key: str, value: str) -> None:
    body = api.limit_body(api.broker(), "bid", new_symbol(), 1, "1.00")
    body[key] = value
    assert_error(api.post("/orders", body), 400, "validation_error")


def test_holdings_symbol_must_match_entirely(api: Api) -> None:
    resp = api.post(
        "/brokers",
        {
            "broker_id": new_broker_id(),
            "initial_cash": 1,
            "initial_holdings": [{"symbol": "ABC\n", "quantity": 1}],
        },
    )
    assert_error(resp, 400, "validation_error")


# --- query integers: plain ASCII digits only ----------------------------------------------------

NON_ASCII_DIGITS = ["\u0661", "\u00b2", "\uff11", "1\u0660"]


@pytest.mark.parametrize("value", NON_ASCII_DIGITS)
def test_page_non_ascii_digits(api: Api, value: str) -> None:
    resp = api.get(f"/brokers/{api.broker()}/orders", params={"page": value})
    assert_error(resp, 400, "validation_error", "page must be an integer >= 1")


@pytest.mark.parametrize("value", NON_ASCII_DIGITS)
def test_limit_non_ascii_digits(api: Api, value: str) -> None:
    resp = api.get(f"/brokers/{api.broker()}/orders", params={"limit": value})
    assert_error(resp, 400, "validation_error", "limit must be an integer between 1 and 100")


@pytest.mark.parametrize("value", NON_ASCII_DIGITS)
def test_depth_non_ascii_digits(api: Api, value: str) -> None:
    sym = new_symbol()
    api.broker(holdings={sym: 1})
    resp = api.get(f"/stocks/{sym}/book", params={"depth": value})
    assert_error(resp, 400, "validation_error", "depth must be an integer between 1 and 50")


@pytest.mark.parametrize("value", NON_ASCII_DIGITS)
def test_quote_quantity_non_ascii_digits(api: Api, value: str) -> None:
    sym = new_symbol()
    api.broker(holdings={sym: 1})
    resp = api.get(f"/stocks/{sym}/quote", params={"side": "bid", "quantity": value})
    assert_error(resp, 400, "validation_error", "quantity must be a positive integer")


def test_symbol_path_with_newline_is_unlisted(api: Api) -> None:
    sym = new_symbol()
    api.broker(holdings={sym: 1})
    resp = api.get(f"/stocks/{sym}%0A/price")
    assert_error(resp, 404, "symbol_not_found", f"Symbol {sym}\n is not listed on this exchange")


# --- exact money arithmetic (binary floats would fail these) ----------------------------------


@pytest.mark.parametrize(
    ("cash", "qty", "price"),
    [("0.30", 3, "0.1"), ("3.30", 3, "1.1"), ("0.70", 7, "0.10"), ("1.15", 23, "0.05")],
)
def test_exact_cash_check_accepts_equal_amount(api: Api, cash: str, qty: int, price: str) -> None:
    broker_id = api.broker(cash=cash)
    order = api.limit(broker_id, "bid", new_symbol(), qty, price)
    assert order["status"] == "pending"
    bal = api.balance(broker_id)
    assert money(bal["reserved_cash"]) == D(cash)
    assert money(bal["available_cash"]) == D("0.00")


def test_exact_settlement_many_small_trades(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(cash="0", holdings={sym: 10})
    for _ in range(10):
        api.limit(seller, "ask", sym, 1, "0.10")
    buyer = api.broker(cash="1.00")
    order = api.market(buyer, "bid", sym, 10)
    assert order["status"] == "filled"
    assert money(order["average_price"]) == D("0.10")
    assert money(api.balance(buyer)["cash_balance"]) == D("0.00")
    assert money(api.balance(seller)["cash_balance"]) == D("1.00")


@pytest.mark.parametrize(
    ("sent", "rendered"),
    [("1E-2", "0.01"), ("1.5E+1", "15.00"), ("10.50000", "10.50"), ("0.10", "0.10")],
)
def test_price_number_forms(api: Api, sent: str, rendered: str) -> None:
    resp = api.post("/orders", api.limit_body(api.broker(), "bid", new_symbol(), 1, sent))
    assert resp.status_code == 201, resp.text
    assert money(loads(resp.text)["price"]) == D(rendered)


@pytest.mark.parametrize("sent", ["1E-3", "0.0100001", "99.999"])
def test_price_sub_cent_forms_rejected(api: Api, sent: str) -> None:
    resp = api.post("/orders", api.limit_body(api.broker(), "bid", new_symbol(), 1, sent))
    assert_error(
        resp, 400, "validation_error", "Monetary values must have at most 2 decimal places"
    )


def test_negative_zero_cash_renders_as_zero(api: Api) -> None:
    broker_id = new_broker_id()
    resp = api.post("/brokers", {"broker_id": broker_id, "initial_cash": Decimal("-0.00")})
    assert resp.status_code == 201, resp.text
    assert re.search(r'"cash_balance":\s*0\.00[,}\s]', resp.text), resp.text
    assert money(api.balance(broker_id)["cash_balance"]) == D("0.00")


def test_large_values_stay_exact(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(cash="0", holdings={sym: 1000000})
    buyer = api.broker(cash="999999999999.99")
    api.limit(seller, "ask", sym, 1000000, "999999.99")
    order = api.limit(buyer, "bid", sym, 1000000, "999999.99")
    assert order["status"] == "filled"
    assert money(api.balance(seller)["cash_balance"]) == D("999999990000.00")
    assert money(api.balance(buyer)["cash_balance"]) == D("9999.99")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"broker_id": "x", "initial_cash": NaN}', id="nan"),
        pytest.param(b'{"broker_id": "x", "initial_cash": Infinity}', id="infinity"),
        pytest.param(b'{"broker_id": "x", "initial_cash": 1,}', id="trailing-comma"),
        pytest.param(b"{'broker_id': 'x'}", id="single-quotes"),
        pytest.param(b'\xff\xfe{"a": 1}', id="bad-utf8"),
    ],
)
def test_non_json_bodies(api: Api, payload: bytes) -> None:
    resp = api.client.post(
        "/brokers", content=payload, headers={"Content-Type": "application/json"}
    )
    assert_error(
        resp,
        400,
        "invalid_request",
        "Request body must be valid JSON with Content-Type: application/json",
    )


def test_holdings_sorted_after_new_symbol_bought(api: Api) -> None:
    stem = new_symbol(8)
    late, early = "Z" + stem, "A" + stem
    buyer = api.broker(holdings={late: 1})
    api.limit(api.broker(holdings={early: 5}), "ask", early, 5, "1.00")
    api.market(buyer, "bid", early, 5)
    holdings: list[dict[str, Any]] = api.balance(buyer)["holdings"]
    assert [h["symbol"] for h in holdings] == [early, late]


HUGE = 10**20  # above 2**64; the contract sets no upper bound on quantities or amounts


# §1.4/§2.1/§2.4: huge but well-formed numbers give the contract's outcome (or at worst a
# validation_error that changes no state), never a 500.
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("holdings-quantity", {(201, None), (400, "validation_error")}),
        ("initial-cash", {(201, None), (400, "validation_error")}),
        ("bid-price", {(409, "insufficient_balance"), (400, "validation_error")}),
        ("bid-quantity", {(409, "insufficient_balance"), (400, "validation_error")}),
        ("market-ask-quantity", {(409, "insufficient_holdings"), (400, "validation_error")}),
    ],
)
def test_huge_numbers_never_500(api: Api, case: str, expected: set[tuple[int, Any]]) -> None:
    sym = new_symbol()
    broker_id = new_broker_id()
    if case == "holdings-quantity":
        body: dict[str, Any] = {
            "broker_id": broker_id,
            "initial_cash": 1,
            "initial_holdings": [{"symbol": sym, "quantity": HUGE}],
        }
        resp = api.post("/brokers", body)
    elif case == "initial-cash":
        resp = api.post("/brokers", {"broker_id": broker_id, "initial_cash": HUGE})
    else:
        broker_id = api.broker(cash="1.00")
        if case == "bid-price":
            body = api.limit_body(broker_id, "bid", sym, 1, "1.00")
            body["price"] = Decimal(HUGE)
        elif case == "bid-quantity":
            body = api.limit_body(broker_id, "bid", sym, HUGE, "1.00")
        else:
            body = api.market_body(broker_id, "ask", sym, HUGE)
        resp = api.post("/orders", body)
    body_out = loads(resp.text)
    outcome = (resp.status_code, body_out.get("error") if resp.status_code >= 400 else None)
    assert outcome in expected, resp.text
    if resp.status_code >= 400:
        assert_error(resp, resp.status_code, outcome[1])
    if case in ("holdings-quantity", "initial-cash") and resp.status_code == 400:
        assert api.get(f"/brokers/{broker_id}/balance").status_code == 404


JSON_HEADERS = {"Content-Type": "application/json"}


def test_leading_zero_number_is_not_json(api: Api) -> None:
    payload = f'{{"broker_id": "{new_broker_id()}", "initial_cash": 0100}}'.encode()
    resp = api.client.post(
        "/brokers", content=payload, headers={"Content-Type": "application/json"}
    )
    assert_error(
        resp,
        400,
        "invalid_request",
        "Request body must be valid JSON with Content-Type: application/json",
    )


def test_escaped_strings_are_decoded(api: Api) -> None:
    broker_id = new_broker_id()
    escaped = "".join(f"\\u{ord(c):04x}" for c in broker_id)
    payload = f'{{"broker_id": "{escaped}", "initial_cash": 1}}'.encode()
    resp = api.client.post(
        "/brokers", content=payload, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 201, resp.text
    assert loads(resp.text)["broker_id"] == broker_id


@pytest.mark.parametrize("value", ["-0", "-0.00", "0.00"])
def test_zero_price_forms_rejected(api: Api, value: str) -> None:
    body = api.limit_body(api.broker(), "bid", new_symbol(), 1, "1.00")
    body["price"] = Decimal(value)
    assert_error(api.post("/orders", body), 400, "validation_error")


@pytest.mark.parametrize("value", ["-0", "0"])
def test_zero_quantity_forms_rejected(api: Api, value: str) -> None:
    body = api.limit_body(api.broker(), "bid", new_symbol(), 1, "1.00")
    body["quantity"] = int(value) if value == "0" else Decimal(value)
    assert_error(
        api.post("/orders", body), 400, "validation_error", "quantity must be a positive integer"
    )
