"""Explicit per-venue symbol maps between canonical symbols and venue symbols.

Canonical symbols are ``BASE-QUOTE`` (``BTC-USD``). Each venue spells them its own way and the
mapping is a table, never string munging, because it is not always the same instrument:

=========== ============ ================ ===============
canonical   Binance      Coinbase         Kraken v2
=========== ============ ================ ===============
``BTC-USD`` ``BTCUSDT``  ``BTC-USD``      ``BTC/USD``
``ETH-USD`` ``ETHUSDT``  ``ETH-USD``      ``ETH/USD``
``SOL-USD`` ``SOLUSDT``  ``SOL-USD``      ``SOL/USD``
``XXX-USD`` ``XXXUSDT``  ``XXX-USD``      ``XXX/USD``
=========== ============ ================ ===============

The table holds the 50 instruments of :data:`UNIVERSE` (each map lists every one explicitly).

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
    "UNIVERSE",
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


#: The instruments the gateway knows, in this order (50: the SC-011 load is 50 symbols x 3
#: venues). BTC, ETH and SOL carry the venues' real precisions; the rest share generic ones
#: (prices to the cent, Binance quantities to 4 places, Coinbase/Kraken to 8).
UNIVERSE: tuple[str, ...] = (
    "BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "DOT", "AVAX", "LINK", "LTC",
    "BCH", "ATOM", "UNI", "XLM", "ETC", "FIL", "AAVE", "ALGO", "NEAR", "APT",
    "ARB", "OP", "SUI", "INJ", "TIA", "SEI", "MKR", "COMP", "SNX", "CRV",
    "LDO", "GRT", "SAND", "MANA", "AXS", "APE", "SHIB", "PEPE", "FET", "RENDER",
    "IMX", "HBAR", "ICP", "EGLD", "FLOW", "XTZ", "EOS", "KSM", "ZEC", "YFI",
)  # fmt: skip
_PRECISIONS = {  # venue: base -> (price places, quantity places); others use "*"
    "binance": {"BTC": (2, 5), "ETH": (2, 4), "SOL": (2, 3), "*": (2, 4)},
    "coinbase": {"*": (2, 8)},
    "kraken": {"BTC": (1, 8), "*": (2, 8)},
}
_SPELLING = {"binance": "{}USDT", "coinbase": "{}-USD", "kraken": "{}/USD"}


def _universe(provider: str) -> SymbolMap:
    precisions = _PRECISIONS[provider]
    return SymbolMap(
        provider,
        [
            VenueSymbol(
                f"{base}-USD",
                _SPELLING[provider].format(base),
                *precisions.get(base, precisions["*"]),
            )
            for base in UNIVERSE
        ],
    )


BINANCE = _universe("binance")
COINBASE = _universe("coinbase")
KRAKEN = _universe("kraken")
VENUES: dict[str, SymbolMap] = {m.provider: m for m in (BINANCE, COINBASE, KRAKEN)}
