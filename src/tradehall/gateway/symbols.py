"""Explicit per-venue symbol maps between canonical symbols and venue symbols.

Canonical symbols are ``BASE-QUOTE`` (``BTC-USD``). Each venue spells them its own way and the
mapping is a table, never string munging, because it is not always the same instrument:

=========== ============ ================ ===============
canonical   Binance      Coinbase         Kraken v2
=========== ============ ================ ===============
``BTC-USD`` ``BTCUSDT``  ``BTC-USD``      ``BTC/USD``
``ETH-USD`` ``ETHUSDT``  ``ETH-USD``      ``ETH/USD``
``SOL-USD`` ``SOLUSDT``  ``SOL-USD``      ``SOL/USD``
=========== ============ ================ ===============

Binance has no deep USD spot book, so its USDT pair *stands in* for ``BTC-USD`` (a documented
proxy: USDT trades close to, but not exactly at, one dollar). Binance stream names use the
lowercase symbol (``btcusdt@depth@100ms``) while payloads carry the uppercase one.

Each entry also records the venue's price and quantity precision (decimal places). Kraken's book
checksum is computed from numbers formatted at exactly these precisions, and the fake venues use
them to render realistic prices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BINANCE",
    "COINBASE",
    "KRAKEN",
    "VENUES",
    "SymbolMap",
    "UnknownSymbolError",
    "VenueSymbol",
]


class UnknownSymbolError(KeyError):
    """A symbol with no entry in the venue's map."""


@dataclass(frozen=True)
class VenueSymbol:
    """One instrument on one venue."""

    canonical: str
    venue: str
    price_precision: int
    qty_precision: int


class SymbolMap:
    """A two-way, explicit mapping for one venue."""

    def __init__(self, provider: str, entries: Iterable[VenueSymbol]) -> None:
        self.provider = provider
        self._by_canonical: dict[str, VenueSymbol] = {}
        self._by_venue: dict[str, VenueSymbol] = {}
        for entry in entries:
            if entry.canonical in self._by_canonical or entry.venue in self._by_venue:
                raise ValueError(f"duplicate symbol {entry} for {provider}")
            self._by_canonical[entry.canonical] = entry
            self._by_venue[entry.venue] = entry

    def to_venue(self, canonical: str) -> str:
        """The venue spelling of ``canonical`` (``BTC-USD`` -> ``BTCUSDT`` on Binance)."""
        return self.entry(canonical).venue

    def to_canonical(self, venue_symbol: str) -> str:
        """The canonical symbol for the venue's ``venue_symbol``."""
        try:
            return self._by_venue[venue_symbol].canonical
        except KeyError:
            raise UnknownSymbolError(
                f"{self.provider}: unknown venue symbol {venue_symbol!r}"
            ) from None

    def entry(self, canonical: str) -> VenueSymbol:
        """The full entry (with precisions) for ``canonical``."""
        try:
            return self._by_canonical[canonical]
        except KeyError:
            raise UnknownSymbolError(f"{self.provider}: unknown symbol {canonical!r}") from None

    def entry_for_venue(self, venue_symbol: str) -> VenueSymbol:
        """The full entry for the venue's spelling."""
        return self.entry(self.to_canonical(venue_symbol))

    @property
    def canonical_symbols(self) -> tuple[str, ...]:
        return tuple(self._by_canonical)


BINANCE = SymbolMap(
    "binance",
    [
        VenueSymbol("BTC-USD", "BTCUSDT", 2, 5),
        VenueSymbol("ETH-USD", "ETHUSDT", 2, 4),
        VenueSymbol("SOL-USD", "SOLUSDT", 2, 3),
    ],
)
COINBASE = SymbolMap(
    "coinbase",
    [
        VenueSymbol("BTC-USD", "BTC-USD", 2, 8),
        VenueSymbol("ETH-USD", "ETH-USD", 2, 8),
        VenueSymbol("SOL-USD", "SOL-USD", 2, 8),
    ],
)
KRAKEN = SymbolMap(
    "kraken",
    [
        VenueSymbol("BTC-USD", "BTC/USD", 1, 8),
        VenueSymbol("ETH-USD", "ETH/USD", 2, 8),
        VenueSymbol("SOL-USD", "SOL/USD", 2, 8),
    ],
)
VENUES: dict[str, SymbolMap] = {m.provider: m for m in (BINANCE, COINBASE, KRAKEN)}
