"""The batcher against a real database, with virtual time for the flush timer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tradehall.core.clock import VirtualClock
from tradehall.tap import ledger
from tradehall.tap.batcher import Batcher, Overloaded
from tradehall.tap.db import Database
from tradehall.tap.ledger import BetRequest, BetResult, Placement

NOW = 1_790_000_000_000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "tap.db")
    await database.open()
    yield database
    await database.close()


def bet(user_id: str, n: int, amount: int = 10) -> BetRequest:
    return BetRequest(
        f"bet-{n}", user_id, f"{n}_0_1000", f"nonce-{n}", amount, "2", n, n + 10, 0, 1000
    )


async def test_double_spend_exactly_ten_of_hundred(db: Database) -> None:
    user = await db.write(lambda c: ledger.deposit(c, "0xw", 100, NOW, "dep"))
    sizes: list[int] = []

    async def flush(bets: Sequence[BetRequest]) -> list[BetResult]:
        sizes.append(len(bets))
        return await db.write(lambda c: ledger.place_batch(c, bets, NOW))

    batcher = Batcher(flush, VirtualClock())
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(bet(user.id, i)) for i in range(100)))
    await batcher.stop()
    accepted = [r for r in results if r.outcome is Placement.ACCEPTED]
    assert len(accepted) == 10
    assert sorted(r.new_balance for r in accepted) == list(range(0, 100, 10))  # type: ignore[type-var]
    assert sizes == [100]  # one size-triggered flush, no timer needed
    final = await db.read(lambda c: ledger.get_user(c, user.id))
    assert final is not None and final.balance == 0
    assert await db.read(ledger.integrity_check) == []
    total = await db.read(
        lambda c: c.execute(
            "SELECT SUM(amount) FROM transaction_ledger WHERE user_id = ?", (user.id,)
        ).fetchone()[0]
    )
    assert total == 0


async def test_timer_flush_uses_virtual_clock(db: Database) -> None:
    user = await db.write(lambda c: ledger.deposit(c, "0xw", 100, NOW, "dep"))
    clock = VirtualClock()
    sizes: list[int] = []

    async def flush(bets: Sequence[BetRequest]) -> list[BetResult]:
        sizes.append(len(bets))
        return await db.write(lambda c: ledger.place_batch(c, bets, NOW))

    batcher = Batcher(flush, clock, flush_interval_s=0.1)
    batcher.start()
    pending = [asyncio.ensure_future(batcher.submit(bet(user.id, i))) for i in range(3)]
    await clock.advance(0.099)
    assert sizes == [] and not any(p.done() for p in pending)
    await clock.advance(0.001)
    results = await asyncio.gather(*pending)
    assert sizes == [3]
    assert [r.new_balance for r in results] == [90, 80, 70]
    await batcher.stop()


async def test_full_queue_rejects_immediately() -> None:
    gate = asyncio.Event()
    entered: list[int] = []

    two = asyncio.Event()

    async def flush(bets: Sequence[BetRequest]) -> list[BetResult]:
        entered.append(len(bets))
        if len(entered) == 2:
            two.set()
        await gate.wait()
        return [BetResult(Placement.ACCEPTED, b.bet_id, 0) for b in bets]

    batcher = Batcher(flush, VirtualClock(), max_batch=2, max_queue=4)
    batcher.start()
    first = [batcher.enqueue(bet("u", i)) for i in range(4)]  # two batches in flight
    await asyncio.wait_for(two.wait(), 5)
    assert batcher.depth == 0
    queued = [batcher.enqueue(bet("u", i)) for i in range(4, 8)]
    with pytest.raises(Overloaded):
        batcher.enqueue(bet("u", 99))
    for _ in range(5):
        await asyncio.sleep(0)
    assert entered == [2, 2]  # no third batch while two are in flight
    gate.set()
    await asyncio.gather(*first, *queued)
    await batcher.stop()
    assert batcher.flushes == 4


async def test_next_batch_is_queued_in_the_writer_while_one_commits(db: Database) -> None:
    user = await db.write(lambda c: ledger.deposit(c, "0xw", 100, NOW, "dep"))
    gate = threading.Event()
    handed: list[list[str]] = []

    def hold(conn: object) -> None:  # occupies the single writer until the gate opens
        gate.wait(10)

    two = asyncio.Event()

    async def flush(bets: Sequence[BetRequest]) -> list[BetResult]:
        handed.append([b.bet_id for b in bets])
        if len(handed) == 2:
            two.set()
        return await db.write(lambda c: ledger.place_batch(c, bets, NOW))

    blocker = asyncio.ensure_future(db.write(hold))
    batcher = Batcher(flush, VirtualClock(), max_batch=3)
    batcher.start()
    futures = [batcher.enqueue(bet(user.id, i, amount=20)) for i in range(6)]
    await asyncio.wait_for(two.wait(), 5)
    assert handed == [["bet-0", "bet-1", "bet-2"], ["bet-3", "bet-4", "bet-5"]]
    assert not any(f.done() for f in futures)  # both wait behind the busy writer
    gate.set()
    await blocker
    results = await asyncio.gather(*futures)
    # executed in order: the second batch saw the first one's debits
    assert [r.new_balance for r in results] == [80, 60, 40, 20, 0, None]
    assert results[5].outcome is Placement.INSUFFICIENT_FUNDS
    await batcher.stop()


async def test_failed_commit_fails_whole_batch() -> None:
    async def flush(bets: Sequence[BetRequest]) -> list[BetResult]:
        raise RuntimeError("disk I/O error")

    batcher = Batcher(flush, VirtualClock(), max_batch=2)
    batcher.start()
    futures = [batcher.enqueue(bet("u", i)) for i in range(2)]
    for future in futures:
        with pytest.raises(RuntimeError):
            await future
    await batcher.stop()


async def test_stop_drains_queue() -> None:
    done: list[str] = []

    async def flush(bets: Sequence[BetRequest]) -> list[BetResult]:
        done.extend(b.bet_id for b in bets)
        return [BetResult(Placement.ACCEPTED, b.bet_id, 0) for b in bets]

    batcher = Batcher(flush, VirtualClock(), flush_interval_s=60)
    batcher.start()
    futures = [batcher.enqueue(bet("u", i)) for i in range(5)]
    await batcher.stop()
    assert done == [f"bet-{i}" for i in range(5)]
    assert all(f.done() for f in futures)
    with pytest.raises(Overloaded):
        batcher.enqueue(bet("u", 9))
