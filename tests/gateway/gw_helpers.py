"""Helpers shared by the gateway tests (imported as a plain module from this folder)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

from tradehall.gateway.events import Event

Book = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]


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
