"""The bet route's front door (IP limit, session, bet limit) on both backends, and ScriptPipe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tradehall.core.clock import VirtualClock
from tradehall.tap import redis_stores as rs
from tradehall.tap.admission import Admission, Limits, RedisAdmission, StoreAdmission
from tradehall.tap.redis_pipe import ScriptPipe
from tradehall.tap.stores import (
    MemoryRateLimiter,
    MemorySessionStore,
    RateLimiter,
    SessionStore,
    StoreUnavailable,
)

from .conftest import running

NS = 1_000_000_000
LIMITS = Limits(ip_limit=5, ip_window_s=60, bet_limit=2, bet_window_s=30)


@dataclass
class Backend:
    clock: VirtualClock
    sessions: SessionStore
    limiter: RateLimiter
    admission: Admission
    another: Callable[[], Admission]  # a second "process" on the same state


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Backend]:
    clock = VirtualClock(1_700_000_000 * NS)
    if request.param == "memory":
        sessions = MemorySessionStore(clock)
        limiter = MemoryRateLimiter(clock)
        yield Backend(
            clock,
            sessions,
            limiter,
            StoreAdmission(sessions, limiter),
            lambda: StoreAdmission(sessions, limiter),
        )
        return
    prefix = f"test-{uuid.uuid4().hex}:"
    clients = [rs.connect_redis(redis_url)]

    def another() -> Admission:
        clients.append(rs.connect_redis(redis_url))
        return RedisAdmission(clients[-1], clock, prefix)

    try:
        yield Backend(
            clock,
            rs.RedisSessionStore(clients[0], clock, prefix),
            rs.RedisRateLimiter(clients[0], prefix),
            RedisAdmission(clients[0], clock, prefix),
            another,
        )
    finally:
        keys = [k async for k in clients[0].scan_iter(match=prefix + "*")]
        if keys:
            await clients[0].delete(*keys)
        for client in clients:
            await client.aclose()


async def test_a_valid_session_is_returned_and_its_bet_counted(backend: Backend) -> None:
    session = await backend.sessions.create("u1", "0xaa")
    first = await backend.admission.admit("1.2.3.4", session.id, LIMITS, count_bet=True)
    assert first.ip_retry is None and first.bet_retry is None and first.bet_counted
    assert first.session == session
    await backend.admission.admit("1.2.3.4", session.id, LIMITS, count_bet=True)
    third = await backend.admission.admit("1.2.3.4", session.id, LIMITS, count_bet=True)
    assert third.session == session and third.bet_counted
    assert third.bet_retry is not None and 29 < third.bet_retry <= 30
    # the bet counter is the same one the separate limiter uses (other routes, C-45)
    assert await backend.limiter.hit("bet:0xaa", 3, 30) is not None


async def test_the_bet_is_not_counted_when_the_caller_says_so(backend: Backend) -> None:
    session = await backend.sessions.create("u1", "0xbb")
    for _ in range(4):
        got = await backend.admission.admit("ip", session.id, LIMITS, count_bet=False)
        assert got.session == session and got.bet_retry is None and not got.bet_counted
    assert await backend.limiter.hit("bet:0xbb", 1, 30) is None  # still at zero before this


async def test_over_the_ip_limit_nothing_else_is_looked_at(backend: Backend) -> None:
    session = await backend.sessions.create("u1", "0xcc")
    for _ in range(5):
        assert (
            await backend.admission.admit("9.9.9.9", None, LIMITS, count_bet=True)
        ).session is None
    limited = await backend.admission.admit("9.9.9.9", session.id, LIMITS, count_bet=True)
    assert limited.ip_retry is not None and 59 < limited.ip_retry <= 60
    assert limited.session is None and not limited.bet_counted
    assert await backend.limiter.hit("bet:0xcc", 1, 30) is None  # not counted
    other_ip = await backend.admission.admit("8.8.8.8", session.id, LIMITS, count_bet=True)
    assert other_ip.ip_retry is None and other_ip.session == session


async def test_unknown_revoked_and_expired_sessions_are_none(backend: Backend) -> None:
    assert (await backend.admission.admit("ip", "no-such", LIMITS, count_bet=True)).session is None
    session = await backend.sessions.create("u1", "0xdd")
    other_process = backend.another()
    assert (await other_process.admit("ip", session.id, LIMITS, count_bet=False)).session
    await backend.sessions.revoke(session.id)  # logout through the first process
    got = await other_process.admit("ip", session.id, LIMITS, count_bet=True)
    assert got.session is None and not got.bet_counted  # seen at once: nothing is cached
    later = await backend.sessions.create("u2", "0xee")
    backend.clock.set_ns(later.expires_at_ns)
    expired = await backend.admission.admit("ip2", later.id, LIMITS, count_bet=True)
    assert expired.session is None and not expired.bet_counted


async def test_limits_are_shared_by_every_process(backend: Backend) -> None:
    session = await backend.sessions.create("u1", "0xff")
    a, b = backend.admission, backend.another()
    answers = [await p.admit("ip", session.id, LIMITS, count_bet=True) for p in (a, b, a, b, a, b)]
    assert [x.bet_retry is None for x in answers[:5]] == [True, True, False, False, False]
    assert [x.ip_retry is None for x in answers] == [True] * 5 + [False]  # 6th: IP limit
    assert answers[5].session is None and not answers[5].bet_counted


async def test_concurrent_calls_share_pipelines(redis_url: str) -> None:
    client = rs.connect_redis(redis_url)
    prefix = f"test-{uuid.uuid4().hex}:"
    pipe = ScriptPipe(client, "return redis.call('INCR', KEYS[1]) + ARGV[1]", max_batch=64)
    try:
        answers = await asyncio.gather(*(pipe([f"{prefix}n"], [1000]) for _ in range(200)))
        assert sorted(answers) == list(range(1001, 1201))
        assert pipe.calls == 200 and pipe.pipelines == 4  # 64 + 64 + 64 + 8, one loop turn
    finally:
        await client.delete(f"{prefix}n")
        await client.aclose()


async def test_a_flushed_script_is_loaded_again(redis_url: str) -> None:
    client = rs.connect_redis(redis_url)
    pipe = ScriptPipe(client, f"return '{uuid.uuid4().hex}' .. ARGV[1]")
    try:
        assert (await pipe([], ["x"])).endswith(b"x")
        await client.script_flush()  # a Redis restart loses scripts the same way
        assert (await pipe([], ["y"])).endswith(b"y")
    finally:
        await client.aclose()


async def test_script_errors_and_outages_fail_closed(redis_url: str) -> None:
    client = rs.connect_redis(redis_url)
    try:
        with pytest.raises(StoreUnavailable):
            await ScriptPipe(client, "return redis.call('NOSUCHCOMMAND')")([], [])
    finally:
        await client.aclose()
    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        with pytest.raises(StoreUnavailable):
            await RedisAdmission(down, VirtualClock(), "x:").admit(
                "ip", "t", LIMITS, count_bet=True
            )
    finally:
        await down.aclose()


@pytest.mark.parametrize("backend_name", ["memory", "redis"])
async def test_bad_bodies_do_not_use_up_the_bet_limit(tmp_path: Path, backend_name: str) -> None:
    async with running(tmp_path, backend_name, bet_rate_limit=2) as tap:
        await tap.tick(31)
        token, account = await tap.login()
        await tap.fund(account, 10_000)
        auth = {"Authorization": f"Bearer {token}"}
        for _ in range(3):
            bad = await tap.http.post("/api/bets", content=b"{not json", headers=auth)
            assert bad.status_code == 400 and bad.json()["error"] == "validation_error"
        cells = tap.placeable_cells()
        assert (await tap.bet(token, cells[0]["cell_id"], 10)).status_code == 202
        assert (await tap.bet(token, cells[1]["cell_id"], 10)).status_code == 202
        limited = await tap.bet(token, cells[2]["cell_id"], 10)
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        none = await tap.http.post("/api/bets", json={}, headers={})
        assert none.status_code == 401  # no session: 401, whatever the body


async def test_logout_on_one_process_is_seen_by_the_other_at_once(tmp_path: Path) -> None:
    import contextlib

    prefix = f"test-{uuid.uuid4().hex}:"
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(running(tmp_path, "redis", prefix=prefix))
        b = await stack.enter_async_context(running(tmp_path, "redis", prefix=prefix))
        for _ in range(31):
            for h in (a, b):
                h.service.ingest_price(6_000_500)
                await h.clock.advance(1.0)
        token, account = await a.login()
        await a.fund(account, 1_000)
        cells = b.placeable_cells()
        assert (await b.bet(token, cells[0]["cell_id"], 10)).status_code == 202
        auth = {"Authorization": f"Bearer {token}"}
        assert (await a.http.post("/api/auth/logout", headers=auth)).status_code == 200
        after: Any = await b.bet(token, cells[1]["cell_id"], 10)
        assert after.status_code == 401 and after.json()["error"] == "unauthorized"
