"""What every venue adapter shares: settings, the event sink, per-symbol books and their events.

An adapter owns one :class:`~tradehall.gateway.assembler.BookAssembler` per symbol and turns its
outcomes into canonical events: a ``BookStatus`` on every state change, a full ``BookSnapshot``
when a book (re)turns live, and a ``BookUpdate`` per applied diff. Nothing downstream of the sink
knows which venue produced an event, apart from ``provider``.

``AdapterSettings`` holds the knobs the issue names: staleness, sync timeout, bounded buffers,
periodic refresh, back-off and the idle watchdog.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from tradehall.core.clock import Clock, SystemClock
from tradehall.core.timefmt import parse_rfc3339_ns
from tradehall.gateway.assembler import Action, BookAssembler, BookState, Outcome, Sequencing
from tradehall.gateway.backoff import Backoff
from tradehall.gateway.book import OrderBook
from tradehall.gateway.connection import WsRunner, WsSession
from tradehall.gateway.events import (
    BookSnapshot,
    BookStatus,
    BookUpdate,
    Event,
    EventIds,
    Level,
)
from tradehall.gateway.kline import KlineBuilder
from tradehall.gateway.symbols import SymbolMap

__all__ = ["AdapterSettings", "EventSink", "VenueAdapter", "venue_time_ns"]

EventSink = Callable[[Event], None]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.venue")


@dataclass(frozen=True)
class AdapterSettings:
    """Timers and bounds shared by every adapter (seconds unless noted)."""

    stale_after: float = 10.0  # no book message while LIVE -> resync that symbol
    sync_timeout: float = 5.0  # a sync not finished by then -> start over
    max_buffer: int = 2000  # buffered diffs (UPDATE_ID venues) before overflow -> resync
    refresh_every: float | None = 180.0  # periodic re-snapshot (Binance only uses it)
    idle_timeout: float = 10.0  # nothing at all on the socket -> reconnect
    max_age: float | None = 23.5 * 3600  # proactive reconnect before the venue's 24 h cut
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    tick: float = 0.1  # watchdog period
    depth: int = 10  # Kraken subscription depth; Binance REST snapshot uses snapshot_limit
    snapshot_limit: int = 1000
    kline_interval: int | None = 60


class VenueAdapter:
    """Per-symbol assemblers plus the helpers that emit book events."""

    provider = "venue"

    def __init__(
        self,
        symbols: Sequence[str],
        sink: EventSink,
        symbol_map: SymbolMap,
        *,
        sequencing: Sequencing,
        settings: AdapterSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        ids: EventIds | None = None,
        depth: int | None = None,
        checksums: Mapping[str, Callable[[OrderBook], int]] | None = None,
        refresh: bool | None = None,
    ) -> None:
        self.settings = settings or AdapterSettings()
        self.sink = sink
        self.symbols = tuple(symbols)
        self.symbol_map = symbol_map
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.ids = ids or EventIds()
        self._anchor_ns = self.clock.time_ns() - int(self.clock.monotonic() * 1e9)
        s = self.settings
        if refresh is None:  # out-of-band snapshots can miss levels beyond the snapshot depth
            refresh = sequencing is Sequencing.UPDATE_ID
        self.assemblers: dict[str, BookAssembler] = {
            symbol: BookAssembler(
                sequencing,
                max_buffer=s.max_buffer,
                stale_after=s.stale_after,
                sync_timeout=s.sync_timeout,
                refresh_every=s.refresh_every if refresh else None,
                depth=depth,
                checksum=(checksums or {}).get(symbol),
            )
            for symbol in self.symbols
        }
        self.klines: dict[str, KlineBuilder] = (
            {
                sym: KlineBuilder(self.provider, sym, s.kline_interval, self.ids)
                for sym in self.symbols
            }
            if s.kline_interval
            else {}
        )
        # (symbol, reason, epoch) of recent resyncs, for tests and diagnostics
        self.resync_log: deque[tuple[str, str, int]] = deque(maxlen=1000)
        # id of the frame being handled: the trace_id of every event parsed from it
        self.trace = ""

    async def run(self) -> None:
        """Connect and keep the feed going until :meth:`stop` (implemented per venue)."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def new_backoff(self) -> Backoff:
        s = self.settings
        return Backoff(s.backoff_base, s.backoff_cap, rng=self.rng)

    def new_runner(self, session: WsSession, name: str | None = None) -> WsRunner:
        """A connection runner for ``session`` with this adapter's clock, back-off and timeouts."""
        s = self.settings
        return WsRunner(
            name or self.provider,
            session,
            clock=self.clock,
            backoff=self.new_backoff(),
            idle_timeout=s.idle_timeout,
            max_age=s.max_age,
            tick=s.tick,
        )

    def book(self, symbol: str) -> OrderBook:
        return self.assemblers[symbol].book

    def state(self, symbol: str) -> BookState:
        return self.assemblers[symbol].state

    def now_ns(self) -> int:
        """Local receive time: wall time anchored once, then advanced by the monotonic clock,
        so ``ts_ingest`` never jumps backwards when the wall clock is stepped."""
        return self._anchor_ns + int(self.clock.monotonic() * 1e9)

    def emit(self, event: Event) -> None:
        self.sink(event)

    def resync_all(self, reason: str) -> None:
        """After a lost connection, every book that had started must start again."""
        now = self.clock.monotonic()
        for symbol, asm in self.assemblers.items():
            if asm.epoch:
                asm.resync("disconnect", now)
                self.status(symbol, f"disconnect: {reason}")

    def status(self, symbol: str, reason: str, trace_id: str | None = None) -> None:
        asm = self.assemblers[symbol]
        if asm.state is not BookState.LIVE:
            self.resync_log.append((symbol, reason, asm.epoch))
            log.info("book_resync", venue=self.provider, symbol=symbol, reason=reason)
        self.emit(
            BookStatus(
                event_id=self.ids.new_id(),
                provider=self.provider,
                symbol=symbol,
                ts_ingest=self.now_ns(),
                trace_id=self.trace if trace_id is None else trace_id,
                state=asm.state.value,
                epoch=asm.epoch,
                reason=reason,
            )
        )

    def book_outcome(
        self,
        symbol: str,
        outcome: Outcome,
        *,
        bids: Sequence[Level] = (),
        asks: Sequence[Level] = (),
        seq: int | None = None,
        seq_first: int | None = None,
        ts_provider: int | None = None,
        ts_ingest: int = 0,
        trace_id: str | None = None,
    ) -> None:
        """Emit the canonical events for one assembler outcome (resync requests excepted)."""
        asm = self.assemblers[symbol]
        trace_id = self.trace if trace_id is None else trace_id
        action = outcome.action
        if action is Action.APPLIED:
            self.emit(
                BookUpdate(
                    event_id=self.ids.new_id(),
                    provider=self.provider,
                    symbol=symbol,
                    seq_provider=seq,
                    ts_provider=ts_provider,
                    ts_ingest=ts_ingest,
                    trace_id=trace_id,
                    bids=tuple(bids),
                    asks=tuple(asks),
                    epoch=asm.epoch,
                    seq_first=seq_first,
                )
            )
        elif action is Action.LIVE:
            self.status(symbol, "synced", trace_id)
            book = asm.book
            self.emit(
                BookSnapshot(
                    event_id=self.ids.new_id(),
                    provider=self.provider,
                    symbol=symbol,
                    seq_provider=asm.update_id,
                    ts_provider=ts_provider,
                    ts_ingest=ts_ingest or self.now_ns(),
                    trace_id=trace_id,
                    bids=book.top_bids(),
                    asks=book.top_asks(),
                    depth=max(len(book.bids), len(book.asks)),
                    epoch=asm.epoch,
                )
            )


def venue_time_ns(text: str) -> int | None:
    """A venue's RFC 3339 timestamp as epoch ns; ``None`` when absent or malformed."""
    try:
        return parse_rfc3339_ns(text) if text else None
    except ValueError:
        return None
