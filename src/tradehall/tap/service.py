"""The tap engine: everything the HTTP layer calls, and the background jobs, in one object.

:class:`TapService` owns the database, the batcher (single writer), the breaker, the price state,
the grid pricer and the stores, and runs the supervised background tasks of Part A §1: the price
feed, the monitor (breaker evaluation every second, ``system:status`` every 5 s and on every
transition), the tick writer, and the resolver. HTTP-agnostic: failures are :class:`ApiError` with
the status, code and message the API answers with.

This module holds the wiring and the lifecycle (start, stop, job supervision). The work is in
modules of functions that take the service, whose state stays on it; the methods here are thin
calls into them, so the HTTP layer, the CLI, the benchmarks and the tests keep one object:

- :mod:`tradehall.tap.watch`: prices, the breaker and overrides, ``system:status``, gauges, ticks
- :mod:`tradehall.tap.quotes`: the grid snapshot, its refresh job, ``GET /api/grid``, quotes
- :mod:`tradehall.tap.gate`: login, sessions, rate limits, the bet route's admission
- :mod:`tradehall.tap.desk`: bet validation and placement; ``me``, deposits, withdrawals
- :mod:`tradehall.tap.jobs`: resolution, the integrity check, the archive
- :mod:`tradehall.tap.health`: ``/healthz`` and the disk guards

Two clocks are injected: ``clock`` drives the domain (breaker, grid columns, resolution, session
and nonce expiry, feed and monitor periods) and ``timer_clock`` drives the batch flush timer and
the 5 s bet wait. Tests pass ``VirtualClock``\\ s; production passes one ``SystemClock`` for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from tradehall.core.clock import Clock
from tradehall.tap import desk, gate, ledger, quotes, watch
from tradehall.tap import jobs as tap_jobs  # "jobs" is also the constructor's setting
from tradehall.tap.admission import Admission, Limits, StoreAdmission
from tradehall.tap.archive import ArchiveResult, last_archive_time
from tradehall.tap.auth import LoginRequest
from tradehall.tap.backup import Backups
from tradehall.tap.balances import BalanceCache, BalanceGuard, MemoryBalanceCache
from tradehall.tap.batcher import Batcher
from tradehall.tap.breaker import Breaker, Override, Transition
from tradehall.tap.contract import ApiError, BetBody, TapConfig, bet_json
from tradehall.tap.db import Database
from tradehall.tap.feed import NoSource, PriceSource
from tradehall.tap.grid import Cell
from tradehall.tap.health import apply_disk_guards, health_report
from tradehall.tap.history import History
from tradehall.tap.hub import Bus, envelope
from tradehall.tap.jobs import cold_store
from tradehall.tap.log import LazyLogger
from tradehall.tap.metrics import TapMetrics
from tradehall.tap.placement import BetTimeout, Placements
from tradehall.tap.price_history import NoPriceMirror, PriceMirror
from tradehall.tap.pricing import GridPricer, GridSnapshot
from tradehall.tap.rates import BrownianTouchModel, RateModel
from tradehall.tap.restore import WeekFiles
from tradehall.tap.stores import NonceStore, RateLimiter, Session, SessionStore

# TapConfig, ApiError, BetBody, bet_json, GridSnapshot, BetTimeout and cold_store are
# re-exported for existing importers.
__all__ = [
    "ApiError",
    "BetBody",
    "BetTimeout",
    "GridSnapshot",
    "TapConfig",
    "TapService",
    "bet_json",
    "cold_store",
]


class DiskUsage(Protocol):
    @property
    def total(self) -> int: ...

    @property
    def free(self) -> int: ...


_log = LazyLogger("tap")


class TapService:
    """The tap engine (see the module docstring): one per process, built by the CLI.

    The state the split-out modules share lives here: ``price``, the sampled ticks
    (``_recent`` for the volatility window, ``_pending_ticks`` to store), the grid
    ``_snapshot``, the disk guard's ``disk_level`` / ``disk_full``, and the idle events
    :meth:`quiesce` waits on.
    """

    def __init__(
        self,
        config: TapConfig,
        *,
        clock: Clock,
        timer_clock: Clock | None = None,
        sessions: SessionStore,
        nonces: NonceStore,
        limiter: RateLimiter,
        bus: Bus,
        source: PriceSource | None = None,
        rate_model: RateModel | None = None,
        metrics: TapMetrics | None = None,
        health_probes: dict[str, Callable[[], Awaitable[dict[str, Any]]]] | None = None,
        disk_usage: Callable[[Path], DiskUsage] = shutil.disk_usage,
        balances: BalanceCache | None = None,
        price_mirror: PriceMirror | None = None,
        admission: Admission | None = None,
        jobs: str = "all",
    ) -> None:
        if jobs not in ("all", "api"):
            raise ValueError("jobs is 'all' or 'api'")
        self.config = config
        # "api": a further API process on a shared database (several processes, Redis). It
        # serves requests and follows the feed and the breaker, but leaves storing ticks,
        # resolving, archiving, backups and the integrity check to the one process with "all"
        self.jobs = jobs
        self.clock = clock
        self.timer_clock = timer_clock or clock
        self.sessions = sessions
        self.nonces = nonces
        self.limiter = limiter
        # the bet route's IP limit, session and bet limit in one call (one script on Redis)
        self.admission = admission or StoreAdmission(sessions, limiter)
        self._limits = Limits(
            config.ip_rate_limit,
            config.ip_rate_window_s,
            config.bet_rate_limit,
            config.bet_rate_window_s,
        )
        self.bus = bus
        self.source = source or NoSource()
        self.rate_model = rate_model or BrownianTouchModel(config.house_edge)
        self.pricer = GridPricer(config.grid, self.rate_model)
        self.metrics = metrics or TapMetrics()
        self.health_probes = health_probes or {}
        self.disk_usage = disk_usage
        self.disk_full = False
        self.disk_level = "ok"
        self.archive_soon = asyncio.Event()
        self.early_archive_at = -1e18  # monotonic time of the last early archive
        self.db = Database(
            config.db_path, synchronous=config.sqlite_synchronous, writer=config.db_writer
        )
        self.partitions = WeekFiles.in_data_dir(config.data_dir, config.local_weeks)
        self.history = History(self.db, self.partitions)
        self.backups = Backups(
            config.db_path,
            config.backup_dir or config.data_dir / "backups",
            clock,
            self.metrics,
            interval_s=config.backup_interval_s,
            keep=config.backup_keep,
        )
        self.price_mirror = price_mirror or NoPriceMirror()
        self.balances = BalanceGuard(balances or MemoryBalanceCache(clock), self.db)
        self.breaker = Breaker(config.breaker)
        self.batcher = Batcher(
            functools.partial(desk.flush, self),
            self.timer_clock,
            max_batch=config.max_batch,
            max_queue=config.max_queue,
            flush_interval_s=config.flush_interval_s,
            on_flush=functools.partial(desk.observe_flush, self),
        )
        self.price: int | None = None
        self._recent: deque[tuple[int, int]] = deque()
        self._pending_ticks: list[tuple[int, int]] = []
        self._last_sample_ms = 0
        self._snapshot: GridSnapshot | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.placements = Placements(
            self.batcher, self.timer_clock, config.bet_timeout_s, self.metrics, self.publish
        )
        self._started = False
        self._resolver_idle = asyncio.Event()
        self._resolver_idle.set()
        self._grid_idle = asyncio.Event()
        self._grid_idle.set()
        self._disk_idle = asyncio.Event()  # clear while the monitor applies the disk guards
        self._disk_idle.set()

    # ----------------------------------------------------------------- lifecycle

    async def start(self, *, background: bool = True) -> None:
        await self.db.open()
        await self.bus.start()
        await self.balances.cache.start()
        await self.price_mirror.start()
        self.batcher.start()
        self._started = True
        self._tasks.append(asyncio.create_task(self._rebuild_balances(), name="tap-balances"))
        self._spawn("bet-timeouts", self.placements.timeout_loop)
        last = await self.db.read(last_archive_time)
        if last is not None:
            self.metrics.last_archive.set(last / 1000)
        if background:
            if self.jobs == "all":
                self._spawn("integrity", functools.partial(tap_jobs.integrity_loop, self))
                if self.config.archive_dir is not None:
                    self._spawn("archive", functools.partial(tap_jobs.archive_loop, self))
                if self.config.backup_interval_s > 0:
                    self._spawn("backup", self.backups.loop)
                self._spawn("ticks", functools.partial(watch.tick_loop, self))
                self._spawn("resolver", functools.partial(tap_jobs.resolver_loop, self))
            self._spawn("feed", lambda: self.source.run(self.ingest_price))
            self._spawn("monitor", functools.partial(watch.monitor_loop, self))
            self._spawn("grid", functools.partial(quotes.grid_loop, self))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.batcher.stop()
        if self._started:
            with contextlib.suppress(Exception):
                await self.flush_ticks()
        await self.balances.cache.stop()
        await self.price_mirror.stop()
        await self.bus.stop()
        await self.db.close()
        self._started = False

    async def _rebuild_balances(self) -> None:
        """FR-22: fill the balance cache from the database, once, beside serving."""
        try:
            users = await self.balances.rebuild()
        except Exception:
            with contextlib.suppress(Exception):
                _log.exception("balance_cache_rebuild_failed")  # misses admit: only slower
            return
        _log.info("balance_cache_rebuilt", users=users)

    def _spawn(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        async def supervised() -> None:
            while True:
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    with contextlib.suppress(Exception):  # a broken log sink must not kill jobs
                        _log.exception("job_failed_restarting", job=name)
                    await self.clock.sleep(1.0)

        self._tasks.append(asyncio.create_task(supervised(), name=f"tap-{name}"))

    def publish(self, channel: str, kind: str, data: Any) -> None:
        self.bus.publish(channel, envelope(kind, data))

    # ----------------------------------------------------------------- prices and breaker
    # (tradehall.tap.watch)

    def ingest_price(self, price_cents: int) -> None:
        """A price received now (local receive time, C-38)."""
        watch.ingest_price(self, price_cents)

    def status_json(self) -> dict[str, Any]:
        """The ``system:status`` body; ``recovering_for_ms`` counts a warm-up (the page's timer)."""
        return watch.status_json(self)

    def evaluate_breaker(self) -> Transition | None:
        """Evaluate the breaker now (the monitor does so every second)."""
        return watch.evaluate_breaker(self)

    def request_override(self, override: Override) -> None:
        """Operator override (C-47): applied here at once and sent to every API process."""
        watch.request_override(self, override)

    def on_override(self, payload: bytes) -> None:
        """A ``circuit:override`` message (any API process, or an operator's PUBLISH)."""
        watch.on_override(self, payload)

    def set_override(self, override: Override) -> None:
        """Apply an override to this process's breaker."""
        watch.set_override(self, override)

    def evaluate_gauges(self) -> None:
        """Set the staleness, breaker and queue-depth gauges."""
        watch.evaluate_gauges(self)

    async def check_disk(self) -> float:
        """Apply the disk guards (:func:`tradehall.tap.health.apply_disk_guards`)."""
        return await apply_disk_guards(self)

    async def flush_ticks(self) -> None:
        """Store the sampled ticks received since the last call."""
        await watch.flush_ticks(self)

    # ----------------------------------------------------------------- grid
    # (tradehall.tap.quotes)

    def grid_snapshot(self) -> GridSnapshot:
        """The latest grid and rates; computed here only if none is at most 1 s old."""
        return quotes.grid_snapshot(self)

    async def refresh_snapshot(self) -> None:
        """Re-price the grid on the loop a column at a time (the grid job, every second)."""
        await quotes.refresh_snapshot(self)

    def grid_json(self) -> dict[str, Any]:
        """The grid at this instant (``GET /api/grid``)."""
        return quotes.grid_json(self)

    def quote(self, cell: Cell) -> tuple[bool, Decimal]:
        """Whether ``cell`` is placeable now, and its rate."""
        return quotes.quote(self, cell)

    # ----------------------------------------------------------------- auth and limits
    # (tradehall.tap.gate)

    async def login(self, req: LoginRequest) -> tuple[Session, ledger.UserRecord]:
        """Verify a signed login, claim its nonce, ensure the user; a new session and the user."""
        return await gate.login(self, req)

    async def authenticate(self, authorization: str | None) -> Session:
        """The session of an ``Authorization: Bearer`` header; 401 if none."""
        return await self.session_for(gate.bearer(authorization))

    async def session_for(self, token: str) -> Session:
        """The session of ``token``; 401 if none, 503 if the store is down."""
        return await gate.session_for(self, token)

    async def check_ip(self, ip: str) -> None:
        """Count one request from ``ip`` against the per-IP limit (429 if over)."""
        await gate.limit(self, f"ip:{ip}", self.config.ip_rate_limit, self.config.ip_rate_window_s)

    async def bet_request(
        self, ip: str, authorization: str | None, raw: bytes | ApiError
    ) -> dict[str, Any]:
        """The whole ``POST /api/bets`` (``raw``: the body, or the error reading it gave).

        The per-IP limit, the session and the per-wallet bet limit are one admission call;
        then :meth:`place_bet` (:func:`tradehall.tap.gate.bet_request`).
        """
        return await gate.bet_request(self, ip, authorization, raw)

    # ----------------------------------------------------------------- money and bets
    # (tradehall.tap.desk)

    async def me(self, session: Session) -> ledger.UserRecord:
        """The session's user record; 401 if the user is gone."""
        return await desk.me(self, session)

    async def deposit(self, wallet: str, amount: int) -> ledger.UserRecord:
        """Admin deposit: credit ``wallet`` (created if new)."""
        return await desk.deposit(self, wallet, amount)

    async def withdraw(self, wallet: str, amount: int) -> ledger.UserRecord:
        """Admin withdrawal (C-12): conditional debit plus a WITHDRAWAL ledger row."""
        return await desk.withdraw(self, wallet, amount)

    async def place_bet(
        self, session: Session, body: BetBody, *, bet_counted: bool = False
    ) -> dict[str, Any]:
        """Validate, queue and await one bet; the 202 body, or :class:`ApiError`.

        ``bet_counted``: the per-wallet limit was already counted (and passed) by
        :meth:`bet_request`'s admission.
        """
        return await desk.place_bet(self, session, body, bet_counted=bet_counted)

    def expire_waiters(self) -> int:
        """Answer 504 to bet requests that waited longer than ``bet_timeout_s``."""
        return self.placements.expire_waiters()

    # ----------------------------------------------------------------- jobs
    # (tradehall.tap.jobs)

    async def resolve_due(self, limit: int = 500) -> int:
        """Resolve every confirmed bet whose column ended ``resolve_delay_s`` ago or earlier."""
        return await tap_jobs.resolve_due(self, limit)

    async def quiesce(self) -> None:
        """Wait until a running resolver pass and every queued write have finished."""
        await tap_jobs.quiesce(self)

    async def integrity_check(self) -> list[ledger.Drift]:
        """Users whose balance differs from their ledger (also sets the drift gauge)."""
        return await tap_jobs.integrity_check(self)

    async def archive(self) -> ArchiveResult:
        """Run the weekly archival now (writes go through the single writer)."""
        return await tap_jobs.archive(self)

    # ----------------------------------------------------------------- health

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: whether all is well, and the report (:mod:`tradehall.tap.health`)."""
        return await health_report(self)
