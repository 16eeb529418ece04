"""A wire-compatible fake of Binance spot market data.

REST ``GET /api/v3/depth?symbol=BTCUSDT&limit=N`` returns ``{"lastUpdateId", "bids", "asks"}``
with string decimals. WebSocket ``/stream?streams=a/b`` (combined, payloads wrapped in
``{"stream", "data"}``) and ``/ws/<stream>`` (raw) serve ``<sym>@depth`` / ``<sym>@depth@100ms``
diffs (``U``/``u`` update-id ranges, absolute quantities), ``<sym>@trade`` and
``<sym>@bookTicker``; JSON ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS`` are answered with
``{"result": ..., "id": n}``. Each market tick becomes one depth event covering as many update ids
as levels changed.

Faults: ``DROP_DIFF`` (ids advance, the event is never sent: a gap), ``STALE_SNAPSHOT`` (the next
REST answer is ~2 s old), ``CROSSED`` (a well-sequenced bogus diff that crosses the book),
``SLOW_SNAPSHOT`` (the REST answer is held back), ``RATE_LIMITED`` (429 with ``Retry-After``),
``MALFORMED`` (a depth event missing fields), ``SILENCE``/``SILENCE_ALL``, ``ABRUPT_CLOSE`` and
``SHUTDOWN_NOTICE`` (a ``serverShutdown`` event, then the connection is closed after
``shutdown_grace`` seconds).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from tradehall.gateway.events import Level, Side
from tradehall.gateway.fakes.market import Tick
from tradehall.gateway.fakes.server import FakeVenue, Fault, fmt, json_response
from tradehall.gateway.symbols import BINANCE

__all__ = ["FakeBinance"]

PLACES = 8  # Binance renders every price and quantity with 8 decimals


@dataclass
class _Sub:
    combined: bool
    streams: set[str] = field(default_factory=set)


def _levels(levels: Sequence[Level]) -> list[list[str]]:
    return [[fmt(p, PLACES), fmt(q, PLACES)] for p, q in levels]


class FakeBinance(FakeVenue):
    name = "binance"

    def __init__(
        self,
        symbols: Sequence[str] = ("BTC-USD", "ETH-USD"),
        *,
        shutdown_grace: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(BINANCE, symbols, **kwargs)
        self.shutdown_grace = shutdown_grace
        self.update_ids = {s: 1_000_000 * (i + 1) for i, s in enumerate(self.symbols)}
        self.history: dict[str, deque[tuple[int, list[Level], list[Level]]]] = {
            s: deque(maxlen=200) for s in self.symbols
        }
        self.subs: dict[ServerConnection, _Sub] = {}
        self.snapshot_requests = 0

    # -- REST ------------------------------------------------------------------------------------

    def rest(self, path: str, query: dict[str, str]) -> Response:
        if path != "/api/v3/depth":
            return json_response(404, {"code": -1000, "msg": "Unknown path."})
        try:
            symbol = self.symbol_map.to_canonical(query.get("symbol", ""))
        except KeyError:
            return json_response(400, {"code": -1121, "msg": "Invalid symbol."})
        if symbol not in self.sims:
            return json_response(400, {"code": -1121, "msg": "Invalid symbol."})
        limit = min(int(query.get("limit", "100")), 5000)
        self.snapshot_requests += 1
        if self.take(Fault.RATE_LIMITED, symbol):
            body = {"code": -1003, "msg": "Too many requests; please use the websocket."}
            return json_response(429, body, [("Retry-After", "1")])
        if self.take(Fault.STALE_SNAPSHOT, symbol) and self.history[symbol]:
            last_id, bids, asks = self.history[symbol][0]
        else:
            book = self.sims[symbol].book
            last_id, bids, asks = (
                self.update_ids[symbol],
                list(book.top_bids()),
                list(book.top_asks()),
            )
        body = {
            "lastUpdateId": last_id,
            "bids": _levels(bids[:limit]),
            "asks": _levels(asks[:limit]),
        }
        return json_response(200, body)

    # -- WebSocket -------------------------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        if parts.path == "/stream":
            names = parse_qs(parts.query).get("streams", [""])[0].split("/")
            sub = _Sub(True, {n for n in names if n})
        elif parts.path.startswith("/ws"):
            sub = _Sub(False, {n for n in parts.path[4:].split("/") if n})
        else:
            await ws.close(1008, "unknown path")
            return
        self.subs[ws] = sub
        try:
            async for raw in ws:
                await self._control(ws, sub, raw)
        finally:
            self.subs.pop(ws, None)

    async def _control(self, ws: ServerConnection, sub: _Sub, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
            method, req_id = msg["method"], msg.get("id")
        except (ValueError, KeyError, TypeError):
            await self.send(ws, json.dumps({"code": 3, "msg": "Invalid JSON", "id": None}))
            return
        params = msg.get("params", [])
        if method == "SUBSCRIBE":
            sub.streams.update(params)
            reply: dict[str, Any] = {"result": None, "id": req_id}
        elif method == "UNSUBSCRIBE":
            sub.streams.difference_update(params)
            reply = {"result": None, "id": req_id}
        elif method == "LIST_SUBSCRIPTIONS":
            reply = {"result": sorted(sub.streams), "id": req_id}
        else:
            reply = {"code": 2, "msg": f"Invalid request: unknown method {method}", "id": req_id}
        await self.send(ws, json.dumps(reply))

    async def _emit(self, stream: str, data: dict[str, Any]) -> None:
        raw = combined = ""
        for ws, sub in list(self.subs.items()):
            if stream not in sub.streams:
                continue
            if sub.combined:
                combined = combined or json.dumps({"stream": stream, "data": data})
                await self.send(ws, combined)
            else:
                raw = raw or json.dumps(data)
                await self.send(ws, raw)

    async def publish(self, symbol: str, tick: Tick) -> None:
        venue = self.symbol_map.to_venue(symbol)
        lower = venue.lower()
        now_ms = time.time_ns() // 1_000_000
        book = self.sims[symbol].book
        if tick.changes:
            first = self.update_ids[symbol] + 1
            last = self.update_ids[symbol] = first + tick.changes - 1
            self.history[symbol].append((last, list(book.top_bids()), list(book.top_asks())))
            if not (self.take(Fault.DROP_DIFF, symbol) or self.silent(symbol)):
                data = {
                    "e": "depthUpdate",
                    "E": now_ms,
                    "s": venue,
                    "U": first,
                    "u": last,
                    "b": _levels(tick.bid_levels()),
                    "a": _levels(tick.ask_levels()),
                }
                await self._emit(f"{lower}@depth@100ms", data)
                await self._emit(f"{lower}@depth", data)
        if self.take(Fault.MALFORMED, symbol):
            await self._emit(f"{lower}@depth@100ms", {"e": "depthUpdate", "s": venue})
        if self.take(Fault.CROSSED, symbol):
            await self._send_crossed(symbol, venue, now_ms)
        if self.silent(None):
            return
        for trade in tick.trades:
            await self._emit(
                f"{lower}@trade",
                {
                    "e": "trade",
                    "E": now_ms,
                    "s": venue,
                    "t": trade.trade_id,
                    "p": fmt(trade.price, PLACES),
                    "q": fmt(trade.qty, PLACES),
                    "T": now_ms,
                    "m": trade.taker is Side.SELL,  # buyer is maker <=> the taker sold
                    "M": True,
                },
            )
        best_bid, best_ask = book.best_bid(), book.best_ask()
        if tick.changes and best_bid and best_ask:
            await self._emit(
                f"{lower}@bookTicker",
                {
                    "u": self.update_ids[symbol],
                    "s": venue,
                    "b": fmt(best_bid[0], PLACES),
                    "B": fmt(best_bid[1], PLACES),
                    "a": fmt(best_ask[0], PLACES),
                    "A": fmt(best_ask[1], PLACES),
                },
            )
        if self.take(Fault.SHUTDOWN_NOTICE):
            await self._shutdown_notice(now_ms)

    async def _send_crossed(self, symbol: str, venue: str, now_ms: int) -> None:
        best_ask = self.sims[symbol].book.best_ask()
        if best_ask is None:
            return
        uid = self.update_ids[symbol] = self.update_ids[symbol] + 1
        bogus = best_ask[0] + self.sims[symbol].tick
        data = {
            "e": "depthUpdate",
            "E": now_ms,
            "s": venue,
            "U": uid,
            "u": uid,
            "b": _levels([(bogus, Decimal(1))]),
            "a": [],
        }
        await self._emit(f"{venue.lower()}@depth@100ms", data)

    async def _shutdown_notice(self, now_ms: int) -> None:
        event = {"e": "serverShutdown", "E": now_ms}
        for ws, sub in list(self.subs.items()):
            payload = {"stream": "!serverShutdown", "data": event} if sub.combined else event
            await self.send(ws, json.dumps(payload))
            self.spawn(self._close_later(ws))

    async def _close_later(self, ws: ServerConnection) -> None:
        await asyncio.sleep(self.shutdown_grace)
        await ws.close(1001, "server shutdown")
