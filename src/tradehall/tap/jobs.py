"""The database jobs: resolution, the integrity check and the weekly archive.

Run by the process with ``jobs="all"`` (Part A §1): the resolver settles due bets every
``resolve_interval_s`` (paused while the breaker is critical, Part B §8) and tells each owner
``bet:resolved``; the integrity check compares balances with the ledger daily; the archiver
runs weekly, or early when the disk guard asks (``archive_soon``). ``resolve_due``,
``integrity_check`` and ``archive`` are also run on demand (tests, the CLI).

The functions take the :class:`~tradehall.tap.service.TapService`, where the database, the
breaker and the metrics live; the loops call back through it (``service.resolve_due``,
``service.integrity_check``, ``service.archive``) so a replaced method is the one that runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from tradehall.tap import ledger
from tradehall.tap.archive import ArchiveResult, run_archive
from tradehall.tap.breaker import Health
from tradehall.tap.coldstore import ColdStore, S3Store
from tradehall.tap.contract import TapConfig
from tradehall.tap.db import barrier
from tradehall.tap.hub import user_channel
from tradehall.tap.log import LazyLogger
from tradehall.tap.resolution import Outcome
from tradehall.tap.resolver import settle_due

if TYPE_CHECKING:
    from tradehall.tap.service import TapService

__all__ = [
    "archive",
    "archive_loop",
    "cold_store",
    "integrity_check",
    "integrity_loop",
    "quiesce",
    "resolve_due",
    "resolver_loop",
]

_log = LazyLogger("tap")


def cold_store(config: TapConfig) -> Path | ColdStore:
    """Where archives go: S3 when configured, else the archive directory."""
    s3 = config.archive_s3
    if s3 is not None:
        return S3Store(s3.endpoint, s3.bucket, s3.access_key, s3.secret_key, s3.prefix, s3.region)
    return config.archive_dir or config.data_dir / "archive"


# ----------------------------------------------------------------- resolution


async def resolve_due(service: TapService, limit: int = 500) -> int:
    """Resolve every confirmed bet whose column ended ``resolve_delay_s`` ago or earlier."""
    if service.breaker.state is Health.CRITICAL:
        return 0  # resolution paused (Part B §8)
    await service.flush_ticks()
    settled = await settle_due(
        service.db,
        now_ns=service.clock.time_ns(),
        delay_s=service.config.resolve_delay_s,
        max_gap_s=service.config.max_gap_s,
        limit=limit,
    )
    service.balances.committed((bet.user_id, balance) for bet, _, balance in settled)
    for bet, res, balance in settled:
        service.metrics.bets_resolved.labels(res.outcome.value).inc()
        _log.info(
            "bet_resolved",
            bet_id=bet.bet_id,
            user_id=bet.user_id,
            outcome=res.outcome.value,
            amount=bet.amount,
            payout=res.payout,
        )
        service.publish(
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


async def resolver_loop(service: TapService) -> None:
    """Resolve due bets every ``resolve_interval_s``; ``_resolver_idle`` is clear meanwhile."""
    while True:
        await service.clock.sleep(service.config.resolve_interval_s)
        service._resolver_idle.clear()
        try:
            while await service.resolve_due() >= 500:
                pass
        finally:
            service._resolver_idle.set()


async def quiesce(service: TapService) -> None:
    """Wait until a running resolver pass, grid refresh, disk check and every queued write
    have finished."""
    await service._resolver_idle.wait()
    await service._grid_idle.wait()
    await service._disk_idle.wait()
    await service.db.write(barrier)


# ----------------------------------------------------------------- audit and archival


async def integrity_check(service: TapService) -> list[ledger.Drift]:
    """Users whose balance differs from their ledger; sets ``ledger_drift_users``."""
    drift = await service.db.read(ledger.integrity_check)
    service.metrics.drift_users.set(len(drift))
    if drift:
        _log.error("ledger_drift", users=len(drift), first=drift[0].user_id)
    return drift


async def integrity_loop(service: TapService) -> None:
    """The integrity check now and every ``integrity_interval_s``."""
    while True:
        await service.integrity_check()
        await service.clock.sleep(service.config.integrity_interval_s)


async def archive(service: TapService) -> ArchiveResult:
    """Run the weekly archival now (writes go through the single writer)."""
    result = await run_archive(
        service.db, cold_store(service.config), service.clock, partitions=service.partitions
    )
    service.metrics.last_archive.set(result.archived_at_ms / 1000)
    _log.info("archive_complete", **result.to_json())
    return result


async def archive_loop(service: TapService) -> None:
    """Archive every ``archive_interval_s``, or at once when ``archive_soon`` is set."""
    while True:
        soon = asyncio.ensure_future(service.archive_soon.wait())
        timer = asyncio.ensure_future(service.clock.sleep(service.config.archive_interval_s))
        try:
            await asyncio.wait((soon, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            soon.cancel()
            timer.cancel()
        service.archive_soon.clear()
        await service.archive()
