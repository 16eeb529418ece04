"""Loop-only metric families expose exactly what prometheus_client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tradehall.exchange.metrics import LoopCounter, LoopHistogram

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
