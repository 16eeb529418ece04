"""§5 webhook deliveries: headers, envelope, payloads, one per trade per side, emission rules."""

from __future__ import annotations

import re
import time
from typing import Any

from exconf_support import (
    EVENTS,
    Api,
    D,
    Delivery,
    WebhookReceiver,
    is_uuid,
    money,
    new_symbol,
    ts,
)

TRADE_DATA_KEYS = {
    "trade_id",
    "broker_id",
    "order_id",
    "symbol",
    "side",
    "trade_price",
    "trade_quantity",
    "order_status",
    "order_filled_quantity",
    "order_remaining_quantity",
}
ORDER_DATA_KEYS = {
    "broker_id",
    "order_id",
    "symbol",
    "side",
    "price",
    "quantity",
    "filled_quantity",
    "cancelled_quantity",
    "remaining_quantity",
    "status",
}
GRACE = 0.4


def _hooks_by_event(hooks: list[dict[str, Any]]) -> dict[str, str]:
    return {h["event"]: h["webhook_id"] for h in hooks}


def _check_envelope(delivery: Delivery, event: str, webhook_id: str) -> dict[str, Any]:
    assert delivery.method == "POST"
    assert delivery.headers["content-type"].startswith("application/json")
    assert is_uuid(delivery.headers["x-delivery-id"])
    assert delivery.headers["x-webhook-id"] == webhook_id
    assert delivery.headers["x-event-type"] == event
    body: dict[str, Any] = delivery.body
    assert set(body) == {"event", "timestamp", "data"}
    assert body["event"] == event
    ts(body["timestamp"])
    return body


def _sentinel_cancel(api: Api, broker_id: str) -> dict[str, Any]:
    """Place and cancel a tiny bid: its order.cancelled marks the end of earlier deliveries."""
    order = api.limit(broker_id, "bid", new_symbol(), 1, "0.01")
    return api.cancel(order["order_id"])


def test_trade_executed_both_sides(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 10})
    buyer = api.broker()
    s_url, b_url = receiver.new_url(), receiver.new_url()
    s_hooks = _hooks_by_event(api.subscribe(seller, s_url, list(EVENTS)))
    b_hooks = _hooks_by_event(api.subscribe(buyer, b_url, list(EVENTS)))
    ask = api.limit(seller, "ask", sym, 10, "5.00")
    bid = api.limit(buyer, "bid", sym, 10, "6.00")
    trade = bid["trades"][0]

    [s_delivery] = receiver.wait(s_url, 1)
    [b_delivery] = receiver.wait(b_url, 1)
    for delivery, hooks, order, broker_id, side in (
        (s_delivery, s_hooks, ask, seller, "ask"),
        (b_delivery, b_hooks, bid, buyer, "bid"),
    ):
        body = _check_envelope(delivery, "trade.executed", hooks["trade.executed"])
        assert body["timestamp"] == trade["executed_at"]
        data = body["data"]
        assert set(data) == TRADE_DATA_KEYS
        assert data == {
            "trade_id": trade["trade_id"],
            "broker_id": broker_id,
            "order_id": order["order_id"],
            "symbol": sym,
            "side": side,
            "trade_price": D("5.00"),
            "trade_quantity": 10,
            "order_status": "filled",
            "order_filled_quantity": 10,
            "order_remaining_quantity": 0,
        }
        money(data["trade_price"])
        assert re.search(rb'"trade_price":\s*5\.00[,}\s]', delivery.raw), delivery.raw
    assert s_delivery.headers["x-delivery-id"] != b_delivery.headers["x-delivery-id"]


def test_one_delivery_per_trade_with_state_after_each(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    sellers = [api.broker(holdings={sym: q}) for q in (10, 20, 30)]
    s_urls = [receiver.new_url() for _ in sellers]
    for seller, url in zip(sellers, s_urls, strict=True):
        api.subscribe(seller, url, ["trade.executed"])
    asks = [
        api.limit(seller, "ask", sym, q, p)
        for seller, q, p in zip(sellers, (10, 20, 30), ("1.00", "2.00", "3.00"), strict=True)
    ]
    buyer = api.broker()
    b_url = receiver.new_url()
    api.subscribe(buyer, b_url, ["trade.executed"])
    bid = api.limit(buyer, "bid", sym, 70, "3.00")
    assert bid["status"] == "partially_filled"

    got = receiver.wait(b_url, 3)
    assert len(got) == 3
    data = [d.body["data"] for d in got]
    # arrival follows match order (price-time priority)
    assert [d["trade_id"] for d in data] == [t["trade_id"] for t in bid["trades"]]
    assert [d["trade_price"] for d in data] == [D("1.00"), D("2.00"), D("3.00")]
    assert [d["trade_quantity"] for d in data] == [10, 20, 30]
    assert [d["order_filled_quantity"] for d in data] == [10, 30, 60]
    assert [d["order_remaining_quantity"] for d in data] == [60, 40, 10]
    assert [d["order_status"] for d in data] == ["partially_filled"] * 3
    assert {d["order_id"] for d in data} == {bid["order_id"]}
    for url, ask, trade in zip(s_urls, asks, bid["trades"], strict=True):
        [delivery] = receiver.wait(url, 1)
        d = delivery.body["data"]
        assert d["order_id"] == ask["order_id"]
        assert d["trade_id"] == trade["trade_id"]
        assert d["side"] == "ask"
        assert d["order_status"] == "filled"
        assert d["order_remaining_quantity"] == 0
    time.sleep(GRACE)
    assert len(receiver.at(b_url)) == 3


def test_resting_order_state_per_pass(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 50})
    url = receiver.new_url()
    api.subscribe(seller, url, ["trade.executed"])
    ask = api.limit(seller, "ask", sym, 50, "4.00")
    api.limit(api.broker(), "bid", sym, 20, "4.00")
    receiver.wait(url, 1)
    api.market(api.broker(), "bid", sym, 30)
    got = receiver.wait(url, 2)
    data = [d.body["data"] for d in got]
    assert [
        (d["order_status"], d["order_filled_quantity"], d["order_remaining_quantity"]) for d in data
    ] == [
        ("partially_filled", 20, 30),
        ("filled", 50, 0),
    ]
    assert all(d["order_id"] == ask["order_id"] for d in data)


def test_market_order_transient_partial_and_no_ioc_webhook(
    api: Api, receiver: WebhookReceiver
) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 10}), "ask", sym, 10, "2.00")
    buyer = api.broker()
    url = receiver.new_url()
    api.subscribe(buyer, url, list(EVENTS))
    order = api.market(buyer, "bid", sym, 15)
    assert order["status"] == "cancelled"
    [trade_delivery] = receiver.wait(url, 1)
    data = trade_delivery.body["data"]
    assert trade_delivery.headers["x-event-type"] == "trade.executed"
    assert data["order_id"] == order["order_id"]
    assert data["order_status"] == "partially_filled"
    assert data["order_filled_quantity"] == 10
    assert data["order_remaining_quantity"] == 5
    sentinel = _sentinel_cancel(api, buyer)
    got = receiver.wait(url, 2)
    time.sleep(GRACE)
    got = receiver.at(url)
    assert [d.headers["x-event-type"] for d in got] == ["trade.executed", "order.cancelled"]
    assert got[1].body["data"]["order_id"] == sentinel["order_id"]


def test_order_cancelled_payload(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    buyer = api.broker()
    trade_url, cancel_url = receiver.new_url(), receiver.new_url()
    t_hook = api.subscribe(buyer, trade_url, ["trade.executed"])[0]
    c_hook = api.subscribe(buyer, cancel_url, ["order.cancelled"])[0]
    bid = api.limit(buyer, "bid", sym, 100, "20.00")
    api.limit(api.broker(holdings={sym: 30}), "ask", sym, 30, "19.50")
    cancelled = api.cancel(bid["order_id"])
    [delivery] = receiver.wait(cancel_url, 1)
    body = _check_envelope(delivery, "order.cancelled", c_hook["webhook_id"])
    assert body["timestamp"] == cancelled["cancelled_at"]
    assert set(body["data"]) == ORDER_DATA_KEYS
    assert body["data"] == {
        "broker_id": buyer,
        "order_id": bid["order_id"],
        "symbol": sym,
        "side": "bid",
        "price": D("20.00"),
        "quantity": 100,
        "filled_quantity": 30,
        "cancelled_quantity": 70,
        "remaining_quantity": 0,
        "status": "cancelled",
    }
    money(body["data"]["price"])
    [trade] = receiver.wait(trade_url, 1)
    _check_envelope(trade, "trade.executed", t_hook["webhook_id"])
    assert trade.body["data"]["trade_price"] == D("19.50")
    time.sleep(GRACE)
    assert len(receiver.at(trade_url)) == 1
    assert len(receiver.at(cancel_url)) == 1


def test_ask_cancel_payload(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 9})
    url = receiver.new_url()
    api.subscribe(seller, url, ["order.cancelled"])
    ask = api.limit(seller, "ask", sym, 9, "150")
    api.cancel(ask["order_id"])
    [delivery] = receiver.wait(url, 1)
    data = delivery.body["data"]
    assert data["side"] == "ask"
    assert data["cancelled_quantity"] == 9
    assert data["filled_quantity"] == 0
    assert re.search(rb'"price":\s*150\.00[,}\s]', delivery.raw), delivery.raw


def test_self_trade_notifies_both_orders(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    me = api.broker(holdings={sym: 5})
    url = receiver.new_url()
    api.subscribe(me, url, ["trade.executed"])
    ask = api.limit(me, "ask", sym, 5, "3.00")
    bid = api.limit(me, "bid", sym, 5, "3.00")
    got = receiver.wait(url, 2)
    data = sorted((d.body["data"] for d in got), key=lambda d: str(d["side"]))
    assert [(d["side"], d["order_id"]) for d in data] == [
        ("ask", ask["order_id"]),
        ("bid", bid["order_id"]),
    ]
    assert data[0]["trade_id"] == data[1]["trade_id"]
    assert len({d.headers["x-delivery-id"] for d in got}) == 2


def test_only_subscribed_events_are_sent(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    buyer = api.broker()
    url = receiver.new_url()
    api.subscribe(buyer, url, ["order.cancelled"])
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    _sentinel_cancel(api, buyer)
    receiver.wait(url, 1)
    time.sleep(GRACE)
    assert [d.headers["x-event-type"] for d in receiver.at(url)] == ["order.cancelled"]


def test_deleted_subscription_stops_deliveries(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 10})
    buyer = api.broker()
    s_url, b_url = receiver.new_url(), receiver.new_url()
    s_hook = api.subscribe(seller, s_url, ["trade.executed"])[0]
    api.subscribe(buyer, b_url, ["trade.executed"])
    api.limit(seller, "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    receiver.wait(s_url, 1)
    assert api.delete(f"/webhooks/{s_hook['webhook_id']}").status_code == 204
    api.limit(seller, "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    assert len(receiver.wait(b_url, 2)) == 2
    time.sleep(GRACE)
    assert len(receiver.at(s_url)) == 1


def test_updated_url_receives_later_events(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    buyer = api.broker()
    old_url, new_url = receiver.new_url(), receiver.new_url()
    api.subscribe(buyer, old_url, ["trade.executed"])
    api.subscribe(buyer, new_url, ["trade.executed"])
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    assert len(receiver.wait(new_url, 1)) == 1
    time.sleep(GRACE)
    assert receiver.at(old_url) == []


def test_unsubscribed_counterparty_gets_nothing(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 5})
    buyer = api.broker()
    url = receiver.new_url()
    api.subscribe(buyer, url, ["trade.executed"])
    api.limit(seller, "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    [delivery] = receiver.wait(url, 1)
    assert delivery.body["data"]["broker_id"] == buyer
    time.sleep(GRACE)
    with receiver.lock:
        others = [d for d in receiver.deliveries if seller.encode() in d.raw]
    assert all(d.body["data"]["broker_id"] != seller for d in others)


def test_long_sweep_delivers_every_trade_in_match_order(
    api: Api, receiver: WebhookReceiver
) -> None:
    sym = new_symbol()
    seller = api.broker(holdings={sym: 15})
    s_url = receiver.new_url()
    api.subscribe(seller, s_url, ["trade.executed"])
    asks = [api.limit(seller, "ask", sym, 1, f"{10 + i % 5}.00") for i in range(15)]
    buyer = api.broker()
    b_url = receiver.new_url()
    api.subscribe(buyer, b_url, ["trade.executed"])
    order = api.market(buyer, "bid", sym, 15)
    got = receiver.wait(b_url, 15)
    assert [d.body["data"]["trade_id"] for d in got] == [t["trade_id"] for t in order["trades"]]
    assert [d.body["data"]["order_filled_quantity"] for d in got] == list(range(1, 16))
    assert [d.body["data"]["order_status"] for d in got] == ["partially_filled"] * 14 + ["filled"]
    # price-time priority: all 10.00 asks (oldest first), then 11.00, ...
    expected_asks = sorted(asks, key=lambda a: (a["price"], asks.index(a)))
    s_got = receiver.wait(s_url, 15)
    assert [d.body["data"]["order_id"] for d in s_got] == [a["order_id"] for a in expected_asks]


def test_subscription_at_event_time_decides(api: Api, receiver: WebhookReceiver) -> None:
    """Deliveries queued behind a slow one still go where the subscription pointed at the time."""
    sym = new_symbol()
    seller = api.broker(holdings={sym: 10})
    buyer = api.broker()
    b_old, b_new, s_url = receiver.new_url(), receiver.new_url(), receiver.new_url()
    receiver.delay(b_old, 1.0)
    receiver.delay(s_url, 1.0)
    api.subscribe(buyer, b_old, ["trade.executed"])
    s_hook = api.subscribe(seller, s_url, ["trade.executed"])[0]
    for _ in range(2):
        api.limit(seller, "ask", sym, 1, "1.00")
        api.limit(buyer, "bid", sym, 1, "1.00")
    api.subscribe(buyer, b_new, ["trade.executed"])  # URL change after both events
    assert api.delete(f"/webhooks/{s_hook['webhook_id']}").status_code == 204
    assert len(receiver.wait(b_old, 2, timeout=8.0)) == 2
    assert len(receiver.wait(s_url, 2, timeout=8.0)) == 2
    assert receiver.at(b_new) == []
    # later events follow the new subscription state
    api.limit(seller, "ask", sym, 1, "1.00")
    api.limit(buyer, "bid", sym, 1, "1.00")
    assert len(receiver.wait(b_new, 1)) == 1
    time.sleep(GRACE)
    assert len(receiver.at(s_url)) == 2
    assert len(receiver.at(b_old)) == 2
