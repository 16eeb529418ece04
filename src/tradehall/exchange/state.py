"""Serialisable images of the engine's state, for snapshots and the state hash.

Only primary facts are stored -- brokers, every order with its trades, VWAP windows, counters.
Books, the expiry index and the per-broker listing indexes are derived again on restore by
re-adding active limit orders in creation order, which reproduces price-time priority exactly
(within a level, FIFO by creation is the priority order). Records encode as JSON arrays, so an
image of a million orders stays compact, and encoding is deterministic, so equal states give
equal bytes and the :func:`state_hash` can prove that a replay matches a live run.
:func:`order_state` and :func:`order_from_state` convert one order each way.
"""

from __future__ import annotations

import hashlib

import msgspec

from tradehall.exchange.model import TRADE_LOG_TUPLE_MAX, Order, Trade

__all__ = [
    "BrokerState",
    "EngineState",
    "MarketState",
    "OrderState",
    "SubscriptionState",
    "TradeState",
    "order_from_state",
    "order_state",
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


def order_state(o: Order, seq: int) -> OrderState:
    """The image of one order; ``seq`` is its creation number."""
    return OrderState(
        o.order_id,
        seq,
        o.type,
        o.broker_id,
        o.document_number,
        o.side,
        o.symbol,
        o.quantity,
        o.price,
        o.expires_at,
        o.created_at,
        o.filled,
        o.remaining,
        o.cancelled_quantity,
        o.status,
        o.cancelled_at,
        o.expired_at,
        o.notional,
        [
            TradeState(
                t.trade_id, t.price, t.quantity, t.executed_at, t.buy_order_id, t.sell_order_id
            )
            for t in o.trades
        ],
    )


def order_from_state(s: OrderState) -> Order:
    """An order rebuilt from its image (derived fields are derived again)."""
    return Order(
        order_id=s.order_id,
        type="limit" if s.type == "limit" else "market",
        broker_id=s.broker_id,
        document_number=s.document_number,
        side="bid" if s.side == "bid" else "ask",
        symbol=s.symbol,
        quantity=s.quantity,
        price=s.price,
        expires_at=s.expires_at,
        created_at=s.created_at,
        remaining=s.remaining,
        filled=s.filled,
        status=s.status,
        closed_at=s.cancelled_at if s.cancelled_at is not None else s.expired_at,
        trade_log=_trade_log(s.trades),
    )


def _trade_log(states: list[TradeState]) -> tuple[Trade, ...] | list[Trade] | None:
    trades = [
        Trade(t.trade_id, t.price, t.quantity, t.executed_at, t.buy_order_id, t.sell_order_id)
        for t in states
    ]
    if not trades:
        return None
    return tuple(trades) if len(trades) <= TRADE_LOG_TUPLE_MAX else trades
