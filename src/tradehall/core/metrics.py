"""Prometheus helpers: one registry per application instance, rendered in text format.

Each server builds its own :class:`prometheus_client.CollectorRegistry` so several apps can run in
one process (tests, ``tradehall up``) without metric name clashes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "new_registry", "render"]

# Buckets from 50 µs to 2.5 s: request handling here is sub-millisecond when healthy.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


def new_registry() -> CollectorRegistry:
    """A fresh registry, not shared with the process-global default one."""
    return CollectorRegistry(auto_describe=True)


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text exposition format."""
    return generate_latest(registry)
