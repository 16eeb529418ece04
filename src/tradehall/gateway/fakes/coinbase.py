"""A wire-compatible fake of Coinbase Advanced Trade's public market-data WebSocket.

Clients must send a ``subscribe`` within ``subscribe_timeout`` seconds (5 s on the real venue) or
the connection is closed. Each ``subscribe``/``unsubscribe`` names exactly one ``channel``
(``level2``, ``market_trades``, ``ticker``, ``heartbeats``) plus ``product_ids``; the answer is a
``subscriptions`` message listing everything subscribed. Every message is an envelope
``{channel, client_id, timestamp, sequence_num, events}`` whose ``sequence_num`` counts the
messages sent on *this connection* (shared by all channels).

``level2`` data arrives on channel ``l2_data``: a ``snapshot`` event on subscribe, then
``update`` events with ``side`` ``bid``/``offer``, ``price_level`` and the new absolute
``new_quantity`` (``"0"`` deletes). ``market_trades`` carries the *maker* side in ``side`` (the
adapter maps it to the taker side; see :mod:`tradehall.gateway.venues.coinbase`). ``heartbeats``
tick every ``heartbeat_every`` seconds with an increasing ``heartbeat_counter``. More than
``max_l2_products`` level2 products on one connection is refused with the venue's error text.

Faults: ``DROP_DIFF`` (an l2 update is lost but its ``sequence_num`` is consumed: a gap),
``OVERSIZED_SNAPSHOT`` (the next snapshot exceeds 1 MiB), ``TOO_MANY_SUBSCRIPTIONS`` (the next
level2 subscribe fails), ``SILENCE``/``SILENCE_ALL``, ``ABRUPT_CLOSE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import ServerConnection

from tradehall.gateway.events import Level, Side
from tradehall.gateway.fakes.market import Tick
from tradehall.gateway.fakes.server import FakeVenue, Fault, fmt
from tradehall.gateway.symbols import COINBASE

__all__ = ["FakeCoinbase"]

CHANNELS = ("level2", "market_trades", "ticker", "heartbeats")
TOO_MANY_L2 = "too many L2 streams requested in a single session"


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Conn:
    def __init__(self) -> None:
        self.seq = 0
        self.subs: dict[str, set[str]] = {c: set() for c in CHANNELS}
        self.subscribed = asyncio.Event()


class FakeCoinbase(FakeVenue):
    name = "coinbase"

    def __init__(
        self,
        symbols: Sequence[str] = ("BTC-USD", "ETH-USD"),
        *,
        heartbeat_every: float = 1.0,
        subscribe_timeout: float = 5.0,
        max_l2_products: int = 16,
        oversized_levels: int = 6000,
        **kwargs: Any,
    ) -> None:
        super().__init__(COINBASE, symbols, **kwargs)
        self.heartbeat_every = heartbeat_every
        self.subscribe_timeout = subscribe_timeout
        self.max_l2_products = max_l2_products
        self.oversized_levels = oversized_levels
        self.conns: dict[ServerConnection, _Conn] = {}
        self.largest_frame = 0

    async def _envelope(
        self, ws: ServerConnection, conn: _Conn, channel: str, events: str, *, skip: bool = False
    ) -> None:
        """Send one envelope; ``skip`` loses it on the way (the sequence number is consumed)."""
        seq = conn.seq
        conn.seq += 1
        if skip:
            return
        text = (
            f'{{"channel":"{channel}","client_id":"","timestamp":"{_now_text()}",'
            f'"sequence_num":{seq},"events":{events}}}'
        )
        self.largest_frame = max(self.largest_frame, len(text))
        await self.send(ws, text)

    async def handle(self, ws: ServerConnection) -> None:
        conn = self.conns[ws] = _Conn()
        heartbeats = asyncio.create_task(self._heartbeats(ws, conn))
        watchdog = asyncio.create_task(self._require_subscribe(ws, conn))
        try:
            async for raw in ws:
                await self._request(ws, conn, raw)
        finally:
            heartbeats.cancel()
            watchdog.cancel()
            self.conns.pop(ws, None)

    async def _require_subscribe(self, ws: ServerConnection, conn: _Conn) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.subscribed.wait(), self.subscribe_timeout)
            return
        await ws.close(1008, "subscribe required within 5s")

    async def _heartbeats(self, ws: ServerConnection, conn: _Conn) -> None:
        counter = 0
        while True:
            await asyncio.sleep(self.heartbeat_every)
            if conn.subs["heartbeats"] is not None and "*" in conn.subs["heartbeats"]:
                counter += 1
                if self.silent(None):
                    continue
                event = {
                    "current_time": f"{datetime.now(UTC)} +0000 UTC",
                    "heartbeat_counter": counter,
                }
                await self._envelope(ws, conn, "heartbeats", json.dumps([event]))

    async def _error(self, ws: ServerConnection, message: str) -> None:
        await self.send(ws, json.dumps({"type": "error", "message": message}))

    async def _request(self, ws: ServerConnection, conn: _Conn, raw: str | bytes) -> None:
        if self.silent(None):
            return  # a silent venue answers nothing at all
        try:
            msg = json.loads(raw)
            kind, channel = msg["type"], msg["channel"]
        except (ValueError, KeyError, TypeError):
            await self._error(ws, "Failure to parse subscribe message: channel required")
            return
        if kind not in ("subscribe", "unsubscribe") or channel not in CHANNELS:
            await self._error(ws, f"Failed to subscribe: unknown channel {channel!r}")
            return
        products = [str(p) for p in msg.get("product_ids", [])]
        unknown = [p for p in products if p not in self.sims]
        if unknown:
            await self._error(ws, f"Failed to subscribe: invalid product_ids {unknown}")
            return
        subscribed = conn.subs[channel]
        if kind == "unsubscribe":
            subscribed.difference_update(products or set(subscribed))
        else:
            conn.subscribed.set()
            if channel == "level2" and (
                self.take(Fault.TOO_MANY_SUBSCRIPTIONS)
                or len(subscribed | set(products)) > self.max_l2_products
            ):
                await self._error(ws, TOO_MANY_L2)
                return
            subscribed.update(products if channel != "heartbeats" else ["*"])
        listing = {c: sorted(p) for c, p in conn.subs.items() if p and c != "heartbeats"}
        if conn.subs["heartbeats"]:
            listing["heartbeats"] = []
        await self._envelope(ws, conn, "subscriptions", json.dumps([{"subscriptions": listing}]))
        if kind == "subscribe" and channel == "level2":
            for product in products:
                await self._snapshot(ws, conn, product)

    async def _snapshot(self, ws: ServerConnection, conn: _Conn, product: str) -> None:
        sim = self.sims[product]
        if self.take(Fault.OVERSIZED_SNAPSHOT, product):
            # grow the true book first; other subscribers see the new levels as an update
            await self.publish(product, sim.add_deep_levels(self.oversized_levels), skip=ws)
        book = sim.book
        updates = self._updates(book.top_bids(), book.top_asks())
        events = f'[{{"type":"snapshot","product_id":"{product}","updates":[{updates}]}}]'
        await self._envelope(ws, conn, "l2_data", events)

    def _updates(self, bids: Sequence[Level], asks: Sequence[Level]) -> str:
        now = _now_text()
        parts = [
            f'{{"side":"{side}","event_time":"{now}","price_level":"{fmt(p, 2)}",'
            f'"new_quantity":"{fmt(q, 8)}"}}'
            for side, levels in (("bid", bids), ("offer", asks))
            for p, q in levels
        ]
        return ",".join(parts)

    async def publish(self, symbol: str, tick: Tick, skip: ServerConnection | None = None) -> None:
        silent_all = self.silent(None)
        for ws, conn in list(self.conns.items()):
            if ws is skip:
                continue
            if symbol in conn.subs["level2"] and tick.changes:
                updates = self._updates(tick.bid_levels(), tick.ask_levels())
                events = f'[{{"type":"update","product_id":"{symbol}","updates":[{updates}]}}]'
                lost = self.take(Fault.DROP_DIFF, symbol)
                if not self.silent(symbol):
                    await self._envelope(ws, conn, "l2_data", events, skip=lost)
            if silent_all:
                continue
            if symbol in conn.subs["market_trades"] and tick.trades:
                trades = [
                    {
                        "trade_id": str(t.trade_id),
                        "product_id": symbol,
                        "price": fmt(t.price, 2),
                        "size": fmt(t.qty, 8),
                        "side": "SELL" if t.taker is Side.BUY else "BUY",  # the maker's side
                        "time": _now_text(),
                    }
                    for t in tick.trades
                ]
                events = json.dumps([{"type": "update", "trades": trades}])
                await self._envelope(ws, conn, "market_trades", events)
            if symbol in conn.subs["ticker"] and tick.trades:
                await self._envelope(ws, conn, "ticker", self._ticker(symbol))

    def _ticker(self, symbol: str) -> str:
        sim = self.sims[symbol]
        bid, ask = sim.book.best_bid(), sim.book.best_ask()
        ticker: dict[str, Any] = {
            "type": "ticker",
            "product_id": symbol,
            "price": fmt(sim.last_price or Decimal(0), 2),
            "volume_24_h": "15328.12",
        }
        if bid and ask:
            ticker |= {
                "best_bid": fmt(bid[0], 2),
                "best_bid_quantity": fmt(bid[1], 8),
                "best_ask": fmt(ask[0], 2),
                "best_ask_quantity": fmt(ask[1], 8),
            }
        return json.dumps([{"type": "update", "tickers": [ticker]}])
