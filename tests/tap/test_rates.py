"""The default reward-rate model and the volatility estimate."""

from __future__ import annotations

import math
import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tradehall.tap.grid import Cell
from tradehall.tap.rates import (
    MAX_RATE,
    MIN_RATE,
    BrownianTouchModel,
    estimate_sigma,
    touch_probability,
)

NS = 1_000_000_000


def test_inside_band_at_zero_time_is_certain() -> None:
    assert touch_probability(100.0, 90.0, 110.0, 0.0, 10.0, 5.0) == 1.0


def test_zero_start_matches_reflection_principle() -> None:
    # From 0, level 10 within 4 s at sigma 5: 2 * (1 - Phi(10 / 10)) = erfc(1/sqrt 2)
    expected = math.erfc(1 / math.sqrt(2))
    assert abs(touch_probability(0.0, 10.0, 20.0, 0.0, 4.0, 5.0) - expected) < 1e-12


def test_probability_matches_monte_carlo() -> None:
    rng = random.Random(7)
    x0, lower, upper, t1, t2, sigma = 0.0, 15.0, 25.0, 10.0, 20.0, 3.0
    dt, hits, paths = 0.05, 0, 4000
    steps1, steps2 = int(t1 / dt), int((t2 - t1) / dt)
    for _ in range(paths):
        x = x0 + rng.gauss(0.0, sigma * math.sqrt(t1))
        hit = lower <= x <= upper
        for _ in range(steps2):
            if hit:
                break
            x += rng.gauss(0.0, sigma * math.sqrt(dt))
            hit = lower <= x <= upper
        hits += hit
    del steps1
    analytic = touch_probability(x0, lower, upper, t1, t2, sigma)
    # discrete monitoring undercounts touches slightly, so allow a one-sided margin
    assert abs(hits / paths - analytic) < 0.05


def test_farther_and_later_bands_pay_more() -> None:
    model = BrownianTouchModel(Decimal("0.05"))
    now = 1_000_000_000 * NS
    price = 6_000_000
    near = Cell(1_000_000_020, 1_000_000_030, 6_000_000, 6_001_000)
    far = Cell(1_000_000_020, 1_000_000_030, 6_005_000, 6_006_000)
    assert model.rate(far, now, price, 800.0) > model.rate(near, now, price, 800.0)


def test_rates_are_clamped_and_two_decimals() -> None:
    model = BrownianTouchModel(Decimal("0.05"))
    now = 1_000_000_000 * NS
    very_far = Cell(1_000_000_020, 1_000_000_030, 9_000_000, 9_001_000)
    sure = Cell(1_000_000_020, 1_000_000_030, 0, 100_000_000)
    assert model.rate(very_far, now, 6_000_000, 800.0) == MAX_RATE
    assert model.rate(sure, now, 6_000_000, 800.0) == MIN_RATE


@settings(max_examples=60, deadline=None)
@given(
    offset=st.integers(-20, 20),
    col=st.integers(2, 11),
    sigma=st.floats(50.0, 5_000.0),
)
def test_rate_always_in_range(offset: int, col: int, sigma: float) -> None:
    model = BrownianTouchModel(Decimal("0.05"))
    now = 1_000_000_003 * NS
    start = 1_000_000_000 + col * 10
    lower = 6_000_000 + offset * 1_000
    rate = model.rate(Cell(start, start + 10, lower, lower + 1_000), now, 6_000_055, sigma)
    assert MIN_RATE <= rate <= MAX_RATE
    assert rate == rate.quantize(Decimal("0.01"))


def test_estimate_sigma() -> None:
    ticks = [(i * NS, 6_000_000 + (100 if i % 2 else 0)) for i in range(11)]
    assert abs(estimate_sigma(ticks) - 100.0) < 1e-9
    assert estimate_sigma(ticks[:2], fallback=123.0) == 123.0
    flat = [(i * NS, 6_000_000) for i in range(11)]
    assert estimate_sigma(flat, floor=50.0) == 50.0
