"""The ``gateway`` price source: our gateway's data bus (``ws://host:8085/ws``).

The gateway speaks JSON control messages over one WebSocket (see ``docs/gateway-dispatcher.md``).
On every connection this source sends

.. code-block:: json

    {"op": "subscribe", "provider": "*", "symbol": "BTC-USD", "event_types": ["trade", "ticker"],
     "id": 1}

and turns the canonical events it receives into prices in integer cents:

* ``trade``: ``price``;
* ``ticker``: ``last`` when the venue sends it, else the mid of ``bid`` and ``ask`` (tickers keep
  the feed fresh between prints).

Decimals arrive as strings and are converted with :class:`~decimal.Decimal`, never through a
binary float; a sub-cent price is rounded half-even to the cent. Events of another symbol, other
event types, malformed frames and non-positive prices are ignored (counted in ``ignored``).

An ``error`` answer to the subscription, a closed socket, a failed connection or ``read_timeout_s``
without a single frame make the source reconnect with jittered exponential back-off from 1 s capped
at 5 s (C-37); it never gives up and never raises except on cancellation.
"""

from __future__ import annotations

import asyncio
import random
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import msgspec

from tradehall.core.clock import Clock
from tradehall.tap.feed import Emit, backoff_delays
from tradehall.tap.log import LazyLogger

__all__ = ["GATEWAY_URL", "GatewaySource", "SubscriptionRefused", "price_of_event", "to_cents"]

GATEWAY_URL = "ws://127.0.0.1:8085/ws"
_SUBSCRIBE_ID = 1
_log = LazyLogger("tap.feed.gateway")


class SubscriptionRefused(Exception):
    """The gateway answered the subscription with an ``error`` message."""


class _Frame(msgspec.Struct):
    """The fields of a gateway frame this source reads (everything else is skipped)."""

    event_type: str | None = None
    type: str | None = None
    symbol: str | None = None
    price: str | None = None
    last: str | None = None
    bid: str | None = None
    ask: str | None = None
    id: int | str | None = None
    code: str | None = None
    message: str | None = None


_decoder = msgspec.json.Decoder(_Frame)
_CENT = Decimal(1)


def to_cents(text: str) -> int | None:
    """``"97000.125"`` -> ``9700012`` (half-even to the cent); ``None`` if not a positive number."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0:
        return None
    cents = int((value * 100).quantize(_CENT, rounding=ROUND_HALF_EVEN))
    return cents if cents > 0 else None


def price_of_event(frame: _Frame, symbol: str) -> int | None:
    """The price in cents an event frame carries for ``symbol``, or ``None``."""
    if frame.symbol != symbol:
        return None
    if frame.event_type == "trade" and frame.price is not None:
        return to_cents(frame.price)
    if frame.event_type == "ticker":
        if frame.last is not None:
            return to_cents(frame.last)
        if frame.bid is not None and frame.ask is not None:
            bid, ask = to_cents(frame.bid), to_cents(frame.ask)
            if bid is None or ask is None or ask < bid:
                return None
            return (bid + ask) // 2
    return None


class GatewaySource:
    """Prices of one symbol from the gateway's ``/ws`` data bus, reconnecting for ever."""

    name = "gateway"

    def __init__(
        self,
        clock: Clock,
        url: str = GATEWAY_URL,
        *,
        symbol: str = "BTC-USD",
        provider: str = "*",
        read_timeout_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self.url = url
        self.symbol = symbol
        self.provider = provider
        self._read_timeout = read_timeout_s
        self._rng = rng or random.Random()
        self.connections = 0  # successful subscriptions so far
        self.ignored = 0  # frames that carried no usable price
        self._attempt = 0  # failures since the last acknowledged subscription

    def subscribe_message(self) -> bytes:
        """The control message sent on every (re)connection."""
        return msgspec.json.encode(
            {
                "op": "subscribe",
                "provider": self.provider,
                "symbol": self.symbol,
                "event_types": ["trade", "ticker"],
                "id": _SUBSCRIBE_ID,
            }
        )

    def handle(self, raw: str | bytes, emit: Emit) -> bool:
        """Process one frame; ``True`` when it acknowledged the subscription."""
        try:
            frame = _decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.ignored += 1
            return False
        if frame.event_type is None:
            if frame.type == "error" and frame.id == _SUBSCRIBE_ID:
                raise SubscriptionRefused(f"{frame.code}: {frame.message}")
            return frame.type == "ack" and frame.id == _SUBSCRIBE_ID
        price = price_of_event(frame, self.symbol)
        if price is None:
            self.ignored += 1
            return False
        emit(price)
        return False

    async def _session(self, emit: Emit) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url, open_timeout=10, max_size=2**20) as ws:
            await ws.send(self.subscribe_message().decode())
            _log.info("feed_connected", url=self.url, symbol=self.symbol, provider=self.provider)
            while True:
                raw = await asyncio.wait_for(ws.recv(), self._read_timeout)
                if self.handle(raw, emit):
                    self.connections += 1
                    self._attempt = 0  # back-off restarts only once the gateway said yes

    async def run(self, emit: Emit) -> None:
        """Stream prices into ``emit`` until cancelled."""
        self._attempt = 0
        while True:
            try:
                await self._session(emit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: log, back off, reconnect
                error = repr(exc)
            delays = backoff_delays(self._rng)
            delay = delays[min(self._attempt, len(delays) - 1)]
            self._attempt += 1
            _log.warning("feed_disconnected", url=self.url, error=error, retry_in_s=round(delay, 2))
            await self._clock.sleep(delay)
