"""A wire-compatible fake of Kraken's spot WebSocket v2 public feed.

On connect the server sends a ``status`` message. ``subscribe``/``unsubscribe`` requests
(``{"method", "params": {"channel", "symbol": [...], "depth"}, "req_id"}``) are acknowledged once
per symbol (``success`` true, or false with ``error``); ``ping`` is answered with ``pong``; a
``heartbeat`` goes out every ``heartbeat_every`` seconds while subscribed.

Channels: ``book`` (snapshot, then updates; prices and quantities are JSON *numbers* printed at
the pair's precision, trailing zeros included; every message carries the CRC32 of the top 10
computed by :func:`~tradehall.gateway.book.kraken_checksum`), ``trade`` and ``ticker``.

Book updates follow Kraken's rules for a depth-limited subscription (:class:`BookView`): the
server sends changed levels inside the subscribed depth, sends a delete plus the *refill* level
when a level inside the window disappears, and sends nothing for levels merely pushed out by a
better one (the client truncates).

Faults: ``CORRUPT_CHECKSUM``, ``MISSING_REFILL``, ``DROP_DIFF`` (the update is lost), ``SILENCE``
(one symbol's updates), ``SILENCE_ALL``, ``ABRUPT_CLOSE``, ``SHUTDOWN_NOTICE`` (a ``status``
update with ``system: maintenance``, then close).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import ServerConnection

from tradehall.gateway.book import OrderBook, kraken_checksum
from tradehall.gateway.events import Level
from tradehall.gateway.fakes.market import MarketSim, Tick
from tradehall.gateway.fakes.server import FakeVenue, Fault, fmt
from tradehall.gateway.symbols import KRAKEN, VenueSymbol

__all__ = ["BookView", "FakeKraken"]

DEPTHS = (10, 25, 100, 500, 1000)


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BookView:
    """One subscriber's depth-limited view of a symbol's book, and the messages that keep it."""

    def __init__(self, sim: MarketSim, entry: VenueSymbol, depth: int) -> None:
        self.sim = sim
        self.entry = entry
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def _levels(self, levels: Sequence[Level]) -> str:
        pp, qp = self.entry.price_precision, self.entry.qty_precision
        return ",".join(f'{{"price":{fmt(p, pp)},"qty":{fmt(q, qp)}}}' for p, q in levels)

    def _checksum(self) -> int:
        book = self.sim.book
        return kraken_checksum(
            book.top_bids(10),
            book.top_asks(10),
            self.entry.price_precision,
            self.entry.qty_precision,
        )

    def _message(self, kind: str, bids: Sequence[Level], asks: Sequence[Level], crc: int) -> str:
        return (
            f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{self.entry.venue}",'
            f'"bids":[{self._levels(bids)}],"asks":[{self._levels(asks)}],'
            f'"checksum":{crc},"timestamp":"{_now_text()}"}}]}}'
        )

    def snapshot(self) -> str:
        book = self.sim.book
        bids, asks = book.top_bids(self.depth), book.top_asks(self.depth)
        self.bids, self.asks = dict(bids), dict(asks)
        return self._message("snapshot", bids, asks, self._checksum())

    def update(
        self, tick: Tick, *, corrupt: bool = False, drop_refill: bool = False
    ) -> tuple[str | None, bool]:
        """The update message for ``tick`` (``None`` if nothing visible changed).

        Returns ``(message, refill_dropped)``; ``drop_refill`` only bites when a refill exists.
        """
        book = self.sim.book
        dropped = False
        out: list[list[Level]] = []
        for view, top, changed, truth in (
            (self.bids, book.top_bids(self.depth), tick.bids, book.bids),
            (self.asks, book.top_asks(self.depth), tick.asks, book.asks),
        ):
            levels: list[Level] = []
            new_view = dict(top)
            for price, qty in top:
                if view.get(price) != qty:
                    refill = price not in view and price not in changed
                    if refill and drop_refill:
                        dropped = True
                        continue
                    levels.append((price, qty))
            levels.extend((p, Decimal(0)) for p in view if p not in truth)
            view.clear()
            view.update(new_view)
            out.append(levels)
        if not out[0] and not out[1]:
            return None, False
        crc = self._checksum() ^ (1 if corrupt else 0)
        return self._message("update", out[0], out[1], crc), dropped

    def true_book(self) -> OrderBook:
        book = OrderBook()
        book.load(self.sim.book.top_bids(self.depth), self.sim.book.top_asks(self.depth))
        return book


class _Conn:
    def __init__(self) -> None:
        self.books: dict[str, BookView] = {}  # canonical symbol -> view
        self.trades: set[str] = set()
        self.tickers: set[str] = set()


class FakeKraken(FakeVenue):
    name = "kraken"

    def __init__(
        self,
        symbols: Sequence[str] = ("BTC-USD", "ETH-USD"),
        *,
        heartbeat_every: float = 1.0,
        shutdown_grace: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(KRAKEN, symbols, **kwargs)
        self.heartbeat_every = heartbeat_every
        self.shutdown_grace = shutdown_grace
        self.conns: dict[ServerConnection, _Conn] = {}
        self.book_messages = 0
        self.pings = 0

    def true_book(
        self, symbol: str, depth: int = 10
    ) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        book = self.sims[symbol].book
        return dict(book.top_bids(depth)), dict(book.top_asks(depth))

    async def handle(self, ws: ServerConnection) -> None:
        conn = self.conns[ws] = _Conn()
        status = {
            "channel": "status",
            "type": "update",
            "data": [
                {"version": "2.0.0", "system": "online", "api_version": "v2", "connection_id": 1}
            ],
        }
        await self.send(ws, json.dumps(status))
        heartbeat = asyncio.create_task(self._heartbeats(ws, conn))
        try:
            async for raw in ws:
                await self._request(ws, conn, raw)
        finally:
            heartbeat.cancel()
            self.conns.pop(ws, None)

    async def _heartbeats(self, ws: ServerConnection, conn: _Conn) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            if (conn.books or conn.trades or conn.tickers) and not self.silent(None):
                await self.send(ws, '{"channel":"heartbeat"}')

    async def _request(self, ws: ServerConnection, conn: _Conn, raw: str | bytes) -> None:
        time_in = _now_text()
        try:
            msg = json.loads(raw)
            method = msg["method"]
        except (ValueError, KeyError, TypeError):
            await self.send(ws, json.dumps({"error": "Malformed request", "success": False}))
            return
        req_id = msg.get("req_id")
        if self.silent(None):
            return  # a silent venue answers nothing at all
        if method == "ping":
            self.pings += 1
            reply = {"method": "pong", "req_id": req_id, "time_in": time_in, "time_out": time_in}
            await self.send(ws, json.dumps(reply))
            return
        params = msg.get("params") or {}
        channel = params.get("channel")
        if method not in ("subscribe", "unsubscribe") or channel not in ("book", "trade", "ticker"):
            reply = {"method": method, "success": False, "error": "Unsupported request"}
            await self.send(ws, json.dumps(reply | {"req_id": req_id}))
            return
        depth = params.get("depth", 10)
        for venue_symbol in params.get("symbol", []):
            result: dict[str, Any] = {"channel": channel, "symbol": venue_symbol}
            base = {"method": method, "req_id": req_id, "time_in": time_in, "time_out": time_in}
            try:
                symbol = KRAKEN.to_canonical(venue_symbol)
                if symbol not in self.sims:
                    raise KeyError(venue_symbol)
            except KeyError:
                error = f"Currency pair not supported {venue_symbol}"
                await self.send(ws, json.dumps(base | {"success": False, "error": error}))
                continue
            if channel == "book" and depth not in DEPTHS:
                error = f"Invalid depth {depth}"
                await self.send(ws, json.dumps(base | {"success": False, "error": error}))
                continue
            if channel == "book":
                result |= {"depth": depth, "snapshot": True}
            await self.send(ws, json.dumps(base | {"result": result, "success": True}))
            subscribe = method == "subscribe"
            if channel == "book":
                if subscribe:
                    view = conn.books[symbol] = BookView(
                        self.sims[symbol], KRAKEN.entry(symbol), depth
                    )
                    await self.send(ws, view.snapshot())
                else:
                    conn.books.pop(symbol, None)
            else:
                target = conn.trades if channel == "trade" else conn.tickers
                (target.add if subscribe else target.discard)(symbol)

    async def publish(self, symbol: str, tick: Tick) -> None:
        entry = KRAKEN.entry(symbol)
        silent_all = self.silent(None)
        for ws, conn in list(self.conns.items()):
            view = conn.books.get(symbol)
            if view is not None:
                corrupt = self.faults.get((Fault.CORRUPT_CHECKSUM, symbol), 0) > 0
                drop_refill = self.faults.get((Fault.MISSING_REFILL, symbol), 0) > 0
                message, refill_dropped = view.update(
                    tick, corrupt=corrupt, drop_refill=drop_refill
                )
                if message is not None:
                    if corrupt:
                        self.take(Fault.CORRUPT_CHECKSUM, symbol)
                    if refill_dropped:
                        self.take(Fault.MISSING_REFILL, symbol)
                    if not (self.take(Fault.DROP_DIFF, symbol) or self.silent(symbol)):
                        self.book_messages += 1
                        await self.send(ws, message)
            if silent_all:
                continue
            if symbol in conn.trades and tick.trades:
                pp, qp = entry.price_precision, entry.qty_precision
                data = ",".join(
                    f'{{"symbol":"{entry.venue}","side":"{t.taker.value}",'
                    f'"price":{fmt(t.price, pp)},"qty":{fmt(t.qty, qp)},"ord_type":"market",'
                    f'"trade_id":{t.trade_id},"timestamp":"{_now_text()}"}}'
                    for t in tick.trades
                )
                await self.send(ws, f'{{"channel":"trade","type":"update","data":[{data}]}}')
            if symbol in conn.tickers and tick.changes:
                await self.send(ws, self._ticker(symbol, entry))
        if self.take(Fault.SHUTDOWN_NOTICE):
            notice = {
                "channel": "status",
                "type": "update",
                "data": [{"system": "maintenance", "api_version": "v2", "version": "2.0.0"}],
            }
            for ws in list(self.conns):
                await self.send(ws, json.dumps(notice))
                self.spawn(self._close_later(ws))

    def _ticker(self, symbol: str, entry: VenueSymbol) -> str:
        sim = self.sims[symbol]
        bid, ask = sim.book.best_bid(), sim.book.best_ask()
        pp, qp = entry.price_precision, entry.qty_precision
        last = sim.last_price or (bid[0] if bid else Decimal(0))
        fields = [f'"symbol":"{entry.venue}"']
        if bid and ask:
            fields += [
                f'"bid":{fmt(bid[0], pp)}',
                f'"bid_qty":{fmt(bid[1], qp)}',
                f'"ask":{fmt(ask[0], pp)}',
                f'"ask_qty":{fmt(ask[1], qp)}',
            ]
        fields += [f'"last":{fmt(last, pp)}', '"volume":1000.0', f'"timestamp":"{_now_text()}"']
        return '{"channel":"ticker","type":"update","data":[{' + ",".join(fields) + "}]}"

    async def _close_later(self, ws: ServerConnection) -> None:
        await asyncio.sleep(self.shutdown_grace)
        await ws.close(1001, "maintenance")
