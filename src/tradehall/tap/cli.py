"""``tradehall tap``: run the tap server, or one of its jobs on its own.

``tradehall tap --host H --port P --data-dir D`` serves the API. With no configuration it uses
SQLite in the data directory and in-process sessions, nonces, rate limits and pub/sub; with
``TRADEHALL_REDIS_URL`` those move to Redis so several API processes can share them. Every
setting is a flag and a ``TRADEHALL_*`` variable (see ``tradehall tap --help``).

Jobs: ``tradehall tap integrity-check`` (daily drift check, exit 1 on drift),
``tradehall tap archive`` (weekly archival, see :mod:`tradehall.tap.archive`),
``tradehall tap backup`` (one online backup now, see :mod:`tradehall.tap.backup`),
``tradehall tap breaker close|open|auto`` (the C-47 override) and ``tradehall tap restore WEEK``
(archived history back online), the last two in :mod:`tradehall.tap.operator`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tradehall.core.clock import Clock, SystemClock
from tradehall.core.config import (
    ConfigError,
    Setting,
    add_arguments,
    parse_bool,
    parse_duration,
    parse_log_level,
    parse_port,
    parse_positive_int,
    resolve,
)
from tradehall.core.logging import configure, get_logger
from tradehall.tap.admission import Admission, RedisAdmission
from tradehall.tap.balances import BalanceCache, NoBalanceCache, RedisBalanceCache
from tradehall.tap.breaker import BreakerConfig
from tradehall.tap.contract import S3Settings
from tradehall.tap.feed import BinanceSource, NoSource, PriceSource, SimSource
from tradehall.tap.gatewayfeed import GATEWAY_URL, GatewaySource
from tradehall.tap.grid import GridConfig
from tradehall.tap.hub import Bus, Hub, MemoryBus
from tradehall.tap.price_history import PriceMirror, RedisPriceMirror
from tradehall.tap.service import TapConfig, TapService
from tradehall.tap.stores import (
    MemoryNonceStore,
    MemoryRateLimiter,
    MemorySessionStore,
    NonceStore,
    RateLimiter,
    SessionStore,
)

__all__ = ["SETTINGS", "build", "config_from", "register"]


def _source(text: str) -> str:
    if text not in ("sim", "binance", "gateway", "none"):
        raise ValueError("expected sim, binance, gateway or none")
    return text


def _decimal_fraction(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("expected a decimal such as 0.05") from None
    if not Decimal(0) <= value < Decimal(1):
        raise ValueError("expected a fraction in [0, 1)")
    return value


def _disk_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a fraction such as 0.85") from None
    if not 0.0 < value <= 1.0:
        raise ValueError("expected a fraction in (0, 1]")
    return value


def _presets(text: str) -> tuple[int, ...]:
    values = tuple(parse_positive_int(part) for part in text.split(",") if part.strip())
    if not values:
        raise ValueError("expected comma-separated amounts in cents")
    return values


def _sync_mode(text: str) -> str:
    mode = text.strip().upper()
    if mode not in ("FULL", "NORMAL"):
        raise ValueError("expected FULL or NORMAL")
    return mode


def _writer_mode(text: str) -> str:
    if text not in ("process", "thread"):
        raise ValueError("expected process or thread")
    return text


def _jobs(text: str) -> str:
    if text not in ("all", "api"):
        raise ValueError("expected all or api")
    return text


def _non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError("expected a whole number >= 0")
    return int(text)


SETTINGS = [
    Setting("host", "127.0.0.1", str, "address to listen on"),
    Setting("port", "8090", parse_port, "port to listen on"),
    Setting("data_dir", "./data/tap", Path, "directory for the SQLite database"),
    Setting("redis_url", "", str, "Redis URL for shared sessions/nonces/limits/pub-sub"),
    Setting("redis_prefix", "tap:", str, "prefix for every Redis key and channel"),
    Setting("jobs", "all", _jobs, "background jobs: all, or api (a further API process)"),
    Setting("balance_cache", "true", parse_bool, "early-rejection balance cache (ADR-009)"),
    Setting("override_channel", "circuit:override", str, "Redis channel of breaker overrides"),
    Setting("price_source", "sim", _source, "price feed: sim, binance, gateway or none"),
    Setting("binance_url", "wss://stream.binance.com:9443/ws/btcusdt@trade", str, "trade stream"),
    Setting("gateway_url", GATEWAY_URL, str, "the gateway's data bus (--price-source gateway)"),
    Setting("gateway_symbol", "BTC-USD", str, "canonical symbol taken from the gateway"),
    Setting("gateway_provider", "*", str, "gateway provider (venue) to follow; * = every venue"),
    Setting("sim_interval", "1s", parse_duration, "simulated feed tick interval"),
    Setting("chain_id", "1", parse_positive_int, "chain id expected in signed logins"),
    Setting("admin_token", "", str, "bearer token for /api/admin/* (empty disables them)"),
    Setting("require_bet_signature", "false", parse_bool, "require a signature on every bet"),
    Setting("dev_self_fund", "false", parse_bool, "let users fund themselves (development)"),
    Setting("flush_interval", "20ms", parse_duration, "batch flush timer"),
    Setting("batch_size", "100", parse_positive_int, "bets per batch (one transaction)"),
    Setting("queue_size", "10000", parse_positive_int, "bets waiting before 503 overloaded"),
    Setting("db_writer", "process", _writer_mode, "run the SQLite writer in a process or thread"),
    Setting("sqlite_synchronous", "FULL", _sync_mode, "SQLite synchronous: FULL or NORMAL"),
    Setting("bet_timeout", "5s", parse_duration, "how long a bet request waits for its commit"),
    Setting("bet_rate_limit", "10", parse_positive_int, "bets per wallet per window"),
    Setting("bet_rate_window", "60s", parse_duration, "per-wallet bet rate window"),
    Setting("ip_rate_limit", "600", parse_positive_int, "API requests per IP per window"),
    Setting("ip_rate_window", "60s", parse_duration, "per-IP rate window"),
    Setting("breaker_degraded", "3s", parse_duration, "price age that degrades the feed"),
    Setting("breaker_critical", "10s", parse_duration, "price age that opens the breaker"),
    Setting("breaker_recovery", "30s", parse_duration, "fresh prices needed to close it"),
    Setting("house_edge", "0.05", _decimal_fraction, "house edge of the default rate model"),
    Setting("column_seconds", "10", parse_positive_int, "grid column length in seconds"),
    Setting("row_cents", "1000", parse_positive_int, "grid row height in cents"),
    Setting("grid_columns", "12", parse_positive_int, "columns shown"),
    Setting("grid_rows", "20", parse_positive_int, "rows shown"),
    Setting("presets", "100,500,1000,2500,10000", _presets, "allowed bet amounts in cents"),
    Setting("resolve_delay", "2", _non_negative_int, "seconds after col_end before resolving"),
    Setting("archive_dir", "", str, "cold-store directory for archives (default DATA/archive)"),
    Setting("archive_s3_endpoint", "", str, "S3-compatible endpoint for archives (else a dir)"),
    Setting("archive_s3_bucket", "", str, "S3 bucket for archives"),
    Setting("archive_s3_prefix", "tap-archives/", str, "key prefix for archives"),
    Setting("archive_s3_region", "us-east-1", str, "S3 region (SigV4 scope)"),
    Setting("archive_s3_access_key", "", str, "S3 access key id"),
    Setting("archive_s3_secret_key", "", str, "S3 secret access key"),
    Setting("archive_interval", "168h", parse_duration, "how often the archiver runs"),
    Setting("local_weeks", "4", _non_negative_int, "archived weeks kept locally, read-only"),
    Setting("backup_dir", "", str, "directory of hourly .backup copies (default DATA/backups)"),
    Setting("backup_interval", "1h", parse_duration, "how often the server backs up; 0 = never"),
    Setting("backup_keep", "3", parse_positive_int, "backups kept (newest)"),
    Setting("disk_warn", "0.70", _disk_fraction, "disk share in use that warns, archives early"),
    Setting("disk_stop", "0.85", _disk_fraction, "disk share in use that stops new bets"),
    Setting("disk_purge", "0.95", _disk_fraction, "disk share that purges local partitions"),
    Setting("log_level", "info", parse_log_level, "log level"),
]


def config_from(values: dict[str, Any]) -> TapConfig:
    return TapConfig(
        data_dir=values["data_dir"],
        grid=GridConfig(
            column_seconds=values["column_seconds"],
            row_cents=values["row_cents"],
            columns=values["grid_columns"],
            rows=values["grid_rows"],
            presets=values["presets"],
        ),
        house_edge=values["house_edge"],
        chain_id=values["chain_id"],
        breaker=BreakerConfig(
            values["breaker_degraded"], values["breaker_critical"], values["breaker_recovery"]
        ),
        flush_interval_s=values["flush_interval"],
        max_batch=values["batch_size"],
        max_queue=values["queue_size"],
        sqlite_synchronous=values["sqlite_synchronous"],
        db_writer=values["db_writer"],
        bet_timeout_s=values["bet_timeout"],
        bet_rate_limit=values["bet_rate_limit"],
        bet_rate_window_s=values["bet_rate_window"],
        ip_rate_limit=values["ip_rate_limit"],
        ip_rate_window_s=values["ip_rate_window"],
        admin_token=values["admin_token"],
        dev_self_fund=values["dev_self_fund"],
        require_bet_signature=values["require_bet_signature"],
        resolve_delay_s=values["resolve_delay"],
        archive_dir=_archive_dir(values),
        archive_s3=_s3(values),
        archive_interval_s=values["archive_interval"],
        local_weeks=values["local_weeks"],
        backup_dir=Path(values["backup_dir"]) if values["backup_dir"] else None,
        backup_interval_s=values["backup_interval"],
        backup_keep=values["backup_keep"],
        disk_warn_fraction=values["disk_warn"],
        disk_stop_fraction=values["disk_stop"],
        disk_purge_fraction=values["disk_purge"],
    )


def build(values: dict[str, Any], clock: Clock | None = None) -> tuple[TapService, Hub]:
    """Wire a service and hub from resolved settings (memory or Redis backends)."""
    clock = clock or SystemClock()
    config = config_from(values)
    hub = Hub()
    source: PriceSource
    if values["price_source"] == "sim":
        source = SimSource(clock, interval_s=values["sim_interval"])
    elif values["price_source"] == "binance":
        source = BinanceSource(clock, values["binance_url"])
    elif values["price_source"] == "gateway":
        source = GatewaySource(
            clock,
            values["gateway_url"],
            symbol=values["gateway_symbol"],
            provider=values["gateway_provider"],
        )
    else:
        source = NoSource()
    sessions: SessionStore
    nonces: NonceStore
    limiter: RateLimiter
    bus: Bus
    admission: Admission | None = None  # None: the stores' own calls
    probes: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {}
    balances: BalanceCache | None = None  # None: the service's in-process cache
    mirror: PriceMirror | None = None  # None: prices only in SQLite
    if values["redis_url"]:
        from tradehall.tap import redis_stores as rs

        client = rs.connect_redis(values["redis_url"])
        prefix = values["redis_prefix"]
        sessions = rs.RedisSessionStore(client, clock, prefix)
        nonces = rs.RedisNonceStore(client, prefix, clock=clock)
        limiter = rs.RedisRateLimiter(client, prefix)
        admission = RedisAdmission(client, clock, prefix)
        bus = rs.RedisBus(client, hub, prefix, values["override_channel"])
        balances = RedisBalanceCache(client, prefix, clock=clock)
        mirror = RedisPriceMirror(client, prefix)

        async def redis_probe() -> dict[str, Any]:
            return await rs.redis_health(client)

        probes["redis"] = redis_probe
    else:
        sessions = MemorySessionStore(clock)
        nonces = MemoryNonceStore(clock)
        limiter = MemoryRateLimiter(clock)
        bus = MemoryBus(hub)
    if not values["balance_cache"]:
        balances = NoBalanceCache()
    service = TapService(
        config,
        clock=clock,
        sessions=sessions,
        nonces=nonces,
        limiter=limiter,
        bus=bus,
        source=source,
        health_probes=probes,
        balances=balances,
        price_mirror=mirror,
        admission=admission,
        jobs=values["jobs"],
    )
    return service, hub


def serve(args: argparse.Namespace) -> int:
    values = resolve(SETTINGS, args)
    configure(values["log_level"])
    sys.setswitchinterval(0.001)  # hand the GIL to the writer thread sooner after its I/O
    if args.tap_command == "integrity-check":
        return asyncio.run(_integrity(values))
    if args.tap_command == "archive":
        return asyncio.run(_archive(values))
    if args.tap_command == "breaker":
        from tradehall.tap.operator import send_override

        return asyncio.run(send_override(values, args.mode))
    if args.tap_command == "backup":
        return asyncio.run(_backup(values))
    if args.tap_command == "restore":
        from tradehall.tap.operator import restore_week

        return asyncio.run(restore_week(config_from(values), args.week))
    import uvicorn

    from tradehall.tap.app import create_app

    service, hub = build(values)
    app = create_app(service, hub)
    if not service.config.admin_token:
        get_logger("tap").info("admin_endpoints_disabled", hint="set TRADEHALL_ADMIN_TOKEN")
    config = uvicorn.Config(
        app,
        host=values["host"],
        port=values["port"],
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    get_logger("tap").info("starting", host=values["host"], port=values["port"])
    from tradehall.tap.gctune import tune_for_serving

    tune_for_serving()  # start-up objects out of every GC pass, young passes rarer
    uvicorn.Server(config).run()
    return 0


async def _integrity(values: dict[str, Any]) -> int:
    from tradehall.tap import ledger
    from tradehall.tap.db import Database

    db = Database(Path(values["data_dir"]) / "tap.db")
    await db.open()
    try:
        drift = await db.read(ledger.integrity_check)
        users = await db.read(lambda c: c.execute("SELECT COUNT(*) FROM users").fetchone()[0])
    finally:
        await db.close()
    report = {
        "users": users,
        "drift_users": len(drift),
        "mismatches": [
            {
                "user_id": d.user_id,
                "balance": d.balance,
                "ledger_sum": d.ledger_sum,
                "drift": d.drift,
                "chain_ok": d.chain_ok,
            }
            for d in drift
        ],
    }
    print(json.dumps(report))
    return 1 if drift else 0


async def _archive(values: dict[str, Any]) -> int:
    from tradehall.tap.archive import run_archive
    from tradehall.tap.db import Database
    from tradehall.tap.partitions import Partitions
    from tradehall.tap.service import cold_store

    db = Database(Path(values["data_dir"]) / "tap.db")
    await db.open()
    try:
        config = config_from(values)
        partitions = Partitions(config.data_dir / "partitions", config.local_weeks)
        result = await run_archive(db, cold_store(config), SystemClock(), partitions=partitions)
    finally:
        await db.close()
    print(json.dumps(result.to_json()))
    return 0


async def _backup(values: dict[str, Any]) -> int:
    import sqlite3

    from tradehall.tap.backup import backup_once

    config = config_from(values)
    now_ms = SystemClock().time_ns() // 1_000_000
    directory = config.backup_dir or config.data_dir / "backups"
    try:
        result = await asyncio.to_thread(
            backup_once, config.db_path, directory, now_ms, config.backup_keep
        )
    except (OSError, sqlite3.Error) as exc:
        print(json.dumps({"error": "backup_failed", "message": repr(exc)}))
        return 1
    print(json.dumps(result.to_json()))
    return 0


def _s3(values: dict[str, Any]) -> S3Settings | None:
    if not values["archive_s3_endpoint"]:
        return None
    if not values["archive_s3_bucket"]:
        raise ConfigError("archive_s3_bucket is required with archive_s3_endpoint")
    return S3Settings(
        endpoint=values["archive_s3_endpoint"],
        bucket=values["archive_s3_bucket"],
        access_key=values["archive_s3_access_key"],
        secret_key=values["archive_s3_secret_key"],
        prefix=values["archive_s3_prefix"],
        region=values["archive_s3_region"],
    )


def _archive_dir(values: dict[str, Any]) -> Path:
    configured: str = values["archive_dir"]
    return Path(configured) if configured else Path(values["data_dir"]) / "archive"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tap", help="the BTC tap-trading server", description=__doc__.splitlines()[0]
    )
    add_arguments(parser, SETTINGS)
    jobs = parser.add_subparsers(dest="tap_command", metavar="JOB")
    jobs.add_parser("integrity-check", help="compare every balance with its ledger; 1 on drift")
    jobs.add_parser("archive", help="snapshot, compress and store the database, then rotate")
    breaker = jobs.add_parser(
        "breaker", help="override the price breaker in every API process (C-47)"
    )
    breaker.add_argument("mode", choices=["close", "open", "auto"])
    jobs.add_parser("backup", help="one online .backup copy of the database now (ADR-001)")
    restore = jobs.add_parser(
        "restore", help="fetch, verify and attach archived weeks from WEEK on (FR-17)"
    )
    restore.add_argument("week", metavar="WEEK", help="the week's Sunday, YYYY-MM-DD")
    parser.set_defaults(func=serve, tap_command=None)


def main() -> int:  # pragma: no cover - convenience for ``python -m tradehall.tap.cli``
    parser = argparse.ArgumentParser(prog="tradehall")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args()
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
