"""The tap engine: everything the HTTP layer calls, and the background jobs, in one object.

:class:`TapService` owns the database, the batcher (single writer), the breaker, the price state,
the grid pricer and the stores, and runs the supervised background tasks of Part A §1: the price
feed, the monitor (breaker evaluation every second, ``system:status`` every 5 s and on every
transition), the tick writer, and the resolver. HTTP-agnostic: failures are :class:`ApiError` with
the status, code and message the API answers with.

Two clocks are injected: ``clock`` drives the domain (breaker, grid columns, resolution, session
and nonce expiry, feed and monitor periods) and ``timer_clock`` drives the batch flush timer and
the 5 s bet wait. Tests pass ``VirtualClock``\\ s; production passes one ``SystemClock`` for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import shutil
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import msgspec

from tradehall.core.clock import Clock
from tradehall.tap import ledger
from tradehall.tap.admission import Admission, Limits, StoreAdmission
from tradehall.tap.archive import ArchiveResult, last_archive_time, run_archive
from tradehall.tap.auth import AuthError, LoginRequest, verify_login
from tradehall.tap.backup import Backups
from tradehall.tap.balances import BalanceCache, BalanceGuard, MemoryBalanceCache
from tradehall.tap.batcher import Batcher
from tradehall.tap.breaker import Breaker, Health, Override, Transition, parse_override
from tradehall.tap.coldstore import ColdStore, S3Store
from tradehall.tap.contract import (
    ApiError,
    BetBody,
    TapConfig,
    bet_json,
    disk_error,
    invalid_amount_error,
    stale_error,
)
from tradehall.tap.db import Database, barrier
from tradehall.tap.feed import NoSource, PriceSource
from tradehall.tap.grid import Cell, CellIdError, parse_cell_id
from tradehall.tap.health import apply_disk_guards, health_report
from tradehall.tap.history import History
from tradehall.tap.hub import BROADCAST, CIRCUIT_OVERRIDE, Bus, envelope, user_channel
from tradehall.tap.ids import new_id
from tradehall.tap.ledger import BetRequest, BetResult
from tradehall.tap.log import LazyLogger
from tradehall.tap.metrics import TapMetrics
from tradehall.tap.placement import BetTimeout, Placements, answer, check_bet_signature
from tradehall.tap.price_history import NoPriceMirror, PriceMirror
from tradehall.tap.pricing import GridPricer, GridSnapshot
from tradehall.tap.rates import BrownianTouchModel, RateModel
from tradehall.tap.resolution import Outcome
from tradehall.tap.resolver import settle_due
from tradehall.tap.restore import WeekFiles
from tradehall.tap.stores import NonceStore, RateLimiter, Session, SessionStore, StoreUnavailable

# TapConfig, ApiError, BetBody, bet_json and GridSnapshot are re-exported for existing importers.
__all__ = [
    "ApiError",
    "BetBody",
    "BetTimeout",
    "GridSnapshot",
    "TapConfig",
    "TapService",
    "bet_json",
]

NS = 1_000_000_000


def cold_store(config: TapConfig) -> Path | ColdStore:
    """Where archives go: S3 when configured, else the archive directory."""
    s3 = config.archive_s3
    if s3 is not None:
        return S3Store(s3.endpoint, s3.bucket, s3.access_key, s3.secret_key, s3.prefix, s3.region)
    return config.archive_dir or config.data_dir / "archive"


class DiskUsage(Protocol):
    @property
    def total(self) -> int: ...

    @property
    def free(self) -> int: ...


_NONCE = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_log = LazyLogger("tap")


class TapService:
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
            self._flush,
            self.timer_clock,
            max_batch=config.max_batch,
            max_queue=config.max_queue,
            flush_interval_s=config.flush_interval_s,
            on_flush=self._observe_flush,
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
                self._spawn("integrity", self._integrity_loop)
                if self.config.archive_dir is not None:
                    self._spawn("archive", self._archive_loop)
                if self.config.backup_interval_s > 0:
                    self._spawn("backup", self.backups.loop)
                self._spawn("ticks", self._tick_loop)
                self._spawn("resolver", self._resolver_loop)
            self._spawn("feed", lambda: self.source.run(self.ingest_price))
            self._spawn("monitor", self._monitor_loop)
            self._spawn("grid", self._grid_loop)

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

    def ingest_price(self, price_cents: int) -> None:
        """A price received now (local receive time, C-38)."""
        now = self.clock.time_ns()
        self.breaker.record_price(now)
        self.price = price_cents
        now_ms = now // 1_000_000
        if now_ms - self._last_sample_ms >= self.config.tick_sample_ms:
            # the volatility window uses the sampled ticks too: a busy feed (hundreds of trades
            # a second from several venues) would otherwise cost CPU and add venue noise
            self._recent.append((now, price_cents))
            horizon = now - self.config.sigma_window_s * NS
            while self._recent and self._recent[0][0] < horizon:
                self._recent.popleft()
            self._last_sample_ms = now_ms
            if self.jobs == "api":
                return  # the process with every job stores, mirrors and broadcasts the ticks
            self._pending_ticks.append((now_ms, price_cents))
            self.price_mirror.record(now_ms, price_cents)  # Redis copy; SQLite is the record
            self.publish(
                BROADCAST, "price", {"symbol": "BTC/USD", "price": price_cents, "timestamp": now_ms}
            )

    def status_json(self) -> dict[str, Any]:
        """The ``system:status`` body; ``recovering_for_ms`` counts a warm-up (the page's timer)."""
        now = self.clock.time_ns()
        age = self.breaker.age_s(now)
        since = self.breaker.recovering_since_ns
        return {
            "price_health": self.breaker.state.value,
            "override": self.breaker.override.value,
            "stale_for_ms": None if age is None else int(age * 1000),
            "recovering_for_ms": None if since is None else (now - since) // 1_000_000,
            "recovery_ms": round(self.config.breaker.recovery_s * 1000),
            "timestamp": now // 1_000_000,
        }

    def evaluate_breaker(self) -> Transition | None:
        warming = self.breaker.recovering_since_ns is not None
        transition = self.breaker.evaluate(self.clock.time_ns())
        if transition is not None:
            self._on_transition(transition)
        elif warming != (self.breaker.recovering_since_ns is not None):
            # a warm-up began or was cut short: no state change, but the countdown did change
            self.publish(BROADCAST, "system:status", self.status_json())
        self.evaluate_gauges()
        return transition

    def request_override(self, override: Override) -> None:
        """Operator override (C-47): applied here at once and sent to every API process."""
        self.set_override(override)
        self.bus.publish(CIRCUIT_OVERRIDE, override.value.encode())

    def on_override(self, payload: bytes) -> None:
        """A ``circuit:override`` message (any API process, or an operator's PUBLISH)."""
        try:
            self.set_override(parse_override(payload))
        except ValueError as exc:
            _log.warning("override_message_ignored", error=str(exc))

    def set_override(self, override: Override) -> None:
        transition = self.breaker.set_override(override, self.clock.time_ns())
        if transition is not None:
            self._on_transition(transition)

    def _on_transition(self, t: Transition) -> None:
        level = _log.error if t.current is Health.CRITICAL else _log.warning
        if t.current is Health.HEALTHY:
            level = _log.info
        level("price_feed_" + t.current.value, previous=t.previous.value, stale_for=t.age_s)
        self.publish(BROADCAST, "system:status", self.status_json())

    def evaluate_gauges(self) -> None:
        age = self.breaker.age_s(self.clock.time_ns())
        self.metrics.staleness.set(-1 if age is None else age)
        self.metrics.breaker_state.set(1 if self.breaker.state is Health.CRITICAL else 0)
        self.metrics.queue_depth.set(self.batcher.depth)

    async def check_disk(self) -> float:
        """Apply the disk guards (:func:`tradehall.tap.health.apply_disk_guards`)."""
        return await apply_disk_guards(self)

    async def _monitor_loop(self) -> None:
        last_status = self.clock.monotonic()
        last_disk = -1e9
        while True:
            self.evaluate_breaker()
            if self.clock.monotonic() - last_disk >= 10.0:
                last_disk = self.clock.monotonic()
                await self.check_disk()
            if self.clock.monotonic() - last_status >= self.config.status_interval_s:
                last_status = self.clock.monotonic()
                self.publish(BROADCAST, "system:status", self.status_json())
            await self.clock.sleep(1.0)

    async def flush_ticks(self) -> None:
        ticks, self._pending_ticks = self._pending_ticks, []
        if ticks:
            await self.db.write(functools.partial(ledger.insert_ticks, ticks=ticks))

    async def _tick_loop(self) -> None:
        last_prune = self.clock.monotonic()
        while True:
            await self.clock.sleep(1.0)
            await self.flush_ticks()
            if self.clock.monotonic() - last_prune >= 3600:
                last_prune = self.clock.monotonic()
                cutoff = self.clock.time_ns() // 1_000_000 - self.config.price_retention_s * 1000
                await self.db.write(functools.partial(ledger.prune_ticks, before_ms=cutoff))

    # ----------------------------------------------------------------- grid

    def grid_snapshot(self) -> GridSnapshot:
        """The latest grid and rates; computed here only if none is at most 1 s old.

        The grid loop refreshes the snapshot every second off the event loop
        (:meth:`refresh_snapshot`), so requests normally just read it.
        """
        now_s = self.clock.time_ns() // NS
        snap = self._snapshot
        if snap is not None and snap.at_s >= now_s - 1:
            return snap
        if self.price is None:
            raise stale_error()
        self._snapshot = self.pricer.compute(now_s, self.price, list(self._recent))
        return self._snapshot

    async def refresh_snapshot(self) -> None:
        """Re-price the grid on the loop a column at a time, yielding between columns.

        Not in a thread: the pricing is pure-Python float maths holding the GIL, so a thread
        made the loop wait for it in 5 ms switch intervals (21-37 ms stalls under load). One
        slice is a few hundred microseconds (docs/tap-operations.md, bench/tap/grid_bench.py).
        """
        if self.price is None:
            return
        now_s = self.clock.time_ns() // NS
        build = self.pricer.begin(now_s, self.price, list(self._recent))
        done = build.step()
        while not done:
            await asyncio.sleep(0)  # requests run between slices
            done = build.step()
        snap = build.result()
        current = self._snapshot
        if current is None or snap.at_s >= current.at_s:
            self._snapshot = snap

    async def _grid_loop(self) -> None:
        while True:
            self._grid_idle.clear()
            try:
                await self.refresh_snapshot()
            finally:
                self._grid_idle.set()
            # to the next whole second, not 1 s after this refresh ended: a fixed 1 s drifts by
            # the refresh's own wall time until a second is skipped and a request finds no
            # snapshot from the last second, pricing the whole grid inline (grid_snapshot)
            await self.clock.sleep(1.0 - (self.clock.time_ns() % NS) / NS)

    def grid_json(self) -> dict[str, Any]:
        """The grid at this instant (``GET /api/grid``)."""
        return self.pricer.at(self.grid_snapshot(), self.clock.time_ns()).to_json()

    def quote(self, cell: Cell) -> tuple[bool, Decimal]:
        """Whether ``cell`` is placeable now, and its rate."""
        return self.pricer.quote(self.grid_snapshot(), cell, self.clock.time_ns())

    # ----------------------------------------------------------------- auth

    async def login(self, req: LoginRequest) -> tuple[Session, ledger.UserRecord]:
        try:
            wallet = verify_login(req, now_ns=self.clock.time_ns(), chain_id=self.config.chain_id)
        except AuthError as exc:
            _log.info("login_rejected", reason=exc.reason)
            raise ApiError(401, "invalid_signature", "signature verification failed") from None
        try:
            if not await self.nonces.claim(f"login:{req.nonce}", wallet):
                _log.info("login_rejected", reason="nonce reused")
                raise ApiError(401, "invalid_signature", "signature verification failed")
        except StoreUnavailable:
            raise ApiError(503, "unavailable", "session store unavailable") from None
        now_ms = self.clock.time_ns() // 1_000_000
        user = await self.db.write(
            functools.partial(ledger.ensure_user, wallet=wallet, now_ms=now_ms)
        )
        session = await self.sessions.create(user.id, wallet)
        return session, user

    async def authenticate(self, authorization: str | None) -> Session:
        return await self.session_for(_bearer(authorization))

    async def session_for(self, token: str) -> Session:
        try:
            session = await self.sessions.get(token)
        except StoreUnavailable:
            raise ApiError(503, "unavailable", "session store unavailable") from None
        if session is None:
            raise ApiError(401, "unauthorized", "invalid or expired session")
        return session

    async def check_ip(self, ip: str) -> None:
        await self._limit(f"ip:{ip}", self.config.ip_rate_limit, self.config.ip_rate_window_s)

    async def _limit(self, key: str, limit: int, window: float) -> None:
        try:
            retry = await self.limiter.hit(key, limit, window)
        except StoreUnavailable:
            raise ApiError(503, "unavailable", "rate limiter unavailable") from None
        if retry is not None:
            raise _rate_limited(retry)

    async def bet_request(
        self, ip: str, authorization: str | None, raw: bytes | ApiError
    ) -> dict[str, Any]:
        """The whole ``POST /api/bets`` (``raw``: the body, or the error reading it gave).

        The per-IP limit, the session and the per-wallet bet limit are one
        :class:`~tradehall.tap.admission.Admission` call (one round trip on Redis); the answers
        and their order are those of the separate checks: 429 (IP), 401, 400 (body), 503
        (breaker, disk), 429 (bet limit), then :meth:`place_bet`'s own checks.
        """
        token: str | None = None
        denied: ApiError | None = None
        try:
            token = _bearer(authorization)
        except ApiError as exc:
            denied = exc
        body: BetBody | ApiError
        if isinstance(raw, ApiError):
            body = raw
        else:
            try:
                body = _bet_decoder.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                body = ApiError(400, "validation_error", str(exc))
        counts = not isinstance(body, ApiError) and self.breaker.allows_bets and not self.disk_full
        try:
            admitted = await self.admission.admit(ip, token, self._limits, count_bet=counts)
        except StoreUnavailable:
            raise ApiError(503, "unavailable", "session store unavailable") from None
        if admitted.ip_retry is not None:
            raise _rate_limited(admitted.ip_retry)
        if denied is not None:
            raise denied
        session = admitted.session
        if session is None:
            raise ApiError(401, "unauthorized", "invalid or expired session")
        if isinstance(body, ApiError):
            raise body
        if admitted.bet_retry is not None:
            # the breaker or the disk may have closed meanwhile: their 503 goes first
            self._open_for_bets()
            raise _rate_limited(admitted.bet_retry)
        return await self.place_bet(session, body, bet_counted=admitted.bet_counted)

    # ----------------------------------------------------------------- money

    async def me(self, session: Session) -> ledger.UserRecord:
        user = await self.db.read(lambda c: ledger.get_user(c, session.user_id))
        if user is None:
            raise ApiError(401, "unauthorized", "invalid or expired session")
        return user

    async def deposit(self, wallet: str, amount: int) -> ledger.UserRecord:
        wallet = _admin_wallet(wallet, amount)
        now_ms = self.clock.time_ns() // 1_000_000
        dep_id = new_id()
        user = await self.db.write(
            functools.partial(
                ledger.deposit, wallet=wallet, amount=amount, now_ms=now_ms, deposit_id=dep_id
            )
        )
        self.balances.committed([(user.id, user.balance)])
        return user

    async def withdraw(self, wallet: str, amount: int) -> ledger.UserRecord:
        """Admin withdrawal (C-12): conditional debit plus a WITHDRAWAL ledger row."""
        wallet = _admin_wallet(wallet, amount)
        now_ms = self.clock.time_ns() // 1_000_000
        try:
            user = await self.db.write(
                functools.partial(
                    ledger.withdraw,
                    wallet=wallet,
                    amount=amount,
                    now_ms=now_ms,
                    withdrawal_id=new_id(),
                )
            )
        except LookupError:
            raise ApiError(404, "not_found", "no user with this wallet") from None
        if user is None:
            raise ApiError(400, "insufficient_funds", "balance too low")
        self.balances.committed([(user.id, user.balance)])
        _log.info("withdrawal", user_id=user.id, amount=amount, new_balance=user.balance)
        return user

    async def _flush(self, bets: Sequence[BetRequest]) -> list[BetResult]:
        now_ms = self.clock.time_ns() // 1_000_000
        return await self.db.write(
            functools.partial(ledger.place_batch, bets=list(bets), now_ms=now_ms)
        )

    async def _replay(self, session: Session, nonce: str) -> BetResult | None:
        def find(c: Any) -> BetResult | None:
            return ledger.stored_result(c, session.user_id, nonce)

        return await self.db.read(find)

    async def place_bet(
        self, session: Session, body: BetBody, *, bet_counted: bool = False
    ) -> dict[str, Any]:
        """Validate, queue and await one bet; the 202 body, or :class:`ApiError`.

        ``bet_counted``: the per-wallet limit was already counted (and passed) by
        :meth:`bet_request`'s admission.
        """
        try:
            return await self._place_bet(session, body, bet_counted)
        except _Replayed as replayed:
            return replayed.answer

    def _open_for_bets(self) -> None:
        if not self.breaker.allows_bets:
            raise stale_error()
        if self.disk_full:
            raise disk_error()

    async def _place_bet(self, session: Session, body: BetBody, counted: bool) -> dict[str, Any]:
        self._open_for_bets()
        if not counted:
            await self._limit(
                f"bet:{session.wallet}", self.config.bet_rate_limit, self.config.bet_rate_window_s
            )
        if not _NONCE.match(body.nonce):
            raise ApiError(400, "validation_error", "nonce must be 8-64 of [A-Za-z0-9-]")
        if self.config.require_bet_signature:
            check_bet_signature(
                session, body, now_ns=self.clock.time_ns(), chain_id=self.config.chain_id
            )
        try:
            cell = parse_cell_id(body.cell_id, self.config.grid)
        except CellIdError:
            raise ApiError(400, "validation_error", "malformed cell_id") from None
        if body.amount not in self.config.grid.presets:
            await self._raise_replay_or(session, body, invalid_amount_error(self.config.grid))
        placeable, rate = self.quote(cell)
        if not placeable:
            await self._raise_replay_or(
                session, body, ApiError(400, "cell_unavailable", "cell is not open for bets")
            )
        if body.rate is not None and _as_decimal(body.rate) != rate:
            await self._raise_replay_or(
                session,
                body,
                ApiError(409, "rate_changed", "the rate has changed", extra={"rate": str(rate)}),
            )
        if not await self.balances.enough(session.user_id, body.amount):
            # refused before the write queue; only the database's balance can refuse (balances.py)
            self.metrics.bets_placed.labels("rejected").inc()
            await self._raise_replay_or(
                session, body, ApiError(400, "insufficient_funds", "balance too low")
            )
        bet = BetRequest(
            bet_id=new_id(),
            user_id=session.user_id,
            cell_id=cell.cell_id,
            nonce=body.nonce,
            amount=body.amount,
            rate=str(rate),
            col_start=cell.col_start,
            col_end=cell.col_end,
            lower=cell.lower,
            upper=cell.upper,
        )
        try:
            placed = await self.placements.submit(bet)
        except ApiError as exc:
            if exc.code == "insufficient_funds":
                self.balances.cache.forget(session.user_id)  # it let an unaffordable bet through
            raise
        self.balances.committed([(session.user_id, placed.get("new_balance"))])
        return placed

    async def _raise_replay_or(self, session: Session, body: BetBody, error: ApiError) -> None:
        stored = await self._replay(session, body.nonce)
        if stored is not None:
            raise _Replayed(answer(stored))
        raise error

    def _observe_flush(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.flush_seconds.observe(seconds)

    def expire_waiters(self) -> int:
        """Answer 504 to bet requests that waited longer than ``bet_timeout_s``."""
        return self.placements.expire_waiters()

    # ----------------------------------------------------------------- resolution

    async def resolve_due(self, limit: int = 500) -> int:
        """Resolve every confirmed bet whose column ended ``resolve_delay_s`` ago or earlier."""
        if self.breaker.state is Health.CRITICAL:
            return 0  # resolution paused (Part B §8)
        await self.flush_ticks()
        settled = await settle_due(
            self.db,
            now_ns=self.clock.time_ns(),
            delay_s=self.config.resolve_delay_s,
            max_gap_s=self.config.max_gap_s,
            limit=limit,
        )
        self.balances.committed((bet.user_id, balance) for bet, _, balance in settled)
        for bet, res, balance in settled:
            self.metrics.bets_resolved.labels(res.outcome.value).inc()
            _log.info(
                "bet_resolved",
                bet_id=bet.bet_id,
                user_id=bet.user_id,
                outcome=res.outcome.value,
                amount=bet.amount,
                payout=res.payout,
            )
            self.publish(
                user_channel(bet.user_id),
                "bet:resolved",
                {
                    "bet_id": bet.bet_id,
                    "cell_id": bet.cell_id,
                    "status": res.outcome.value,
                    "payout": res.payout if res.outcome is Outcome.WON else 0,
                    "refund": res.payout if res.outcome is Outcome.VOID else 0,
                    "new_balance": balance,
                },
            )
        return len(settled)

    async def _resolver_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.resolve_interval_s)
            self._resolver_idle.clear()
            try:
                while await self.resolve_due() >= 500:
                    pass
            finally:
                self._resolver_idle.set()

    async def quiesce(self) -> None:
        """Wait until a running resolver pass and every queued write have finished."""
        await self._resolver_idle.wait()
        await self._grid_idle.wait()
        await self.db.write(barrier)

    # ----------------------------------------------------------------- audit and archival

    async def integrity_check(self) -> list[ledger.Drift]:
        drift = await self.db.read(ledger.integrity_check)
        self.metrics.drift_users.set(len(drift))
        if drift:
            _log.error("ledger_drift", users=len(drift), first=drift[0].user_id)
        return drift

    async def _integrity_loop(self) -> None:
        while True:
            await self.integrity_check()
            await self.clock.sleep(self.config.integrity_interval_s)

    async def archive(self) -> ArchiveResult:
        """Run the weekly archival now (writes go through the single writer)."""
        result = await run_archive(
            self.db, cold_store(self.config), self.clock, partitions=self.partitions
        )
        self.metrics.last_archive.set(result.archived_at_ms / 1000)
        _log.info("archive_complete", **result.to_json())
        return result

    async def _archive_loop(self) -> None:
        while True:
            soon = asyncio.ensure_future(self.archive_soon.wait())
            timer = asyncio.ensure_future(self.clock.sleep(self.config.archive_interval_s))
            try:
                await asyncio.wait((soon, timer), return_when=asyncio.FIRST_COMPLETED)
            finally:
                soon.cancel()
                timer.cancel()
            self.archive_soon.clear()
            await self.archive()

    # ----------------------------------------------------------------- health

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: whether all is well, and the report (:mod:`tradehall.tap.health`)."""
        return await health_report(self)


_bet_decoder = msgspec.json.Decoder(BetBody)


def _bearer(authorization: str | None) -> str:
    """The session id of an ``Authorization: Bearer`` header, or 401."""
    if not authorization:
        raise ApiError(401, "unauthorized", "missing authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "invalid authorization format")
    return token.strip()


def _rate_limited(retry: float) -> ApiError:
    seconds = max(1, int(retry + 0.999))
    return ApiError(
        429,
        "rate_limited",
        "too many requests",
        extra={"retry_after": seconds},
        headers={"Retry-After": str(seconds)},
    )


class _Replayed(Exception):
    """Internal: a repeated nonce whose stored result is the answer."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("replayed")
        self.answer = answer


def _as_decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except ArithmeticError:
        return None


def _admin_wallet(wallet: str, amount: int) -> str:
    """The lower-cased wallet of an admin deposit or withdrawal; bad input is a 400."""
    wallet = wallet.lower()
    if not re.fullmatch(r"0x[0-9a-f]{40}", wallet):
        raise ApiError(400, "validation_error", "wallet must be a 0x-prefixed address")
    if amount <= 0 or amount > 10**12:
        raise ApiError(400, "invalid_amount", "amount must be a positive number of cents")
    return wallet
