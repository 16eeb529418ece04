"""Webhook subscriptions and the deliveries engine events turn into (contract §5).

Pure domain code: the registry upserts by ``(broker_id, event)`` and :func:`deliveries_for`
maps a command's events to :class:`~tradehall.exchange.webhook_delivery.Delivery` records using the
subscriptions in force *at that moment* (it runs right after the command, before any await), in
event order. Sending them is the dispatcher's job.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from tradehall.core.ids import IdSource
from tradehall.core.money import cents_to_decimal
from tradehall.core.timefmt import format_ns
from tradehall.exchange.errors import WebhookNotFound
from tradehall.exchange.events import EngineEvent, OrderClosed, OrderFilled
from tradehall.exchange.state import SubscriptionState
from tradehall.exchange.webhook_delivery import Delivery

__all__ = ["EVENT_TYPES", "Subscription", "SubscriptionRegistry", "deliveries_for"]

EVENT_TYPES = ("trade.executed", "order.expired", "order.cancelled")

_encoder = msgspec.json.Encoder()


class Subscription:
    """One URL for one broker and one event type."""

    __slots__ = ("broker_id", "created_at", "event", "updated_at", "url", "webhook_id")

    def __init__(self, webhook_id: str, broker_id: str, event: str, url: str, now: int) -> None:
        self.webhook_id = webhook_id
        self.broker_id = broker_id
        self.event = event
        self.url = url
        self.created_at = now
        self.updated_at = now


class SubscriptionRegistry:
    """All subscriptions, by id and by ``(broker, event)``, in creation order.

    ``by_id`` is the registry's own dict of subscriptions by webhook id, in creation order: read
    it (its truth tells whether there are any, without a Python call), never change it.
    """

    def __init__(self, ids: IdSource) -> None:
        self._ids = ids
        self.by_id: dict[str, Subscription] = {}
        self._by_key: dict[tuple[str, str], Subscription] = {}

    def upsert(
        self, broker_id: str, url: str, events: Iterable[str], now: int
    ) -> tuple[list[Subscription], bool]:
        """Create or update one subscription per distinct event; report whether any was new."""
        result: list[Subscription] = []
        created = False
        for event in dict.fromkeys(events):  # first occurrence order, duplicates dropped
            found = self._by_key.get((broker_id, event))
            if found is None:
                found = Subscription(self._ids.new_id(), broker_id, event, url, now)
                self.by_id[found.webhook_id] = found
                self._by_key[(broker_id, event)] = found
                created = True
            elif found.url != url:
                found.url = url
                found.updated_at = now
            result.append(found)
        return result, created

    def for_broker(self, broker_id: str) -> list[Subscription]:
        """The broker's subscriptions in creation order."""
        return [sub for sub in self.by_id.values() if sub.broker_id == broker_id]

    def delete(self, webhook_id: str) -> Subscription:
        found = self.by_id.pop(webhook_id, None)
        if found is None:
            raise WebhookNotFound(webhook_id)
        del self._by_key[(found.broker_id, found.event)]
        return found

    def lookup(self, broker_id: str, event: str) -> Subscription | None:
        return self._by_key.get((broker_id, event))

    def __len__(self) -> int:
        return len(self.by_id)

    def export_state(self) -> list[SubscriptionState]:
        """Every subscription, in creation order."""
        return [
            SubscriptionState(s.webhook_id, s.broker_id, s.event, s.url, s.created_at, s.updated_at)
            for s in self.by_id.values()
        ]

    def restore(self, states: list[SubscriptionState]) -> None:
        """Refill an empty registry from :meth:`export_state` output."""
        for state in states:
            sub = Subscription(state.webhook_id, state.broker_id, state.event, state.url, 0)
            sub.created_at, sub.updated_at = state.created_at, state.updated_at
            self.by_id[sub.webhook_id] = sub
            self._by_key[(sub.broker_id, sub.event)] = sub


def deliveries_for(
    events: Iterable[EngineEvent], registry: SubscriptionRegistry, ids: IdSource
) -> list[Delivery]:
    """The webhook deliveries a command's events call for, in event order."""
    if not registry.by_id:
        return []
    # Runs on every command with events once anyone subscribed: the registry's dict directly,
    # not a ``lookup`` frame per event (most events, trades for market data, call for nothing).
    lookup = registry._by_key.get
    out: list[Delivery] = []
    for event in events:
        if isinstance(event, OrderFilled):
            sub = lookup((event.broker_id, "trade.executed"))
            if sub is not None:
                data: _FillData | _ClosedData = _FillData(
                    event.trade_id,
                    event.broker_id,
                    event.order_id,
                    event.symbol,
                    event.side,
                    _PRICES.get(event.price) or _price(event.price),
                    event.quantity,
                    event.order_status,
                    event.order_filled_quantity,
                    event.order_remaining_quantity,
                )
                out.append(_delivery(sub, ids, "trade.executed", event.executed_at, data))
        elif isinstance(event, OrderClosed):
            sub = lookup((event.broker_id, event.event))
            if sub is not None:
                data = _ClosedData(
                    event.broker_id,
                    event.order_id,
                    event.symbol,
                    event.side,
                    _PRICES.get(event.price) or _price(event.price),
                    event.quantity,
                    event.filled_quantity,
                    event.cancelled_quantity,
                    0,
                    event.status,
                )
                out.append(_delivery(sub, ids, event.event, event.at, data))
    return out


def _delivery(
    sub: Subscription, ids: IdSource, event_type: str, at: int, data: _FillData | _ClosedData
) -> Delivery:
    body = _encoder.encode(_Body(event_type, format_ns(at), data))
    return Delivery(ids.new_id(), sub.webhook_id, event_type, sub.url, body)


# The bodies as structs rather than dicts: msgspec writes a struct's fields as an object's keys,
# in order, from names encoded once, so the bytes are those of the equivalent dicts for less work.
class _FillData(msgspec.Struct, gc=False):
    trade_id: str
    broker_id: str
    order_id: str
    symbol: str
    side: str
    trade_price: msgspec.Raw
    trade_quantity: int
    order_status: str
    order_filled_quantity: int
    order_remaining_quantity: int


class _ClosedData(msgspec.Struct, gc=False):
    broker_id: str
    order_id: str
    symbol: str
    side: str
    price: msgspec.Raw
    quantity: int
    filled_quantity: int
    cancelled_quantity: int
    remaining_quantity: int
    status: str


class _Body(msgspec.Struct, gc=False):
    event: str
    timestamp: str
    data: _FillData | _ClosedData


# A price as the JSON number the contract shows (``14860`` -> ``148.60``): the Decimal encoding
# itself, kept per price -- a book's few price levels recur in fill after fill -- as raw JSON.
_PRICES: dict[int, msgspec.Raw] = {}
_PRICES_KEPT = 4096
_decimal_encoder = msgspec.json.Encoder(decimal_format="number")


def _price(cents: int) -> msgspec.Raw:
    if len(_PRICES) >= _PRICES_KEPT:
        _PRICES.clear()
    raw = _PRICES[cents] = msgspec.Raw(_decimal_encoder.encode(cents_to_decimal(cents)))
    return raw
