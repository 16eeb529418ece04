"""The resolver's database side: find due bets, apply the rule to stored ticks, settle them.

:func:`settle_due` reads every confirmed bet whose column ended at least ``delay_s`` ago, loads
the stored ticks of each window once, judges each cell once
(:func:`~tradehall.tap.resolution.judge`: every bet on a cell shares its outcome) and settles the
bets through the single writer, each paid at most once. The service decides when to run it (not
while the breaker is critical) and announces the results.

Why per cell and in chunks: a pass of 500 due bets ran the tick scan once per bet on the event
loop (~60 µs each with a tick every 100 ms), and its one 500-bet transaction held the single
writer while bet batches queued behind it. Cells are few (20 per column), so the scan now runs
once per cell; the settlements go to the writer ``chunk`` (100) at a time, one transaction each,
so a bet batch waits for at most one chunk.
"""

from __future__ import annotations

import functools
import sqlite3
from decimal import Decimal

from tradehall.tap import ledger
from tradehall.tap.db import Database
from tradehall.tap.log import LazyLogger
from tradehall.tap.resolution import Outcome, Resolution, Verdict, judge, settle

__all__ = ["Settled", "settle_due"]

NS = 1_000_000_000
_log = LazyLogger("tap")

Settled = tuple[ledger.BetRecord, Resolution, int | None]  # bet, outcome, new balance if credited


async def settle_due(
    db: Database,
    *,
    now_ns: int,
    delay_s: int,
    max_gap_s: int,
    limit: int = 500,
    chunk: int = 100,
) -> list[Settled]:
    """Resolve and settle up to ``limit`` due bets, ``chunk`` per transaction.

    Returns what was settled. A chunk that fails leaves its bets (and the later chunks') confirmed
    for the next pass; the chunks already committed are returned so they are still announced. A
    failure of the first chunk, with nothing settled, is raised.
    """
    cutoff = now_ns // NS - delay_s
    due = await db.read(functools.partial(ledger.due_bets, before_col_end=cutoff, limit=limit))
    if not due:
        return []
    windows: dict[tuple[int, int], tuple[list[tuple[int, int]], int | None]] = {}
    for start, end in {(b.col_start, b.col_end) for b in due}:
        windows[(start, end)] = await db.read(
            functools.partial(_ticks, start_ms=start * 1000, end_ms=end * 1000)
        )
    verdicts: dict[tuple[int, int, int, int], Verdict] = {}
    plans: list[tuple[ledger.BetRecord, Resolution]] = []
    for bet in due:
        cell = (bet.col_start, bet.col_end, bet.lower, bet.upper)
        verdict = verdicts.get(cell)
        if verdict is None:
            ticks, previous = windows[(bet.col_start, bet.col_end)]
            verdict = verdicts[cell] = judge(
                col_start_ms=bet.col_start * 1000,
                col_end_ms=bet.col_end * 1000,
                lower=bet.lower,
                upper=bet.upper,
                ticks=ticks,
                previous_tick_ms=previous,
                max_gap_ms=max_gap_s * 1000,
            )
        plans.append((bet, settle(verdict, bet.amount, Decimal(bet.rate))))
    settlements = [
        ledger.Settlement(
            bet.bet_id,
            res.outcome.value,
            res.payout,
            "PAYOUT" if res.outcome is Outcome.WON else "REFUND",
            res.resolution_price,
            res.resolution_tick_ts,
            res.ticks_examined,
        )
        for bet, res in plans
    ]
    now_ms = now_ns // 1_000_000
    settled: list[Settled] = []
    for start in range(0, len(settlements), max(1, chunk)):
        part = settlements[start : start + max(1, chunk)]
        try:
            balances = await db.write(
                functools.partial(ledger.apply_resolutions, settlements=part, now_ms=now_ms)
            )
        except Exception:
            if not settled:
                raise
            _log.exception("settlement_chunk_failed", settled=len(settled), left=len(plans) - start)
            break
        for (bet, res), balance in zip(plans[start : start + len(part)], balances, strict=True):
            settled.append((bet, res, balance))
    return settled


def _ticks(
    conn: sqlite3.Connection, *, start_ms: int, end_ms: int
) -> tuple[list[tuple[int, int]], int | None]:
    return ledger.ticks_between(conn, start_ms, end_ms)
