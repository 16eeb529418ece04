"""Exact money: integer cents inside, two-decimal JSON numbers at the boundary.

Business logic never sees a float. Input arrives as :class:`decimal.Decimal` (JSON numbers are
decoded with a ``Decimal`` float hook) or ``int``; :func:`parse_cents` accepts a value iff
``value * 100`` is an integer, so ``150.000`` is 15000 cents while ``150.001`` is refused.
Output goes through :func:`cents_to_decimal`, whose result always carries exactly two decimal
places, so an encoder writing decimals as numbers renders ``150.00``, never ``150`` or ``150.0``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

__all__ = ["MoneyError", "cents_to_decimal", "format_cents", "parse_cents"]

_HUNDRED = Decimal(100)
MAX_DIGITS = 60  # integer digits accepted; far beyond any real amount, far below DoS sizes


class MoneyError(ValueError):
    """A value that is not an exact amount of cents.

    ``reason`` is ``"type"`` (not a number), ``"precision"`` (more than two decimals),
    ``"finite"`` (NaN/infinity) or ``"range"`` (absurdly large), so callers can map each to their
    own message.
    """

    def __init__(self, reason: str, value: object) -> None:
        super().__init__(f"{reason}: {value!r}")
        self.reason = reason
        self.value = value


def parse_cents(value: object) -> int:
    """Return ``value`` as integer cents, refusing booleans, non-numbers and sub-cent digits."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise MoneyError("type", value)
    if isinstance(value, int):
        return value * 100
    if not value.is_finite():
        raise MoneyError("finite", value)
    if value.adjusted() > MAX_DIGITS:  # 1e999999 is well-formed JSON, but no amount of money
        raise MoneyError("range", value)
    try:
        scaled = value * _HUNDRED
        if scaled != scaled.to_integral_value():
            raise MoneyError("precision", value)
        return int(scaled)
    except InvalidOperation as exc:  # absurd exponents such as 1e999999999
        raise MoneyError("precision", value) from exc


def cents_to_decimal(cents: int) -> Decimal:
    """Render integer cents as a Decimal with exactly two places (``14860`` -> ``148.60``)."""
    return Decimal(cents).scaleb(-2)


def format_cents(cents: int) -> str:
    """Render integer cents as text with exactly two places (``-5`` -> ``-0.05``)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"
