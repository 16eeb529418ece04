"""The inlined touch probability and the sliced grid build give exactly the plain results.

``_plain_touch_probability`` is the model as first written (one function call per integrand
point, Simpson over a list of inner points); the fast code must agree with it bit for bit, so the
quoted rates (floored to the cent) cannot move by even one cent.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradehall.tap.grid import Cell, GridConfig
from tradehall.tap.pricing import GridPricer
from tradehall.tap.rates import BrownianTouchModel, touch_probability

NS = 1_000_000_000
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _plain_hit_within(distance: float, s2: float) -> float:
    if distance <= 0:
        return 1.0
    if s2 <= 0:
        return 0.0
    return math.erfc(distance / (s2 * _SQRT2))


def _plain_touch_probability(
    x0: float, lower: float, upper: float, t1: float, t2: float, sigma: float
) -> float:
    if t2 <= 0 or t2 <= t1:
        return 1.0 if lower <= x0 <= upper else 0.0
    t1 = max(t1, 0.0)
    s1 = sigma * math.sqrt(t1)
    s2 = sigma * math.sqrt(t2 - t1)
    if s1 <= 0:
        if lower <= x0 <= upper:
            return 1.0
        return _plain_hit_within(lower - x0 if x0 < lower else x0 - upper, s2)
    z_lower = (lower - x0) / s1
    z_upper = (upper - x0) / s1
    inside = 0.5 * math.erfc(-z_upper / _SQRT2) - 0.5 * math.erfc(-z_lower / _SQRT2)

    def integrand(z: float) -> float:
        y = x0 + z * s1
        distance = lower - y if y < lower else y - upper
        return _INV_SQRT_2PI * math.exp(-0.5 * z * z) * _plain_hit_within(distance, s2)

    def integrate(a: float, b: float) -> float:
        if b <= a:
            return 0.0
        h = (b - a) / 24
        inner = [integrand(a + k * h) for k in range(1, 24)]
        odd, even = sum(inner[0::2]), sum(inner[1::2])
        return h / 3.0 * (integrand(a) + integrand(b) + 4.0 * odd + 2.0 * even)

    above = integrate(max(z_upper, -8.0), 8.0)
    below = integrate(-8.0, min(z_lower, 8.0))
    return min(1.0, max(0.0, inside + above + below))


def _walk(seed: int, n: int, now_s: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    price, ticks = 6_000_000, []
    for i in range(n):
        price += rng.randint(-900, 900)
        ticks.append(((now_s - 300) * NS + i * NS // 10, price))
    return ticks


def test_every_cell_of_default_grids_matches_the_plain_formula() -> None:
    cfg = GridConfig()
    model = BrownianTouchModel(Decimal("0.05"))
    pricer = GridPricer(cfg, model)
    checked = 0
    for phase in range(10):
        now_s = 1_790_000_000 + phase
        for sigma_seed in range(3):
            ticks = _walk(sigma_seed, 3_000, now_s)
            snap = pricer.compute(now_s, ticks[-1][1], ticks)
            now = now_s * NS / 1e9
            for cell in snap.layout.cells():
                args = (
                    float(snap.price),
                    float(cell.lower),
                    float(cell.upper),
                    cell.col_start - now,
                    cell.col_end - now,
                    snap.sigma,
                )
                assert touch_probability(*args) == _plain_touch_probability(*args)
                checked += 1
    assert checked == 10 * 3 * 240


@settings(max_examples=300, deadline=None)
@given(
    x0=st.floats(-1e7, 1e7),
    lower=st.floats(-1e7, 1e7),
    width=st.floats(0.0, 1e5),
    t1=st.floats(-50.0, 200.0),
    span=st.floats(-5.0, 50.0),
    sigma=st.floats(0.0, 1e5),
)
def test_touch_probability_is_bit_identical(
    x0: float, lower: float, width: float, t1: float, span: float, sigma: float
) -> None:
    args = (x0, lower, lower + width, t1, t1 + span, sigma)
    assert touch_probability(*args) == _plain_touch_probability(*args)


@pytest.mark.parametrize("sigma", [0.0, 1e-300, 50.0, 800.0, 1e5])
def test_edge_volatilities_match(sigma: float) -> None:
    for t1 in (-3.0, 0.0, 1e-9, 7.0):
        for lower in (5_990_000.0, 6_000_000.0, 6_050_000.0):
            args = (6_000_055.0, lower, lower + 1_000.0, t1, t1 + 10.0, sigma)
            assert touch_probability(*args) == _plain_touch_probability(*args)


def test_sliced_build_equals_compute_and_steps_once_per_column() -> None:
    cfg = GridConfig()
    pricer = GridPricer(cfg, BrownianTouchModel(Decimal("0.05")))
    now_s = 1_790_000_003
    ticks = _walk(5, 500, now_s)
    whole = pricer.compute(now_s, 6_000_055, ticks)
    build = pricer.begin(now_s, 6_000_055, ticks)
    steps = 1
    while not build.step():
        steps += 1
    assert steps == 1 + cfg.columns  # the volatility and layout, then one per column
    sliced = build.result()
    assert sliced == whole
    assert list(sliced.rates) == list(whole.rates)


def test_result_before_the_last_step_is_refused() -> None:
    pricer = GridPricer(GridConfig(), BrownianTouchModel(Decimal("0.05")))
    build = pricer.begin(1_790_000_003, 6_000_055, [])
    with pytest.raises(RuntimeError):
        build.result()
    build.step()
    with pytest.raises(RuntimeError):
        build.result()


def test_relaid_snapshot_is_reused_within_the_second() -> None:
    cfg = GridConfig()
    pricer = GridPricer(cfg, BrownianTouchModel(Decimal("0.05")))
    snap = pricer.compute(1_790_000_009, 6_000_055, [])
    later = 1_790_000_010 * NS + 300_000_000  # the next column has started
    moved = pricer.at(snap, later)
    assert moved.layout.current_col_start == 1_790_000_010
    assert pricer.at(snap, later + 500_000_000) is moved
    newest = Cell(1_790_000_120, 1_790_000_130, 6_000_000, 6_001_000)
    plain = pricer.model.rate(newest, 1_790_000_010 * NS, 6_000_055, snap.sigma)
    assert moved.rates[newest.cell_id] == plain
    assert pricer.at(snap, later + NS) is not moved  # a new second is re-laid afresh
