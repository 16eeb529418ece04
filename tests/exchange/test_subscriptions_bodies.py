"""Webhook bodies from :func:`deliveries_for` are exactly the contract's JSON (§5).

The reference here builds each body the plain way -- a dict per payload, prices as
:class:`~decimal.Decimal` with two places, encoded as JSON numbers -- so any faster construction
in ``subscriptions.py`` must produce the same bytes, for prices from a cent to far beyond 64 bits,
and for ids and symbols that need JSON escaping.
"""

from __future__ import annotations

import random
from decimal import Decimal

import msgspec

from tradehall.core.ids import SequentialIds
from tradehall.core.timefmt import format_ns
from tradehall.exchange.events import EngineEvent, OrderClosed, OrderFilled, TradeExecuted
from tradehall.exchange.subscriptions import EVENT_TYPES, SubscriptionRegistry, deliveries_for

T0 = 1_790_000_000 * 10**9
_reference = msgspec.json.Encoder(decimal_format="number")


def price(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def kind_of(event: OrderFilled | OrderClosed) -> str:
    return "trade.executed" if isinstance(event, OrderFilled) else event.event


def reference_body(event: OrderFilled | OrderClosed) -> bytes:
    if isinstance(event, OrderFilled):
        data: dict[str, object] = {
            "trade_id": event.trade_id,
            "broker_id": event.broker_id,
            "order_id": event.order_id,
            "symbol": event.symbol,
            "side": event.side,
            "trade_price": price(event.price),
            "trade_quantity": event.quantity,
            "order_status": event.order_status,
            "order_filled_quantity": event.order_filled_quantity,
            "order_remaining_quantity": event.order_remaining_quantity,
        }
        kind, at = "trade.executed", event.executed_at
    else:
        data = {
            "broker_id": event.broker_id,
            "order_id": event.order_id,
            "symbol": event.symbol,
            "side": event.side,
            "price": price(event.price),
            "quantity": event.quantity,
            "filled_quantity": event.filled_quantity,
            "cancelled_quantity": event.cancelled_quantity,
            "remaining_quantity": 0,
            "status": event.status,
        }
        kind, at = event.event, event.at
    return _reference.encode({"event": kind, "timestamp": format_ns(at), "data": data})


PRICES = [1, 5, 9, 10, 99, 100, 101, 10_050, 99_999, 10**12 + 7, 10**20 + 1, 10**30]
BROKERS = ["b0", 'q"uote', "back\\slash", "ünï", "tab\there"]


def events(rng: random.Random) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    for step in range(300):
        cents = rng.choice(PRICES) if rng.random() < 0.5 else rng.randint(1, 10**7)
        broker = rng.choice(BROKERS)
        order_id = f"o{step}"
        symbol = rng.choice(["S", "Sÿ", 'S"'])
        side = rng.choice(("bid", "ask"))
        at = T0 + rng.randint(0, 10**12)
        quantity = rng.randint(1, 10 ** rng.randint(1, 25))
        if rng.random() < 0.3:
            out.append(TradeExecuted(symbol, f"t{step}", cents, quantity, side, at))
        elif rng.random() < 0.6:
            status = rng.choice(("filled", "partially_filled"))
            out.append(
                OrderFilled(
                    f"t{step}", broker, order_id, symbol, side, cents, quantity, status, 3, 9, at
                )
            )
        else:
            kind = rng.choice(("order.cancelled", "order.expired"))
            status = "cancelled" if kind == "order.cancelled" else "expired"
            out.append(
                OrderClosed(kind, broker, order_id, symbol, side, cents, quantity, 2, 7, status, at)
            )
    return out


def test_bodies_are_the_plain_json_of_the_contract() -> None:
    registry = SubscriptionRegistry(SequentialIds(1000))
    for broker in BROKERS[:-1]:  # the last broker subscribes to nothing
        registry.upsert(broker, f"http://hooks.test/{broker}", EVENT_TYPES, T0)
    registry.delete(registry.lookup("b0", "order.expired").webhook_id)  # type: ignore[union-attr]
    stream = events(random.Random(5))
    ids = SequentialIds()
    deliveries = deliveries_for(stream, registry, ids)
    wanted = [
        e
        for e in stream
        if isinstance(e, OrderFilled | OrderClosed) and registry.lookup(e.broker_id, kind_of(e))
    ]
    assert len(deliveries) == len(wanted) > 100
    for number, (delivery, event) in enumerate(zip(deliveries, wanted, strict=True), start=1):
        kind = kind_of(event)
        sub = registry.lookup(event.broker_id, kind)
        assert sub is not None
        assert delivery.body == reference_body(event)
        assert delivery.delivery_id == f"00000000-0000-4000-8000-{number:012x}"  # in event order
        assert (delivery.webhook_id, delivery.event_type, delivery.url) == (
            sub.webhook_id,
            kind,
            sub.url,
        )


def test_a_fill_body_in_full() -> None:
    registry = SubscriptionRegistry(SequentialIds(50))
    (sub,), _ = registry.upsert("b0", "http://hooks.test/b0", ["trade.executed"], T0)
    fill = OrderFilled("t1", "b0", "o1", "AAA", "bid", 14_860, 3, "partially_filled", 3, 2, T0)
    (delivery,) = deliveries_for([fill], registry, SequentialIds())
    assert delivery.body == (
        b'{"event":"trade.executed","timestamp":"2026-09-21T14:13:20Z","data":{"trade_id":"t1",'
        b'"broker_id":"b0","order_id":"o1","symbol":"AAA","side":"bid","trade_price":148.60,'
        b'"trade_quantity":3,"order_status":"partially_filled","order_filled_quantity":3,'
        b'"order_remaining_quantity":2}}'
    )
    assert delivery.webhook_id == sub.webhook_id


def test_no_subscriptions_no_deliveries_and_no_ids() -> None:
    ids = SequentialIds()
    fill = OrderFilled("t1", "b0", "o1", "AAA", "bid", 100, 3, "filled", 3, 0, T0)
    assert deliveries_for([fill], SubscriptionRegistry(SequentialIds()), ids) == []
    assert ids.new_id() == "00000000-0000-4000-8000-000000000001"
