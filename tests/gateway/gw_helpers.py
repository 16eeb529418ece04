"""Helpers shared by the gateway tests (imported as a plain module from this folder)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

from tradehall.gateway.events import Event

Book = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]

# Kraken's v2 documentation snapshot (wire text kept: trailing zeros matter).
KRAKEN_DOC_SNAPSHOT = """{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",
 "bids":[{"price":45283.5,"qty":0.10000000},{"price":45283.4,"qty":1.54582015},
         {"price":45282.1,"qty":0.10000000},{"price":45281.0,"qty":0.10000000},
         {"price":45280.3,"qty":1.54592586},{"price":45279.0,"qty":0.07990000},
         {"price":45277.6,"qty":0.03310103},{"price":45277.5,"qty":0.30000000},
         {"price":45277.3,"qty":1.54602737},{"price":45276.6,"qty":0.15445238}],
 "asks":[{"price":45285.2,"qty":0.00100000},{"price":45286.4,"qty":1.54571953},
         {"price":45286.6,"qty":1.54571109},{"price":45289.6,"qty":1.54560911},
         {"price":45290.2,"qty":0.15890660},{"price":45291.8,"qty":1.54553491},
         {"price":45294.7,"qty":0.04454749},{"price":45296.1,"qty":0.35380000},
         {"price":45297.5,"qty":0.09945542},{"price":45299.5,"qty":0.18772827}],
 "checksum":3310070434,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"""


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> float:
    """Poll ``condition`` until true; returns the seconds it took, fails after ``within`` s."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


class Collector:
    """An event sink that keeps everything it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event], symbol: str | None = None) -> list[Event]:
        return [
            e for e in self.events if isinstance(e, kind) and (symbol is None or e.symbol == symbol)
        ]
