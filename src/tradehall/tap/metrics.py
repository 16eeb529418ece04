"""The tap server's Prometheus metrics, named as in Part B §10, in a per-app registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from tradehall.core.metrics import LATENCY_BUCKETS, new_registry

__all__ = ["TapMetrics"]


class TapMetrics:
    def __init__(self) -> None:
        self.registry = new_registry()
        r = self.registry
        self.http_requests = Counter(
            "http_requests", "HTTP requests", ["method", "endpoint", "status"], registry=r
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bets_placed = Counter(
            "bets_placed", "Bets by placement status", ["status"], registry=r
        )
        self.bets_resolved = Counter(
            "bets_resolved", "Bets resolved by outcome", ["outcome"], registry=r
        )
        self.staleness = Gauge(
            "price_feed_staleness_seconds", "Seconds since the last price was received", registry=r
        )
        self.breaker_state = Gauge(
            "circuit_breaker_state", "1 when the breaker is open (critical), else 0", registry=r
        )
        self.last_archive = Gauge(
            "last_successful_archive_timestamp",
            "Unix time of the last successful archive (dead man's switch)",
            registry=r,
        )
        self.last_backup = Gauge(
            "last_successful_backup_timestamp",
            "Unix time of the last successful hourly database backup",
            registry=r,
        )
        self.drift_users = Gauge(
            "ledger_drift_users", "Users whose balance differs from their ledger", registry=r
        )
        self.queue_depth = Gauge("batcher_queue_depth", "Bets waiting for the writer", registry=r)
        self.batch_size = Histogram(
            "batcher_flush_size",
            "Bets per flushed batch",
            buckets=(1, 5, 10, 25, 50, 75, 100),
            registry=r,
        )
        self.flush_seconds = Histogram(
            "batcher_flush_seconds",
            "Time to write one batch (transaction and commit)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.disk_used = Gauge(
            "disk_used_fraction", "Share of the data directory's disk in use", registry=r
        )
        self.ws_clients = Gauge("ws_clients", "Connected WebSocket clients", registry=r)
        self.nonce_claims_today = Gauge(
            "nonce_claims_today",
            "Nonce claims (first uses and replays) this UTC day: nonce_count:{date}",
            registry=r,
        )
