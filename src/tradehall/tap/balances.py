"""The balance cache of ADR-009 / FR-22: early rejection of bets that cannot be paid for.

``balance:{user_id}`` (24 h TTL, Part B §5) holds a recent balance. It is never the authority:
the conditional debit in the single writer still decides every bet. The cache only lets a bet
that is clearly unaffordable be refused before it takes a place in the write queue.

The rule that keeps it safe (:meth:`BalanceGuard.enough`): a cached balance may *admit* a bet,
never *refuse* one. When the cache says "too low" the database is read (a reader connection, not
the writer) and its balance decides, and refills the cache. A stale-high entry only sends a bet
to the writer, whose conditional debit refuses it as before; a stale-low entry -- say a deposit
committed by another API process whose best-effort SET was lost or overtaken by an older SET --
costs one read, never a wrongly refused bet. A miss admits the bet and its commit fills the
cache: Part B reads SQLite on a miss, but that read costs every user's first bet a round trip to
refuse almost none (``bench/tap/path_bench.py``, 2 000 users: +30 us of server CPU per bet,
against +3 us this way).

Writes are best effort and after the commit: :meth:`put` records the newest balance this process
knows; the Redis cache pipelines them in the background (the newest value per user wins within a
process) and logs, never raises, on a Redis error. At start-up the cache is rebuilt from
``SELECT id, balance FROM users`` with pipelined SETs (FR-22). Without Redis an in-process,
size-bounded cache with the same TTL plays the same part, so both backends run the same tests.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tradehall.core.clock import Clock, SystemClock
from tradehall.core.tasks import WakeFlusher
from tradehall.tap.db import Database
from tradehall.tap.log import LazyLogger
from tradehall.tap.redis_pipe import ScriptPipe
from tradehall.tap.stores import StoreUnavailable

__all__ = [
    "BalanceCache",
    "BalanceGuard",
    "MemoryBalanceCache",
    "NoBalanceCache",
    "RedisBalanceCache",
    "all_balances",
]

NS = 1_000_000_000
TTL_S = 86_400
_CHUNK = 1_000
# SET ... EX for many keys in one command ('' deletes): a pipeline of single SETs costs
# redis-py about 60 us of CPU per key (200 000 users: 12 s at start-up), one script call per
# thousand keys a small fraction of that
_SET_MANY = """
for i, key in ipairs(KEYS) do
  local v = ARGV[i + 1]
  if v == '' then redis.call('DEL', key) else redis.call('SET', key, v, 'EX', ARGV[1]) end
end
return #KEYS
"""
_log = LazyLogger("tap.balances")


class BalanceCache(Protocol):
    async def get(self, user_id: str) -> int | None:
        """The cached balance, or ``None`` (miss, expired, or the store cannot answer)."""
        ...

    def put(self, user_id: str, balance: int) -> None:
        """Remember a committed balance (best effort, never raises)."""
        ...

    def forget(self, user_id: str) -> None:
        """Drop a balance known to be wrong."""
        ...

    async def flush(self) -> None:
        """Write what :meth:`put` and :meth:`forget` recorded (no-op in memory)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class NoBalanceCache:
    """The cache switched off (``--balance-cache false``): every bet goes to the writer."""

    async def get(self, user_id: str) -> int | None:
        return None

    def put(self, user_id: str, balance: int) -> None:
        return None

    def forget(self, user_id: str) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class MemoryBalanceCache:
    """In-process cache: TTL from the injected clock, at most ``max_users`` entries."""

    def __init__(self, clock: Clock, ttl_s: int = TTL_S, max_users: int = 100_000) -> None:
        self._clock = clock
        self._ttl_ns = ttl_s * NS
        self._max = max_users
        self._entries: dict[str, tuple[int, int]] = {}  # user -> (balance, expires_ns)

    async def get(self, user_id: str) -> int | None:
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        if entry[1] <= self._clock.time_ns():
            del self._entries[user_id]
            return None
        return entry[0]

    def put(self, user_id: str, balance: int) -> None:
        self._entries.pop(user_id, None)  # re-insert: dict order is the eviction order
        self._entries[user_id] = (balance, self._clock.time_ns() + self._ttl_ns)
        if len(self._entries) > self._max:
            del self._entries[next(iter(self._entries))]

    def forget(self, user_id: str) -> None:
        self._entries.pop(user_id, None)

    async def flush(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisBalanceCache:
    """``{prefix}balance:{user_id}`` in Redis, written by a background pipeline.

    Reads go through a process-local layer first (what this process last wrote or read), so a
    user betting through this process costs no Redis round trip: redis-py spends about 100 us
    of CPU per command, which on the bet path measured +25-45 % server CPU per bet. Serving a
    stale local value is as safe as a stale Redis one -- the cache only ever admits.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "",
        ttl_s: int = TTL_S,
        clock: Clock | None = None,
    ) -> None:
        self._r = client
        self._prefix = f"{prefix}balance:"
        self._ttl = ttl_s
        self._local = MemoryBalanceCache(clock or SystemClock(), ttl_s)
        self._pending: dict[str, int | None] = {}  # None: delete
        self._flusher = WakeFlusher(self.flush, name="tap-balance-cache")
        self._set_many = client.register_script(_SET_MANY)
        # a user's first bet through this process reads Redis; concurrent reads share pipelines
        self._read = ScriptPipe(client, "return redis.call('GET', KEYS[1])")

    def key(self, user_id: str) -> str:
        return self._prefix + user_id

    async def get(self, user_id: str) -> int | None:
        if user_id in self._pending:
            return self._pending[user_id]  # newer than what Redis holds
        local = await self._local.get(user_id)
        if local is not None:
            return local
        try:
            raw = await self._read((self.key(user_id),), ())
        except StoreUnavailable as exc:
            _log.warning("balance_cache_read_failed", error=repr(exc))
            return None  # a miss: the database answers
        if raw is None:
            return None
        try:
            balance = int(raw)
        except ValueError:
            return None
        self._local.put(user_id, balance)
        return balance

    def put(self, user_id: str, balance: int) -> None:
        self._local.put(user_id, balance)
        self._pending[user_id] = balance
        self._flusher.wake()

    def forget(self, user_id: str) -> None:
        self._local.forget(user_id)
        self._pending[user_id] = None
        self._flusher.wake()

    async def flush(self) -> None:
        while self._pending:
            taken, self._pending = self._pending, {}
            items = list(taken.items())
            for start in range(0, len(items), _CHUNK):
                await self._write(items[start : start + _CHUNK])

    async def _write(self, batch: list[tuple[str, int | None]]) -> None:
        keys = [self.key(user_id) for user_id, _ in batch]
        values = ["" if balance is None else str(balance) for _, balance in batch]
        try:
            await self._set_many(keys=keys, args=[self._ttl, *values])
        except RedisError as exc:
            # best effort: the database stays right; a stale entry only costs reads
            _log.warning("balance_cache_write_failed", users=len(batch), error=repr(exc))

    async def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()


def all_balances(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Every user's balance (the start-up rebuild, FR-22)."""
    return [(str(r[0]), int(r[1])) for r in conn.execute("SELECT id, balance FROM users")]


class BalanceGuard:
    """Early rejection over a :class:`BalanceCache`, with the database as the tie-breaker."""

    def __init__(self, cache: BalanceCache, db: Database) -> None:
        self.cache = cache
        self.db = db
        self.db_reads = 0  # lookups the cache could not settle (tests and metrics read it)
        self.rebuilt = asyncio.Event()
        self._touched: set[str] | None = None  # users written while a rebuild runs

    async def enough(self, user_id: str, amount: int) -> bool:
        """Whether the bet may go to the writer; ``False`` only if the *database* says so."""
        cached = await self.cache.get(user_id)
        if cached is None or cached >= amount:
            # a miss admits the bet: the writer decides and its commit fills the cache (a read
            # here would cost every first bet a database round trip to refuse almost none)
            return True
        self.db_reads += 1
        row = await self.db.read(
            lambda c: c.execute("SELECT balance FROM users WHERE id = ?", (user_id,)).fetchone()
        )
        balance = 0 if row is None else int(row[0])
        self.committed([(user_id, balance)])
        return balance >= amount

    def committed(self, items: Iterable[tuple[str, int | None]]) -> None:
        """Balances just committed (bets, payouts, refunds, deposits, withdrawals)."""
        for user_id, balance in items:
            if balance is not None:
                self.cache.put(user_id, balance)
                if self._touched is not None:
                    self._touched.add(user_id)

    async def rebuild(self) -> int:
        """Fill the cache from the database; the number of users written.

        The server runs it in the background at start-up (200 000 users take seconds in
        Redis, and until then a miss simply admits). A balance committed meanwhile is newer
        than the snapshot read here, so those users are skipped.
        """
        self._touched = set()
        try:
            rows = await self.db.read(all_balances)
            written = 0
            for user_id, balance in rows:
                if user_id not in self._touched:
                    self.cache.put(user_id, balance)
                    written += 1
            await self.cache.flush()
        finally:
            self._touched = None
        self.rebuilt.set()
        return written
