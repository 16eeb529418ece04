"""The warm-up countdown in ``system:status`` (``recovering_for_ms``), on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from .conftest import Harness, running
from .test_flow import next_of


@pytest.fixture(params=["memory", "redis"])
async def tap(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path, request.param) as harness:
        await harness.tick(31)
        yield harness


async def status_where(ws: ClientConnection, check: Any) -> dict[str, Any]:
    for _ in range(30):
        status = await next_of(ws, "system:status")
        if check(status):
            return status
    raise AssertionError("no such status")


async def test_status_counts_the_warm_up_and_resets_it(tap: Harness) -> None:
    healthy = tap.service.status_json()
    assert healthy["recovering_for_ms"] is None and healthy["recovery_ms"] == 30_000
    await tap.tick(12, price=None)  # critical
    assert tap.service.breaker.state.value == "critical"
    async with connect(tap.url.replace("http", "ws") + "/ws") as ws:
        first = await next_of(ws, "system:status")  # the greeting
        assert first["price_health"] == "critical" and first["recovering_for_ms"] is None
        await tap.tick(1)  # a fresh price: the warm-up starts, and a status says so at once
        started = await status_where(ws, lambda s: s["recovering_for_ms"] is not None)
        assert started["recovering_for_ms"] == 0 and started["price_health"] == "critical"
        await tap.tick(10)
        assert tap.service.status_json()["recovering_for_ms"] == 10_000
        periodic = await status_where(ws, lambda s: (s["recovering_for_ms"] or 0) > 0)
        assert periodic["recovering_for_ms"] % 1_000 == 0
        assert periodic["recovering_for_ms"] == periodic["timestamp"] - started["timestamp"]
        await tap.tick(4, price=None)  # the feed stalls: the warm-up is cut short
        await status_where(ws, lambda s: s["recovering_for_ms"] is None)
        assert tap.service.breaker.state.value == "critical"
        await tap.tick(31)
        assert tap.service.status_json() | {"timestamp": 0} == {
            "price_health": "healthy",
            "override": "auto",
            "stale_for_ms": 1_000,
            "recovering_for_ms": None,
            "recovery_ms": 30_000,
            "timestamp": 0,
        }
