"""§4.3 expiration by the background sweep (server runs with a 100ms interval), §5 order.expired.

Kept to a single time-based scenario: several orders expire together ~1 s after submission and
every consequence is checked once they are swept.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from exconf_support import (
    Api,
    D,
    WebhookReceiver,
    assert_error,
    expires_in,
    money,
    new_symbol,
    truncate_ts,
)


def _wait_status(api: Api, order_id: str, status: str, timeout: float = 6.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        order = api.order(order_id)
        if order["status"] == status or time.monotonic() > deadline:
            return order
        time.sleep(0.05)


def test_expiry_scenario(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    bidder = api.broker(cash="1000.00")
    seller = api.broker(holdings={sym: 50})
    taker = api.broker()
    keeper = api.broker()
    b_url, s_url = receiver.new_url(), receiver.new_url()
    b_hook = api.subscribe(bidder, b_url, ["order.expired", "order.cancelled"])[0]
    api.subscribe(seller, s_url, ["order.expired"])
    bidder_created = api.balance(bidder)["updated_at"]

    later = api.limit(keeper, "bid", sym, 1, "1.00", expires_at=expires_in(30))
    deadline = expires_in(1.3)
    filled_first = api.limit(bidder, "bid", sym, 2, "8.00", expires_at=deadline)
    api.limit(api.broker(holdings={sym: 2}), "ask", sym, 2, "8.00")
    cancelled_first = api.limit(bidder, "bid", sym, 1, "7.00", expires_at=deadline)
    api.cancel(cancelled_first["order_id"])
    pending = api.limit(bidder, "bid", sym, 10, "10.00", expires_at=deadline)
    partial = api.limit(seller, "ask", sym, 50, "50.00", expires_at=deadline)
    api.limit(taker, "bid", sym, 20, "50.00")
    stays = api.limit(keeper, "bid", sym, 3, "9.00")
    assert money(api.balance(bidder)["available_cash"]) == D("884.00")
    assert pending["expires_at"] == truncate_ts(deadline)

    p = _wait_status(api, pending["order_id"], "expired")
    q = _wait_status(api, partial["order_id"], "expired")
    assert p["status"] == "expired", p
    assert q["status"] == "expired", q

    # order fields
    assert p["expired_at"] == p["expires_at"] == truncate_ts(deadline)
    assert p["cancelled_at"] is None
    assert p["remaining_quantity"] == 0 and p["cancelled_quantity"] == 10
    assert p["filled_quantity"] == 0 and p["average_price"] is None
    assert q["expired_at"] == truncate_ts(deadline)
    assert (q["filled_quantity"], q["cancelled_quantity"], q["remaining_quantity"]) == (20, 30, 0)
    assert money(q["average_price"]) == D("50.00")
    assert api.order(stays["order_id"])["status"] == "pending"
    assert api.order(later["order_id"])["status"] == "pending"
    assert api.order(filled_first["order_id"])["status"] == "filled"
    assert api.order(cancelled_first["order_id"])["status"] == "cancelled"

    # reservations released, updated_at refreshed
    bal = api.balance(bidder)
    assert money(bal["reserved_cash"]) == D("0.00")
    assert money(bal["cash_balance"]) == D("984.00")
    assert money(bal["available_cash"]) == D("984.00")
    assert bal["updated_at"] > bidder_created
    assert api.holding(seller, sym) == {
        "symbol": sym,
        "quantity": 30,
        "reserved_quantity": 0,
        "available_quantity": 30,
    }

    # book and listing
    book = api.book(sym)
    assert [(lv["price"], lv["total_quantity"]) for lv in book["bids"]] == [
        (D("9.00"), 3),
        (D("1.00"), 1),
    ]
    assert book["asks"] == []
    listed = api.listing(bidder, status="expired")
    assert [o["order_id"] for o in listed["orders"]] == [pending["order_id"]]
    assert listed["total"] == 1
    assert api.listing(bidder, status="pending")["total"] == 0

    # cancel refused
    for order in (p, q):
        oid = order["order_id"]
        assert_error(
            api.delete(f"/orders/{oid}"),
            409,
            "order_not_cancellable",
            f"Order {oid} is already expired and cannot be cancelled",
        )

    # an expired order never matches again
    late = api.limit(api.broker(holdings={sym: 10}), "ask", sym, 10, "10.00")
    assert late["trades"] == [] and late["status"] == "pending"

    # webhooks
    got = receiver.wait(b_url, 2)
    assert [d.headers["x-event-type"] for d in got] == ["order.cancelled", "order.expired"]
    delivery = got[1]
    assert delivery.headers["x-event-type"] == "order.expired"
    assert delivery.headers["x-webhook-id"] == b_hook["webhook_id"]
    body = delivery.body
    assert body["event"] == "order.expired"
    assert body["timestamp"] == p["expired_at"]
    assert body["data"] == {
        "broker_id": bidder,
        "order_id": pending["order_id"],
        "symbol": sym,
        "side": "bid",
        "price": D("10.00"),
        "quantity": 10,
        "filled_quantity": 0,
        "cancelled_quantity": 10,
        "remaining_quantity": 0,
        "status": "expired",
    }
    money(body["data"]["price"])
    [s_delivery] = receiver.wait(s_url, 1)
    assert s_delivery.body["data"]["status"] == "expired"
    assert s_delivery.body["data"]["filled_quantity"] == 20
    assert s_delivery.body["data"]["cancelled_quantity"] == 30
    time.sleep(0.3)
    assert len(receiver.at(b_url)) == 2  # nothing for the filled order, no cancel for expiry


def test_expires_at_one_second_ago_is_rejected(api: Api) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = api.limit_body(api.broker(), "bid", new_symbol(), 1, "1.00", expires_at=past)
    assert_error(
        api.post("/orders", body), 400, "validation_error", "expires_at must be a future timestamp"
    )


def test_expired_notifications_follow_expires_at(api: Api, receiver: WebhookReceiver) -> None:
    """§4.3: the sweep handles due orders in ascending expires_at (placement order differs)."""
    sym = new_symbol()
    bidder = api.broker()
    url = receiver.new_url()
    api.subscribe(bidder, url, ["order.expired"])
    base = datetime.now(UTC) + timedelta(seconds=1.0)
    offsets_ms = [40, 0, 20, 60]
    placed = []
    for offset in offsets_ms:
        moment = base + timedelta(milliseconds=offset)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        placed.append(api.limit(bidder, "bid", sym, 1, "1.00", expires_at=stamp))
    got = receiver.wait(url, 4, timeout=8.0)
    assert len(got) == 4
    by_deadline = [o["order_id"] for _, o in sorted(zip(offsets_ms, placed, strict=True))]
    assert [d.body["data"]["order_id"] for d in got] == by_deadline
    assert all(d.body["data"]["status"] == "expired" for d in got)


def test_same_expires_at_text_is_refused_once_past(api: Api) -> None:
    """ "future" is judged at each submission, even for a timestamp text seen before."""
    broker_id = api.broker()
    sym = new_symbol()
    stamp = expires_in(0.6)
    assert api.limit(broker_id, "bid", sym, 1, "1.00", expires_at=stamp)["status"] == "pending"
    time.sleep(0.8)
    body = api.limit_body(broker_id, "bid", sym, 1, "1.00", expires_at=stamp)
    assert_error(
        api.post("/orders", body), 400, "validation_error", "expires_at must be a future timestamp"
    )
