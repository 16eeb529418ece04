from decimal import Decimal

import pytest

from tradehall.core.money import MoneyError, cents_to_decimal, format_cents, parse_cents


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        (Decimal("150.00"), 15000),
        (Decimal("150.000"), 15000),
        (Decimal("0.01"), 1),
        (Decimal("1E+2"), 10000),
        (7, 700),
        (0, 0),
        (Decimal("-2.5"), -250),
        (Decimal("1E+30"), 10**32),
    ],
)
def test_parse_cents_accepts_exact_amounts(value: object, cents: int) -> None:
    assert parse_cents(value) == cents


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (Decimal("0.001"), "precision"),
        (Decimal("148.505"), "precision"),
        (Decimal("1E-999999"), "precision"),
        (True, "type"),
        ("1.00", "type"),
        (None, "type"),
        (1.5, "type"),
        (Decimal("NaN"), "finite"),
        (Decimal("Infinity"), "finite"),
        (Decimal("1E+999999"), "range"),
    ],
)
def test_parse_cents_refuses_inexact_or_non_numbers(value: object, reason: str) -> None:
    with pytest.raises(MoneyError) as info:
        parse_cents(value)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("cents", "text"), [(14860, "148.60"), (0, "0.00"), (5, "0.05"), (-5, "-0.05"), (100, "1.00")]
)
def test_rendering_always_has_two_places(cents: int, text: str) -> None:
    assert format_cents(cents) == text
    assert str(cents_to_decimal(cents)) == text
