"""The resolution rule: touch within [col_start, col_end), payout floor, gap -> void."""

from __future__ import annotations

from decimal import Decimal

from tradehall.tap.resolution import Outcome, Resolution, payout_cents, resolve

START, END = 1_000_000, 1_010_000  # ms
BAND = {"lower": 6_000_000, "upper": 6_001_000}


def run(ticks: list[tuple[int, int]], previous: int | None = START - 500) -> Resolution:
    return resolve(
        col_start_ms=START,
        col_end_ms=END,
        amount=1_000,
        rate=Decimal("2.57"),
        ticks=ticks,
        previous_tick_ms=previous,
        **BAND,
    )


def steady(price: int) -> list[tuple[int, int]]:
    return [(START + i * 1_000, price) for i in range(10)]


def test_win_on_touch_inclusive_bounds_and_floor_payout() -> None:
    for price in (6_000_000, 6_000_500, 6_001_000):
        ticks = [*steady(5_000_000)[:5], (START + 5_500, price), *steady(5_000_000)[6:]]
        res = run(ticks)
        assert res.outcome is Outcome.WON
        assert res.payout == 2_570
        assert res.resolution_price == price
        assert res.resolution_tick_ts == START + 5_500


def test_ticks_outside_window_do_not_count() -> None:
    ticks = [(START - 1, 6_000_500), *steady(5_000_000), (END, 6_000_500)]
    res = run(ticks)
    assert res.outcome is Outcome.LOST
    assert res.payout == 0
    assert res.ticks_examined == 10


def test_gap_over_10s_voids_with_refund() -> None:
    res = run([], previous=START - 1_000)
    assert res.outcome is Outcome.VOID
    assert res.payout == 1_000
    # a 10.001 s hole between ticks inside a 20 s column voids too
    ok = run([(START + 9_000, 5_000_000)], previous=START - 500)
    assert ok.outcome is Outcome.LOST


def test_gap_exactly_10s_is_not_void() -> None:
    res = resolve(
        col_start_ms=START,
        col_end_ms=START + 20_000,
        amount=100,
        rate=Decimal("3"),
        ticks=[(START, 1), (START + 10_000, 1)],
        previous_tick_ms=START,
        **BAND,
    )
    assert res.outcome is Outcome.LOST
    res = resolve(
        col_start_ms=START,
        col_end_ms=START + 20_000,
        amount=100,
        rate=Decimal("3"),
        ticks=[(START, 1), (START + 9_999, 1)],
        previous_tick_ms=START,
        **BAND,
    )
    assert res.outcome is Outcome.VOID and res.max_gap_ms == 10_001


def test_payout_floor_is_exact() -> None:
    assert payout_cents(333, Decimal("1.01")) == 336  # 336.33
    assert payout_cents(100, Decimal("99.99")) == 9_999
    assert payout_cents(1, Decimal("1.99")) == 1
