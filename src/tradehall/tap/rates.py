"""Reward rates: the pluggable "R&D algorithm" (Part A §4) and the default Brownian model.

A :class:`RateModel` turns (cell, now, live price, volatility) into a rate, a ``Decimal`` with two
places. The default :class:`BrownianTouchModel` prices the probability ``p`` that a driftless
Brownian motion started at the live price with volatility ``sigma`` (cents per sqrt second) touches
the band [lower, upper] at some instant of the column's window, and quotes
``(1 - house_edge) / p`` rounded down to the cent, clamped to [1.01, 100].

The touch probability over [t1, t2] (seconds from now) is the chance of being inside the band at
t1 plus, for every position y outside it at t1, the reflection-principle chance of reaching the
nearer edge within t2 - t1: ``erfc(d / (sigma * sqrt(t2 - t1) * sqrt 2))``. The outer integral is a
Simpson sum over the normal density of the position at t1. Floats are fine here: the output is a
quoted price that is rounded once and stored; money arithmetic uses the stored Decimal.

:func:`estimate_sigma` estimates volatility from recent ticks (sum of squared moves over elapsed
time), with a floor and a fallback so a quiet or empty history never quotes absurd rates.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal
from typing import Protocol

from tradehall.tap.grid import Cell

__all__ = [
    "MAX_RATE",
    "MIN_RATE",
    "BrownianTouchModel",
    "RateModel",
    "estimate_sigma",
    "touch_probability",
]

MIN_RATE = Decimal("1.01")
MAX_RATE = Decimal("100.00")
_CENT = Decimal("0.01")
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_Z_SPAN = 8.0
_STEPS = 24  # Simpson intervals (even)


class RateModel(Protocol):
    """Quotes the reward rate of a cell; the result is stored on the bet at placement."""

    def rate(self, cell: Cell, now_ns: int, price_cents: int, sigma: float) -> Decimal:
        """The rate for ``cell`` given the time, live price and volatility (cents/sqrt s)."""
        ...


def _phi_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / _SQRT2)


def _hit_within(distance: float, s2: float) -> float:
    """P(a driftless BM reaches a level ``distance`` away within a span of st.dev. ``s2``)."""
    if distance <= 0:
        return 1.0
    if s2 <= 0:
        return 0.0
    return math.erfc(distance / (s2 * _SQRT2))


def _integrate(
    a: float, b: float, x0: float, s1: float, lower: float, upper: float, s2: float
) -> float:
    """Simpson's rule over [a, b] of ``phi(z) * P(hit | position x0 + z * s1 at t1)``.

    The integrand is written out inline (no function call per point) because it runs 50 times
    per cell and 240 cells per grid. Every float operation is the one the plain formula does
    (integrand ``phi(z) * _hit_within(distance, s2)``, Simpson weights 1 4 2 ... 4 1), in the same
    order, so the result is bit-for-bit the plain evaluation; tests/tap/test_pricing_fast.py
    compares the two.
    """
    if b <= a:
        return 0.0
    h = (b - a) / _STEPS
    exp, erfc = math.exp, math.erfc
    scale = s2 * _SQRT2
    reaches = s2 > 0  # whether a position outside the band can still reach it after t1
    values: list[float] = []
    append = values.append
    # the end points are a and b themselves, not a + 0 * h and a + _STEPS * h
    for z in [a, *[a + k * h for k in range(1, _STEPS)], b]:
        y = x0 + z * s1
        distance = lower - y if y < lower else y - upper
        if distance <= 0:
            append(_INV_SQRT_2PI * exp(-0.5 * z * z))
        elif reaches:
            append(_INV_SQRT_2PI * exp(-0.5 * z * z) * erfc(distance / scale))
        else:  # no time left to move: _hit_within's 0.0
            append(_INV_SQRT_2PI * exp(-0.5 * z * z) * 0.0)
    odd = sum(values[1:_STEPS:2])
    even = sum(values[2:_STEPS:2])
    return h / 3.0 * (values[0] + values[_STEPS] + 4.0 * odd + 2.0 * even)


def touch_probability(
    x0: float, lower: float, upper: float, t1: float, t2: float, sigma: float
) -> float:
    """P(a driftless BM from ``x0`` is inside [lower, upper] at some t in [t1, t2])."""
    if t2 <= 0 or t2 <= t1:
        return 1.0 if lower <= x0 <= upper else 0.0
    t1 = max(t1, 0.0)
    s1 = sigma * math.sqrt(t1)
    s2 = sigma * math.sqrt(t2 - t1)
    if s1 <= 0:
        if lower <= x0 <= upper:
            return 1.0
        return _hit_within(lower - x0 if x0 < lower else x0 - upper, s2)
    z_lower = (lower - x0) / s1
    z_upper = (upper - x0) / s1
    inside = _phi_cdf(z_upper) - _phi_cdf(z_lower)
    above = _integrate(max(z_upper, -_Z_SPAN), _Z_SPAN, x0, s1, lower, upper, s2)
    below = _integrate(-_Z_SPAN, min(z_lower, _Z_SPAN), x0, s1, lower, upper, s2)
    return min(1.0, max(0.0, inside + above + below))


class BrownianTouchModel:
    """Default model: ``(1 - house_edge) / touch probability``, floored to the cent, clamped."""

    def __init__(self, house_edge: Decimal = Decimal("0.05")) -> None:
        if not Decimal(0) <= house_edge < Decimal(1):
            raise ValueError("house_edge must be in [0, 1)")
        self._keep = float(Decimal(1) - house_edge)
        self._max_rate_p = self._keep / float(MAX_RATE)  # at or below this p the rate is MAX

    def rate(self, cell: Cell, now_ns: int, price_cents: int, sigma: float) -> Decimal:
        now_s = now_ns / 1e9
        p = touch_probability(
            float(price_cents),
            float(cell.lower),
            float(cell.upper),
            cell.col_start - now_s,
            cell.col_end - now_s,
            sigma,
        )
        if p <= self._max_rate_p:
            return MAX_RATE
        raw = Decimal(repr(self._keep / p)).quantize(_CENT, rounding=ROUND_FLOOR)
        return max(MIN_RATE, min(MAX_RATE, raw))


def estimate_sigma(
    ticks: Sequence[tuple[int, int]],
    *,
    fallback: float = 800.0,
    floor: float = 50.0,
    ceiling: float = 100_000.0,
) -> float:
    """Volatility in cents per sqrt second from ``(ts_ns, price_cents)`` ticks in time order."""
    if len(ticks) < 3:
        return fallback
    squares = 0.0
    for (_, p0), (_, p1) in itertools.pairwise(ticks):
        squares += float(p1 - p0) ** 2
    elapsed = (ticks[-1][0] - ticks[0][0]) / 1e9
    if elapsed <= 0:
        return fallback
    return min(ceiling, max(floor, math.sqrt(squares / elapsed)))
