"""KlineSummary (OHLCV) built locally from a stream's trades.

Venues' own candle channels differ in timing and completeness, so the gateway derives candles
from the trades it already has: one builder per (provider, symbol, interval). A candle covers
``[open_ns, open_ns + interval)`` by *venue* trade time (ingest time when the venue gives none)
and is emitted when the first trade of a later interval arrives (or on :meth:`flush`). Intervals
without trades emit nothing. Pure; ids come from an injected source.
"""

from __future__ import annotations

from decimal import Decimal

from tradehall.gateway.events import EventIds, KlineSummary, Trade

__all__ = ["KlineBuilder"]

NS = 1_000_000_000


class KlineBuilder:
    """Aggregates trades into OHLCV candles of ``interval_s`` seconds."""

    def __init__(
        self, provider: str, symbol: str, interval_s: int, ids: EventIds | None = None
    ) -> None:
        self.provider = provider
        self.symbol = symbol
        self.interval_s = interval_s
        self._ids = ids or EventIds()
        self._open_ns: int | None = None
        self._ohlc: list[Decimal] = []
        self._volume = Decimal(0)
        self._trades = 0
        self._last_ingest = 0

    def add(self, trade: Trade) -> KlineSummary | None:
        """Account ``trade``; returns the previous candle if this trade closed it."""
        ts = trade.ts_provider if trade.ts_provider is not None else trade.ts_ingest
        bucket = ts - ts % (self.interval_s * NS)
        closed = None
        if self._open_ns is not None and bucket > self._open_ns:
            closed = self.flush()
        if self._open_ns is None or bucket > self._open_ns:
            self._open_ns = bucket
            self._ohlc = [trade.price, trade.price, trade.price, trade.price]
        elif bucket == self._open_ns:
            _, high, low, _ = self._ohlc
            self._ohlc[1] = max(high, trade.price)
            self._ohlc[2] = min(low, trade.price)
            self._ohlc[3] = trade.price
        else:
            return None  # a trade older than the open candle: already summarised
        self._volume += trade.qty
        self._trades += 1
        self._last_ingest = trade.ts_ingest
        return closed

    def flush(self) -> KlineSummary | None:
        """Close the open candle (if any) and return it."""
        if self._open_ns is None or not self._trades:
            return None
        open_, high, low, close = self._ohlc
        summary = KlineSummary(
            event_id=self._ids.new_id(),
            provider=self.provider,
            symbol=self.symbol,
            ts_provider=self._open_ns + self.interval_s * NS,
            ts_ingest=self._last_ingest,
            interval_s=self.interval_s,
            open_ns=self._open_ns,
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=self._volume,
            trades=self._trades,
        )
        self._volume = Decimal(0)
        self._trades = 0
        return summary
