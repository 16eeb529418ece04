"""The price history mirrored into Redis (Part B §5 and §7 ingestion, with C-30's fix).

With Redis configured, every sampled tick (at most one per 100 ms, the same samples the database
stores) goes out in a background pipeline:

* ``ZADD {prefix}prices:btc:usd:ts <ts_ms> "<ts_ms>:<cents>"`` -- C-30: Part B's member was the
  price string, so a repeated price overwrote the older tick and the 1 s score merged ticks; the
  member now carries the time and an integer number of cents, the score is milliseconds;
* ``ZREMRANGEBYSCORE ... 0 <ts_ms - 7 d>`` on every write, so the set holds 7 days;
* ``SET {prefix}price:btc:usd "<dollars>.<cents>" EX 3600`` (the latest price, ``%.2f``);
* ``PUBLISH {prefix}prices:btc:usd "<dollars>.<cents>"`` for any other consumer.

This is a *mirror* for dashboards, other services and operators. The store of record stays the
``prices`` table in SQLite, written by the same single writer as bets: the resolver settles from
it deterministically, a resolution's evidence (price, tick time, ticks examined) points into it,
and it is in the weekly archive next to the bets it decided -- a Redis restart or eviction cannot
change an outcome. Redis errors are logged and the batch dropped (the database has the ticks).
"""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tradehall.core.tasks import WakeFlusher
from tradehall.tap.log import LazyLogger

__all__ = ["NoPriceMirror", "PriceMirror", "RedisPriceMirror", "dollars"]

WEEK_MS = 7 * 86_400_000
_MAX_PENDING = 100_000
_log = LazyLogger("tap.prices")


def dollars(cents: int) -> str:
    """``%.2f`` of a price in cents, without a float: 6000050 -> ``"60000.50"``."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


class PriceMirror(Protocol):
    def record(self, ts_ms: int, price_cents: int) -> None:
        """Queue one sampled tick (never blocks, never raises)."""
        ...

    async def flush(self) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class NoPriceMirror:
    """Without Redis: the database's ``prices`` table is the only history."""

    def record(self, ts_ms: int, price_cents: int) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisPriceMirror:
    """Pipelines queued ticks into the §5 keys and channel, in order."""

    def __init__(self, client: aioredis.Redis, prefix: str = "") -> None:
        self._r = client
        self.zset = f"{prefix}prices:btc:usd:ts"
        self.latest = f"{prefix}price:btc:usd"
        self.channel = f"{prefix}prices:btc:usd"
        self._pending: list[tuple[int, int]] = []
        self._flusher = WakeFlusher(self.flush, name="tap-price-mirror")
        self.dropped = 0

    def record(self, ts_ms: int, price_cents: int) -> None:
        if len(self._pending) >= _MAX_PENDING:
            self._pending.pop(0)  # Redis has been away a while; SQLite keeps every tick
            self.dropped += 1
        self._pending.append((ts_ms, price_cents))
        self._flusher.wake()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for ts_ms, cents in batch:
                    pipe.zadd(self.zset, {f"{ts_ms}:{cents}": ts_ms})
                    pipe.publish(self.channel, dollars(cents))
                last_ts, last_cents = batch[-1]
                pipe.zremrangebyscore(self.zset, 0, last_ts - WEEK_MS)
                pipe.set(self.latest, dollars(last_cents), ex=3600)
                await pipe.execute()
        except RedisError as exc:
            _log.warning("price_mirror_failed", ticks=len(batch), error=repr(exc))

    async def history(self, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        """Mirrored ticks with ``from_ms <= ts <= to_ms`` as ``(ts_ms, cents)``, oldest first."""
        members = await self._r.zrangebyscore(self.zset, from_ms, to_ms)
        out: list[tuple[int, int]] = []
        for member in members:
            text = member.decode() if isinstance(member, bytes) else str(member)
            ts, _, cents = text.partition(":")
            out.append((int(ts), int(cents)))
        return out

    async def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
