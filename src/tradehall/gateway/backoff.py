"""Jittered exponential back-off for reconnects and snapshot retries.

"Full jitter": attempt ``n`` waits a uniform random time in ``[0, min(cap, base * 2**n)]``, which
spreads a fleet of clients reconnecting after a venue outage instead of having them retry in
lock-step. A floor (``minimum``) avoids hammering a venue that refuses instantly. The RNG is
injected, so tests pin the sequence; nothing here sleeps.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive failed attempts; :meth:`reset` after a healthy connection."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        *,
        minimum: float = 0.05,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.minimum = minimum
        self.rng = rng if rng is not None else random.Random()
        self.attempts = 0

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt number ``attempt`` (0-based) may draw."""
        return min(self.cap, self.base * 2.0 ** min(attempt, 62))

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        ceiling = self.ceiling(self.attempts)
        self.attempts += 1
        return max(self.minimum, self.rng.uniform(0.0, ceiling))

    def reset(self) -> None:
        self.attempts = 0
