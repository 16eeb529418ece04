"""The Exchange as a running service: the engine plus everything around it that is not HTTP.

:class:`ExchangeService` runs each command on the engine synchronously (the command is the atomic
unit), then -- still before any ``await`` -- turns the command's events into webhook deliveries
using the subscriptions in force and hands them to the dispatcher, which sends them later. So
deliveries never happen inside a matching pass, never delay the response, and follow event order.

It also owns the expiry loop: every ``expiration_interval`` of its clock it asks the engine to
expire what is due. With a :class:`~tradehall.core.clock.VirtualClock` tests drive the loop by
advancing time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from tradehall.core.clock import Clock, SystemClock
from tradehall.core.ids import IdSource, RandomIds
from tradehall.core.logging import get_logger
from tradehall.exchange.engine import Engine, OrderRequest
from tradehall.exchange.events import EngineEvent
from tradehall.exchange.metrics import ExchangeMetrics
from tradehall.exchange.model import Broker, Order
from tradehall.exchange.requests import BrokerRequest, WebhookRequest
from tradehall.exchange.settings import ExchangeSettings
from tradehall.exchange.subscriptions import Subscription, SubscriptionRegistry, deliveries_for
from tradehall.exchange.webhook_delivery import WebhookDispatcher

__all__ = ["EventListener", "ExchangeService"]

EventListener = Callable[[list[EngineEvent]], None]
log = get_logger("exchange")


class ExchangeService:
    """Engine, subscriptions, webhook dispatcher, metrics and the expiry loop, wired together."""

    def __init__(
        self,
        settings: ExchangeSettings,
        *,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        registry: CollectorRegistry | None = None,
        dispatcher: WebhookDispatcher | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.ids = ids or RandomIds()
        self.engine = Engine(self.clock, self.ids, vwap_window_ns=round(settings.vwap_window * 1e9))
        self.subscriptions = SubscriptionRegistry(self.ids)
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.metrics = ExchangeMetrics(self.registry, self.engine)
        self.dispatcher = dispatcher or WebhookDispatcher(
            clock=self.clock,
            timeout=settings.webhook_timeout,
            max_retries=settings.webhook_max_retries,
            queue_limit=settings.webhook_queue_limit,
            signing_secret=settings.webhook_signing_secret,
            registry=self.registry,
        )
        self._listeners: list[EventListener] = []
        self._expiry_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ commands
    def register_broker(self, request: BrokerRequest) -> Broker:
        return self.engine.register_broker(
            request.broker_id, request.initial_cash, request.initial_holdings
        )

    def submit(self, request: OrderRequest) -> Order:
        try:
            order, events = self.engine.submit(request)
        except Exception:
            self.metrics.orders_rejected.inc()
            raise
        self.metrics.order_accepted(order, events)
        self._publish(events)
        return order

    def cancel(self, order_id: str) -> Order:
        order, events = self.engine.cancel(order_id)
        self._publish(events)
        return order

    def expire_due(self) -> int:
        """Run one expiry sweep now; return how many orders expired."""
        events = self.engine.expire_due()
        if events:
            self.metrics.orders_expired.inc(len(events))
            self._publish(events)
        return len(events)

    def upsert_webhooks(self, request: WebhookRequest) -> tuple[list[Subscription], bool]:
        self.engine.broker(request.broker_id)  # 404 for an unknown broker
        return self.subscriptions.upsert(
            request.broker_id, request.url, request.events, self.engine.now()
        )

    def webhooks_of(self, broker_id: str) -> list[Subscription]:
        self.engine.broker(broker_id)
        return self.subscriptions.for_broker(broker_id)

    def delete_webhook(self, webhook_id: str) -> None:
        self.subscriptions.delete(webhook_id)

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener`` with every command's events, after the command, in order."""
        self._listeners.append(listener)

    def _publish(self, events: list[EngineEvent]) -> None:
        if not events:
            return
        deliveries = deliveries_for(events, self.subscriptions, self.ids)
        if deliveries:
            self.dispatcher.submit(deliveries)
        for listener in self._listeners:
            listener(events)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.dispatcher.start()
        self._expiry_task = asyncio.create_task(self._expiry_loop(), name="expiry-sweep")

    async def stop(self) -> None:
        """Stop the sweep (a sweep is synchronous, so none is ever cut short), drop deliveries."""
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
            self._expiry_task = None
        await self.dispatcher.close()

    async def _expiry_loop(self) -> None:
        interval = self.settings.expiration_interval
        while True:
            await self.clock.sleep(interval)
            try:
                expired = self.expire_due()
            except Exception:  # a bug here must not stop future sweeps
                log.exception("expiry_sweep_failed")
                continue
            if expired:
                log.debug("orders_expired", count=expired)
