"""Venue watch: say in plain words when a gateway venue sends no market data.

The gateway reconnects to unreachable venues on its own, logging each attempt at info level. For
someone who just typed ``tradehall up`` on a machine without network, that is silence. This
monitor polls the gateway's ``/healthz`` (per venue and symbol: ``LIVE``, ``SYNCING``...) and
reports a venue that has had no live book for ``grace`` seconds -- once per outage -- and again
when it is live. When that venue is the Tap's price source it also says what the Tap does about
it (its breaker keeps bets closed until prices flow).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from tradehall.core.clock import Clock, SystemClock

__all__ = ["VenueMonitor"]

Books = Mapping[str, Mapping[str, str]]


@dataclass
class _Venue:
    down_since: float | None = None
    reported: bool = False


class VenueMonitor:
    """Turns successive ``/healthz`` book states into messages; see the module docstring."""

    def __init__(
        self,
        report: Callable[[str], None],
        *,
        tap_venue: str = "",
        sim: bool = False,
        grace: float = 15.0,
        interval: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.report = report
        self.tap_venue = tap_venue
        self.sim = sim
        self.grace = grace
        self.interval = interval
        self.clock = clock or SystemClock()
        self._venues: dict[str, _Venue] = {}

    def observe(self, books: Books, now: float) -> list[str]:
        """The messages due for one health reading taken at ``now`` (monotonic seconds)."""
        messages = []
        for venue, symbols in books.items():
            state = self._venues.setdefault(venue, _Venue())
            live = any(s == "LIVE" for s in symbols.values())
            if live:
                if state.reported:
                    messages.append(f"gateway: {venue} is live again")
                state.down_since, state.reported = None, False
                continue
            if state.down_since is None:
                state.down_since = now
            if not state.reported and now - state.down_since >= self.grace:
                state.reported = True
                messages.append(self._down_message(venue, symbols, now - state.down_since))
        return messages

    def _down_message(self, venue: str, symbols: Mapping[str, str], seconds: float) -> str:
        detail = ", ".join(f"{symbol} {st}" for symbol, st in sorted(symbols.items()))
        text = (
            f"gateway: no market data from {venue} for {seconds:.0f} s ({detail}); "
            "it keeps reconnecting"
        )
        if not self.sim and venue != "tradehall":
            text += " -- no network? `tradehall up --sim` runs the simulated venues"
        if self.tap_venue in (venue, "*"):
            source = "every venue" if self.tap_venue == "*" else venue
            text += (
                f". The Tap prices BTC-USD from {source}: its breaker keeps bets "
                "closed until prices flow"
            )
        return text

    async def run(self, gateway_url: str) -> None:
        """Poll ``gateway_url``/healthz every ``interval`` until cancelled."""
        async with httpx.AsyncClient(base_url=gateway_url, timeout=3.0) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    response = await http.get("/healthz")
                    if response.status_code == 200:
                        for message in self.observe(response.json()["books"], self._now()):
                            self.report(message)
                await self.clock.sleep(self.interval)

    def _now(self) -> float:
        return self.clock.monotonic()
