"""Coinbase Advanced Trade adapter: ``level2``, ``market_trades``, ``ticker``, ``heartbeats``.

**One connection per product.** Coinbase's only continuity signal is the envelope
``sequence_num``, which counts messages on a *connection* across all channels and products: a
jump says something was lost, not what. Giving each product its own connection makes a gap
attributable, so a gap resyncs that product's book only (and it also stays clear of the venue's
per-connection level2 product limit). Each connection subscribes one channel per message, right
after connecting (the venue closes connections that have not subscribed within 5 s), including
``heartbeats`` so quiet channels are not closed and silence is detectable.

Books use the ``IN_BAND`` assembler: the ``l2_data`` snapshot that follows a level2 subscribe
makes the book live; ``update`` events carry absolute sizes (``"0"`` deletes) with sides
``bid``/``offer``. Resync = ``unsubscribe`` + ``subscribe`` level2 for the product. Snapshot
frames of several MiB are accepted (no 1 MiB frame limit on the socket).

Trade side mapping (pinned by a test fixture): the ``side`` of a ``market_trades`` entry is taken
as the *maker* side, so the canonical taker side is its opposite -- the interpretation several
client libraries converged on; verify against a live capture before trading on it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from decimal import Decimal

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection

from tradehall.core.clock import Clock
from tradehall.gateway.assembler import Action, BookState, Diff, Resync, Sequencing, Snapshot
from tradehall.gateway.events import EventIds, Level, Side, Ticker, Trade
from tradehall.gateway.symbols import COINBASE
from tradehall.gateway.venues.base import AdapterSettings, EventSink, VenueAdapter, venue_time_ns

__all__ = ["CoinbaseAdapter", "ProductSession"]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.coinbase")
CHANNELS = ("heartbeats", "level2", "market_trades", "ticker")


class _Envelope(msgspec.Struct):
    channel: str = ""
    timestamp: str = ""
    sequence_num: int | None = None
    events: msgspec.Raw = msgspec.Raw(b"[]")
    type: str = ""
    message: str = ""


class _L2Update(msgspec.Struct):
    side: str
    price_level: Decimal
    new_quantity: Decimal


class _L2Event(msgspec.Struct):
    type: str
    product_id: str
    updates: list[_L2Update]


class _CbTrade(msgspec.Struct):
    trade_id: str
    product_id: str
    price: Decimal
    size: Decimal
    side: str
    time: str = ""


class _TradesEvent(msgspec.Struct):
    trades: list[_CbTrade] = []


class _CbTicker(msgspec.Struct):
    product_id: str
    price: Decimal | None = None
    best_bid: Decimal | None = None
    best_bid_quantity: Decimal | None = None
    best_ask: Decimal | None = None
    best_ask_quantity: Decimal | None = None


class _TickerEvent(msgspec.Struct):
    tickers: list[_CbTicker] = []


_envelope = msgspec.json.Decoder(_Envelope)
_l2 = msgspec.json.Decoder(list[_L2Event])
_trades = msgspec.json.Decoder(list[_TradesEvent])
_tickers = msgspec.json.Decoder(list[_TickerEvent])


class ProductSession:
    """The connection of one product: subscriptions, sequence tracking, frame handling."""

    def __init__(self, adapter: CoinbaseAdapter, symbol: str) -> None:
        self.adapter = adapter
        self.symbol = symbol
        self.product = COINBASE.to_venue(symbol)
        self.last_seq: int | None = None
        self.gaps = 0
        self.outbox: list[str] = []
        self.runner = adapter.new_runner(self, f"coinbase:{self.product}")

    def url(self) -> str:
        return self.adapter.ws_url

    def _send(self, kind: str, channel: str) -> None:
        message: dict[str, object] = {"type": kind, "channel": channel}
        if channel != "heartbeats":
            message["product_ids"] = [self.product]
        self.outbox.append(json.dumps(message))

    async def _flush(self, ws: ClientConnection) -> None:
        while self.outbox:
            await ws.send(self.outbox.pop(0))

    def resync(self, resync: Resync) -> None:
        """Resubscribe level2 for this product: a fresh snapshot."""
        self.adapter.status(self.symbol, resync.reason)
        self._send("unsubscribe", "level2")
        self._send("subscribe", "level2")

    async def on_connect(self, ws: ClientConnection) -> None:
        asm = self.adapter.assemblers[self.symbol]
        now = self.adapter.clock.monotonic()
        resync = asm.start(now) if asm.epoch == 0 else asm.resync("reconnect", now)
        self.adapter.status(self.symbol, resync.reason)
        self.last_seq = None  # sequence numbers restart with the connection
        self.outbox.clear()
        for channel in CHANNELS:
            self._send("subscribe", channel)
        await self._flush(ws)

    async def on_message(self, ws: ClientConnection, data: str | bytes) -> None:
        self.handle_frame(data)
        if self.outbox:
            await self._flush(ws)

    async def check(self, ws: ClientConnection, now: float) -> None:
        resync = self.adapter.assemblers[self.symbol].check(now)
        if resync is not None:
            self.resync(resync)
            await self._flush(ws)

    def on_disconnect(self, reason: str) -> None:
        self.outbox.clear()
        if self.runner.stopping:
            return
        asm = self.adapter.assemblers[self.symbol]
        if asm.epoch:
            asm.resync("disconnect", self.adapter.clock.monotonic())
            self.adapter.status(self.symbol, f"disconnect: {reason}")

    def handle_frame(self, data: str | bytes) -> None:
        """Parse one envelope, check its sequence number, emit canonical events."""
        adapter = self.adapter
        ingest = adapter.now_ns()
        adapter.trace = adapter.ids.new_id()
        env = _envelope.decode(data)
        if env.type == "error":
            adapter.errors.append(env.message)
            log.warning("venue_error", venue="coinbase", product=self.product, error=env.message)
            return
        seq = env.sequence_num
        if seq is not None:
            last, self.last_seq = self.last_seq, seq
            if last is not None and seq != last + 1:
                self.gaps += 1
                asm = adapter.assemblers[self.symbol]
                if asm.state is BookState.LIVE:
                    self.resync(asm.resync("gap", adapter.clock.monotonic()))
        channel = env.channel
        if channel == "l2_data":
            for event in _l2.decode(env.events):
                self._on_l2(event, seq, venue_time_ns(env.timestamp), ingest)
        elif channel == "market_trades":
            for batch in _trades.decode(env.events):
                for trade in batch.trades:
                    adapter.on_trade(self.symbol, trade, ingest)
        elif channel == "ticker":
            for tickers in _tickers.decode(env.events):
                for ticker in tickers.tickers:
                    adapter.on_ticker(self.symbol, ticker, seq, ingest)
        # subscriptions acks and heartbeats only feed the sequence check and the idle watchdog

    def _on_l2(self, event: _L2Event, seq: int | None, ts: int | None, ingest: int) -> None:
        if event.product_id != self.product:
            return
        bids: list[Level] = []
        asks: list[Level] = []
        for update in event.updates:
            level = (update.price_level, update.new_quantity)
            (bids if update.side == "bid" else asks).append(level)
        adapter = self.adapter
        asm = adapter.assemblers[self.symbol]
        now = adapter.clock.monotonic()
        if event.type == "snapshot":
            outcome = asm.on_snapshot(Snapshot(bids, asks, last_id=seq), None, now)
        else:
            outcome = asm.on_diff(Diff(bids, asks, last_id=seq), now)
        if outcome.resync is not None:
            self.resync(outcome.resync)
        elif outcome.action is not Action.IGNORED:
            adapter.book_outcome(
                self.symbol,
                outcome,
                bids=bids,
                asks=asks,
                seq=seq,
                ts_provider=ts,
                ts_ingest=ingest,
            )


class CoinbaseAdapter(VenueAdapter):
    """Coinbase Advanced Trade public market data; see the module docstring."""

    provider = "coinbase"

    def __init__(
        self,
        symbols: Sequence[str],
        sink: EventSink,
        *,
        ws_url: str = "wss://advanced-trade-ws.coinbase.com",
        settings: AdapterSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        ids: EventIds | None = None,
    ) -> None:
        super().__init__(
            symbols,
            sink,
            COINBASE,
            sequencing=Sequencing.IN_BAND,
            settings=settings,
            clock=clock,
            rng=rng,
            ids=ids,
        )
        self.ws_url = ws_url
        self.errors: list[str] = []
        self.sessions = {symbol: ProductSession(self, symbol) for symbol in self.symbols}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for session in self.sessions.values():
                group.create_task(session.runner.run())

    async def stop(self) -> None:
        for session in self.sessions.values():
            await session.runner.stop()

    def on_trade(self, symbol: str, msg: _CbTrade, ingest: int) -> None:
        trade_id = int(msg.trade_id) if msg.trade_id.isdigit() else None
        trade = Trade(
            event_id=self.ids.new_id(),
            provider=self.provider,
            symbol=symbol,
            seq_provider=trade_id,
            ts_provider=venue_time_ns(msg.time),
            ts_ingest=ingest,
            trace_id=self.trace,
            price=msg.price,
            qty=msg.size,
            side=Side.SELL if msg.side == "BUY" else Side.BUY,  # `side` is the maker's
            trade_id=msg.trade_id,
        )
        self.emit(trade)
        builder = self.klines.get(symbol)
        if builder is not None:
            kline = builder.add(trade)
            if kline is not None:
                self.emit(kline)

    def on_ticker(self, symbol: str, msg: _CbTicker, seq: int | None, ingest: int) -> None:
        if None in (msg.best_bid, msg.best_bid_quantity, msg.best_ask, msg.best_ask_quantity):
            return
        assert msg.best_bid is not None and msg.best_bid_quantity is not None
        assert msg.best_ask is not None and msg.best_ask_quantity is not None
        self.emit(
            Ticker(
                event_id=self.ids.new_id(),
                provider=self.provider,
                symbol=symbol,
                seq_provider=seq,
                ts_ingest=ingest,
                trace_id=self.trace,
                bid=msg.best_bid,
                bid_qty=msg.best_bid_quantity,
                ask=msg.best_ask,
                ask_qty=msg.best_ask_quantity,
                last=msg.price,
            )
        )
