"""The resolver's database side: one verdict per cell, settlements in chunks, partial failure."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tradehall.tap import ledger
from tradehall.tap.db import Database
from tradehall.tap.ledger import BetRequest, Placement
from tradehall.tap.resolution import Outcome, resolve
from tradehall.tap.resolver import settle_due

T = TypeVar("T")
NS = 1_000_000_000
COL = 1_790_000_000  # column start, unix s
PRICE = 6_000_500  # the only tick in the window: inside band 6 000 000-6 001 000
RATES = ("2.50", "3.10", "1.75")


class CountingDatabase(Database):
    """The real database, counting writes and failing the writes numbered in ``fail``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes = 0
        self.fail: set[int] = set()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self.writes += 1
        if self.writes in self.fail:
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return await super().write(fn)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[CountingDatabase]:
    database = CountingDatabase(tmp_path / "tap.db")
    await database.open()
    yield database
    await database.close()


async def place(db: Database, users: int, lowers: tuple[int, ...]) -> list[str]:
    """``users`` users each betting 100 on every band in ``lowers`` of one column."""
    bets: list[BetRequest] = []
    for u in range(users):
        user = await db.write(
            functools.partial(
                ledger.deposit, wallet=f"0x{u}", amount=10_000, now_ms=0, deposit_id=f"d{u}"
            )
        )
        for i, lower in enumerate(lowers):
            bets.append(
                BetRequest(
                    f"bet-{u}-{i}",
                    user.id,
                    f"{COL}_{lower}_{lower + 1_000}",
                    f"nonce-{u}-{i}",
                    100,
                    RATES[i % len(RATES)],
                    COL,
                    COL + 10,
                    lower,
                    lower + 1_000,
                )
            )
    results = await db.write(functools.partial(ledger.place_batch, bets=bets, now_ms=0))
    assert all(r.outcome is Placement.ACCEPTED for r in results)
    ticks = [((COL - 1) * 1000, 5_000_000), ((COL + 4) * 1000, PRICE)]
    await db.write(functools.partial(ledger.insert_ticks, ticks=ticks))
    return [b.bet_id for b in bets]


def settle(db: Database, **kwargs: Any) -> Any:
    return settle_due(db, now_ns=(COL + 12) * NS, delay_s=2, max_gap_s=10, **kwargs)


async def test_every_bet_gets_its_cells_outcome_and_its_own_payout(db: CountingDatabase) -> None:
    lowers = (6_000_000, 5_000_000, 7_000_000)  # hit, missed (far below), missed (far above)
    await place(db, users=4, lowers=lowers)
    settled = await settle(db)
    assert len(settled) == 12
    ticks = [((COL - 1) * 1000, 5_000_000), ((COL + 4) * 1000, PRICE)]
    for bet, res, balance in settled:
        expected = resolve(
            col_start_ms=COL * 1000,
            col_end_ms=(COL + 10) * 1000,
            lower=bet.lower,
            upper=bet.upper,
            amount=bet.amount,
            rate=Decimal(bet.rate),
            ticks=ticks,
            previous_tick_ms=(COL - 1) * 1000,
            max_gap_ms=10_000,
        )
        assert res == expected  # the shared verdict is what the per-bet rule gives
        assert (balance is not None) == (res.outcome is Outcome.WON)
    won = {bet.bet_id: res.payout for bet, res, _ in settled if res.outcome is Outcome.WON}
    assert won == {f"bet-{u}-0": 250 for u in range(4)}  # floor(100 x 2.50) each
    statuses = await db.read(
        lambda c: dict(c.execute("SELECT status, COUNT(*) FROM bets GROUP BY status").fetchall())
    )
    assert statuses == {"won": 4, "lost": 8}
    assert await db.read(ledger.integrity_check) == []


async def test_settlements_are_written_a_chunk_per_transaction(db: CountingDatabase) -> None:
    await place(db, users=5, lowers=(6_000_000,))
    before = db.writes
    settled = await settle(db, chunk=2)
    assert len(settled) == 5
    assert db.writes - before == 3  # 2 + 2 + 1
    assert await settle(db, chunk=2) == []  # each bet paid once
    assert await db.read(ledger.integrity_check) == []


async def test_a_failed_later_chunk_keeps_what_committed_and_retries_the_rest(
    db: CountingDatabase,
) -> None:
    ids = await place(db, users=5, lowers=(6_000_000,))
    db.fail = {db.writes + 2}  # the second chunk's transaction
    settled = await settle(db, chunk=2)
    assert sorted(b.bet_id for b, _, _ in settled) == sorted(ids[:2])
    open_ids = await db.read(
        lambda c: [r[0] for r in c.execute("SELECT id FROM bets WHERE status = 'confirmed'")]
    )
    assert sorted(open_ids) == sorted(ids[2:])
    again = await settle(db, chunk=2)  # the next pass settles the rest
    assert sorted(b.bet_id for b, _, _ in again) == sorted(ids[2:])
    assert await db.read(ledger.integrity_check) == []


async def test_a_failed_first_chunk_raises_and_settles_nothing(db: CountingDatabase) -> None:
    await place(db, users=3, lowers=(6_000_000,))
    db.fail = {db.writes + 1}
    with pytest.raises(sqlite3.OperationalError):
        await settle(db, chunk=2)
    confirmed = await db.read(
        lambda c: c.execute("SELECT COUNT(*) FROM bets WHERE status = 'confirmed'").fetchone()[0]
    )
    assert confirmed == 3
