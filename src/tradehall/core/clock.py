"""Clocks behind one small interface, so time-driven code is testable without sleeping.

Production code takes a :class:`Clock`; tests pass a :class:`VirtualClock` and move time with
:meth:`VirtualClock.advance`. Whatever sleeps through the clock (expiry sweeps, retry back-off,
breaker timers) wakes exactly when virtual time passes its deadline, in deadline order, so a test
that advances 30 s runs in microseconds and sees the same interleaving every time.

Times are integer nanoseconds since the Unix epoch (``time_ns``) for wall time, and float seconds
for the monotonic reading used for durations.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    """What time-aware code needs: wall time, monotonic time and a sleep that honours them."""

    def time_ns(self) -> int:
        """Wall-clock time as integer nanoseconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (durations, deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clocks of the machine."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """A clock that only moves when told to.

    Wall and monotonic time advance together. ``sleep`` registers a deadline and returns once
    :meth:`advance` has moved time to or past it. ``advance`` wakes sleepers one deadline at a time
    and yields to the event loop between them, so code woken early can schedule further sleeps that
    still fall inside the advanced span (a periodic loop fires once per period, as with real time).
    """

    def __init__(self, start_ns: int = 1_790_000_000 * 1_000_000_000) -> None:
        self._now_ns = start_ns
        self._start_ns = start_ns
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def time_ns(self) -> int:
        return self._now_ns

    def monotonic(self) -> float:
        return (self._now_ns - self._start_ns) / 1e9

    async def sleep(self, seconds: float) -> None:
        deadline = self._now_ns + max(0, round(seconds * 1e9))
        if deadline <= self._now_ns:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), future))
        await future

    def set_ns(self, now_ns: int) -> None:
        """Jump wall time without waking sleepers (for tests of synchronous code)."""
        self._now_ns = now_ns

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper whose deadline falls inside."""
        target = self._now_ns + round(seconds * 1e9)
        await self._settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now_ns = max(self._now_ns, deadline)
            if not future.done():
                future.set_result(None)
            await self._settle()
        self._now_ns = max(self._now_ns, target)
        await self._settle()

    @property
    def sleepers(self) -> int:
        """How many tasks are currently sleeping on this clock."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    @staticmethod
    async def _settle(rounds: int = 5) -> None:
        # Several passes of the loop let woken tasks run their next synchronous step (and chain
        # through a few awaits) before more time passes.
        for _ in range(rounds):
            await asyncio.sleep(0)
