"""Price feed sources (Part A §6): a simulated random walk and the Binance trade stream.

A source runs forever and calls ``emit(price_cents)`` for every price it receives; the service
stamps each price with the local receive time (C-38), feeds the breaker, samples ticks for storage
and pushes them to clients. Sources reconnect on their own with exponential back-off and jitter from
1 s capped at 5 s (C-37), so a short outage recovers before the 10 s critical threshold.

Binance quotes BTCUSDT; USDT stands in for USD (C-36). The gateway source is a later issue.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Protocol

import msgspec

from tradehall.core.clock import Clock
from tradehall.tap.log import LazyLogger

__all__ = [
    "BinanceSource",
    "Emit",
    "NoSource",
    "PriceSource",
    "SimSource",
    "backoff_delays",
    "parse_binance_trade",
]

Emit = Callable[[int], None]
BINANCE_URL = "wss://stream.binance.com:9443/ws/btcusdt@trade"
_log = LazyLogger("tap.feed")


class PriceSource(Protocol):
    name: str

    async def run(self, emit: Emit) -> None:
        """Emit prices (integer cents) until cancelled."""
        ...


class NoSource:
    """No feed: prices arrive only through explicit ingestion (tests, operator tools)."""

    name = "none"

    async def run(self, emit: Emit) -> None:
        await asyncio.Event().wait()


class SimSource:
    """A Gaussian random walk in whole cents, one tick per ``interval_s`` on the given clock."""

    name = "sim"

    def __init__(
        self,
        clock: Clock,
        *,
        start_cents: int = 6_000_000,
        step_sigma_cents: float = 800.0,
        interval_s: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self._clock = clock
        self._price = start_cents
        self._sigma = step_sigma_cents
        self._interval = interval_s
        self._rng = random.Random(seed)

    async def run(self, emit: Emit) -> None:
        while True:
            emit(self._price)
            await self._clock.sleep(self._interval)
            step = round(self._rng.gauss(0.0, self._sigma * self._interval**0.5))
            self._price = max(100, self._price + step)


class _Trade(msgspec.Struct):
    p: str


_trade_decoder = msgspec.json.Decoder(_Trade)


def parse_binance_trade(raw: bytes | str) -> int | None:
    """The price in cents of one ``@trade`` message (``{"e":"trade","p":"97000.12",...}``)."""
    try:
        price = Decimal(_trade_decoder.decode(raw).p)
    except (msgspec.DecodeError, InvalidOperation):
        return None
    if not price.is_finite() or price <= 0:
        return None
    return int((price * 100).to_integral_value())


def backoff_delays(rng: random.Random, first_s: float = 1.0, cap_s: float = 5.0) -> list[float]:
    """Ten delays of exponential back-off with full jitter (then it stays at the cap)."""
    return [rng.uniform(0.5, 1.0) * min(cap_s, first_s * 2**i) for i in range(10)]


class BinanceSource:
    """The Binance ``btcusdt@trade`` stream with a 30 s read deadline and jittered reconnects."""

    name = "binance"

    def __init__(self, clock: Clock, url: str = BINANCE_URL, read_timeout_s: float = 30.0) -> None:
        self._clock = clock
        self._url = url
        self._read_timeout = read_timeout_s
        self._rng = random.Random()

    async def run(self, emit: Emit) -> None:
        from websockets.asyncio.client import connect

        attempt = 0
        while True:
            try:
                async with connect(self._url, open_timeout=10, max_size=2**16) as ws:
                    _log.info("feed_connected", url=self._url)
                    attempt = 0
                    while True:
                        raw = await asyncio.wait_for(ws.recv(), self._read_timeout)
                        price = parse_binance_trade(raw)
                        if price is not None:
                            emit(price)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delays = backoff_delays(self._rng)
                delay = delays[min(attempt, len(delays) - 1)]
                attempt += 1
                _log.warning("feed_disconnected", error=repr(exc), retry_in_s=round(delay, 2))
                await self._clock.sleep(delay)
