"""Prometheus metrics of the Exchange: requests, latency, orders, trades and book depth.

Counters are updated on the command path (cheap increments); book depth and resting orders are
read from the engine only when ``/metrics`` is scraped, through a custom collector, so keeping
them costs the hot path nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tradehall.core.metrics import LATENCY_BUCKETS
from tradehall.exchange.events import EngineEvent, TradeExecuted
from tradehall.exchange.model import Order

if TYPE_CHECKING:
    from tradehall.exchange.engine import Engine

__all__ = ["ExchangeMetrics"]


class _BookCollector(Collector):
    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        levels = GaugeMetricFamily(
            "tradehall_book_levels", "Price levels on the book", labels=["symbol", "side"]
        )
        quantity = GaugeMetricFamily(
            "tradehall_book_quantity", "Resting quantity on the book", labels=["symbol", "side"]
        )
        engine = self._engine()
        for symbol in engine.symbols:
            book = engine.book(symbol)
            for name, side in (("bid", book.bids), ("ask", book.asks)):
                levels.add_metric([symbol, name], len(side))
                quantity.add_metric([symbol, name], sum(level.total for level in side.levels()))
        yield levels
        yield quantity
        yield GaugeMetricFamily(
            "tradehall_resting_orders", "Orders resting on all books", engine.resting_orders
        )


class ExchangeMetrics:
    """The Exchange's metric families in one registry."""

    def __init__(self, registry: CollectorRegistry, engine: Callable[[], Engine]) -> None:
        self.requests = Counter(
            "tradehall_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tradehall_http_request_duration_seconds",
            "HTTP request handling time",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.orders = Counter(
            "tradehall_orders",
            "Accepted orders by type and side",
            ["type", "side"],
            registry=registry,
        )
        self.orders_rejected = Counter(
            "tradehall_orders_rejected", "Order submissions refused", registry=registry
        )
        self.orders_expired = Counter(
            "tradehall_orders_expired", "Orders expired by the sweep", registry=registry
        )
        self.trades = Counter("tradehall_trades", "Trades executed", registry=registry)
        self._order_children: dict[tuple[str, str], Counter] = {}
        registry.register(_BookCollector(engine))

    def observe(self, result: object, events: list[EngineEvent]) -> None:
        """Count an accepted order and the trades a command produced."""
        if isinstance(result, Order):
            child = self._order_children.get((result.type, result.side))
            if child is None:  # labels() takes a lock and builds a key: resolve each pair once
                child = self._order_children[(result.type, result.side)] = self.orders.labels(
                    result.type, result.side
                )
            child.inc()
        trades = sum(1 for event in events if isinstance(event, TradeExecuted))
        if trades:
            self.trades.inc(trades)
