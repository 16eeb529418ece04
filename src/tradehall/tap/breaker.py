"""The stale-price circuit breaker, exactly the Part B §8 state machine.

States are ``healthy``, ``degraded`` and ``critical`` (critical = breaker "open", C-29). The
breaker is evaluated periodically (every second) with the local receive time of the last price
(C-38); with ``age`` = now - last price:

1. healthy -> degraded when age > 3 s;
2. healthy or degraded -> critical when age > 10 s, clearing ``recovering_since``;
3. degraded -> healthy when age <= 3 s;
4. in critical with age <= 3 s, set ``recovering_since`` if empty and go to healthy once
   now - ``recovering_since`` >= 30 s;
5. in critical, any age > 3 s clears ``recovering_since``.

Critical blocks bet placement and pauses resolution. Before the first price the age is infinite,
so the breaker starts (and stays) critical. A manual override (C-47) forces ``open``
(critical) or ``close`` (healthy) until set back to ``auto``.

Pure and synchronous: times are integer nanoseconds passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Breaker", "BreakerConfig", "Health", "Override", "Transition", "parse_override"]

NS = 1_000_000_000


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"


class Override(StrEnum):
    AUTO = "auto"
    OPEN = "open"
    CLOSE = "close"


@dataclass(frozen=True)
class BreakerConfig:
    degraded_after_s: float = 3.0
    critical_after_s: float = 10.0
    recovery_s: float = 30.0


@dataclass(frozen=True)
class Transition:
    """A change of the effective state, for logs, metrics and the ``system:status`` push."""

    previous: Health
    current: Health
    at_ns: int
    age_s: float | None


class Breaker:
    """The state machine; feed it price receipts and evaluate it on a timer."""

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()
        self._state = Health.CRITICAL
        self._last_price_ns: int | None = None
        self._recovering_since_ns: int | None = None
        self._override = Override.AUTO

    @property
    def raw_state(self) -> Health:
        """The automatic state, ignoring any override."""
        return self._state

    @property
    def state(self) -> Health:
        """The effective state: the override if one is set, otherwise the automatic state."""
        if self._override is Override.OPEN:
            return Health.CRITICAL
        if self._override is Override.CLOSE:
            return Health.HEALTHY
        return self._state

    @property
    def override(self) -> Override:
        return self._override

    @property
    def last_price_ns(self) -> int | None:
        return self._last_price_ns

    @property
    def recovering_since_ns(self) -> int | None:
        return self._recovering_since_ns

    @property
    def allows_bets(self) -> bool:
        return self.state is not Health.CRITICAL

    def age_s(self, now_ns: int) -> float | None:
        """Seconds since the last price was received, ``None`` before the first one."""
        if self._last_price_ns is None:
            return None
        return max(0, now_ns - self._last_price_ns) / NS

    def record_price(self, received_ns: int) -> None:
        """Note a price received at local time ``received_ns`` (does not change the state)."""
        if self._last_price_ns is None or received_ns > self._last_price_ns:
            self._last_price_ns = received_ns

    def set_override(self, override: Override, now_ns: int) -> Transition | None:
        before = self.state
        self._override = override
        after = self.state
        return None if before is after else Transition(before, after, now_ns, self.age_s(now_ns))

    def evaluate(self, now_ns: int) -> Transition | None:
        """Apply the rules once at ``now_ns``; return the transition of the effective state."""
        before = self.state
        age = self.age_s(now_ns)
        cfg = self.config
        stale = age is None or age > cfg.degraded_after_s
        dead = age is None or age > cfg.critical_after_s
        if self._state is Health.CRITICAL:
            if stale:
                self._recovering_since_ns = None  # rule 5
            else:
                if self._recovering_since_ns is None:
                    self._recovering_since_ns = now_ns  # rule 4
                if now_ns - self._recovering_since_ns >= cfg.recovery_s * NS:
                    self._state = Health.HEALTHY
                    self._recovering_since_ns = None
        elif dead:
            self._state = Health.CRITICAL  # rule 2
            self._recovering_since_ns = None
        elif stale:
            self._state = Health.DEGRADED  # rule 1 (degraded stays degraded)
        else:
            self._state = Health.HEALTHY  # rule 3
        after = self.state
        return None if before is after else Transition(before, after, now_ns, age)


def parse_override(payload: bytes) -> Override:
    """``close``, ``open`` or ``auto`` (any case, optionally quoted) as an :class:`Override`."""
    text = payload.decode("utf-8", "replace").strip().strip('"').strip().lower()
    try:
        return Override(text)
    except ValueError:
        raise ValueError(f"expected close, open or auto, got {text[:40]!r}") from None
