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

__all__ = ["Outcome", "Resolution", "payout_cents", "resolve"]


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
    """Resolve one bet from ``(ts_ms, price_cents)`` ticks in time order.

    ``ticks`` may include ticks outside the window; only those in [col_start, col_end) count.
    ``previous_tick_ms`` is the time of the last tick before ``col_start`` (``None`` if none).
    """
    window = [t for t in ticks if col_start_ms <= t[0] < col_end_ms]
    for ts, price in window:
        if lower <= price <= upper:
            return Resolution(Outcome.WON, payout_cents(amount, rate), price, ts, len(window), 0)
    start = previous_tick_ms if previous_tick_ms is not None else col_start_ms
    timeline = [min(start, col_start_ms), *(t for t, _ in window), col_end_ms]
    gap = max(b - a for a, b in itertools.pairwise(timeline))
    last = window[-1] if window else (None, None)
    if gap > max_gap_ms:
        return Resolution(Outcome.VOID, amount, last[1], last[0], len(window), gap)
    return Resolution(Outcome.LOST, 0, last[1], last[0], len(window), gap)
