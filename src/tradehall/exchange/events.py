"""Immutable domain events the engine emits after each command, in the order they happened.

Adapters turn them into webhook deliveries (and, later, market-data messages and journal
records). Each event is a snapshot taken at the moment it happened -- a fill carries the order's
state *right after that trade* -- so later changes to the order never leak into earlier events.
"""

from __future__ import annotations

import msgspec

__all__ = ["EngineEvent", "OrderClosed", "OrderFilled", "TradeExecuted"]


class TradeExecuted(msgspec.Struct, frozen=True, gc=False):
    """One trade, once (market-data view): no broker or order ids."""

    symbol: str
    trade_id: str
    price: int
    quantity: int
    taker_side: str
    executed_at: int


class OrderFilled(msgspec.Struct, frozen=True, gc=False):
    """One side of a trade as its order's owner sees it (``trade.executed`` webhook)."""

    trade_id: str
    broker_id: str
    order_id: str
    symbol: str
    side: str
    price: int
    quantity: int
    order_status: str
    order_filled_quantity: int
    order_remaining_quantity: int
    executed_at: int


class OrderClosed(msgspec.Struct, frozen=True, gc=False):
    """A limit order cancelled by DELETE or expired by the sweep (``order.*`` webhooks)."""

    event: str  # "order.cancelled" | "order.expired"
    broker_id: str
    order_id: str
    symbol: str
    side: str
    price: int
    quantity: int
    filled_quantity: int
    cancelled_quantity: int
    status: str
    at: int


EngineEvent = TradeExecuted | OrderFilled | OrderClosed
