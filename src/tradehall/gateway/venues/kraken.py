"""Kraken spot WebSocket v2 adapter: ``book`` with CRC32 on every message, ``trade``, ``ticker``.

Books use the ``IN_BAND`` assembler with the subscribed ``depth`` and Kraken's checksum: every
snapshot and update is applied in full, truncated to the depth (Kraken sends no deletes for levels
pushed out of the window), and its CRC32 over the top 10 is compared with the venue's. The
checksum formats numbers at the pair's precision (:mod:`~tradehall.gateway.symbols`), so it holds
whether or not the wire kept trailing zeros. A bad checksum, a crossed book or a silent book
resubscribes **that symbol** (unsubscribe + subscribe: a fresh snapshot), never the connection.

Kraken numbers are JSON numbers; msgspec decodes them straight into ``Decimal`` from their text,
never through a binary float. ``status`` messages announcing maintenance reconnect at once; the
adapter also sends an application ``ping`` when the socket has been quiet for a while.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from decimal import Decimal

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection

from tradehall.core.clock import Clock
from tradehall.gateway.assembler import Action, Diff, Resync, Sequencing, Snapshot
from tradehall.gateway.book import OrderBook, kraken_checksum
from tradehall.gateway.events import EventIds, Side, Ticker, Trade
from tradehall.gateway.symbols import KRAKEN
from tradehall.gateway.venues.base import AdapterSettings, EventSink, VenueAdapter, venue_time_ns

__all__ = ["KrakenAdapter"]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.kraken")


class _Level(msgspec.Struct, array_like=False):
    price: Decimal
    qty: Decimal


class _Book(msgspec.Struct):
    symbol: str
    bids: list[_Level] = []
    asks: list[_Level] = []
    checksum: int | None = None
    timestamp: str = ""


class _Trade(msgspec.Struct):
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    trade_id: int
    timestamp: str = ""


class _Ticker(msgspec.Struct):
    symbol: str
    bid: Decimal | None = None
    bid_qty: Decimal | None = None
    ask: Decimal | None = None
    ask_qty: Decimal | None = None
    last: Decimal | None = None


class _Status(msgspec.Struct):
    system: str = ""


class _Msg(msgspec.Struct):
    channel: str = ""
    type: str = ""
    method: str = ""
    success: bool | None = None
    error: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"[]")


_msg = msgspec.json.Decoder(_Msg)
_books = msgspec.json.Decoder(list[_Book])
_trades = msgspec.json.Decoder(list[_Trade])
_tickers = msgspec.json.Decoder(list[_Ticker])
_statuses = msgspec.json.Decoder(list[_Status])


class KrakenAdapter(VenueAdapter):
    """Kraken v2 public market data; see the module docstring."""

    provider = "kraken"

    def __init__(
        self,
        symbols: Sequence[str],
        sink: EventSink,
        *,
        ws_url: str = "wss://ws.kraken.com/v2",
        settings: AdapterSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        ids: EventIds | None = None,
    ) -> None:
        settings = settings or AdapterSettings()
        checksums = {s: self._checksum_for(s) for s in symbols}
        super().__init__(
            symbols,
            sink,
            KRAKEN,
            sequencing=Sequencing.IN_BAND,
            settings=settings,
            clock=clock,
            rng=rng,
            ids=ids,
            depth=settings.depth,
            checksums=checksums,
            # The checksum only covers the top 10: deeper books also get the periodic refresh.
            refresh=settings.depth > 10,
        )
        self.ws_url = ws_url
        self._by_venue = {KRAKEN.to_venue(s): s for s in self.symbols}
        self._outbox: list[str] = []
        self._req_id = 0
        self._last_sent = 0.0
        self.errors: list[str] = []
        self.maintenance_notices = 0
        self.runner = self.new_runner(self)

    @staticmethod
    def _checksum_for(symbol: str) -> _Crc:
        entry = KRAKEN.entry(symbol)
        return _Crc(entry.price_precision, entry.qty_precision)

    # -- lifecycle -------------------------------------------------------------------------------

    def url(self) -> str:
        return self.ws_url

    async def run(self) -> None:
        await self.runner.run()

    async def stop(self) -> None:
        await self.runner.stop()

    def _request(self, method: str, channel: str, symbols: Sequence[str], **extra: object) -> None:
        self._req_id += 1
        params: dict[str, object] = {"channel": channel, "symbol": list(symbols)} | extra
        message = {"method": method, "params": params, "req_id": self._req_id}
        self._outbox.append(json.dumps(message))

    def _book_params(self) -> dict[str, object]:
        return {"depth": self.settings.depth}

    def resubscribe_book(self, symbol: str, resync: Resync) -> None:
        """Queue unsubscribe + subscribe of one symbol's book (the resync action)."""
        self.status(symbol, resync.reason)
        venue = [KRAKEN.to_venue(symbol)]
        self._request("unsubscribe", "book", venue, **self._book_params())
        self._request("subscribe", "book", venue, snapshot=True, **self._book_params())

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
        venues = list(self._by_venue)
        self._request("subscribe", "book", venues, snapshot=True, **self._book_params())
        self._request("subscribe", "trade", venues, snapshot=False)
        self._request("subscribe", "ticker", venues)
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
            self._req_id += 1
            self._outbox.append(json.dumps({"method": "ping", "req_id": self._req_id}))
        await self._flush(ws)

    def on_disconnect(self, reason: str) -> None:
        self._outbox.clear()
        if self.runner.stopping:
            return
        self.resync_all(reason)

    # -- frames ----------------------------------------------------------------------------------

    def handle_frame(self, data: str | bytes) -> None:
        """Parse one frame and emit its canonical events; resync requests go to the outbox."""
        ingest = self.now_ns()
        self.trace = self.ids.new_id()
        msg = _msg.decode(data)
        channel = msg.channel
        if channel == "book":
            for book in _books.decode(msg.data):
                self._on_book(book, msg.type == "snapshot", ingest)
        elif channel == "trade":
            for trade in _trades.decode(msg.data):
                self._on_trade(trade, ingest)
        elif channel == "ticker":
            for ticker in _tickers.decode(msg.data):
                self._on_ticker(ticker, ingest)
        elif channel == "status":
            for status in _statuses.decode(msg.data):
                if status.system == "maintenance":
                    self.maintenance_notices += 1
                    self.runner.reconnect_now("shutdown_notice")
        elif msg.success is False:
            self.errors.append(msg.error or "unknown error")
            log.warning("request_failed", venue=self.provider, error=msg.error)
        # heartbeat, pong and successful acks need no action

    def _on_book(self, book: _Book, is_snapshot: bool, ingest: int) -> None:
        symbol = self._by_venue.get(book.symbol)
        if symbol is None:
            return
        asm = self.assemblers[symbol]
        bids = [(lv.price, lv.qty) for lv in book.bids]
        asks = [(lv.price, lv.qty) for lv in book.asks]
        now = self.clock.monotonic()
        ts = venue_time_ns(book.timestamp)
        if is_snapshot:
            outcome = asm.on_snapshot(Snapshot(bids, asks, checksum=book.checksum), None, now)
        else:
            outcome = asm.on_diff(Diff(bids, asks, checksum=book.checksum), now)
        if outcome.resync is not None:
            self.resubscribe_book(symbol, outcome.resync)
        elif outcome.action is not Action.IGNORED:
            self.book_outcome(
                symbol, outcome, bids=bids, asks=asks, ts_provider=ts, ts_ingest=ingest
            )

    def _on_trade(self, msg: _Trade, ingest: int) -> None:
        symbol = self._by_venue.get(msg.symbol)
        if symbol is None:
            return
        trade = Trade(
            event_id=self.ids.new_id(),
            provider=self.provider,
            symbol=symbol,
            seq_provider=msg.trade_id,
            ts_provider=venue_time_ns(msg.timestamp),
            ts_ingest=ingest,
            trace_id=self.trace,
            price=msg.price,
            qty=msg.qty,
            side=Side.BUY if msg.side == "buy" else Side.SELL,  # Kraken reports the taker side
            trade_id=str(msg.trade_id),
        )
        self.emit(trade)
        builder = self.klines.get(symbol)
        if builder is not None:
            kline = builder.add(trade)
            if kline is not None:
                self.emit(kline)

    def _on_ticker(self, msg: _Ticker, ingest: int) -> None:
        symbol = self._by_venue.get(msg.symbol)
        if symbol is None or None in (msg.bid, msg.bid_qty, msg.ask, msg.ask_qty):
            return
        assert msg.bid is not None and msg.bid_qty is not None
        assert msg.ask is not None and msg.ask_qty is not None
        self.emit(
            Ticker(
                event_id=self.ids.new_id(),
                provider=self.provider,
                symbol=symbol,
                ts_ingest=ingest,
                trace_id=self.trace,
                bid=msg.bid,
                bid_qty=msg.bid_qty,
                ask=msg.ask,
                ask_qty=msg.ask_qty,
                last=msg.last,
            )
        )


class _Crc:
    """The checksum callable of one pair (its precisions bound)."""

    __slots__ = ("price_places", "qty_places")

    def __init__(self, price_places: int, qty_places: int) -> None:
        self.price_places = price_places
        self.qty_places = qty_places

    def __call__(self, book: OrderBook) -> int:
        return kraken_checksum(
            book.top_bids(10), book.top_asks(10), self.price_places, self.qty_places
        )
