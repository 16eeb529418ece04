"""Binance spot market-data adapter: combined streams + REST depth snapshots.

One WebSocket carries ``<sym>@depth@100ms``, ``<sym>@trade`` and ``<sym>@bookTicker`` for every
symbol (``/stream?streams=...``; payloads wrapped in ``{"stream", "data"}``). Books follow
Binance's official procedure, implemented by the ``UPDATE_ID`` assembler: diffs are buffered from
the moment the socket is open, ``GET /api/v3/depth`` is fetched per symbol, a snapshot older than
the first buffered diff is fetched again, and afterwards ``U > book id + 1`` is a gap. A gap, a
crossed book, staleness, a buffer overflow or the periodic refresh re-fetches **that symbol's**
snapshot only; the socket and the other books are untouched.

Connection-level events: a ``serverShutdown`` notice reconnects at once (no back-off); the
runner's ``max_age`` reconnects before Binance's 24 h cut; WebSocket pings are answered by the
client library. Every reconnect resynchronises every book of the connection.

Parsing uses typed msgspec decoders with ``Decimal`` fields (decimal text straight from the wire);
:meth:`BinanceAdapter.handle_frame` is synchronous so the benchmark can drive it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from decimal import Decimal

import httpx
import msgspec
import structlog
from websockets.asyncio.client import ClientConnection

from tradehall.core.clock import Clock
from tradehall.gateway.assembler import (
    Action,
    BookState,
    Diff,
    Outcome,
    Resync,
    Sequencing,
    Snapshot,
)
from tradehall.gateway.events import EventIds, Side, Ticker, Trade
from tradehall.gateway.symbols import BINANCE
from tradehall.gateway.venues.base import AdapterSettings, EventSink, VenueAdapter

__all__ = ["BinanceAdapter"]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.binance")

_Levels = list[tuple[Decimal, Decimal]]


class _Envelope(msgspec.Struct):
    stream: str = ""
    data: msgspec.Raw = msgspec.Raw(b"null")


class _Depth(msgspec.Struct):
    E: int
    s: str
    U: int
    u: int
    b: _Levels
    a: _Levels


class _Trade(msgspec.Struct):
    E: int
    s: str
    t: int
    p: Decimal
    q: Decimal
    T: int
    m: bool


class _BookTicker(msgspec.Struct):
    u: int
    s: str
    b: Decimal
    B: Decimal
    a: Decimal
    A: Decimal


class _RestDepth(msgspec.Struct):
    lastUpdateId: int
    bids: _Levels
    asks: _Levels


_envelope = msgspec.json.Decoder(_Envelope)
_depth = msgspec.json.Decoder(_Depth)
_trade = msgspec.json.Decoder(_Trade)
_book_ticker = msgspec.json.Decoder(_BookTicker)
_rest_depth = msgspec.json.Decoder(_RestDepth)
_MS = 1_000_000


class BinanceAdapter(VenueAdapter):
    """Binance spot adapter; see the module docstring."""

    provider = "binance"

    def __init__(
        self,
        symbols: Sequence[str],
        sink: EventSink,
        *,
        ws_url: str = "wss://stream.binance.com:9443",
        rest_url: str = "https://api.binance.com",
        settings: AdapterSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        ids: EventIds | None = None,
        http: httpx.AsyncClient | None = None,
        depth_stream: str = "depth@100ms",
    ) -> None:
        super().__init__(
            symbols,
            sink,
            BINANCE,
            sequencing=Sequencing.UPDATE_ID,
            settings=settings,
            clock=clock,
            rng=rng,
            ids=ids,
        )
        self.ws_url = ws_url.rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self.depth_stream = depth_stream
        self._by_venue = {BINANCE.to_venue(s): s for s in self.symbols}
        self._http = http
        self._own_http = http is None
        self._fetches: dict[str, asyncio.Task[None]] = {}
        self.shutdown_notices = 0
        self.runner = self.new_runner(self)

    # -- lifecycle -------------------------------------------------------------------------------

    def url(self) -> str:
        streams = "/".join(
            f"{venue.lower()}@{kind}"
            for venue in self._by_venue
            for kind in (self.depth_stream, "trade", "bookTicker")
        )
        return f"{self.ws_url}/stream?streams={streams}"

    async def run(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        try:
            await self.runner.run()
        finally:
            await self._cancel_fetches()
            if self._own_http and self._http is not None:
                await self._http.aclose()
                self._http = None

    async def stop(self) -> None:
        await self.runner.stop()

    async def _cancel_fetches(self) -> None:
        tasks = list(self._fetches.values())
        self._fetches.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- WsSession -------------------------------------------------------------------------------

    async def on_connect(self, ws: ClientConnection) -> None:
        now = self.clock.monotonic()
        for symbol, asm in self.assemblers.items():
            resync = asm.start(now) if asm.epoch == 0 else asm.resync("reconnect", now)
            self.status(symbol, resync.reason)
            self._schedule(symbol, resync)

    async def on_message(self, ws: ClientConnection, data: str | bytes) -> None:
        self.handle_frame(data)

    async def check(self, ws: ClientConnection, now: float) -> None:
        for symbol, asm in self.assemblers.items():
            was_live = asm.state is BookState.LIVE
            resync = asm.check(now)
            if resync is not None:
                self.status(symbol, resync.reason)
                self._schedule(symbol, resync)
            elif not was_live and asm.state is BookState.LIVE:  # quiet market: snapshot accepted
                self.trace = self.ids.new_id()
                self.book_outcome(symbol, Outcome(Action.LIVE), ts_ingest=self.now_ns())

    def on_disconnect(self, reason: str) -> None:
        for task in self._fetches.values():
            task.cancel()
        self._fetches.clear()
        if self.runner.stopping:
            return
        self.resync_all(reason)

    # -- frames ----------------------------------------------------------------------------------

    def handle_frame(self, data: str | bytes) -> None:
        """Parse one combined-stream frame and emit its canonical events."""
        ingest = self.now_ns()
        self.trace = self.ids.new_id()
        envelope = _envelope.decode(data)
        stream = envelope.stream
        kind = stream[stream.find("@") + 1 :]
        if kind == self.depth_stream:
            self._on_depth(_depth.decode(envelope.data), ingest)
        elif kind == "trade":
            self._on_trade(_trade.decode(envelope.data), ingest)
        elif kind == "bookTicker":
            self._on_book_ticker(_book_ticker.decode(envelope.data), ingest)
        elif stream == "!serverShutdown":
            self.shutdown_notices += 1
            log.info("server_shutdown_notice", venue=self.provider)
            self.runner.reconnect_now("shutdown_notice")
        # anything else (SUBSCRIBE replies, unknown streams) is ignored

    def _on_depth(self, msg: _Depth, ingest: int) -> None:
        symbol = self._by_venue.get(msg.s)
        if symbol is None:
            return
        asm = self.assemblers[symbol]
        outcome = asm.on_diff(Diff(msg.b, msg.a, msg.U, msg.u), self.clock.monotonic())
        if outcome.action is Action.LIVE:  # this diff let a held snapshot be spliced
            self.book_outcome(symbol, outcome, ts_ingest=ingest)
        elif outcome.action is Action.APPLIED:
            self.book_outcome(
                symbol,
                outcome,
                bids=msg.b,
                asks=msg.a,
                seq=msg.u,
                seq_first=msg.U,
                ts_provider=msg.E * _MS,
                ts_ingest=ingest,
            )
        elif outcome.resync is not None:
            self.status(symbol, outcome.resync.reason)
            self._schedule(symbol, outcome.resync)

    def _on_trade(self, msg: _Trade, ingest: int) -> None:
        symbol = self._by_venue.get(msg.s)
        if symbol is None:
            return
        trade = Trade(
            event_id=self.ids.new_id(),
            provider=self.provider,
            symbol=symbol,
            seq_provider=msg.t,
            ts_provider=msg.T * _MS,
            ts_ingest=ingest,
            trace_id=self.trace,
            price=msg.p,
            qty=msg.q,
            side=Side.SELL if msg.m else Side.BUY,  # m: buyer is maker, so the taker sold
            trade_id=str(msg.t),
        )
        self.emit(trade)
        builder = self.klines.get(symbol)
        if builder is not None:
            kline = builder.add(trade)
            if kline is not None:
                self.emit(kline)

    def _on_book_ticker(self, msg: _BookTicker, ingest: int) -> None:
        symbol = self._by_venue.get(msg.s)
        if symbol is None:
            return
        self.emit(
            Ticker(
                event_id=self.ids.new_id(),
                provider=self.provider,
                symbol=symbol,
                seq_provider=msg.u,
                ts_ingest=ingest,
                trace_id=self.trace,
                bid=msg.b,
                bid_qty=msg.B,
                ask=msg.a,
                ask_qty=msg.A,
            )
        )

    # -- snapshots -------------------------------------------------------------------------------

    def _schedule(self, symbol: str, resync: Resync) -> None:
        current = asyncio.current_task()
        old = self._fetches.get(symbol)
        if old is not None and old is not current:
            old.cancel()
        task = asyncio.get_running_loop().create_task(self._fetch(symbol, resync))
        self._fetches[symbol] = task

    async def _fetch(self, symbol: str, resync: Resync) -> None:
        assert self._http is not None
        backoff = self.new_backoff()
        if resync.reason == "stale_snapshot":
            # Common right after subscribing (the REST answer can predate the first diff):
            # give the stream a moment, then ask again.
            await self.clock.sleep(self.rng.uniform(0.02, 0.06))
        url = f"{self.rest_url}/api/v3/depth"
        params = {"symbol": BINANCE.to_venue(symbol), "limit": str(self.settings.snapshot_limit)}
        while True:
            try:
                response = await self._http.get(url, params=params)
                if response.status_code == 200:
                    snap = _rest_depth.decode(response.content)
                    break
                log.warning("snapshot_http", symbol=symbol, status=response.status_code)
                retry_after = response.headers.get("Retry-After")
                if retry_after is not None and retry_after.isdigit():
                    await self.clock.sleep(float(retry_after))
                    continue
            except (httpx.HTTPError, msgspec.DecodeError) as exc:
                log.warning("snapshot_failed", symbol=symbol, error=type(exc).__name__)
            await self.clock.sleep(backoff.next_delay())
        asm = self.assemblers[symbol]
        outcome = asm.on_snapshot(
            Snapshot(snap.bids, snap.asks, last_id=snap.lastUpdateId),
            resync.epoch,
            self.clock.monotonic(),
        )
        if outcome.action is Action.LIVE:
            self.trace = self.ids.new_id()  # the REST answer is its own "frame"
            self.book_outcome(symbol, outcome, ts_ingest=self.now_ns())
        elif outcome.resync is not None:
            self.status(symbol, outcome.resync.reason)
            self._schedule(symbol, outcome.resync)
