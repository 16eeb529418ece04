"""The tap server's health: the ``/healthz`` report and the disk guards (Part B §3, §10, C-48).

Both read and set state that lives on the :class:`~tradehall.tap.service.TapService` (the breaker,
the batcher, ``disk_level`` / ``disk_full``, the injected ``disk_usage`` probe), so they take the
service, like the other parts split out of it (the list is in the service module's docstring).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tradehall.tap.breaker import Health
from tradehall.tap.db import barrier
from tradehall.tap.log import LazyLogger

if TYPE_CHECKING:
    from tradehall.tap.service import TapService

__all__ = ["apply_disk_guards", "disk_used", "health_report"]

_log = LazyLogger("tap")


def disk_used(service: TapService) -> float:
    """Share of the data directory's disk in use."""
    usage = service.disk_usage(service.config.data_dir)
    return 1.0 - usage.free / usage.total if usage.total else 0.0


async def apply_disk_guards(service: TapService) -> float:
    """Apply the disk guards to the data directory's disk; returns the share in use.

    >= 70 %: warning, and the archiver runs early (at most once a day); >= 85 %: new bets
    get 503 ``DISK_CRITICAL``; >= 95 %: the oldest partitions are deleted -- restored weeks
    first, then local ones (their weeks stay in the cold store) -- until usage drops below
    95 % or none is left.
    """
    config = service.config
    used = disk_used(service)
    while used >= config.disk_purge_fraction:
        week = await asyncio.to_thread(service.partitions.purge_oldest)  # unlink may be slow
        if week is None:
            break
        _log.error("disk_partition_purged", week=week, used=round(used, 3))
        used = disk_used(service)
    if used >= config.disk_stop_fraction:
        level = "critical"
    elif used >= config.disk_warn_fraction:
        level = "warning"
    else:
        level = "ok"
    if level != service.disk_level:
        log = {"ok": _log.info, "warning": _log.warning, "critical": _log.error}[level]
        log("disk_" + level, used=round(used, 3), previous=service.disk_level)
        if level != "ok" and service.clock.monotonic() - service.early_archive_at >= 86_400:
            service.early_archive_at = service.clock.monotonic()
            service.archive_soon.set()
    service.disk_level = level
    service.disk_full = level == "critical"
    service.metrics.disk_used.set(used)
    return used


async def health_report(service: TapService) -> tuple[bool, dict[str, Any]]:
    """Whether the process is fit to serve, and the ``/healthz`` body."""
    checks: dict[str, Any] = {}
    ok = True
    config = service.config
    try:
        await service.db.read(lambda c: c.execute("SELECT 1").fetchone())
        await asyncio.wait_for(service.db.write(barrier), 5.0)  # the writer is alive
        wal = config.db_path.with_name(config.db_path.name + "-wal")
        size = wal.stat().st_size if wal.exists() else 0
        checks["database"] = {"status": "ok", "wal_size_mb": round(size / 2**20, 3)}
    except Exception as exc:
        ok = False
        checks["database"] = {"status": "error", "error": type(exc).__name__}
    for name, probe in service.health_probes.items():
        try:
            checks[name] = await probe()
        except Exception as exc:
            ok = False
            checks[name] = {"status": "error", "error": type(exc).__name__}
    now = service.clock.time_ns()
    breaker = service.breaker
    age = breaker.age_s(now)
    state = breaker.state
    last = breaker.last_price_ns
    checks["price_feed"] = {
        "status": state.value,
        "source": service.source.name,
        "last_update": None if last is None else last // 1_000_000,
        "stale_for_ms": None if age is None else int(age * 1000),
    }
    checks["circuit_breaker"] = {"status": "open" if state is Health.CRITICAL else "closed"}
    batcher = service.batcher
    checks["batcher"] = {"queue_depth": batcher.depth, "flushes": batcher.flushes}
    checks["disk"] = {"status": service.disk_level}
    if service.disk_full or state is Health.CRITICAL:
        ok = False
    return ok, {
        "status": "ok" if ok else "degraded",
        "timestamp": now // 1_000_000,
        "checks": checks,
    }
