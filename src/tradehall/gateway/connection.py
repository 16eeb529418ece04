"""One venue WebSocket kept alive: connect, subscribe, pump, watchdog, reconnect.

:class:`WsRunner` owns the socket lifecycle and nothing venue-specific; a :class:`WsSession`
(implemented by each adapter) sends the subscriptions on connect, parses frames and runs its
per-symbol timers. The runner:

- reconnects after any failure with :class:`~tradehall.gateway.backoff.Backoff` (jittered
  exponential; reset once a connection has delivered data), sleeping on the injected clock;
- runs a watchdog every ``tick`` seconds that calls :meth:`WsSession.check` (book staleness and
  resync timers) and drops the connection when nothing at all arrived for ``idle_timeout``
  (the venue's heartbeats/pings count) or the connection reached ``max_age`` (Binance cuts at 24 h);
- yields to the event loop after every frame, so a burst already in the socket buffer does not
  hold the consumers back (ingest -> consumer latency: p50 0.1 ms instead of 1-12 ms in the
  SC-011 benchmark, for ~10-25 % more CPU per event);
- reconnects at once, without back-off, when the session calls :meth:`WsRunner.reconnect_now`
  (a venue shutdown notice);
- logs an attempt that could not connect (refused, DNS, TLS, handshake, timeout) as a warning the
  first time and then at most once a minute (``warn_every``) while the venue keeps failing, each
  with the count of consecutive failed attempts and the error, the attempts in between at info;
  one info line when a connection opens again after failures.

Large frames are allowed (``max_size=None``): a Coinbase level2 snapshot can exceed 1 MiB.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import msgspec
import structlog
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from tradehall.core.clock import Clock
from tradehall.gateway.backoff import Backoff

__all__ = ["WsRunner", "WsSession"]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.connection")


class WsSession(Protocol):
    """The venue-specific half of a connection."""

    def url(self) -> str:
        """Where to connect (may change between attempts)."""
        ...

    async def on_connect(self, ws: ClientConnection) -> None:
        """Subscribe everything (called on every (re)connect)."""
        ...

    async def on_message(self, ws: ClientConnection, data: str | bytes) -> None:
        """Handle one frame."""
        ...

    async def check(self, ws: ClientConnection, now: float) -> None:
        """Per-symbol timers; called every watchdog tick while connected."""
        ...

    def on_disconnect(self, reason: str) -> None:
        """The socket is gone; mark books as resyncing."""
        ...


class WsRunner:
    """Keeps one :class:`WsSession` connected until :meth:`stop`."""

    def __init__(
        self,
        name: str,
        session: WsSession,
        *,
        clock: Clock,
        backoff: Backoff,
        idle_timeout: float = 10.0,
        max_age: float | None = None,
        tick: float = 0.1,
        open_timeout: float = 10.0,
        warn_every: float = 60.0,
    ) -> None:
        self.name = name
        self.session = session
        self.clock = clock
        self.backoff = backoff
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.tick = tick
        self.open_timeout = open_timeout
        self.warn_every = warn_every
        self.connects = 0
        self.bad_frames = 0
        self.disconnects: list[str] = []
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._immediate = False
        self._close_reason = ""
        self._closing: asyncio.Task[None] | None = None
        self._last = 0.0
        self.failures = 0  # consecutive attempts that could not connect
        self._failing_since = 0.0
        self._warned_at: float | None = None
        self._connect_error: str | None = None
        self._attempt_url = ""

    async def run(self) -> None:
        """Connect and reconnect until stopped."""
        while not self._stopping:
            reason = await self._one_connection()
            self.connected.clear()
            self.disconnects.append(reason)
            self.session.on_disconnect(reason)
            if self._stopping:
                break
            delay = 0.0 if self._immediate else self.backoff.next_delay()
            self._immediate = False
            if self._connect_error is not None:
                self._log_failure(self._connect_error, delay)
            else:
                log.info("reconnecting", venue=self.name, reason=reason, delay=round(delay, 3))
            await self.clock.sleep(delay)

    def _log_failure(self, error: str, delay: float) -> None:
        """A failed attempt: warning on the first and at most every ``warn_every`` s, else info."""
        now = self.clock.monotonic()
        self.failures += 1
        if self.failures == 1:
            self._failing_since = now
            self._warned_at = None
        warn = self._warned_at is None or now - self._warned_at >= self.warn_every
        if warn:
            self._warned_at = now
        (log.warning if warn else log.info)(
            "connect_failed",
            venue=self.name,
            url=self._attempt_url,
            attempts=self.failures,
            failing_for=round(now - self._failing_since, 1),
            error=error,
            retry_in=round(delay, 3),
        )

    def _log_connected(self) -> None:
        if self.failures:
            log.info(
                "connection_restored",
                venue=self.name,
                failed_attempts=self.failures,
                down_for=round(self.clock.monotonic() - self._failing_since, 1),
            )
        self.failures = 0

    async def _one_connection(self) -> str:
        self._close_reason = ""
        self._connect_error = None
        opened = False
        self._attempt_url = url = self.session.url()
        try:
            async with websockets.connect(
                url,
                max_size=None,
                open_timeout=self.open_timeout,
                ping_interval=20,
                ping_timeout=60,
            ) as ws:
                self._ws = ws
                opened = True
                self.connects += 1
                self.connected.set()
                self._log_connected()
                await self.session.on_connect(ws)
                watchdog = asyncio.create_task(self._watchdog(ws))
                try:
                    healthy = False
                    async for message in ws:
                        self._last = self.clock.monotonic()
                        if not healthy:
                            healthy = True
                            self.backoff.reset()
                        try:
                            await self.session.on_message(ws, message)
                        except (msgspec.DecodeError, ValueError, KeyError, TypeError) as exc:
                            # One malformed frame must not take the feed down: log, count, go on.
                            self.bad_frames += 1
                            log.warning("bad_frame", venue=self.name, error=str(exc)[:200])
                        # Frames already buffered are handed out without suspending: let the
                        # consumers (and the other venues) run before parsing the next one.
                        await asyncio.sleep(0)
                finally:
                    watchdog.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watchdog
                    self._ws = None
                return self._close_reason or "closed"
        except (OSError, WebSocketException, TimeoutError) as exc:
            if not opened:
                self._connect_error = f"{type(exc).__name__}: {exc}"[:300]
            return self._close_reason or f"error: {type(exc).__name__}"

    async def _watchdog(self, ws: ClientConnection) -> None:
        opened = self._last = self.clock.monotonic()
        while True:
            await self.clock.sleep(self.tick)
            now = self.clock.monotonic()
            try:
                await self.session.check(ws, now)
            except WebSocketException:
                return  # the socket is going away; the reader loop notices and reconnects
            if now - self._last > self.idle_timeout:
                await self._close(ws, "idle")
                return
            if self.max_age is not None and now - opened >= self.max_age:
                self._immediate = True
                await self._close(ws, "max_age")
                return

    async def _close(self, ws: ClientConnection, reason: str) -> None:
        self._close_reason = reason
        # Bound the closing handshake: a silent venue will not answer it.
        if reason == "idle":
            ws.transport.abort()
        else:
            await ws.close()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def reconnect_now(self, reason: str) -> None:
        """Drop the current connection and reconnect without back-off (shutdown notice)."""
        self._immediate = True
        ws = self._ws
        if ws is not None:
            self._close_reason = reason
            self._closing = asyncio.get_running_loop().create_task(ws.close())

    async def stop(self) -> None:
        self._stopping = True
        ws = self._ws
        if ws is not None:
            await ws.close()
