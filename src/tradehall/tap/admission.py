"""The front door of ``POST /api/bets``: per-IP limit, session and per-wallet bet limit at once.

A bet request used to make three store calls before its body was looked at: the per-IP limit,
the session lookup and the per-wallet bet limit. In process that is three dict lookups; on Redis
it was three round trips, and redis-py spends about 100 us of CPU on each (pool checkout,
timeout context, a ``send`` syscall, RESP parsing): most of a Redis-mode bet's server CPU
(``bench/tap/path_bench.py --redis start``). :class:`RedisAdmission` does the three in one Lua
script (``EVALSHA``), and the calls of concurrent requests share one pipeline
(:class:`~tradehall.tap.redis_pipe.ScriptPipe`).

The outcome is the same as the three separate calls, in the same order, so both backends answer
alike:

1. the IP counter counts every request; over its limit nothing else is looked at (429);
2. the session is read (``None``: missing, unknown, revoked or expired: 401); nothing is cached
   in the process, so a logout in any process is seen by the next request everywhere;
3. only if the session is valid and the caller says the bet would reach the limit check
   (``count_bet``: body decoded, breaker closed, disk not full) the wallet's bet counter counts.

Counters are fixed windows whose expiry is set only when they are created (C-45), under the keys
of :class:`~tradehall.tap.redis_stores.RedisRateLimiter` (``rate_limit:ip:{ip}``,
``rate_limit:bet:{wallet}``), so the other routes' limits and this one share their counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import msgspec
import redis.asyncio as aioredis

from tradehall.core.clock import Clock
from tradehall.tap.redis_pipe import ScriptPipe
from tradehall.tap.stores import RateLimiter, Session, SessionStore

__all__ = ["Admission", "Admitted", "Limits", "RedisAdmission", "StoreAdmission"]


@dataclass(frozen=True)
class Limits:
    """The two fixed-window limits of a bet request."""

    ip_limit: int
    ip_window_s: float
    bet_limit: int
    bet_window_s: float


@dataclass(frozen=True)
class Admitted:
    """What the front door found: seconds to wait (``None``: allowed) and the session."""

    ip_retry: float | None
    session: Session | None
    bet_retry: float | None = None
    bet_counted: bool = False


class Admission(Protocol):
    async def admit(
        self, ip: str, token: str | None, limits: Limits, *, count_bet: bool
    ) -> Admitted:
        """Count the request against the IP limit, look the session up, count the bet.

        Raises :class:`~tradehall.tap.stores.StoreUnavailable` when the store cannot answer.
        """
        ...


class StoreAdmission:
    """The three steps as separate calls on any session store and rate limiter."""

    def __init__(self, sessions: SessionStore, limiter: RateLimiter) -> None:
        self.sessions = sessions
        self.limiter = limiter

    async def admit(
        self, ip: str, token: str | None, limits: Limits, *, count_bet: bool
    ) -> Admitted:
        retry = await self.limiter.hit(f"ip:{ip}", limits.ip_limit, limits.ip_window_s)
        if retry is not None:
            return Admitted(retry, None)
        session = None if not token else await self.sessions.get(token)
        if session is None or not count_bet:
            return Admitted(None, session)
        bet = await self.limiter.hit(f"bet:{session.wallet}", limits.bet_limit, limits.bet_window_s)
        return Admitted(None, session, bet, True)


# KEYS: the IP counter, the session key ('' without a token).
# ARGV: ip limit, ip window ms, now ns, count_bet 0/1, bet limit, bet window ms, bet key prefix.
# Answer {ip wait ms (-1: allowed), session json ('' none), bet wait ms (-1: allowed or not
# counted), counted 0/1}. The bet counter's key is built here from the session's wallet (one
# round trip instead of two); it is not in KEYS, so this needs one Redis server, not a cluster.
_ADMIT = """
local function hit(key, limit, window)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, window) end
  if n > limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 1 then ttl = 1 end
    return ttl
  end
  return -1
end
local ip = hit(KEYS[1], tonumber(ARGV[1]), ARGV[2])
if ip >= 0 then return {ip, '', -1, 0} end
if KEYS[2] == '' then return {-1, '', -1, 0} end
local raw = redis.call('GET', KEYS[2])
if not raw then return {-1, '', -1, 0} end
local ok, s = pcall(cjson.decode, raw)
if not ok or type(s) ~= 'table' or type(s.wallet) ~= 'string'
   or type(s.expires_at_ns) ~= 'number' or s.expires_at_ns <= tonumber(ARGV[3]) then
  return {-1, '', -1, 0}
end
if ARGV[4] ~= '1' then return {-1, raw, -1, 0} end
return {-1, raw, hit(ARGV[7] .. s.wallet, tonumber(ARGV[5]), ARGV[6]), 1}
"""


def _wait(ms: int) -> float | None:
    return None if ms < 0 else max(0.001, ms / 1000)


class RedisAdmission:
    """The three steps in one script call, pipelined with the concurrent requests' calls."""

    def __init__(self, client: aioredis.Redis, clock: Clock, prefix: str = "") -> None:
        self._clock = clock
        self._prefix = prefix
        self.script = ScriptPipe(client, _ADMIT)  # its counters say how well calls batch
        self._decoder = msgspec.json.Decoder(Session)

    async def admit(
        self, ip: str, token: str | None, limits: Limits, *, count_bet: bool
    ) -> Admitted:
        now = self._clock.time_ns()
        prefix = self._prefix
        ip_ms, raw, bet_ms, counted = await self.script(
            (f"{prefix}rate_limit:ip:{ip}", f"{prefix}session:{token}" if token else ""),
            (
                limits.ip_limit,
                max(1, int(limits.ip_window_s * 1000)),
                now,
                1 if count_bet else 0,
                limits.bet_limit,
                max(1, int(limits.bet_window_s * 1000)),
                f"{prefix}rate_limit:bet:",
            ),
        )
        ip_retry = _wait(int(ip_ms))
        session = None
        if raw:
            decoded = self._decoder.decode(raw)
            if decoded.expires_at_ns > now:  # the script checked it too (same clock)
                session = decoded
        return Admitted(ip_retry, session, _wait(int(bet_ms)), bool(int(counted)))
