"""Sessions, single-use nonces and rate limits behind small interfaces (Part A §2, §3).

The in-process implementations here serve a single ``tap`` process; the Redis ones in
:mod:`tradehall.tap.redis_stores` let several processes share the same state. Both follow the
Part B §5 semantics: sessions are 32 random bytes (hex) valid 24 h; a nonce can be claimed once
within its 90 s TTL; a rate limit is a fixed-window counter whose window starts at the first hit
(C-45: the expiry is set only when the count is 1, so it never slides).

Every nonce claim (first use or replay) also counts towards ``nonce_count:{date}`` (ADR-007,
Part B §5: a per-UTC-day counter kept 7 days, for abuse detection), exported as the
``nonce_claims_today`` gauge; a jump means someone is hammering the signed endpoints.

Expiry uses the injected clock, so tests move time with a ``VirtualClock``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from tradehall.core.clock import Clock

__all__ = [
    "MemoryNonceStore",
    "MemoryRateLimiter",
    "MemorySessionStore",
    "NonceStore",
    "RateLimiter",
    "Session",
    "SessionStore",
    "StoreUnavailable",
    "utc_day",
]

NS = 1_000_000_000
_SWEEP_EVERY = 1024
COUNT_DAYS = 7


def utc_day(now_ns: int) -> str:
    """The UTC date (``YYYY-MM-DD``) of ``now_ns``: the ``nonce_count:{date}`` key."""
    return datetime.fromtimestamp(now_ns // NS, UTC).strftime("%Y-%m-%d")


class StoreUnavailable(Exception):
    """The backing store cannot answer; callers fail closed with 503 (C-10)."""


class Session(msgspec.Struct, frozen=True):
    id: str
    user_id: str
    wallet: str
    created_at_ns: int
    expires_at_ns: int


class SessionStore(Protocol):
    async def create(self, user_id: str, wallet: str) -> Session: ...

    async def get(self, session_id: str) -> Session | None: ...

    async def revoke(self, session_id: str) -> None: ...


class NonceStore(Protocol):
    async def claim(self, nonce: str, owner: str) -> bool:
        """True the first time ``nonce`` is claimed within its TTL, False on any reuse."""
        ...

    async def count(self, day: str) -> int:
        """Claims (first uses and replays) made on UTC ``day``; 0 after 7 days."""
        ...


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Count one event; ``None`` when allowed, else the seconds until the window resets."""
        ...


def new_session_id() -> str:
    return secrets.token_hex(32)


class MemorySessionStore:
    def __init__(self, clock: Clock, ttl_s: float = 86_400.0) -> None:
        self._clock = clock
        self._ttl_ns = int(ttl_s * NS)
        self._sessions: dict[str, Session] = {}
        self._ops = 0

    async def create(self, user_id: str, wallet: str) -> Session:
        now = self._clock.time_ns()
        session = Session(new_session_id(), user_id, wallet, now, now + self._ttl_ns)
        self._sessions[session.id] = session
        self._ops += 1
        if self._ops % _SWEEP_EVERY == 0:
            self._sweep(now)
        return session

    async def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at_ns <= self._clock.time_ns():
            del self._sessions[session_id]
            return None
        return session

    async def revoke(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _sweep(self, now: int) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires_at_ns <= now]:
            del self._sessions[key]


class MemoryNonceStore:
    def __init__(self, clock: Clock, ttl_s: float = 90.0) -> None:
        self._clock = clock
        self._ttl_ns = int(ttl_s * NS)
        self._seen: dict[str, int] = {}
        self._counts: dict[str, int] = {}  # UTC day -> claims
        self._ops = 0

    async def count(self, day: str) -> int:
        return self._counts.get(day, 0)

    async def claim(self, nonce: str, owner: str) -> bool:
        now = self._clock.time_ns()
        day = utc_day(now)
        if day not in self._counts:
            self._counts[day] = 0
            for old in sorted(self._counts)[:-COUNT_DAYS]:  # a 7-day TTL
                del self._counts[old]
        self._counts[day] += 1
        self._ops += 1
        if self._ops % _SWEEP_EVERY == 0:
            for key in [k for k, exp in self._seen.items() if exp <= now]:
                del self._seen[key]
        expires = self._seen.get(nonce)
        if expires is not None and expires > now:
            return False
        self._seen[nonce] = now + self._ttl_ns
        return True


class MemoryRateLimiter:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (count, resets_at_ns)
        self._ops = 0

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        now = self._clock.time_ns()
        self._ops += 1
        if self._ops % _SWEEP_EVERY == 0:
            for stale in [k for k, (_, r) in self._windows.items() if r <= now]:
                del self._windows[stale]
        count, resets = self._windows.get(key, (0, 0))
        if resets <= now:
            count, resets = 0, now + int(window_s * NS)
        count += 1
        self._windows[key] = (count, resets)
        if count > limit:
            return max(0.001, (resets - now) / NS)
        return None
