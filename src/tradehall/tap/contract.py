"""The tap server's configuration and the API's request and error shapes.

Shared by the service, the HTTP layer and the CLI; kept apart so :mod:`tradehall.tap.service`
holds behaviour only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from tradehall.tap import ledger
from tradehall.tap.breaker import BreakerConfig
from tradehall.tap.grid import GridConfig

__all__ = [
    "ApiError",
    "BetBody",
    "S3Settings",
    "TapConfig",
    "bet_json",
    "disk_error",
    "invalid_amount_error",
    "stale_error",
]


@dataclass(frozen=True)
class S3Settings:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    prefix: str = "tap-archives/"
    region: str = "us-east-1"


@dataclass(frozen=True)
class TapConfig:
    data_dir: Path
    grid: GridConfig = field(default_factory=GridConfig)
    house_edge: Decimal = Decimal("0.05")
    chain_id: int = 1
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    flush_interval_s: float = 0.02  # ADR-005 says 100 ms; C-18 allows 20-50 ms for p99
    max_batch: int = 100
    max_queue: int = 10_000
    bet_timeout_s: float = 5.0
    bet_rate_limit: int = 10
    bet_rate_window_s: float = 60.0
    ip_rate_limit: int = 600
    ip_rate_window_s: float = 60.0
    admin_token: str = ""
    dev_self_fund: bool = False
    resolve_delay_s: int = 2
    resolve_interval_s: float = 1.0
    max_gap_s: int = 10
    tick_sample_ms: int = 100
    price_retention_s: int = 7 * 86_400
    status_interval_s: float = 5.0
    sigma_window_s: int = 300
    require_bet_signature: bool = False
    sqlite_synchronous: str = "FULL"
    db_writer: str = "process"
    archive_dir: Path | None = None
    archive_s3: S3Settings | None = None  # when set, archives go to S3 instead of archive_dir
    archive_interval_s: float = 7 * 86_400.0
    integrity_interval_s: float = 86_400.0
    disk_warn_fraction: float = 0.70  # warn and archive sooner
    disk_stop_fraction: float = 0.85  # C-48: stop new bets above this share of the disk in use
    disk_purge_fraction: float = 0.95  # purge the oldest local partitions (they are archived)
    local_weeks: int = 4  # archived weeks kept locally, read-only (FR-17)
    backup_dir: Path | None = None  # hourly .backup copies (default data_dir/backups)
    backup_interval_s: float = 3_600.0  # 0 disables the server's backup job
    backup_keep: int = 3  # each is a full copy of the hot database: size the disk for N + 1

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tap.db"


class ApiError(Exception):
    """A failure with its HTTP status, error code, message and any extra body fields/headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}


class BetBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    cell_id: str
    amount: int
    nonce: str
    rate: str | None = None
    # only with require_bet_signature:
    timestamp: int | None = None
    chain_id: int | None = None
    signature: str | None = None


def bet_json(bet: ledger.BetRecord) -> dict[str, Any]:
    return {
        "bet_id": bet.bet_id,
        "cell_id": bet.cell_id,
        "amount": bet.amount,
        "rate": bet.rate,
        "status": bet.status,
        "col_start": bet.col_start,
        "col_end": bet.col_end,
        "lower": bet.lower,
        "upper": bet.upper,
        "placed_at": bet.placed_at,
        "resolved_at": bet.resolved_at,
        "payout": bet.payout,
        "resolution_price": bet.resolution_price,
        "resolution_tick_ts": bet.resolution_tick_ts,
        "ticks_examined": bet.ticks_examined,
    }


def stale_error() -> ApiError:
    return ApiError(
        503,
        "PRICE_FEED_STALE",
        "Betting temporarily suspended due to stale price data",
        extra={"retry_after": 10},
        headers={"Retry-After": "10"},
    )


def disk_error() -> ApiError:
    return ApiError(
        503,
        "DISK_CRITICAL",
        "Betting temporarily suspended: storage is nearly full",
        extra={"retry_after": 60},
        headers={"Retry-After": "60"},
    )


def invalid_amount_error(grid: GridConfig) -> ApiError:
    return ApiError(
        400,
        "invalid_amount",
        "amount must be one of the presets (cents)",
        extra={"presets": list(grid.presets)},
    )
