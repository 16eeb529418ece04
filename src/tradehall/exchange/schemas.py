"""Response bodies of the Exchange API as msgspec Structs, and renderers from domain records.

The Structs are the single source of truth for both the JSON on the wire and the OpenAPI document.
Money fields are ``Decimal`` values with exactly two places, encoded as JSON numbers (``150.00``);
timestamps are second-granular RFC 3339 strings. Limit and market orders are separate Structs tagged
by ``type``, which gives each exactly its contract keys (market orders have no ``price``,
``expires_at``, ``cancelled_at`` or ``expired_at``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec

from tradehall.core.money import cents_to_decimal
from tradehall.core.timefmt import format_ns
from tradehall.exchange.engine import Quote
from tradehall.exchange.indexes import VwapFigures
from tradehall.exchange.model import CANCELLED, EXPIRED, Broker, Order
from tradehall.exchange.subscriptions import Subscription

__all__ = [
    "BalanceOut",
    "BookOut",
    "BrokerOut",
    "ErrorOut",
    "LimitOrderOut",
    "MarketOrderOut",
    "OrderListOut",
    "PriceOut",
    "QuoteOut",
    "WebhookListOut",
    "render_order",
]

Money = Annotated[
    Decimal,
    msgspec.Meta(
        extra_json_schema={"type": "number", "description": "Amount with exactly 2 decimals"}
    ),
]
Timestamp = Annotated[
    str,
    msgspec.Meta(extra_json_schema={"format": "date-time", "examples": ["2026-02-17T19:00:00Z"]}),
]

_decimals: dict[int, Decimal] = {}
_stamps: dict[int, str] = {}


def money(cents: int) -> Decimal:
    """:func:`cents_to_decimal` through a cache: prices repeat, and a ``Decimal`` (immutable,
    so safely shared) costs more to build than to look up."""
    found = _decimals.get(cents)
    if found is None:
        if len(_decimals) >= 4096:
            _decimals.clear()
        found = _decimals[cents] = cents_to_decimal(cents)
    return found


def stamp(ns: int) -> str:
    """:func:`format_ns` through a cache by second: an order's response formats both its
    creation time and its (often shared) expiry, which defeats a one-entry cache."""
    second = ns // 1_000_000_000
    text = _stamps.get(second)
    if text is None:
        if len(_stamps) >= 4096:
            _stamps.clear()
        text = _stamps[second] = format_ns(ns)
    return text


class ErrorOut(msgspec.Struct):
    error: str
    message: str


class HoldingOut(msgspec.Struct):
    symbol: str
    quantity: int


class BrokerOut(msgspec.Struct):
    broker_id: str
    cash_balance: Money
    holdings: list[HoldingOut]
    created_at: Timestamp


class BalanceHoldingOut(msgspec.Struct):
    symbol: str
    quantity: int
    reserved_quantity: int
    available_quantity: int


class BalanceOut(msgspec.Struct):
    broker_id: str
    cash_balance: Money
    reserved_cash: Money
    available_cash: Money
    holdings: list[BalanceHoldingOut]
    updated_at: Timestamp


class TradeOut(msgspec.Struct):
    trade_id: str
    price: Money
    quantity: int
    executed_at: Timestamp


class LimitOrderOut(msgspec.Struct, tag_field="type", tag="limit"):
    order_id: str
    broker_id: str
    document_number: str
    side: str
    symbol: str
    price: Money
    quantity: int
    filled_quantity: int
    remaining_quantity: int
    cancelled_quantity: int
    status: str
    expires_at: Timestamp
    created_at: Timestamp
    cancelled_at: Timestamp | None
    expired_at: Timestamp | None
    average_price: Money | None
    trades: list[TradeOut]


class MarketOrderOut(msgspec.Struct, tag_field="type", tag="market"):
    order_id: str
    broker_id: str
    document_number: str
    side: str
    symbol: str
    quantity: int
    filled_quantity: int
    remaining_quantity: int
    cancelled_quantity: int
    status: str
    created_at: Timestamp
    average_price: Money | None
    trades: list[TradeOut]


class LimitOrderSummary(msgspec.Struct, tag_field="type", tag="limit"):
    order_id: str
    document_number: str
    symbol: str
    side: str
    price: Money
    quantity: int
    filled_quantity: int
    remaining_quantity: int
    cancelled_quantity: int
    status: str
    average_price: Money | None
    created_at: Timestamp


class MarketOrderSummary(msgspec.Struct, tag_field="type", tag="market"):
    order_id: str
    document_number: str
    symbol: str
    side: str
    quantity: int
    filled_quantity: int
    remaining_quantity: int
    cancelled_quantity: int
    status: str
    average_price: Money | None
    created_at: Timestamp


class OrderListOut(msgspec.Struct):
    orders: list[LimitOrderSummary | MarketOrderSummary]
    total: int
    page: int
    limit: int


class PriceOut(msgspec.Struct):
    symbol: str
    current_price: Money | None
    window: str
    trades_in_window: int
    last_trade_at: Timestamp | None


class LevelOut(msgspec.Struct):
    price: Money
    total_quantity: int
    order_count: int


class BookOut(msgspec.Struct):
    symbol: str
    bids: list[LevelOut]
    asks: list[LevelOut]
    spread: Money | None
    snapshot_at: Timestamp


class QuoteLevelOut(msgspec.Struct):
    price: Money
    quantity: int


class QuoteOut(msgspec.Struct):
    symbol: str
    side: str
    quantity_requested: int
    quantity_available: int
    fully_fillable: bool
    estimated_total: Money | None
    estimated_average_price: Money | None
    price_levels: list[QuoteLevelOut]
    quoted_at: Timestamp


class WebhookOut(msgspec.Struct):
    webhook_id: str
    broker_id: str
    event: str
    url: str
    created_at: Timestamp
    updated_at: Timestamp


class WebhookListOut(msgspec.Struct):
    webhooks: list[WebhookOut]


class HealthOut(msgspec.Struct):
    status: str


# ---------------------------------------------------------------------- renderers


def _opt_money(cents: int | None) -> Decimal | None:
    return None if cents is None else money(cents)


def _opt_time(ns: int | None) -> str | None:
    return None if ns is None else stamp(ns)


def render_broker(broker: Broker) -> BrokerOut:
    holdings = [HoldingOut(s, h.quantity) for s, h in sorted(broker.holdings.items())]
    return BrokerOut(broker.broker_id, money(broker.cash), holdings, stamp(broker.created_at))


def render_balance(broker: Broker) -> BalanceOut:
    holdings = [
        BalanceHoldingOut(s, h.quantity, h.reserved, h.quantity - h.reserved)
        for s, h in sorted(broker.holdings.items())
    ]
    return BalanceOut(
        broker.broker_id,
        money(broker.cash),
        money(broker.reserved_cash),
        money(broker.cash - broker.reserved_cash),
        holdings,
        stamp(broker.updated_at),
    )


def render_order(order: Order) -> LimitOrderOut | MarketOrderOut:
    """An order's answer. Reads each field once and skips the empty trade list's comprehension:
    this renders every ``POST /orders`` (bytes unchanged, ``test_ex_schemas.py``)."""
    log = order.trade_log
    trades = (
        [TradeOut(t.trade_id, money(t.price), t.quantity, stamp(t.executed_at)) for t in log]
        if log
        else []
    )
    filled = order.filled
    average = money(order.notional // filled) if filled else None
    quantity, remaining = order.quantity, order.remaining
    price, expires_at = order.price, order.expires_at
    if price is not None and expires_at is not None:
        status, closed = order.status, order.closed_at
        return LimitOrderOut(
            order.order_id,
            order.broker_id,
            order.document_number,
            order.side,
            order.symbol,
            money(price),
            quantity,
            filled,
            remaining,
            quantity - filled - remaining,
            status,
            stamp(expires_at),
            stamp(order.created_at),
            stamp(closed) if closed is not None and status == CANCELLED else None,
            stamp(closed) if closed is not None and status == EXPIRED else None,
            average,
            trades,
        )
    return MarketOrderOut(
        order.order_id,
        order.broker_id,
        order.document_number,
        order.side,
        order.symbol,
        quantity,
        filled,
        remaining,
        quantity - filled - remaining,
        order.status,
        stamp(order.created_at),
        average,
        trades,
    )


def render_summary(order: Order) -> LimitOrderSummary | MarketOrderSummary:
    average = _opt_money(order.average_price)
    if order.price is not None:
        return LimitOrderSummary(
            order.order_id,
            order.document_number,
            order.symbol,
            order.side,
            money(order.price),
            order.quantity,
            order.filled,
            order.remaining,
            order.cancelled_quantity,
            order.status,
            average,
            stamp(order.created_at),
        )
    return MarketOrderSummary(
        order.order_id,
        order.document_number,
        order.symbol,
        order.side,
        order.quantity,
        order.filled,
        order.remaining,
        order.cancelled_quantity,
        order.status,
        average,
        stamp(order.created_at),
    )


def render_price(symbol: str, figures: VwapFigures, window: str) -> PriceOut:
    return PriceOut(
        symbol,
        _opt_money(figures.current_price),
        window,
        figures.trades_in_window,
        _opt_time(figures.last_trade_at),
    )


def render_quote(symbol: str, side: str, quote: Quote, now: int) -> QuoteOut:
    available = quote.quantity_available
    return QuoteOut(
        symbol,
        side,
        quote.quantity_requested,
        available,
        available == quote.quantity_requested,
        money(quote.total) if available else None,
        money(quote.total // available) if available else None,
        [QuoteLevelOut(money(price), qty) for price, qty in quote.levels],
        stamp(now),
    )


def render_webhook(sub: Subscription) -> WebhookOut:
    return WebhookOut(
        sub.webhook_id,
        sub.broker_id,
        sub.event,
        sub.url,
        stamp(sub.created_at),
        stamp(sub.updated_at),
    )
