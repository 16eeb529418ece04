"""Loop-only metric families expose exactly what prometheus_client's own would."""

from __future__ import annotations

import pytest
from exchange_harness import T0
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.errors import NoLiquidity
from tradehall.exchange.metrics import LoopCounter, LoopHistogram
from tradehall.exchange.requests import BrokerRequest
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

BUCKETS = (0.001, 0.01, 0.1)
VALUES = [0.0005, 0.001, 0.002, 0.01, 0.05, 0.1, 0.5, 3.0]  # on, between and past the bounds


def _samples(registry: CollectorRegistry) -> set[str]:
    """Exposition lines without comments and the ``_created`` timestamps (ours have none)."""
    lines = generate_latest(registry).decode().splitlines()
    return {line for line in lines if line and not line.startswith("#") and "_created" not in line}


def test_histogram_matches_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopHistogram("t_seconds", "doc", ["route"], BUCKETS, ours)
    reference = Histogram("t_seconds", "doc", ["route"], buckets=BUCKETS, registry=theirs)
    for i, value in enumerate(VALUES):
        route = "a" if i % 3 else "b"
        loop.labels(route).observe(value)
        reference.labels(route).observe(value)
    assert _samples(ours) == _samples(theirs)


def test_counter_matches_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopCounter("t_requests", "doc", ["route", "status"], ours)
    reference = Counter("t_requests", "doc", ["route", "status"], registry=theirs)
    for route, status, amount in [("x", 200, 1), ("x", 200, 2), ("y", 404, 1)]:
        loop.labels(route, status).inc(amount)
        reference.labels(route, status).inc(amount)
    assert _samples(ours) == _samples(theirs)
    assert loop.labels("x", 200) is loop.labels("x", "200")  # labels are strings, as theirs


def test_orders_and_trades_count_accepted_orders_only() -> None:
    """A cancel is not an accepted order; a crossing order counts once with all its trades."""
    service = ExchangeService(ExchangeSettings(), clock=VirtualClock(T0), ids=SequentialIds())
    service.register_broker(BrokerRequest("a", 10**9, [("S", 1_000)]))
    far = T0 + 3600 * 10**9
    resting = service.submit(OrderRequest("limit", "a", "D", "bid", "S", 1, 100, far))
    service.cancel(resting.order_id)
    for price in (200, 201):
        service.submit(OrderRequest("limit", "a", "D", "ask", "S", 1, price, far))
    service.submit(OrderRequest("limit", "a", "D", "bid", "S", 2, 300, far))  # takes both asks
    with pytest.raises(NoLiquidity):  # no bid left
        service.submit(OrderRequest("market", "a", "D", "ask", "S", 1))
    samples = _samples(service.registry)
    assert 'tradehall_orders_total{side="bid",type="limit"} 2.0' in samples
    assert 'tradehall_orders_total{side="ask",type="limit"} 2.0' in samples
    assert not any('type="market"' in line for line in samples)
    assert "tradehall_trades_total 2.0" in samples
    assert "tradehall_orders_rejected_total 1.0" in samples
