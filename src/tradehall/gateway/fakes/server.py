"""Shared machinery of the fake venues: one loopback server for REST and WebSocket, a market loop,
and a fault switchboard.

A fake listens on ``127.0.0.1`` (port 0 = a random free port). Plain HTTP requests are answered
by :meth:`FakeVenue.rest` through websockets' ``process_request`` hook, so REST and WS share the
port (real venues use separate hosts; adapters take both base URLs). Every ``interval`` seconds the
market loop steps each symbol's :class:`~tradehall.gateway.fakes.market.MarketSim` and hands the
tick to the venue-specific :meth:`FakeVenue.publish`.

Faults are one-shot (or counted) switches: ``inject(Fault.DROP_DIFF, "BTC-USD")`` makes the next
matching publication misbehave once. Connection-level faults (abrupt close, shutdown notice,
silence) act on every open connection. :meth:`pause` stops the market so a test can compare the
adapter's book with :meth:`true_book` once the adapter has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tradehall.gateway.fakes.market import MarketSim, Tick
from tradehall.gateway.symbols import SymbolMap

__all__ = ["FakeVenue", "Fault", "json_response"]


class Fault(StrEnum):
    DROP_DIFF = "drop_diff"  # skip one book diff (Binance/Coinbase: a sequence gap)
    STALE_SNAPSHOT = "stale_snapshot"  # next REST snapshot is an old one (Binance)
    CORRUPT_CHECKSUM = "corrupt_checksum"  # next book message carries a wrong CRC32 (Kraken)
    MISSING_REFILL = "missing_refill"  # a delete without the level that refills depth (Kraken)
    CROSSED = "crossed"  # a well-sequenced diff that crosses the book
    SILENCE = "silence"  # stop a symbol's book messages for a while (per stream)
    SILENCE_ALL = "silence_all"  # the whole connection goes quiet (heartbeats too)
    ABRUPT_CLOSE = "abrupt_close"  # TCP reset without a close frame
    SHUTDOWN_NOTICE = "shutdown_notice"  # venue maintenance notice, then close
    OVERSIZED_SNAPSHOT = "oversized_snapshot"  # next snapshot > 1 MiB (Coinbase)
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"  # next level2 subscribe errors (Coinbase)
    MALFORMED = "malformed"  # a frame with missing fields (Binance)
    SLOW_SNAPSHOT = "slow_snapshot"  # the next REST snapshot answer is delayed (Binance)
    RATE_LIMITED = "rate_limited"  # the next REST request gets 429 + Retry-After (Binance)


def json_response(status: int, body: Any, extra: Sequence[tuple[str, str]] = ()) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    for name, value in extra:
        headers[name] = value
    return Response(status, HTTPStatus(status).phrase, headers, data)


def fmt(value: Decimal, places: int) -> str:
    return f"{value:.{places}f}"


class FakeVenue:
    """Base class; venues override :meth:`rest`, :meth:`handle` and :meth:`publish`."""

    name = "fake"

    def __init__(
        self,
        symbol_map: SymbolMap,
        symbols: Sequence[str] = ("BTC-USD", "ETH-USD"),
        *,
        seed: int = 7,
        interval: float = 0.01,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 60.0,
    ) -> None:
        self.symbol_map = symbol_map
        self.symbols = tuple(symbols)
        self.interval = interval
        self.host = host
        self.port = port
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.slow_answer = 0.5
        self._released = asyncio.Event()
        self.sims: dict[str, MarketSim] = {}
        for i, symbol in enumerate(self.symbols):
            entry = symbol_map.entry(symbol)
            mid = Decimal(68000) if symbol.startswith("BTC") else Decimal(3400) / (i or 1)
            self.sims[symbol] = MarketSim(
                seed=seed * 1000 + i,
                mid=mid,
                price_places=entry.price_precision,
                qty_places=entry.qty_precision,
            )
        self.connections: set[ServerConnection] = set()
        self.faults: dict[tuple[Fault, str | None], int] = {}
        self.silenced_until: dict[str | None, float] = {}
        self.published = 0
        self._server: Server | None = None
        self._market: asyncio.Task[None] | None = None
        self._running = asyncio.Event()
        self._running.set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=None,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self._market = asyncio.create_task(self._run_market())

    async def stop(self) -> None:
        if self._market is not None:
            self._market.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._market
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeVenue:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_ws(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- market ----------------------------------------------------------------------------------

    def release(self) -> None:
        """Deliver a held (``SLOW_SNAPSHOT``) answer now."""
        self._released.set()

    def pause(self) -> None:
        """Stop stepping the market (connections stay up; heartbeats continue)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def _run_market(self) -> None:
        while True:
            await self._running.wait()
            for symbol in self.symbols:
                tick = self.sims[symbol].step()
                await self.publish(symbol, tick)
            self.published += 1
            await asyncio.sleep(self.interval)

    async def publish(self, symbol: str, tick: Tick) -> None:
        raise NotImplementedError

    def true_book(self, symbol: str) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """The venue's book as a client should see it (venues with depth limits override)."""
        return self.sims[symbol].book.as_dicts()

    # -- faults ----------------------------------------------------------------------------------

    def inject(self, fault: Fault, symbol: str | None = None, count: int = 1) -> None:
        key = (fault, symbol)
        self.faults[key] = self.faults.get(key, 0) + count
        if fault is Fault.ABRUPT_CLOSE:
            self.faults.pop(key)
            for ws in list(self.connections):
                ws.transport.abort()

    def take(self, fault: Fault, symbol: str | None = None) -> bool:
        """Consume one pending ``fault`` for ``symbol`` (or for any symbol); True if there was."""
        for key in ((fault, symbol), (fault, None)):
            if self.faults.get(key, 0) > 0:
                self.faults[key] -= 1
                return True
        return False

    def silence(self, symbol: str | None, seconds: float) -> None:
        """Stop book messages for ``symbol`` (``None``: everything, heartbeats included)."""
        self.silenced_until[symbol] = asyncio.get_running_loop().time() + seconds

    def silent(self, symbol: str | None) -> bool:
        now = asyncio.get_running_loop().time()
        return self.silenced_until.get(None, 0.0) > now or (
            symbol is not None and self.silenced_until.get(symbol, 0.0) > now
        )

    # -- transport -------------------------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        parts = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        response = self.rest(parts.path, query)
        if self.take(Fault.SLOW_SNAPSHOT):
            # computed now, delivered late: after ``slow_answer`` s or :meth:`release`
            self._released.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), self.slow_answer)
        return response

    def rest(self, path: str, query: dict[str, str]) -> Response:
        return json_response(404, {"error": "not found"})

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.add(ws)
        try:
            await self.handle(ws)
        except ConnectionClosed:
            pass  # clients come and go, abruptly in the fault tests
        finally:
            self.connections.discard(ws)

    async def handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    async def send(self, ws: ServerConnection, text: str) -> None:
        """Send, ignoring connections that are already gone."""
        with contextlib.suppress(Exception):
            await ws.send(text)
