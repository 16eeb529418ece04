"""§2.1 POST /brokers and §2.2 GET /brokers/{broker_id}/balance."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from exconf_support import (
    Api,
    D,
    assert_error,
    loads,
    money,
    new_broker_id,
    new_symbol,
    ts,
    wait_next_second,
)

MONEY_PRECISION = "Monetary values must have at most 2 decimal places"


def _create(api: Api, body: dict[str, Any]) -> Any:
    return api.post("/brokers", body)


def test_create_minimal_broker(api: Api) -> None:
    broker_id = new_broker_id()
    resp = _create(api, {"broker_id": broker_id, "initial_cash": 1000000})
    assert resp.status_code == 201, resp.text
    body = loads(resp.text)
    assert set(body) == {"broker_id", "cash_balance", "holdings", "created_at"}
    assert body["broker_id"] == broker_id
    assert money(body["cash_balance"]) == D("1000000.00")
    assert body["holdings"] == []
    ts(body["created_at"])
    assert re.search(r'"cash_balance":\s*1000000\.00[,}\s]', resp.text), resp.text


@pytest.mark.parametrize(
    ("sent", "rendered"),
    [
        ("0", "0.00"),
        ("0.01", "0.01"),
        ("150", "150.00"),
        ("150.5", "150.50"),
        ("150.000", "150.00"),
        ("99.99", "99.99"),
        ("1234567.89", "1234567.89"),
        ("1E+2", "100.00"),
    ],
)
def test_initial_cash_rendering(api: Api, sent: str, rendered: str) -> None:
    resp = _create(api, {"broker_id": new_broker_id(), "initial_cash": Decimal(sent)})
    assert resp.status_code == 201, resp.text
    assert re.search(rf'"cash_balance":\s*{re.escape(rendered)}[,}}\s]', resp.text), resp.text
    body = loads(resp.text)
    bal = api.balance(body["broker_id"])
    assert money(bal["cash_balance"]) == D(rendered)
    assert money(bal["available_cash"]) == D(rendered)
    assert money(bal["reserved_cash"]) == D("0.00")


def test_create_with_holdings_sorted_by_symbol(api: Api) -> None:
    stem = new_symbol(8)
    sym_z, sym_a, sym_m = "Z" + stem, "A" + stem, "M" + stem
    broker_id = new_broker_id()
    resp = _create(
        api,
        {
            "broker_id": broker_id,
            "initial_cash": Decimal("10.50"),
            "initial_holdings": [
                {"symbol": sym_z, "quantity": 5},
                {"symbol": sym_a, "quantity": 7},
                {"symbol": sym_m, "quantity": 1},
            ],
        },
    )
    assert resp.status_code == 201, resp.text
    body = loads(resp.text)
    assert body["holdings"] == [
        {"symbol": sym_a, "quantity": 7},
        {"symbol": sym_m, "quantity": 1},
        {"symbol": sym_z, "quantity": 5},
    ]
    bal = api.balance(broker_id)
    assert [h["symbol"] for h in bal["holdings"]] == [sym_a, sym_m, sym_z]
    for item in bal["holdings"]:
        assert set(item) == {"symbol", "quantity", "reserved_quantity", "available_quantity"}
        assert item["reserved_quantity"] == 0
        assert item["available_quantity"] == item["quantity"]


def test_initial_holdings_register_symbols(api: Api) -> None:
    sym = new_symbol()
    assert api.get(f"/stocks/{sym}/price").status_code == 404
    api.broker(holdings={sym: 10})
    assert api.get(f"/stocks/{sym}/price").status_code == 200
    assert api.get(f"/stocks/{sym}/book").status_code == 200


def test_explicit_empty_holdings(api: Api) -> None:
    resp = _create(api, {"broker_id": new_broker_id(), "initial_cash": 1, "initial_holdings": []})
    assert resp.status_code == 201, resp.text
    assert loads(resp.text)["holdings"] == []


@pytest.mark.parametrize("broker_id", ["a", "_", "-", "Z" * 64, "abc-DEF_123", "0123456789"])
def test_valid_broker_ids(api: Api, broker_id: str) -> None:
    # literal ids: each server is fresh and no other test uses these
    resp = _create(api, {"broker_id": broker_id, "initial_cash": 0})
    assert resp.status_code == 201, resp.text
    assert loads(resp.text)["broker_id"] == broker_id
    assert api.balance(broker_id)["broker_id"] == broker_id


BROKER_ID_BAD = [
    pytest.param("", id="empty"),
    pytest.param("A" * 65, id="too-long"),
    pytest.param("has space", id="space"),
    pytest.param("dot.id", id="dot"),
    pytest.param("slash/id", id="slash"),
    pytest.param("ümlaut", id="non-ascii"),
    pytest.param(123, id="number"),
    pytest.param(None, id="null"),
    pytest.param(True, id="bool"),
]


@pytest.mark.parametrize("broker_id", BROKER_ID_BAD)
def test_invalid_broker_id(api: Api, broker_id: Any) -> None:
    assert_error(
        _create(api, {"broker_id": broker_id, "initial_cash": 10}), 400, "validation_error"
    )


def test_missing_broker_id(api: Api) -> None:
    resp = _create(api, {"initial_cash": 10})
    assert_error(resp, 400, "validation_error", "broker_id is required")


@pytest.mark.parametrize("cash", ["-0.01", "-1", "-1000"])
def test_negative_initial_cash(api: Api, cash: str) -> None:
    resp = _create(api, {"broker_id": new_broker_id(), "initial_cash": Decimal(cash)})
    assert_error(resp, 400, "validation_error", "initial_cash must be >= 0")


@pytest.mark.parametrize("cash", ["1.001", "0.005", "100.123", "1.0000001"])
def test_initial_cash_precision(api: Api, cash: str) -> None:
    resp = _create(api, {"broker_id": new_broker_id(), "initial_cash": Decimal(cash)})
    assert_error(resp, 400, "validation_error", MONEY_PRECISION)


@pytest.mark.parametrize(
    "cash",
    [
        pytest.param("100", id="string"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
        pytest.param([100], id="array"),
        pytest.param({"v": 1}, id="object"),
    ],
)
def test_initial_cash_wrong_type(api: Api, cash: Any) -> None:
    resp = _create(api, {"broker_id": new_broker_id(), "initial_cash": cash})
    assert_error(resp, 400, "validation_error")


def test_missing_initial_cash(api: Api) -> None:
    assert_error(_create(api, {"broker_id": new_broker_id()}), 400, "validation_error")


def test_duplicate_symbol_in_initial_holdings(api: Api) -> None:
    sym = new_symbol()
    resp = _create(
        api,
        {
            "broker_id": new_broker_id(),
            "initial_cash": 10,
            "initial_holdings": [{"symbol": sym, "quantity": 1}, {"symbol": sym, "quantity": 2}],
        },
    )
    assert_error(resp, 400, "validation_error", f"Duplicate symbol in initial_holdings: {sym}")


@pytest.mark.parametrize(
    "holdings",
    [
        pytest.param("AAPL", id="not-array"),
        pytest.param({"symbol": "AAPL", "quantity": 1}, id="object-not-array"),
        pytest.param(["AAPL"], id="item-not-object"),
        pytest.param([{"quantity": 1}], id="missing-symbol"),
        pytest.param([{"symbol": "ABC"}], id="missing-quantity"),
        pytest.param([{"symbol": "abc", "quantity": 1}], id="lowercase-symbol"),
        pytest.param([{"symbol": "ABCDEFGHIJK", "quantity": 1}], id="symbol-too-long"),
        pytest.param([{"symbol": "", "quantity": 1}], id="symbol-empty"),
        pytest.param([{"symbol": "AB1", "quantity": 1}], id="symbol-digit"),
        pytest.param([{"symbol": 5, "quantity": 1}], id="symbol-number"),
        pytest.param([{"symbol": "ABC", "quantity": 0}], id="quantity-zero"),
        pytest.param([{"symbol": "ABC", "quantity": -3}], id="quantity-negative"),
        pytest.param([{"symbol": "ABC", "quantity": Decimal("1.5")}], id="quantity-fraction"),
        pytest.param([{"symbol": "ABC", "quantity": "5"}], id="quantity-string"),
        pytest.param([{"symbol": "ABC", "quantity": True}], id="quantity-bool"),
        pytest.param([{"symbol": "ABC", "quantity": None}], id="quantity-null"),
    ],
)
def test_invalid_initial_holdings(api: Api, holdings: Any) -> None:
    broker_id = new_broker_id()
    resp = _create(api, {"broker_id": broker_id, "initial_cash": 10, "initial_holdings": holdings})
    assert_error(resp, 400, "validation_error")
    # a rejected request changes no state: the broker was not registered
    assert_error(
        api.get(f"/brokers/{broker_id}/balance"),
        404,
        "broker_not_found",
        f"Broker {broker_id} does not exist",
    )


def test_duplicate_broker_is_409_and_keeps_original(api: Api) -> None:
    broker_id = new_broker_id()
    assert _create(api, {"broker_id": broker_id, "initial_cash": 500}).status_code == 201
    resp = _create(api, {"broker_id": broker_id, "initial_cash": 999})
    assert_error(resp, 409, "broker_already_exists", f"Broker {broker_id} is already registered")
    assert money(api.balance(broker_id)["cash_balance"]) == D("500.00")


def test_validation_precedes_already_exists(api: Api) -> None:
    broker_id = api.broker()
    resp = _create(api, {"broker_id": broker_id, "initial_cash": -5})
    assert_error(resp, 400, "validation_error", "initial_cash must be >= 0")


def test_balance_unknown_broker(api: Api) -> None:
    broker_id = new_broker_id()
    assert_error(
        api.get(f"/brokers/{broker_id}/balance"),
        404,
        "broker_not_found",
        f"Broker {broker_id} does not exist",
    )


def test_fresh_balance_shape(api: Api) -> None:
    sym = new_symbol()
    broker_id = new_broker_id()
    created = loads(
        _create(
            api,
            {
                "broker_id": broker_id,
                "initial_cash": Decimal("2500.5"),
                "initial_holdings": [{"symbol": sym, "quantity": 40}],
            },
        ).text
    )
    resp = api.get(f"/brokers/{broker_id}/balance")
    assert resp.status_code == 200
    bal = loads(resp.text)
    assert set(bal) == {
        "broker_id",
        "cash_balance",
        "reserved_cash",
        "available_cash",
        "holdings",
        "updated_at",
    }
    assert bal["broker_id"] == broker_id
    assert money(bal["cash_balance"]) == D("2500.50")
    assert money(bal["reserved_cash"]) == D("0.00")
    assert money(bal["available_cash"]) == D("2500.50")
    assert bal["holdings"] == [
        {"symbol": sym, "quantity": 40, "reserved_quantity": 0, "available_quantity": 40}
    ]
    assert ts(bal["updated_at"]) == created["created_at"]
    assert re.search(r'"reserved_cash":\s*0\.00[,}\s]', resp.text)


def test_limit_bid_reserves_cash(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(cash="1000.00")
    api.limit(broker_id, "bid", sym, 3, "100.10")
    bal = api.balance(broker_id)
    assert money(bal["cash_balance"]) == D("1000.00")
    assert money(bal["reserved_cash"]) == D("300.30")
    assert money(bal["available_cash"]) == D("699.70")


def test_limit_ask_reserves_shares(api: Api) -> None:
    sym = new_symbol()
    broker_id = api.broker(holdings={sym: 100})
    api.limit(broker_id, "ask", sym, 30, "5.00")
    api.limit(broker_id, "ask", sym, 25, "6.00")
    assert api.holding(broker_id, sym) == {
        "symbol": sym,
        "quantity": 100,
        "reserved_quantity": 55,
        "available_quantity": 45,
    }
    bal = api.balance(broker_id)
    assert money(bal["reserved_cash"]) == D("0.00")


def test_holding_falling_to_zero_is_kept_and_buyer_gets_new_entry(api: Api) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 10})
    buyer = api.broker(cash="1000.00")
    api.limit(seller, "ask", sym, 10, "2.00")
    api.market(buyer, "bid", sym, 10)
    assert api.holding(seller, sym) == {
        "symbol": sym,
        "quantity": 0,
        "reserved_quantity": 0,
        "available_quantity": 0,
    }
    assert api.holding(buyer, sym) == {
        "symbol": sym,
        "quantity": 10,
        "reserved_quantity": 0,
        "available_quantity": 10,
    }


def test_balance_updated_at_lifecycle(api: Api) -> None:
    """updated_at starts at created_at, moves on placement/trade/cancel, never on reads/rejects."""
    sym = new_symbol()
    resting_bidder = api.broker(cash="1000.00")
    seller = api.broker(holdings={sym: 50})
    bystander = api.broker(cash="1000.00", holdings={sym: 5})
    rejected = api.broker(cash="1.00")
    canceller = api.broker(cash="1000.00")
    ids = [resting_bidder, seller, bystander, rejected, canceller]
    initial = {b: api.balance(b)["updated_at"] for b in ids}

    wait_next_second()
    bid = api.limit(resting_bidder, "bid", sym, 10, "5.00")
    to_cancel = api.limit(canceller, "bid", sym, 1, "1.00")
    resp = api.post("/orders", api.limit_body(rejected, "bid", sym, 10, "5.00"))
    assert_error(resp, 409, "insufficient_balance")
    phase1 = {b: api.balance(b)["updated_at"] for b in ids}
    assert phase1[resting_bidder] > initial[resting_bidder]
    assert phase1[resting_bidder] >= bid["created_at"]
    assert phase1[canceller] > initial[canceller]
    assert phase1[seller] == initial[seller]
    assert phase1[bystander] == initial[bystander]
    assert phase1[rejected] == initial[rejected]

    wait_next_second()
    sale = api.limit(seller, "ask", sym, 10, "5.00")
    assert sale["status"] == "filled"
    api.cancel(to_cancel["order_id"])
    phase2 = {b: api.balance(b)["updated_at"] for b in ids}
    assert phase2[resting_bidder] > phase1[resting_bidder]
    assert phase2[seller] > phase1[seller]
    assert phase2[seller] >= sale["trades"][0]["executed_at"]
    assert phase2[canceller] > phase1[canceller]
    assert phase2[bystander] == initial[bystander]
    assert phase2[rejected] == initial[rejected]

    wait_next_second()
    api.get(f"/stocks/{sym}/book")
    api.listing(resting_bidder)
    phase3 = {b: api.balance(b)["updated_at"] for b in ids}
    assert phase3 == phase2


def test_rejected_broker_registers_no_symbol(api: Api) -> None:
    sym = new_symbol()
    resp = _create(
        api,
        {
            "broker_id": new_broker_id(),
            "initial_cash": 10,
            "initial_holdings": [{"symbol": sym, "quantity": 1}, {"symbol": sym, "quantity": 1}],
        },
    )
    assert resp.status_code == 400
    assert api.get(f"/stocks/{sym}/price").status_code == 404


def test_broker_ids_are_case_sensitive(api: Api) -> None:
    stem = new_broker_id()[2:]
    upper, lower = "X" + stem, "x" + stem
    assert _create(api, {"broker_id": upper, "initial_cash": 1}).status_code == 201
    assert _create(api, {"broker_id": lower, "initial_cash": 2}).status_code == 201
    assert money(api.balance(upper)["cash_balance"]) == D("1.00")
    assert money(api.balance(lower)["cash_balance"]) == D("2.00")
