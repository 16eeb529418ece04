"""Redis implementations of the shared stores and the bus (Part A §2), for several API processes.

Keys follow Part B §5 under a configurable prefix (tests use a random one): ``session:{id}`` and
``session:wallet:{wallet}`` (24 h), ``nonce:{n}`` (``SET NX EX 90``) with its per-day
``nonce_count:{date}`` counter (7 d), ``rate_limit:{key}`` (a
counter whose expiry is set only when it is created, C-45), and pub/sub channels ``bus:{channel}``
relayed into each process's local hub. Every key carries a TTL; the server should run with
``noeviction`` (C-31). Any Redis error surfaces as :class:`StoreUnavailable`, which the API turns
into 503 -- fail closed, never "replay" (C-10).

SQLite stays the only authority for money: the ADR-009 balance cache
(:mod:`tradehall.tap.balances`) only ever admits bets early, the conditional debit decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tradehall.core.clock import Clock, SystemClock
from tradehall.tap.hub import CIRCUIT_OVERRIDE, Hub
from tradehall.tap.log import LazyLogger
from tradehall.tap.stores import COUNT_DAYS, Session, StoreUnavailable, new_session_id, utc_day

__all__ = [
    "RedisBus",
    "RedisNonceStore",
    "RedisRateLimiter",
    "RedisSessionStore",
    "connect_redis",
    "redis_health",
]

NS = 1_000_000_000
_log = LazyLogger("tap.redis")

# INCR, set the expiry only on creation, answer (count, remaining ms)
_RATE_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


def connect_redis(url: str, max_connections: int = 256) -> aioredis.Redis:
    """A client whose pool makes a request *wait* (up to 2 s) for a free connection.

    redis-py's default pool raises ``MaxConnectionsError`` as soon as its 100 connections are
    in use, which turned a burst of more than ~100 concurrent requests into 503s
    (``bench/tap/path_bench.py`` with Redis: 9 901 of 10 000 bets); a blocking pool queues them.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        max_connections=max_connections,
        timeout=2.0,  # waiting for a pooled connection; then StoreUnavailable (503, C-10)
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


async def redis_health(client: aioredis.Redis) -> dict[str, Any]:
    started = time.perf_counter()
    await client.ping()
    latency = (time.perf_counter() - started) * 1000
    info = await client.info("memory")
    return {
        "status": "ok",
        "latency_ms": round(latency, 3),
        "memory_used_mb": round(int(info.get("used_memory", 0)) / 2**20, 3),
    }


class RedisSessionStore:
    def __init__(
        self, client: aioredis.Redis, clock: Clock, prefix: str = "", ttl_s: int = 86_400
    ) -> None:
        self._r = client
        self._clock = clock
        self._prefix = prefix
        self._ttl = ttl_s

    async def create(self, user_id: str, wallet: str) -> Session:
        now = self._clock.time_ns()
        session = Session(new_session_id(), user_id, wallet, now, now + self._ttl * NS)
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.set(
                    f"{self._prefix}session:{session.id}",
                    msgspec.json.encode(session),
                    ex=self._ttl,
                )
                pipe.set(f"{self._prefix}session:wallet:{wallet}", session.id, ex=self._ttl)
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return session

    async def get(self, session_id: str) -> Session | None:
        try:
            raw = await self._r.get(f"{self._prefix}session:{session_id}")
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if raw is None:
            return None
        session = msgspec.json.decode(raw, type=Session)
        if session.expires_at_ns <= self._clock.time_ns():
            return None
        return session

    async def revoke(self, session_id: str) -> None:
        try:
            session = await self.get(session_id)
            keys = [f"{self._prefix}session:{session_id}"]
            if session is not None:
                keys.append(f"{self._prefix}session:wallet:{session.wallet}")
            await self._r.delete(*keys)
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc


class RedisNonceStore:
    """``nonce:{n}`` (``SET NX EX 90``) and the ``nonce_count:{date}`` counter (7 d)."""

    def __init__(
        self, client: aioredis.Redis, prefix: str = "", ttl_s: int = 90, clock: Clock | None = None
    ) -> None:
        self._r = client
        self._prefix = prefix
        self._ttl = ttl_s
        self._clock = clock or SystemClock()

    async def claim(self, nonce: str, owner: str) -> bool:
        counter = f"{self._prefix}nonce_count:{utc_day(self._clock.time_ns())}"
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.set(f"{self._prefix}nonce:{nonce}", owner, nx=True, ex=self._ttl)
                pipe.incr(counter)
                # refreshed on each claim (EXPIRE NX needs Redis 7): kept 7 d after the day ends
                pipe.expire(counter, COUNT_DAYS * 86_400)
                ok, _, _ = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return bool(ok)

    async def count(self, day: str) -> int:
        try:
            raw = await self._r.get(f"{self._prefix}nonce_count:{day}")
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return 0 if raw is None else int(raw)


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis, prefix: str = "") -> None:
        self._r = client
        self._prefix = prefix
        self._script = client.register_script(_RATE_SCRIPT)

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        try:
            count, pttl = await self._script(
                keys=[f"{self._prefix}rate_limit:{key}"], args=[max(1, int(window_s * 1000))]
            )
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if int(count) > limit:
            return max(0.001, int(pttl) / 1000)
        return None


class RedisBus:
    """Publishes to Redis; a listener relays every ``{prefix}bus:*`` message to the local hub.

    The breaker override travels on ``override_channel`` (default exactly ``circuit:override``,
    Part B §5, without the key prefix) so an operator can ``PUBLISH circuit:override close``;
    tests sharing one Redis pass a prefixed name to stay apart.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        hub: Hub,
        prefix: str = "",
        override_channel: str = CIRCUIT_OVERRIDE,
    ) -> None:
        self._r = client
        self._hub = hub
        self._prefix = f"{prefix}bus:"
        self._override = override_channel
        self._task: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._outbox: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()

    def publish(self, channel: str, payload: bytes) -> None:
        if len(self._outbox) < 100_000:
            name = self._override if channel == CIRCUIT_OVERRIDE else self._prefix + channel
            self._outbox.append((name, payload))
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="tap-redis-bus")
        self._sender = asyncio.create_task(self._send(), name="tap-redis-bus-send")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 2.0)

    async def stop(self) -> None:
        if self._outbox:
            await self._flush()
        for task in (self._task, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sender = None

    async def _flush(self) -> None:
        batch, self._outbox = self._outbox, []
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for channel, payload in batch:
                    pipe.publish(channel, payload)
                await pipe.execute()
        except RedisError as exc:
            _log.warning("publish_failed", messages=len(batch), error=repr(exc))

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self._r.pubsub(ignore_subscribe_messages=True)
                await pubsub.psubscribe(self._prefix + "*")
                await pubsub.subscribe(self._override)
                self._ready.set()
                try:
                    while True:
                        # block: a read with a timeout wraps every message in a timer
                        # (path_bench --redis: 6-20 us of server CPU per bet); stop() cancels
                        message = await pubsub.get_message(timeout=None)
                        if message is None:
                            continue
                        channel = message["channel"]
                        if isinstance(channel, bytes):
                            channel = channel.decode()
                        if channel == self._override:
                            self._hub.dispatch(CIRCUIT_OVERRIDE, message["data"])
                        elif channel.startswith(self._prefix):
                            self._hub.dispatch(channel[len(self._prefix) :], message["data"])
                finally:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                _log.warning("bus_listener_failed", error=repr(exc))
                await asyncio.sleep(1.0)
