"""Prometheus metrics of the Exchange: requests, latency, orders, trades and book depth.

Counters are updated on the command path (cheap increments); book depth and resting orders are
read from the engine only when ``/metrics`` is scraped, through a custom collector, so keeping
them costs the hot path nothing. The per-request families (requests, latency, orders) are
:class:`LoopCounter` / :class:`LoopHistogram`: updated only from the event loop thread, so their
children are plain numbers without the lock ``prometheus_client`` takes on every increment, and
they are turned into the same exposition (``_total``, ``_bucket``/``_count``/``_sum``) at scrape
time. So is the trade counter, bumped for every order that trades.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from tradehall.core.metrics import LATENCY_BUCKETS
from tradehall.exchange.model import Order

if TYPE_CHECKING:
    from tradehall.exchange.engine import Engine

__all__ = ["ExchangeMetrics", "LoopCounter", "LoopHistogram"]

Child = TypeVar("Child")


class _LoopFamily(Collector, Generic[Child]):
    """Children by label values, made on first use; subclasses build a child and export them."""

    def __init__(
        self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry
    ) -> None:
        self._name, self._doc, self._labelnames = name, documentation, labelnames
        self._children: dict[tuple[str, ...], Child] = {}
        registry.register(self)

    def _new_child(self) -> Child:
        raise NotImplementedError

    def labels(self, *values: object) -> Child:
        """The child for these label values, made on first use.

        String values (the usual case) find their child without building a key; others are
        converted with ``str`` first, as ``prometheus_client`` does.
        """
        child = self._children.get(values)  # type: ignore[arg-type]
        if child is None:
            key = tuple(str(v) for v in values)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._new_child()
        return child


class CounterChild:
    """One label combination of a :class:`LoopCounter`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LoopCounter(_LoopFamily[CounterChild]):
    """A labelled counter for event-loop-only updates (no lock), exported at scrape time."""

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labelnames)
        for key, child in list(self._children.items()):
            family.add_metric(list(key), child.value)
        yield family


class HistogramChild:
    """One label combination of a :class:`LoopHistogram`."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.sum += value


class LoopHistogram(_LoopFamily[HistogramChild]):
    """A labelled histogram for event-loop-only updates (no lock), exported at scrape time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._bounds = tuple(sorted(buckets))  # before registering: the registry collects once
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self._bounds)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)
        les = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        les.append("+Inf")
        for key, child in list(self._children.items()):
            cumulative, buckets = 0, []
            for le, count in zip(les, child.counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            family.add_metric(list(key), buckets, child.sum)
        yield family


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
        self.requests = LoopCounter(
            "tradehall_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry,
        )
        self.latency = LoopHistogram(
            "tradehall_http_request_duration_seconds",
            "HTTP request handling time",
            ["route"],
            LATENCY_BUCKETS,
            registry,
        )
        self.orders = LoopCounter(
            "tradehall_orders", "Accepted orders by type and side", ["type", "side"], registry
        )
        # (type, side) -> its child: one dict look-up per order instead of two calls
        self._order_children: dict[tuple[str, str], CounterChild] = {}
        self.orders_rejected = Counter(
            "tradehall_orders_rejected", "Order submissions refused", registry=registry
        )
        self.orders_expired = Counter(
            "tradehall_orders_expired", "Orders expired by the sweep", registry=registry
        )
        # Unlabelled, so its one child is made now: the sample is exported (as 0) before the
        # first trade, as prometheus_client's own unlabelled counter does.
        self.trades = LoopCounter("tradehall_trades", "Trades executed", [], registry).labels()
        registry.register(_BookCollector(engine))

    def observe(self, order: Order) -> None:
        """Count an accepted order and the trades it made on arrival.

        Every trade of a matching pass involves the arriving order, so its trade log holds
        exactly the trades of the command that placed it.
        """
        kind = (order.type, order.side)
        child = self._order_children.get(kind)
        if child is None:
            child = self._order_children[kind] = self.orders.labels(*kind)
        child.value += 1.0  # what CounterChild.inc does, without its call
        trades = order.trade_log
        if trades:
            self.trades.value += len(trades)
