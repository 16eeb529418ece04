"""Tradehall venue adapter: our own exchange's ``/ws/market`` stream as canonical events.

One WebSocket per exchange. On every (re)connect it subscribes each symbol to ``book``,
``trades`` and ``ticker`` (one control message per symbol, ``id`` = ``<symbol>:<n>`` so an error
names its symbol). Every server frame is a JSON **array** of messages, decoded in one go into a
tagged union.

Books use the ``IN_BAND_SEQUENCED`` assembler: the ``book_snapshot`` that follows a subscription
carries its sequence ``S``; a ``book`` diff carries ``first_sequence..sequence`` with absolute level
figures (``total_quantity`` 0 deletes). Once live, a diff already covered is ignored and one whose
``first_sequence`` skips past ``last + 1`` is a **gap**: that symbol alone is re-subscribed
(``book`` channel only), which the exchange answers with a fresh snapshot; diffs still queued from
before it are dropped by the assembler while the book is not live. A crossed book resyncs the same
way.

Trades: the ``trades_snapshot`` after a subscription gives the last trade sequence; ``trade``
messages at or below it are ignored; a jump is counted (``missed_trades``) and, after a reconnect,
the snapshot's trades newer than the last one seen are emitted, so a short outage loses nothing
that the exchange still lists (its last 50). Tickers map to canonical ``Ticker`` when both sides
of the book exist.

The exchange sends no heartbeats and a quiet symbol is normal, so per-book staleness is off
(``stale_after`` = infinity) and liveness is connection-level: when nothing was sent for half
the idle timeout the adapter sends ``{"op": "symbols"}``, whose reply keeps the idle watchdog
fed; a dead server is then noticed within ``idle_timeout`` and the runner reconnects.

Prices are JSON numbers with two decimals decoded straight into ``Decimal`` from their text;
quantities are integers (shares), emitted as ``Decimal``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection

from tradehall.core.clock import Clock
from tradehall.gateway.assembler import Action, Diff, Resync, Sequencing, Snapshot
from tradehall.gateway.events import EventIds, Level, Side, Ticker, Trade
from tradehall.gateway.symbols import SymbolMap, VenueSymbol
from tradehall.gateway.venues.base import AdapterSettings, EventSink, VenueAdapter, venue_time_ns

__all__ = ["TradehallAdapter", "market_ws_url", "parse_symbol_overrides", "tradehall_symbols"]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.tradehall")


def tradehall_symbols(
    canonical: Sequence[str], overrides: Mapping[str, str] | None = None
) -> SymbolMap:
    """The symbol map for the exchange: ``BTC-USD`` -> ``BTCUSD`` unless overridden.

    Exchange symbols are ``^[A-Z]{1,10}$``; a default that does not fit (or an override that
    does not) is refused here rather than at subscription time.
    """
    overrides = overrides or {}
    entries = []
    for symbol in canonical:
        venue = overrides.get(symbol, symbol.replace("-", ""))
        if not (1 <= len(venue) <= 10 and venue.isascii() and venue.isalpha() and venue.isupper()):
            raise ValueError(f"{symbol}: exchange symbol {venue!r} must match ^[A-Z]{{1,10}}$")
        entries.append(VenueSymbol(symbol, venue, 2, 0))
    return SymbolMap("tradehall", entries)


def parse_symbol_overrides(text: str) -> dict[str, str]:
    """``BTC-USD=BTCUSD,ETH-USD=ETH`` -> mapping (empty text -> no overrides)."""
    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        canonical, sep, venue = item.partition("=")
        if not sep or not canonical.strip() or not venue.strip():
            raise ValueError("expected CANONICAL=EXCHANGE pairs such as BTC-USD=BTCUSD")
        result[canonical.strip().upper()] = venue.strip().upper()
    return result


def market_ws_url(base: str) -> str:
    """``http://h:p`` (or ``ws://h:p``) -> ``ws://h:p/ws/market``; a full URL is kept."""
    url = base.rstrip("/")
    if url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"expected an http(s):// or ws(s):// URL, got {base!r}")
    return url if url.endswith("/ws/market") else url + "/ws/market"


# -- wire messages ---------------------------------------------------------------------------


class _Level(msgspec.Struct):
    price: Decimal
    total_quantity: int
    order_count: int = 0


class _Subscribed(msgspec.Struct, tag="subscribed", tag_field="type"):
    symbol: str = ""
    channels: list[str] = []
    id: int | str | None = None


class _Unsubscribed(msgspec.Struct, tag="unsubscribed", tag_field="type"):
    symbol: str = ""
    id: int | str | None = None


class _Error(msgspec.Struct, tag="error", tag_field="type"):
    code: str = ""
    message: str = ""
    id: int | str | None = None


class _Symbols(msgspec.Struct, tag="symbols", tag_field="type"):
    symbols: list[str] = []
    id: int | str | None = None


class _BookSnapshot(msgspec.Struct, tag="book_snapshot", tag_field="type"):
    symbol: str
    sequence: int
    bids: list[_Level]
    asks: list[_Level]


class _Book(msgspec.Struct, tag="book", tag_field="type"):
    symbol: str
    first_sequence: int
    sequence: int
    bids: list[_Level]
    asks: list[_Level]


class _Trade(msgspec.Struct, tag="trade", tag_field="type"):
    symbol: str
    sequence: int
    trade_id: str
    price: Decimal
    quantity: int
    taker_side: str
    executed_at: str = ""


class _TradesSnapshot(msgspec.Struct, tag="trades_snapshot", tag_field="type"):
    symbol: str
    sequence: int
    trades: list[_Trade]


class _Ticker(msgspec.Struct, tag="ticker", tag_field="type"):
    symbol: str
    book_sequence: int = 0
    best_bid: Decimal | None = None
    best_bid_quantity: int | None = None
    best_ask: Decimal | None = None
    best_ask_quantity: int | None = None
    last_price: Decimal | None = None
    last_quantity: int | None = None


_Message = (
    _Subscribed
    | _Unsubscribed
    | _Error
    | _Symbols
    | _BookSnapshot
    | _Book
    | _Trade
    | _TradesSnapshot
    | _Ticker
)
_frame = msgspec.json.Decoder(list[_Message])


def _levels(levels: list[_Level]) -> list[Level]:
    return [(lv.price, Decimal(lv.total_quantity)) for lv in levels]


class TradehallAdapter(VenueAdapter):
    """The exchange's market-data WebSocket; see the module docstring."""

    provider = "tradehall"

    def __init__(
        self,
        symbols: Sequence[str],
        sink: EventSink,
        *,
        ws_url: str = "ws://127.0.0.1:8080/ws/market",
        symbol_map: SymbolMap | None = None,
        settings: AdapterSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        ids: EventIds | None = None,
    ) -> None:
        # No heartbeats on this stream and quiet books are normal: no per-book staleness.
        settings = dataclasses.replace(settings or AdapterSettings(), stale_after=math.inf)
        symbol_map = symbol_map or tradehall_symbols(symbols)
        super().__init__(
            symbols,
            sink,
            symbol_map,
            sequencing=Sequencing.IN_BAND_SEQUENCED,
            settings=settings,
            clock=clock,
            rng=rng,
            ids=ids,
            refresh=False,
        )
        self.ws_url = market_ws_url(ws_url)
        self._by_venue = {symbol_map.to_venue(s): s for s in self.symbols}
        self._outbox: list[str] = []
        self._req_id = 0
        self._last_sent = 0.0
        self._trade_seq: dict[str, int | None] = dict.fromkeys(self.symbols)
        self.errors: list[str] = []
        self.missed_trades = 0
        self.runner = self.new_runner(self)

    # -- lifecycle -------------------------------------------------------------------------------

    def url(self) -> str:
        return self.ws_url

    async def run(self) -> None:
        await self.runner.run()

    async def stop(self) -> None:
        await self.runner.stop()

    def _send(self, op: str, symbol: str | None = None, channels: Sequence[str] = ()) -> None:
        self._req_id += 1
        message: dict[str, object] = {"op": op}
        if symbol is not None:
            message |= {"symbol": self.symbol_map.to_venue(symbol), "channels": list(channels)}
            message["id"] = f"{symbol}:{self._req_id}"
        else:
            message["id"] = self._req_id
        self._outbox.append(json.dumps(message))

    def resubscribe_book(self, symbol: str, resync: Resync) -> None:
        """Queue a fresh ``book`` subscription of one symbol (the resync action)."""
        self.status(symbol, resync.reason)
        self._send("subscribe", symbol, ["book"])

    async def _flush(self, ws: ClientConnection) -> None:
        while self._outbox:
            await ws.send(self._outbox.pop(0))
            self._last_sent = self.clock.monotonic()

    # -- WsSession -------------------------------------------------------------------------------

    async def on_connect(self, ws: ClientConnection) -> None:
        now = self.clock.monotonic()
        self._outbox.clear()
        for symbol, asm in self.assemblers.items():
            resync = asm.start(now) if asm.epoch == 0 else asm.resync("reconnect", now)
            self.status(symbol, resync.reason)
            self._send("subscribe", symbol, ["book", "trades", "ticker"])
        await self._flush(ws)

    async def on_message(self, ws: ClientConnection, data: str | bytes) -> None:
        self.handle_frame(data)
        if self._outbox:
            await self._flush(ws)

    async def check(self, ws: ClientConnection, now: float) -> None:
        for symbol, asm in self.assemblers.items():
            resync = asm.check(now)
            if resync is not None:
                self.resubscribe_book(symbol, resync)
        if now - self._last_sent > self.settings.idle_timeout / 2:
            self._send("symbols")  # application-level ping: the reply feeds the idle watchdog
        await self._flush(ws)

    def on_disconnect(self, reason: str) -> None:
        self._outbox.clear()
        if self.runner.stopping:
            return
        self.resync_all(reason)

    # -- frames ----------------------------------------------------------------------------------

    def handle_frame(self, data: str | bytes) -> None:
        """Parse one frame (a JSON array), emit its canonical events; resyncs go to the outbox."""
        ingest = self.now_ns()
        self.trace = self.ids.new_id()
        for msg in _frame.decode(data):
            if isinstance(msg, _Book):
                self._on_book(msg, ingest)
            elif isinstance(msg, _Trade):
                self._on_trade(msg, ingest)
            elif isinstance(msg, _Ticker):
                self._on_ticker(msg, ingest)
            elif isinstance(msg, _BookSnapshot):
                self._on_snapshot(msg, ingest)
            elif isinstance(msg, _TradesSnapshot):
                self._on_trades_snapshot(msg, ingest)
            elif isinstance(msg, _Error):
                self.errors.append(f"{msg.code}: {msg.message}")
                log.warning("request_failed", venue=self.provider, code=msg.code, id=msg.id)
            # acks and ``symbols`` replies need no action

    def _on_snapshot(self, msg: _BookSnapshot, ingest: int) -> None:
        symbol = self._by_venue.get(msg.symbol)
        if symbol is None:
            return
        asm = self.assemblers[symbol]
        snapshot = Snapshot(_levels(msg.bids), _levels(msg.asks), last_id=msg.sequence)
        outcome = asm.on_snapshot(snapshot, None, self.clock.monotonic())
        if outcome.resync is not None:
            self.resubscribe_book(symbol, outcome.resync)
        elif outcome.action is not Action.IGNORED:
            self.book_outcome(symbol, outcome, ts_ingest=ingest)

    def _on_book(self, msg: _Book, ingest: int) -> None:
        symbol = self._by_venue.get(msg.symbol)
        if symbol is None:
            return
        asm = self.assemblers[symbol]
        bids, asks = _levels(msg.bids), _levels(msg.asks)
        diff = Diff(bids, asks, first_id=msg.first_sequence, last_id=msg.sequence)
        outcome = asm.on_diff(diff, self.clock.monotonic())
        if outcome.resync is not None:
            self.resubscribe_book(symbol, outcome.resync)
        elif outcome.action is not Action.IGNORED:
            self.book_outcome(
                symbol,
                outcome,
                bids=bids,
                asks=asks,
                seq=msg.sequence,
                seq_first=msg.first_sequence,
                ts_ingest=ingest,
            )

    def _on_trades_snapshot(self, msg: _TradesSnapshot, ingest: int) -> None:
        symbol = self._by_venue.get(msg.symbol)
        if symbol is None:
            return
        last = self._trade_seq[symbol]
        if last is not None and last <= msg.sequence:
            # After a reconnect: the listed trades we have not seen yet are emitted now.
            for trade in msg.trades:
                if trade.sequence > last:
                    self._on_trade(trade, ingest)
        self._trade_seq[symbol] = msg.sequence

    def _on_trade(self, msg: _Trade, ingest: int) -> None:
        symbol = self._by_venue.get(msg.symbol)
        if symbol is None:
            return
        last = self._trade_seq[symbol]
        if last is not None:
            if msg.sequence <= last:
                return
            if msg.sequence > last + 1:
                self.missed_trades += msg.sequence - last - 1
                log.warning("trades_missed", venue=self.provider, symbol=symbol, after=last)
        self._trade_seq[symbol] = msg.sequence
        trade = Trade(
            event_id=self.ids.new_id(),
            provider=self.provider,
            symbol=symbol,
            seq_provider=msg.sequence,
            ts_provider=venue_time_ns(msg.executed_at),
            ts_ingest=ingest,
            trace_id=self.trace,
            price=msg.price,
            qty=Decimal(msg.quantity),
            side=Side.BUY if msg.taker_side == "bid" else Side.SELL,  # side of the incoming order
            trade_id=msg.trade_id,
        )
        self.emit(trade)
        builder = self.klines.get(symbol)
        if builder is not None:
            kline = builder.add(trade)
            if kline is not None:
                self.emit(kline)

    def _on_ticker(self, msg: _Ticker, ingest: int) -> None:
        symbol = self._by_venue.get(msg.symbol)
        if symbol is None:
            return
        if msg.best_bid is None or msg.best_bid_quantity is None:
            return
        if msg.best_ask is None or msg.best_ask_quantity is None:
            return
        self.emit(
            Ticker(
                event_id=self.ids.new_id(),
                provider=self.provider,
                symbol=symbol,
                ts_ingest=ingest,
                trace_id=self.trace,
                bid=msg.best_bid,
                bid_qty=Decimal(msg.best_bid_quantity),
                ask=msg.best_ask,
                ask_qty=Decimal(msg.best_ask_quantity),
                last=msg.last_price,
            )
        )
