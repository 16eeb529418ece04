"""Prices mirrored into Redis (Part B §5, C-30) while SQLite stays the resolver's record."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tradehall.tap import ledger
from tradehall.tap import redis_stores as rs
from tradehall.tap.price_history import WEEK_MS, RedisPriceMirror, dollars

from .conftest import PRICE, running


@pytest.fixture
async def mirror(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, RedisPriceMirror]]:
    client = rs.connect_redis(redis_url)
    prefix = f"test-{uuid.uuid4().hex}:"
    yield client, RedisPriceMirror(client, prefix)
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def test_dollars_formats_cents_without_floats() -> None:
    assert [dollars(c) for c in (6_000_050, 5, 100, 0, -7)] == [
        "60000.50",
        "0.05",
        "1.00",
        "0.00",
        "-0.07",
    ]


async def test_repeated_prices_are_kept_and_old_ticks_trimmed(
    mirror: tuple[aioredis.Redis, RedisPriceMirror],
) -> None:
    client, prices = mirror
    t0 = 1_800_000_000_000
    prices.record(t0, 6_000_000)
    prices.record(t0 + 100, 6_000_000)  # same price: C-30 keeps both ticks
    await prices.flush()
    assert await prices.history(t0, t0 + 100) == [(t0, 6_000_000), (t0 + 100, 6_000_000)]
    later = t0 + 100 + WEEK_MS  # ZREMRANGEBYSCORE 0 now-7d is inclusive
    prices.record(later, 6_100_025)
    await prices.flush()
    assert await prices.history(0, later) == [(later, 6_100_025)]  # older than 7 d: gone
    assert await client.get(prices.latest) == b"61000.25"
    assert 3_590 < await client.ttl(prices.latest) <= 3_600


async def test_ticks_are_published_in_order(
    mirror: tuple[aioredis.Redis, RedisPriceMirror],
) -> None:
    client, prices = mirror
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(prices.channel)
    try:
        prices.record(1, 100)
        prices.record(2, 250)
        await prices.flush()
        got: list[bytes] = []
        for _ in range(500):
            message = await pubsub.get_message(timeout=0.01)  # a real Redis round trip
            if message is not None:
                got.append(message["data"])
            if len(got) == 2:
                break
        assert got == [b"1.00", b"2.50"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_service_mirrors_the_ticks_it_stores(tmp_path: Path) -> None:
    async with running(tmp_path, "redis") as tap:
        await tap.tick(5)
        await tap.service.flush_ticks()
        mirror = tap.service.price_mirror
        assert isinstance(mirror, RedisPriceMirror)
        await mirror.flush()
        now_ms = tap.clock.time_ns() // 1_000_000
        stored, _ = await tap.service.db.read(lambda c: ledger.ticks_between(c, 0, now_ms + 1))
        mirrored = await mirror.history(0, now_ms)
        assert len(stored) == 5 and stored == mirrored
        assert all(price == PRICE for _, price in mirrored)
