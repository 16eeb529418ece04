"""``render_order`` (the body of every ``POST /orders``) renders each kind of order exactly.

The renderer reads each field once and takes money ``Decimal``s from a cache; the reference here
is the plain reading of the contract: every key, in order, money with two places.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.core.money import cents_to_decimal
from tradehall.core.timefmt import format_ns
from tradehall.exchange import schemas as out
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.model import Order
from tradehall.exchange.requests import BrokerRequest
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

T0 = 1_790_000_000 * 10**9
EXPIRY = T0 + 3600 * 10**9
encode = msgspec.json.Encoder(decimal_format="number").encode


def _expected(order: Order) -> dict[str, Any]:
    trades = list(order.trade_log or ())
    filled = sum(t.quantity for t in trades)
    average = sum(t.price * t.quantity for t in trades) // filled if filled else None
    body: dict[str, Any] = {
        "type": "limit" if order.price is not None else "market",
        "order_id": order.order_id,
        "broker_id": order.broker_id,
        "document_number": order.document_number,
        "side": order.side,
        "symbol": order.symbol,
    }
    if order.price is not None:
        body["price"] = cents_to_decimal(order.price)
    body |= {
        "quantity": order.quantity,
        "filled_quantity": filled,
        "remaining_quantity": order.remaining,
        "cancelled_quantity": order.quantity - filled - order.remaining,
        "status": order.status,
    }
    if order.price is not None:
        assert order.expires_at is not None
        closed = None if order.closed_at is None else format_ns(order.closed_at)
        body |= {
            "expires_at": format_ns(order.expires_at),
            "created_at": format_ns(order.created_at),
            "cancelled_at": closed if order.status == "cancelled" else None,
            "expired_at": closed if order.status == "expired" else None,
        }
    else:
        body["created_at"] = format_ns(order.created_at)
    body["average_price"] = None if average is None else cents_to_decimal(average)
    body["trades"] = [
        {
            "trade_id": t.trade_id,
            "price": cents_to_decimal(t.price),
            "quantity": t.quantity,
            "executed_at": format_ns(t.executed_at),
        }
        for t in trades
    ]
    return body


def _limit(broker: str, side: str, qty: int, cents: int) -> OrderRequest:
    return OrderRequest("limit", broker, "D1", side, "AAPL", qty, cents, EXPIRY)


async def _orders() -> list[Order]:
    clock = VirtualClock(T0)
    service = ExchangeService(ExchangeSettings(), clock=clock, ids=SequentialIds())
    big = 10**15
    service.register_broker(BrokerRequest("seller", 10**6, [("AAPL", 10**6)]))
    service.register_broker(BrokerRequest("buyer", big, []))
    orders = [service.submit(_limit("seller", "ask", 5, 10_001))]  # rests, then fills
    orders.append(service.submit(_limit("seller", "ask", 50, 10_050)))  # partially filled
    clock.set_ns(T0 + 2 * 10**9)
    orders.append(service.submit(_limit("buyer", "bid", 7, 10_099)))  # takes two levels
    orders.append(service.submit(_limit("buyer", "bid", 3, 1)))  # rests at 0.01
    orders.append(service.cancel(service.submit(_limit("buyer", "bid", 2, 500)).order_id))
    market = OrderRequest("market", "buyer", "M1", "bid", "AAPL", 100)
    orders.append(service.submit(market))  # fills what is left, the rest cancelled
    orders.append(service.submit(OrderRequest("market", "seller", "M2", "ask", "AAPL", 1)))
    partial = OrderRequest("limit", "seller", "D3", "ask", "AAPL", 10, 20_000, EXPIRY * 2)
    orders.append(service.submit(partial))
    orders.append(service.submit(_limit("buyer", "bid", 4, 20_000)))
    expiring = service.submit(_limit("buyer", "bid", 1, 200))
    clock.set_ns(EXPIRY + 10**9)
    service.expire_due()
    orders.append(service.engine.order(expiring.order_id))
    large = OrderRequest("limit", "seller", "D2", "ask", "AAPL", 1, 10**13 + 7, EXPIRY * 2)
    orders.append(service.submit(large))
    return [service.engine.order(o.order_id) for o in orders]


async def test_every_kind_of_order_renders_every_key_in_order() -> None:
    orders = await _orders()
    statuses = {(o.price is not None, o.status) for o in orders}
    assert statuses >= {
        (True, "pending"),
        (True, "partially_filled"),
        (True, "filled"),
        (True, "cancelled"),
        (True, "expired"),
        (False, "filled"),
        (False, "cancelled"),
    }
    for order in orders:
        rendered = encode(out.render_order(order))
        assert rendered == encode(_expected(order)), order
        decoded = msgspec.json.decode(rendered)
        assert list(decoded) == list(_expected(order))


@pytest.mark.parametrize("cents", [0, 1, 10, 99, 100, 12_345, 10**17, 10**30 + 1, -5])
def test_money_is_the_two_place_decimal_every_time(cents: int) -> None:
    first, again = out.money(cents), out.money(cents)
    assert first == cents_to_decimal(cents) == Decimal(cents) / 100
    assert str(first) == str(cents_to_decimal(cents))
    assert again is first  # cached: prices repeat
