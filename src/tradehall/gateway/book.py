"""A price-level order book (L2): the pure data structure the assemblers maintain.

Levels are kept in two :class:`~sortedcontainers.SortedDict` keyed by exact ``Decimal`` prices,
so best prices, top-N and truncation are ``O(log n)``. Quantities are absolute; setting a level to
zero deletes it, and deleting an unknown level is a no-op (venues do send those).

This module also holds Kraken's v2 book checksum (:func:`kraken_checksum`), shared by the adapter
and the fake venue so both sides compute it with one routine.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from decimal import Decimal
from functools import lru_cache

from sortedcontainers import SortedDict

from tradehall.gateway.events import Level

__all__ = ["OrderBook", "kraken_checksum", "kraken_format"]


class OrderBook:
    """Bids and asks of one instrument; bids are read best-first from the top of the dict."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: SortedDict[Decimal, Decimal] = SortedDict()
        self.asks: SortedDict[Decimal, Decimal] = SortedDict()

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book (zero-quantity levels are skipped)."""
        self.clear()
        self.apply(bids, asks)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set every given level to its absolute quantity; zero deletes."""
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if price in side:
                    if qty:
                        dict.__setitem__(side, price, qty)  # same key: no re-sorting needed
                    else:
                        del side[price]
                elif qty:
                    side[price] = qty

    def best_bid(self) -> Level | None:
        return self.bids.peekitem(-1) if self.bids else None

    def best_ask(self) -> Level | None:
        return self.asks.peekitem(0) if self.asks else None

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask (an impossible resting book)."""
        if not self.bids or not self.asks:
            return False
        return bool(self.bids.peekitem(-1)[0] >= self.asks.peekitem(0)[0])

    def top_bids(self, n: int | None = None) -> tuple[Level, ...]:
        """Bids best-first (highest price first), at most ``n``."""
        bids = self.bids
        size = len(bids)
        start = 0 if n is None else max(0, size - n)
        return tuple([(price, bids[price]) for price in bids.islice(start, size, reverse=True)])

    def top_asks(self, n: int | None = None) -> tuple[Level, ...]:
        """Asks best-first (lowest price first), at most ``n``."""
        asks = self.asks
        return tuple([(price, asks[price]) for price in asks.islice(0, n)])

    def truncate(self, depth: int) -> None:
        """Keep only the best ``depth`` levels per side (Kraken sends no deletes beyond depth)."""
        while len(self.bids) > depth:
            self.bids.popitem(0)
        while len(self.asks) > depth:
            self.asks.popitem(-1)

    def as_dicts(self) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """Plain copies of both sides, for comparisons in tests and tools."""
        return dict(self.bids), dict(self.asks)

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


@lru_cache(maxsize=1 << 16)
def kraken_format(value: Decimal, places: int) -> str:
    """Kraken checksum text of one number: fixed ``places`` decimals, no dot, no leading zeros.

    Formatting at the pair's precision (rather than from whatever text arrived) keeps trailing
    zeros significant: ``0.10000000`` at 8 places is ``10000000``, never ``1``.
    """
    text = f"{value:.{places}f}"  # equal values format alike, so caching by value is sound
    return text.replace(".", "").lstrip("0")


def kraken_checksum(
    bids: Iterable[Level], asks: Iterable[Level], price_places: int, qty_places: int
) -> int:
    """CRC32 of the top-10 asks (ascending) then top-10 bids (descending), Kraken v2 style.

    ``bids`` and ``asks`` must already be best-first; only the first ten of each are used.
    """
    parts: list[str] = []
    for levels in (asks, bids):
        for i, (price, qty) in enumerate(levels):
            if i == 10:
                break
            parts.append(kraken_format(price, price_places))
            parts.append(kraken_format(qty, qty_places))
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF
