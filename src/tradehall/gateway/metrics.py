"""The gateway's Prometheus metrics (spec §8): one registry per :class:`GatewayService`.

Adapters: events in per provider and type, book LIVE, resyncs by reason, checksum checks,
reconnects. Dispatcher: ingest -> consumer latency histogram, per-consumer deliveries, coalesced,
overflow, queue depth, throttled time, reorder outcomes, buffered events, dead letters (total and
kept). Per stream (provider, symbol, event type): events in and deliveries out. Orders: states
reached, open orders, submissions by answer. Merges: windows by outcome. Gauges that mirror
counters kept elsewhere are refreshed when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["GatewayMetrics", "StreamCounters"]


class GatewayMetrics:
    """Every gateway metric, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "gateway_events",
            "Canonical events emitted by the venue adapters",
            ["provider", "event_type"],
            registry=registry,
        )
        self.book_live = Gauge(
            "gateway_book_live",
            "1 when the book is LIVE",
            ["provider", "symbol"],
            registry=registry,
        )
        self.resyncs = Gauge(
            "gateway_book_resyncs",
            "Resyncs so far by reason",
            ["provider", "reason"],
            registry=registry,
        )
        self.checksum = Gauge(
            "gateway_checksum_checks",
            "Book checksum checks",
            ["provider", "result"],
            registry=registry,
        )
        self.reconnects = Gauge(
            "gateway_reconnects", "WebSocket reconnects so far", ["provider"], registry=registry
        )
        self.latency = Histogram(
            "gateway_delivery_latency_seconds",
            "Venue receive (ts_ingest) to consumer delivery",
            ["event_type"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=registry,
        )
        consumer = ["consumer"]
        self.delivered = Gauge(
            "gateway_dispatch_delivered", "Events delivered", consumer, registry=registry
        )
        self.coalesced = Gauge(
            "gateway_dispatch_coalesced", "Events coalesced (latest-wins)", consumer,
            registry=registry,
        )  # fmt: skip
        self.overflow = Gauge(
            "gateway_dispatch_overflow", "Trades dropped to the dead letters", consumer,
            registry=registry,
        )  # fmt: skip
        self.depth = Gauge(
            "gateway_dispatch_queue_depth", "Events queued", consumer, registry=registry
        )
        self.throttled = Gauge(
            "gateway_dispatch_throttled_seconds", "Time without tokens", consumer,
            registry=registry,
        )  # fmt: skip
        self.reorder = Gauge(
            "gateway_dispatch_reorder", "Per-stream ordering outcomes", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self.buffered = Gauge(
            "gateway_dispatch_buffered", "Events held for reordering", registry=registry
        )
        self.dead_letters = Gauge(
            "gateway_dead_letters", "Events sent to the dead-letter queue", registry=registry
        )
        self.dead_letters_queued = Gauge(
            "gateway_dead_letters_queued",
            "Dead letters currently kept (bounded; the oldest are evicted)",
            registry=registry,
        )
        self.orders = Counter(
            "gateway_orders",
            "Orders that reached each state (ExecReports emitted)",
            ["venue", "state"],
            registry=registry,
        )
        self.orders_open = Gauge(
            "gateway_orders_open", "Open orders being followed", ["venue"], registry=registry
        )
        self.order_decisions = Gauge(
            "gateway_order_decisions",
            "Order submissions by answer (accepted, duplicate, refused, rejected, unknown)",
            ["outcome"],
            registry=registry,
        )
        self.merge_windows = Gauge(
            "gateway_merge_windows",
            "Merge windows by outcome (emitted, suppressed_partial, late fragments, closes)",
            ["symbol", "outcome"],
            registry=registry,
        )
        self.streams = StreamCounters()
        registry.register(self.streams)


Stream = tuple[str, str, str]


class StreamCounters(Collector):
    """Events in (from the adapters) and out (deliveries) per stream (provider, symbol, type).

    Plain dict counts on the hot path; Prometheus counters are built only when scraped.
    """

    def __init__(self) -> None:
        self.inbound: dict[Stream, int] = {}
        self.outbound: dict[Stream, int] = {}

    def collect(self) -> Iterator[Metric]:
        labels = ["provider", "symbol", "event_type"]
        for name, doc, counts in (
            ("gateway_stream_events_in", "Events in per stream", self.inbound),
            ("gateway_stream_events_out", "Deliveries per stream (all consumers)", self.outbound),
        ):
            family = CounterMetricFamily(name, doc, labels=labels)
            for stream, count in list(counts.items()):
                family.add_metric(list(stream), count)
            yield family
