"""``nonce_count:{date}`` abuse counters (ADR-007, Part B §5) on both backends, and their metric."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tradehall.core.clock import VirtualClock
from tradehall.tap import redis_stores as rs
from tradehall.tap.stores import MemoryNonceStore, NonceStore, utc_day

from .conftest import Harness, running

DAY_NS = 86_400 * 1_000_000_000


@pytest.fixture(params=["memory", "redis"])
async def tap(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path, request.param) as harness:
        await harness.tick(31)
        yield harness


def _gauge(text: str) -> float:
    match = re.search(r"^nonce_claims_today (\S+)$", text, re.M)
    assert match is not None, "nonce_claims_today not exported"
    return float(match.group(1))


async def test_logins_and_replays_count_and_are_exported(tap: Harness) -> None:
    today = utc_day(tap.clock.time_ns())
    before = await tap.service.nonces.count(today)
    _, account = await tap.login()
    body = tap.login_body(account, nonce="count-me-1")
    assert (await tap.http.post("/api/auth/login", json=body)).status_code == 200
    assert (await tap.http.post("/api/auth/login", json=body)).status_code == 401  # replay
    assert await tap.service.nonces.count(today) == before + 3
    metrics = await tap.http.get("/metrics")
    assert _gauge(metrics.text) == before + 3


async def _claims_over_days(store: NonceStore, clock: VirtualClock, days: int) -> list[str]:
    labels = []
    for _ in range(days):
        labels.append(utc_day(clock.time_ns()))
        assert await store.claim(uuid.uuid4().hex, "u") is True
        clock.set_ns(clock.time_ns() + DAY_NS)
    return labels


async def test_memory_counter_keeps_seven_days() -> None:
    clock = VirtualClock()
    store = MemoryNonceStore(clock)
    days = await _claims_over_days(store, clock, 9)
    assert [await store.count(d) for d in days] == [0, 0, 1, 1, 1, 1, 1, 1, 1]


async def test_redis_counter_has_a_seven_day_ttl(redis_url: str) -> None:
    client: aioredis.Redis = rs.connect_redis(redis_url)
    prefix = f"test-{uuid.uuid4().hex}:"
    clock = VirtualClock()
    store = rs.RedisNonceStore(client, prefix, clock=clock)
    try:
        days = await _claims_over_days(store, clock, 2)
        assert await store.claim("n-same", "u") is True
        assert await store.claim("n-same", "u") is False  # a replay counts too
        today = utc_day(clock.time_ns())  # the day after the last of ``days``
        assert [await store.count(d) for d in (*days, today)] == [1, 1, 2]
        ttl = await client.ttl(f"{prefix}nonce_count:{today}")
        assert 7 * 86_400 - 10 < ttl <= 7 * 86_400
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
