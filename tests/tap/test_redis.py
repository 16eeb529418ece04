"""The Redis backend against the project's own Redis server (random key prefix per test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from tradehall.core.clock import VirtualClock
from tradehall.tap import ledger
from tradehall.tap import redis_stores as rs
from tradehall.tap.hub import BROADCAST, Client, Hub


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    client = rs.connect_redis(redis_url)
    prefix = f"test-{uuid.uuid4().hex}:"
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_sessions(redis_prefix: tuple[aioredis.Redis, str]) -> None:
    client, prefix = redis_prefix
    clock = VirtualClock()
    store = rs.RedisSessionStore(client, clock, prefix)
    session = await store.create("u1", "0xabc")
    assert await store.get(session.id) == session
    assert await client.ttl(f"{prefix}session:{session.id}") > 86_000
    assert (await client.get(f"{prefix}session:wallet:0xabc")).decode() == session.id
    clock.set_ns(session.expires_at_ns)
    assert await store.get(session.id) is None
    other = await store.create("u1", "0xabc")
    await store.revoke(other.id)
    assert await store.get(other.id) is None
    assert await client.exists(f"{prefix}session:wallet:0xabc") == 0


async def test_nonce_set_nx_ex_90(redis_prefix: tuple[aioredis.Redis, str]) -> None:
    client, prefix = redis_prefix
    store = rs.RedisNonceStore(client, prefix)
    assert await store.claim("n-1", "u") is True
    assert await store.claim("n-1", "u") is False
    assert 0 < await client.ttl(f"{prefix}nonce:n-1") <= 90


async def test_rate_limit_window_does_not_slide(redis_prefix: tuple[aioredis.Redis, str]) -> None:
    client, prefix = redis_prefix
    limiter = rs.RedisRateLimiter(client, prefix)
    for _ in range(3):
        assert await limiter.hit("w", 3, 60) is None
    retry = await limiter.hit("w", 3, 60)
    assert retry is not None and 59 < retry <= 60
    assert 59_000 < await client.pttl(f"{prefix}rate_limit:w") <= 60_000


async def test_a_burst_beyond_the_pool_waits_instead_of_failing(redis_url: str) -> None:
    """More concurrent requests than pooled connections queue for one (redis-py's default pool
    raised MaxConnectionsError, which the API turned into 503)."""
    client = rs.connect_redis(redis_url, max_connections=4)
    prefix = f"test-{uuid.uuid4().hex}:"
    limiter = rs.RedisRateLimiter(client, prefix)
    try:
        results = await asyncio.gather(*(limiter.hit(f"k{i}", 5, 60) for i in range(200)))
        assert results == [None] * 200
        assert await client.exists(*(f"{prefix}rate_limit:k{i}" for i in range(200))) == 200
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_bus_relays_between_processes(redis_prefix: tuple[aioredis.Redis, str]) -> None:
    client, prefix = redis_prefix
    hubs = [Hub(), Hub()]
    buses = [rs.RedisBus(client, hub, prefix) for hub in hubs]
    for bus in buses:
        await bus.start()
    clients = [Client(), Client()]
    for hub, c in zip(hubs, clients, strict=True):
        hub.add(c)
    hubs[1].bind_user(clients[1], "u1")
    buses[0].publish(BROADCAST, b'{"type":"price"}')
    buses[0].publish("user:u1", b'{"type":"bet:confirmed"}')
    got = [await asyncio.wait_for(clients[1].queue.get(), 5) for _ in range(2)]
    assert got == [b'{"type":"price"}', b'{"type":"bet:confirmed"}']
    assert await asyncio.wait_for(clients[0].queue.get(), 5) == b'{"type":"price"}'
    for bus in buses:
        await bus.stop()


async def test_double_spend_with_redis_backend(tap_with: Callable[..., Any]) -> None:
    async with tap_with("redis", max_batch=100) as tap:
        token, account = await tap.login()
        await tap.fund(account, 100)
        cells = tap.placeable_cells()[:100]
        responses = await asyncio.gather(*(tap.bet(token, c["cell_id"], 10) for c in cells))
        assert sorted(r.status_code for r in responses).count(202) == 10
        me = await tap.http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["balance"] == 0
        assert await tap.service.db.read(ledger.integrity_check) == []


async def test_replays_rejected_with_redis_backend(tap_with: Callable[..., Any]) -> None:
    async with tap_with("redis") as tap:
        _, account = await tap.login()
        body = tap.login_body(account, nonce="redis-nonce-1")
        assert (await tap.http.post("/api/auth/login", json=body)).status_code == 200
        again = await tap.http.post("/api/auth/login", json=body)
        assert again.status_code == 401 and again.json()["error"] == "invalid_signature"
        old = await tap.http.post(
            "/api/auth/login", json=tap.login_body(account, ts=tap.now_s - 31)
        )
        assert old.status_code == 401


async def test_redis_outage_fails_closed(tap_with: Callable[..., Any]) -> None:
    async with tap_with("redis", redis_url="redis://127.0.0.1:1/0") as tap:
        resp = await tap.http.post("/api/auth/login", json=tap.login_body(_account()))
        assert resp.status_code == 503 and resp.json()["error"] == "unavailable"
        bet = await tap.bet("some-token", "1_2_3")
        assert bet.status_code == 503
        health = await tap.http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["checks"]["redis"]["status"] == "error"


def _account() -> Any:
    from eth_account import Account

    return Account.create()


async def test_two_api_processes_share_redis_and_the_database(tmp_path: Any) -> None:
    """Scale-out: sessions, limits and pub/sub shared through Redis, money through SQLite."""
    import contextlib
    import json

    from websockets.asyncio.client import connect

    from .conftest import running

    prefix = f"test-{uuid.uuid4().hex}:"
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(running(tmp_path, "redis", prefix=prefix))
        b = await stack.enter_async_context(running(tmp_path, "redis", prefix=prefix))
        for _ in range(31):
            a.service.ingest_price(6_000_500)
            b.service.ingest_price(6_000_500)
            await a.clock.advance(1.0)
            await b.clock.advance(1.0)
        token, account = await a.login()
        await a.fund(account, 1_000)
        auth = {"Authorization": f"Bearer {token}"}
        me_b = await b.http.get("/api/me", headers=auth)  # a session made on A works on B
        assert me_b.status_code == 200 and me_b.json()["balance"] == 1_000
        async with connect(a.url.replace("http", "ws") + f"/ws?token={token}") as ws:
            for _ in range(5):
                if json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "auth:ok":
                    break
            cell = b.placeable_cells()[0]["cell_id"]
            placed = await b.bet(token, cell, 100)  # placed through B ...
            assert placed.status_code == 202
            for _ in range(20):  # ... confirmed on A's socket via Redis pub/sub
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if msg["type"] == "bet:confirmed":
                    assert msg["data"]["bet_id"] == placed.json()["bet_id"]
                    break
            else:
                raise AssertionError("no bet:confirmed relayed")
        again = await a.bet(token, cell, 100)  # the same cell through A: one bet per cell
        assert again.status_code == 409
        me_a = await a.http.get("/api/me", headers=auth)
        assert me_a.json()["balance"] == 900
        assert await a.service.db.read(ledger.integrity_check) == []


async def test_breaker_override_reaches_every_api_process(tmp_path: Any) -> None:
    """C-47: an override given to one API process applies in all of them (Redis bus)."""
    import contextlib

    from .conftest import ADMIN, eventually, project_redis_url, running

    prefix = f"test-{uuid.uuid4().hex}:"
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(running(tmp_path, "redis", prefix=prefix))
        b = await stack.enter_async_context(running(tmp_path, "redis", prefix=prefix))
        resp = await a.http.post("/api/admin/breaker", json={"mode": "open"}, headers=admin)
        assert resp.status_code == 200 and resp.json()["override"] == "open"
        await eventually(lambda: b.service.breaker.override.value == "open")
        assert b.service.breaker.state.value == "critical"
        # an operator can publish the same command straight to Redis
        client = aioredis.from_url(project_redis_url())
        try:
            await client.publish(f"{prefix}circuit:override", b"close")
            await client.publish(f"{prefix}circuit:override", b"shut")  # ignored, logged
        finally:
            await client.aclose()
        await eventually(lambda: a.service.breaker.override.value == "close")
        await eventually(lambda: b.service.breaker.override.value == "close")
        assert b.service.breaker.state.value == "healthy"
        await b.http.post("/api/admin/breaker", json={"mode": "auto"}, headers=admin)
        await eventually(lambda: a.service.breaker.override.value == "auto")
