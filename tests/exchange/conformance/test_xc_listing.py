"""§2.3 GET /brokers/{broker_id}/orders: order, filters, pagination, item keys, validation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from exconf_support import (
    LIST_ITEM_KEYS,
    Api,
    D,
    assert_error,
    loads,
    money,
    new_broker_id,
    new_symbol,
    ts,
)

STATUS_MESSAGE = (
    "Invalid status filter: '{}'. Must be one of: pending, partially_filled, filled, cancelled, "
    "expired"
)
PAGE_MESSAGE = "page must be an integer >= 1"
LIMIT_MESSAGE = "limit must be an integer between 1 and 100"


def test_unknown_broker(api: Api) -> None:
    ghost = new_broker_id()
    assert_error(
        api.get(f"/brokers/{ghost}/orders"),
        404,
        "broker_not_found",
        f"Broker {ghost} does not exist",
    )


def test_empty_listing(api: Api) -> None:
    resp = api.get(f"/brokers/{api.broker()}/orders")
    assert resp.status_code == 200
    assert loads(resp.text) == {"orders": [], "total": 0, "page": 1, "limit": 20}


def _mixed_orders(api: Api) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """A broker with one order in each non-expired status, created in a known sequence."""
    sym, sym2 = new_symbol(), new_symbol()
    me = api.broker(cash="100000.00", holdings={sym: 100, sym2: 10})
    other = api.broker(cash="100000.00", holdings={sym: 100})
    orders: dict[str, dict[str, Any]] = {}
    orders["pending"] = api.limit(me, "bid", sym, 10, "1.00")
    api.limit(other, "ask", sym, 5, "50.00")
    orders["partial"] = api.limit(me, "bid", sym, 10, "50.00")
    orders["cancelled"] = api.limit(me, "bid", sym, 3, "2.00")
    api.cancel(orders["cancelled"]["order_id"])
    api.limit(other, "bid", sym, 4, "60.00")
    orders["market_filled"] = api.market(me, "ask", sym, 4)
    api.limit(other, "ask", sym, 2, "70.00")
    orders["filled"] = api.limit(me, "bid", sym, 2, "70.00")
    api.limit(other, "bid", sym2, 3, "5.00")
    orders["market_ioc"] = api.market(me, "ask", sym2, 10)
    return me, sym, orders


def test_newest_first_and_item_shape(api: Api) -> None:
    me, _, orders = _mixed_orders(api)
    sequence = ["pending", "partial", "cancelled", "market_filled", "filled", "market_ioc"]
    resp = api.get(f"/brokers/{me}/orders")
    assert resp.status_code == 200
    body = loads(resp.text)
    assert body["total"] == 6 and body["page"] == 1 and body["limit"] == 20
    ids = [item["order_id"] for item in body["orders"]]
    assert ids == [orders[name]["order_id"] for name in reversed(sequence)]
    for item in body["orders"]:
        full = api.order(item["order_id"])
        if item["type"] == "limit":
            assert set(item) == LIST_ITEM_KEYS | {"price"}
            assert money(item["price"]) == full["price"]
        else:
            assert set(item) == LIST_ITEM_KEYS
        for key in LIST_ITEM_KEYS:
            assert item[key] == full[key], key
        ts(item["created_at"])
        if item["filled_quantity"] == 0:
            assert item["average_price"] is None
        else:
            money(item["average_price"])


@pytest.mark.parametrize(
    ("status", "names"),
    [
        ("pending", ["pending"]),
        ("partially_filled", ["partial"]),
        ("filled", ["filled", "market_filled"]),
        ("cancelled", ["market_ioc", "cancelled"]),
        ("expired", []),
    ],
)
def test_status_filter(api: Api, status: str, names: list[str]) -> None:
    me, _, orders = _mixed_orders(api)
    body = api.listing(me, status=status)
    assert [item["order_id"] for item in body["orders"]] == [orders[n]["order_id"] for n in names]
    assert body["total"] == len(names)
    assert body["page"] == 1 and body["limit"] == 20
    assert all(item["status"] == status for item in body["orders"])


@pytest.mark.parametrize("status", ["open", "PENDING", "done", "partially-filled", "all"])
def test_invalid_status_filter(api: Api, status: str) -> None:
    resp = api.get(f"/brokers/{api.broker()}/orders", params={"status": status})
    assert_error(resp, 400, "validation_error", STATUS_MESSAGE.format(status))


def test_empty_status_filter_is_invalid(api: Api) -> None:
    resp = api.get(f"/brokers/{api.broker()}/orders?status=")
    assert_error(resp, 400, "validation_error", STATUS_MESSAGE.format(""))


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5", "+1", "1e1", "", " 1", "0x1"])
def test_invalid_page(api: Api, page: str) -> None:
    resp = api.get(f"/brokers/{api.broker()}/orders", params={"page": page})
    assert_error(resp, 400, "validation_error", PAGE_MESSAGE)


@pytest.mark.parametrize("limit", ["0", "101", "-5", "abc", "2.0", "+10", "", "1000"])
def test_invalid_limit(api: Api, limit: str) -> None:
    resp = api.get(f"/brokers/{api.broker()}/orders", params={"limit": limit})
    assert_error(resp, 400, "validation_error", LIMIT_MESSAGE)


def test_validation_precedes_unknown_broker(api: Api) -> None:
    resp = api.get(f"/brokers/{new_broker_id()}/orders", params={"status": "nope"})
    assert_error(resp, 400, "validation_error", STATUS_MESSAGE.format("nope"))


@pytest.mark.parametrize("limit", ["1", "100", "007"])
def test_limit_bounds_accepted(api: Api, limit: str) -> None:
    body = api.listing(api.broker(), limit=limit)
    assert body["limit"] == int(limit)


def test_pagination(api: Api) -> None:
    sym = new_symbol()
    me = api.broker()
    created = [api.limit(me, "bid", sym, 1, f"{i}.00")["order_id"] for i in range(1, 6)]
    newest_first = list(reversed(created))
    pages = [api.listing(me, page=p, limit=2) for p in (1, 2, 3, 4)]
    assert [[o["order_id"] for o in p["orders"]] for p in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
        [],
    ]
    for number, page in enumerate(pages, start=1):
        assert page["total"] == 5
        assert page["page"] == number
        assert page["limit"] == 2
    assert api.listing(me, page=99)["orders"] == []
    assert api.listing(me, page=99)["total"] == 5


def test_pagination_with_filter_total(api: Api) -> None:
    sym = new_symbol()
    me = api.broker()
    ids = [api.limit(me, "bid", sym, 1, "1.00")["order_id"] for _ in range(4)]
    api.cancel(ids[1])
    api.cancel(ids[3])
    body = api.listing(me, status="pending", limit=1, page=2)
    assert body["total"] == 2
    assert [o["order_id"] for o in body["orders"]] == [ids[0]]
    assert api.listing(me, status="cancelled")["total"] == 2


def test_no_liquidity_is_not_listed(api: Api) -> None:
    me = api.broker()
    resp = api.post("/orders", api.market_body(me, "bid", new_symbol(), 5))
    assert resp.status_code == 409
    assert api.listing(me)["total"] == 0


def test_listing_is_per_broker(api: Api) -> None:
    sym = new_symbol()
    a, b = api.broker(), api.broker()
    oa = api.limit(a, "bid", sym, 1, "1.00")
    api.limit(b, "bid", sym, 1, "1.00")
    body = api.listing(a)
    assert [o["order_id"] for o in body["orders"]] == [oa["order_id"]]
    assert body["total"] == 1


def test_listed_price_rendering(api: Api) -> None:
    me = api.broker()
    api.limit(me, "bid", new_symbol(), 1, "150")
    resp = api.get(f"/brokers/{me}/orders")
    assert re.search(r'"price":\s*150\.00[,}\s]', resp.text), resp.text
    assert money(loads(resp.text)["orders"][0]["price"]) == D("150.00")


def test_pagination_beyond_100(api: Api) -> None:
    sym = new_symbol()
    me = api.broker()
    created = [api.limit(me, "bid", sym, 1, "1.00")["order_id"] for _ in range(105)]
    first = api.listing(me, limit=100)
    second = api.listing(me, limit=100, page=2)
    assert first["total"] == second["total"] == 105
    assert [o["order_id"] for o in first["orders"]] == created[::-1][:100]
    assert [o["order_id"] for o in second["orders"]] == created[::-1][100:]
    default = api.listing(me)
    assert [o["order_id"] for o in default["orders"]] == created[::-1][:20]
    assert [o["order_id"] for o in api.listing(me, page=6)["orders"]] == created[::-1][100:]
