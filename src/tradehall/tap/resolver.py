"""The resolver's database side: find due bets, apply the rule to stored ticks, settle them.

:func:`settle_due` reads every confirmed bet whose column ended at least ``delay_s`` ago, loads
the stored ticks of each window once, resolves each bet with
:func:`~tradehall.tap.resolution.resolve` and settles them through the single writer (one
transaction for the lot, each bet paid at most once). The service decides when to run it (not
while the breaker is critical) and announces the results.
"""

from __future__ import annotations

import functools
import sqlite3
from decimal import Decimal

from tradehall.tap import ledger
from tradehall.tap.db import Database
from tradehall.tap.resolution import Outcome, Resolution, resolve

__all__ = ["Settled", "settle_due"]

NS = 1_000_000_000

Settled = tuple[ledger.BetRecord, Resolution, int | None]  # bet, outcome, new balance if credited


async def settle_due(
    db: Database, *, now_ns: int, delay_s: int, max_gap_s: int, limit: int = 500
) -> list[Settled]:
    """Resolve and settle up to ``limit`` due bets; returns what was settled."""
    cutoff = now_ns // NS - delay_s
    due = await db.read(functools.partial(ledger.due_bets, before_col_end=cutoff, limit=limit))
    if not due:
        return []
    windows: dict[tuple[int, int], tuple[list[tuple[int, int]], int | None]] = {}
    for start, end in {(b.col_start, b.col_end) for b in due}:
        windows[(start, end)] = await db.read(
            functools.partial(_ticks, start_ms=start * 1000, end_ms=end * 1000)
        )
    plans: list[tuple[ledger.BetRecord, Resolution]] = []
    for bet in due:
        ticks, previous = windows[(bet.col_start, bet.col_end)]
        res = resolve(
            col_start_ms=bet.col_start * 1000,
            col_end_ms=bet.col_end * 1000,
            lower=bet.lower,
            upper=bet.upper,
            amount=bet.amount,
            rate=Decimal(bet.rate),
            ticks=ticks,
            previous_tick_ms=previous,
            max_gap_ms=max_gap_s * 1000,
        )
        plans.append((bet, res))
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
    balances = await db.write(
        functools.partial(ledger.apply_resolutions, settlements=settlements, now_ms=now_ms)
    )
    return [(bet, res, bal) for (bet, res), bal in zip(plans, balances, strict=True)]


def _ticks(
    conn: sqlite3.Connection, *, start_ms: int, end_ms: int
) -> tuple[list[tuple[int, int]], int | None]:
    return ledger.ticks_between(conn, start_ms, end_ms)
