"""The ADR-009 balance cache (FR-22) on both backends: early rejection that the database decides."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tradehall.core.clock import VirtualClock
from tradehall.tap import ledger
from tradehall.tap.balances import MemoryBalanceCache, RedisBalanceCache

from .conftest import Harness, running
from .test_flow import cell_with


@pytest.fixture(params=["memory", "redis"])
async def tap(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path, request.param) as harness:
        await harness.tick(31)
        yield harness


async def _user_id(tap: Harness, token: str) -> str:
    me = await tap.http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    return str(me.json()["id"])


async def _bet_count(tap: Harness) -> int:
    return int(
        await tap.service.db.read(lambda c: c.execute("SELECT COUNT(*) FROM bets").fetchone()[0])
    )


async def test_deposit_and_bet_update_the_cache(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    user = await _user_id(tap, token)
    cache = tap.service.balances.cache
    assert await cache.get(user) == 1_000
    placed = await tap.bet(token, tap.placeable_cells()[0]["cell_id"], 100)
    assert placed.status_code == 202
    await cache.flush()
    assert await cache.get(user) == 900


async def test_unaffordable_bet_is_refused_before_the_writer(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 10)
    flushes = tap.service.batcher.flushes
    refused = await tap.bet(token, tap.placeable_cells()[0]["cell_id"], 100)
    assert refused.status_code == 400 and refused.json()["error"] == "insufficient_funds"
    assert "bet_id" not in refused.json()  # nothing was stored
    assert tap.service.batcher.flushes == flushes and await _bet_count(tap) == 0
    # a bet the balance covers goes through
    ok = await tap.bet(token, tap.placeable_cells()[0]["cell_id"], 10)
    assert ok.status_code == 202


async def test_stale_low_cache_never_refuses_a_bet_the_database_accepts(tap: Harness) -> None:
    """Another process's older SET overtook the deposit's: the cache says 0, SQLite says 1 000."""
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    user = await _user_id(tap, token)
    cache = tap.service.balances.cache
    cache.put(user, 0)
    await cache.flush()
    reads = tap.service.balances.db_reads
    placed = await tap.bet(token, tap.placeable_cells()[0]["cell_id"], 100)
    assert placed.status_code == 202 and placed.json()["new_balance"] == 900
    assert tap.service.balances.db_reads == reads + 1  # the database settled it
    await cache.flush()
    assert await cache.get(user) == 900


async def test_stale_high_cache_leaves_the_decision_to_the_conditional_debit(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 10)
    user = await _user_id(tap, token)
    cache = tap.service.balances.cache
    cache.put(user, 1_000_000)
    await cache.flush()
    refused = await tap.bet(token, tap.placeable_cells()[0]["cell_id"], 100)
    assert refused.status_code == 400 and refused.json()["error"] == "insufficient_funds"
    assert "bet_id" in refused.json()  # the writer stored the refusal (ADR-009)
    await cache.flush()
    assert await cache.get(user) is None  # forgotten
    # a miss admits the bet too: the conditional debit refuses it again, and nothing was read
    reads = tap.service.balances.db_reads
    again = await tap.bet(token, tap.placeable_cells()[1]["cell_id"], 100)
    assert again.status_code == 400 and "bet_id" in again.json()
    assert tap.service.balances.db_reads == reads
    assert await tap.service.db.read(ledger.integrity_check) == []


async def test_payout_and_withdrawal_update_the_cache(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    user = await _user_id(tap, token)
    win = cell_with(tap, holds_price=True)
    assert (await tap.bet(token, win["cell_id"], 100)).status_code == 202
    await tap.tick(win["col_end"] + 2 - tap.now_s + 1)
    balance = (await tap.service.db.read(lambda c: ledger.get_user(c, user))).balance
    assert balance > 900  # paid
    cache = tap.service.balances.cache
    await cache.flush()
    assert await cache.get(user) == balance
    await tap.service.withdraw(account.address, 50)
    await cache.flush()
    assert await cache.get(user) == balance - 50


async def test_cache_is_rebuilt_from_the_database_at_start(tmp_path: Path) -> None:
    async with running(tmp_path) as first:
        _, account = await first.login()
        await first.fund(account, 700)
    for backend in ("memory", "redis"):
        prefix = f"test-{uuid.uuid4().hex}:"
        async with running(tmp_path, backend, prefix=prefix) as again:
            users = await again.service.db.read(ledger.integrity_check)
            assert users == []
            row = await again.service.db.read(
                lambda c: c.execute("SELECT id FROM users").fetchone()
            )
            await asyncio.wait_for(again.service.balances.rebuilt.wait(), 10)
            cache = again.service.balances.cache
            assert await cache.get(str(row[0])) == 700  # before any request
            if isinstance(cache, RedisBalanceCache):
                ttl = await cache._r.ttl(cache.key(str(row[0])))
                assert 86_000 < ttl <= 86_400


async def test_memory_cache_expires_and_stays_bounded() -> None:
    clock = VirtualClock()
    cache = MemoryBalanceCache(clock, ttl_s=10, max_users=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)  # evicts the oldest entry
    assert [await cache.get(u) for u in "abc"] == [None, 2, 3]
    await clock.advance(10.0)
    assert await cache.get("b") is None


async def test_the_cache_can_be_switched_off(tmp_path: Path) -> None:
    from tradehall.core.config import resolve
    from tradehall.tap.balances import NoBalanceCache
    from tradehall.tap.cli import SETTINGS, build

    values = resolve(
        SETTINGS,
        {"data_dir": str(tmp_path), "price_source": "none", "balance_cache": "false"},
        environ={},
    )
    service, _ = build(values, VirtualClock())
    assert isinstance(service.balances.cache, NoBalanceCache)
    service.balances.committed([("u1", 5)])
    assert await service.balances.enough("u1", 10**9) is True  # the writer decides
    assert service.balances.db_reads == 0


async def test_rebuild_keeps_a_balance_committed_while_it_ran(tmp_path: Path) -> None:
    from tradehall.tap.balances import BalanceGuard
    from tradehall.tap.db import Database

    db = Database(tmp_path / "tap.db")
    await db.open()
    try:
        user = await db.write(lambda c: ledger.deposit(c, "0xaa", 100, 1, "dep-1"))
        guard = BalanceGuard(MemoryBalanceCache(VirtualClock()), db)
        task = asyncio.create_task(guard.rebuild())
        await asyncio.sleep(0)  # the rebuild is now waiting for its snapshot read
        guard.committed([(user.id, 5)])  # a bet committed meanwhile: newer than the snapshot
        assert await task == 0 and guard.rebuilt.is_set()
        assert await guard.cache.get(user.id) == 5
        assert await guard.rebuild() == 1  # alone, it writes every user
        assert await guard.cache.get(user.id) == 100
    finally:
        await db.close()
