"""Serialisable images of the engine's state, for snapshots and the state hash.

Only primary facts are stored -- brokers, every order with its trades, VWAP windows, counters.
Books, the expiry index and the per-broker listing indexes are derived again on restore by
re-adding active limit orders in creation order, which reproduces price-time priority exactly
(within a level, FIFO by creation is the priority order). Records encode as JSON arrays, so an
image of a million orders stays compact, and encoding is deterministic, so equal states give
equal bytes and the :func:`state_hash` can prove that a replay matches a live run.
"""

from __future__ import annotations

import hashlib

import msgspec

__all__ = [
    "BrokerState",
    "EngineState",
    "MarketState",
    "OrderState",
    "SubscriptionState",
    "TradeState",
    "state_hash",
]


class TradeState(msgspec.Struct, array_like=True, frozen=True):
    trade_id: str
    price: int
    quantity: int
    executed_at: int
    buy_order_id: str
    sell_order_id: str


class OrderState(msgspec.Struct, array_like=True, frozen=True):
    order_id: str
    seq: int
    type: str
    broker_id: str
    document_number: str
    side: str
    symbol: str
    quantity: int
    price: int | None
    expires_at: int | None
    created_at: int
    filled: int
    remaining: int
    cancelled_quantity: int
    status: str
    cancelled_at: int | None
    expired_at: int | None
    notional: int
    trades: list[TradeState]


class BrokerState(msgspec.Struct, array_like=True, frozen=True):
    broker_id: str
    cash: int
    reserved_cash: int
    created_at: int
    updated_at: int
    holdings: list[tuple[str, int, int]]  # (symbol, quantity, reserved), in insertion order


class MarketState(msgspec.Struct, array_like=True, frozen=True):
    symbol: str
    window: list[tuple[int, int, int]]  # (executed_at, notional, quantity)
    last_price: int | None
    last_trade_at: int | None


class SubscriptionState(msgspec.Struct, array_like=True, frozen=True):
    webhook_id: str
    broker_id: str
    event: str
    url: str
    created_at: int
    updated_at: int


class EngineState(msgspec.Struct, array_like=True, frozen=True):
    last_ns: int
    seq: int
    trade_count: int
    markets: list[MarketState]
    brokers: list[BrokerState]
    orders: list[OrderState]


_encoder = msgspec.json.Encoder()


def state_hash(engine: EngineState, subscriptions: list[SubscriptionState]) -> str:
    """SHA-256 over books, accounts, orders, trades and subscriptions (hex)."""
    digest = hashlib.sha256(_encoder.encode(engine))
    digest.update(_encoder.encode(subscriptions))
    return digest.hexdigest()
