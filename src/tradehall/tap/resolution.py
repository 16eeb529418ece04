"""Bet resolution from stored ticks: the pure rule (Part A §7, C-32..C-34).

A bet on cell [col_start, col_end) x [lower, upper] wins when any tick whose timestamp lies in
[col_start, col_end) has a price within [lower, upper] (both inclusive). A win pays
``floor(amount x rate)`` (the gross payout; the stake was debited at placement).

Data gaps: the known-price timeline of the window is the last tick before ``col_start`` (or
``col_start`` itself when there is none), the ticks inside the window, then ``col_end``. If two
neighbours on it are more than ``max_gap_ms`` apart and no tick hit the band, the outcome cannot be
known and the bet is voided (stake refunded). A hit is evidence of a touch whatever gaps surround
it, so a hit always wins.

The evidence (first hitting tick, or the last tick examined) is returned for storage on the bet,
so a dispute can be settled after the 7-day price retention.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

import msgspec

__all__ = ["Outcome", "Resolution", "Verdict", "judge", "payout_cents", "resolve", "settle"]


class Outcome(StrEnum):
    WON = "won"
    LOST = "lost"
    VOID = "void"


class Resolution(msgspec.Struct, frozen=True):
    outcome: Outcome
    payout: int  # cents credited: floor(amount x rate) on a win, the stake on void, 0 on a loss
    resolution_price: int | None
    resolution_tick_ts: int | None  # ms
    ticks_examined: int
    max_gap_ms: int


def payout_cents(amount: int, rate: Decimal) -> int:
    """``floor(amount x rate)`` in exact decimal arithmetic."""
    return int((Decimal(amount) * rate).to_integral_value(rounding=ROUND_FLOOR))


class Verdict(msgspec.Struct, frozen=True):
    """What the ticks say about one cell (window and band), whatever the stake and rate."""

    outcome: Outcome
    resolution_price: int | None
    resolution_tick_ts: int | None  # ms
    ticks_examined: int
    max_gap_ms: int


def judge(
    *,
    col_start_ms: int,
    col_end_ms: int,
    lower: int,
    upper: int,
    ticks: Sequence[tuple[int, int]],
    previous_tick_ms: int | None,
    max_gap_ms: int = 10_000,
) -> Verdict:
    """The outcome of every bet on the cell [col_start, col_end) x [lower, upper].

    ``ticks`` may include ticks outside the window; only those in [col_start, col_end) count.
    ``previous_tick_ms`` is the time of the last tick before ``col_start`` (``None`` if none).
    It depends only on the cell and the ticks, so bets on the same cell share one verdict.
    """
    window = [t for t in ticks if col_start_ms <= t[0] < col_end_ms]
    for ts, price in window:
        if lower <= price <= upper:
            return Verdict(Outcome.WON, price, ts, len(window), 0)
    start = previous_tick_ms if previous_tick_ms is not None else col_start_ms
    timeline = [min(start, col_start_ms), *(t for t, _ in window), col_end_ms]
    gap = max(b - a for a, b in itertools.pairwise(timeline))
    last = window[-1] if window else (None, None)
    if gap > max_gap_ms:
        return Verdict(Outcome.VOID, last[1], last[0], len(window), gap)
    return Verdict(Outcome.LOST, last[1], last[0], len(window), gap)


def settle(verdict: Verdict, amount: int, rate: Decimal) -> Resolution:
    """One bet's resolution from its cell's verdict: the payout on a win, the stake on void."""
    if verdict.outcome is Outcome.WON:
        payout = payout_cents(amount, rate)
    elif verdict.outcome is Outcome.VOID:
        payout = amount
    else:
        payout = 0
    return Resolution(
        verdict.outcome,
        payout,
        verdict.resolution_price,
        verdict.resolution_tick_ts,
        verdict.ticks_examined,
        verdict.max_gap_ms,
    )


def resolve(
    *,
    col_start_ms: int,
    col_end_ms: int,
    lower: int,
    upper: int,
    amount: int,
    rate: Decimal,
    ticks: Sequence[tuple[int, int]],
    previous_tick_ms: int | None,
    max_gap_ms: int = 10_000,
) -> Resolution:
    """Resolve one bet from ``(ts_ms, price_cents)`` ticks in time order (see :func:`judge`)."""
    verdict = judge(
        col_start_ms=col_start_ms,
        col_end_ms=col_end_ms,
        lower=lower,
        upper=upper,
        ticks=ticks,
        previous_tick_ms=previous_tick_ms,
        max_gap_ms=max_gap_ms,
    )
    return settle(verdict, amount, rate)
