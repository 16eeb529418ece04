"""Settings of ``tradehall exchange``: every one a CLI flag and a ``TRADEHALL_*`` variable.

The contract's bare variable names (``PORT``, ``EXPIRATION_INTERVAL``, …; contract §8) are honoured
as fallbacks after the ``TRADEHALL_*`` names (contract §10).
"""

from __future__ import annotations

from dataclasses import dataclass

from tradehall.core.config import (
    Setting,
    parse_bool,
    parse_duration,
    parse_log_level,
    parse_port,
)
from tradehall.exchange.journal import SyncPolicy

__all__ = ["SETTINGS", "ExchangeSettings"]


def _non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError("expected a whole number >= 0")
    return int(text)


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("expected a duration greater than zero")
    return seconds


def _data_dir(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a directory path or ':memory:'")
    return text


def _sync_policy(text: str) -> SyncPolicy:
    lowered = text.strip().lower()
    if lowered == "fsync":
        return "fsync"
    if lowered == "none":
        return "none"
    raise ValueError("expected fsync or none")


def _secret(text: str) -> bytes | None:
    return text.encode() if text else None


SETTINGS = (
    Setting("host", "127.0.0.1", str, "interface to listen on", aliases=("HOST",)),
    Setting("port", "8080", parse_port, "TCP port to listen on", aliases=("PORT",)),
    Setting("log_level", "info", parse_log_level, "debug, info, warn or error", ("LOG_LEVEL",)),
    Setting(
        "expiration_interval",
        "1s",
        _positive_duration,
        "period of the order-expiry sweep",
        ("EXPIRATION_INTERVAL",),
    ),
    Setting(
        "webhook_timeout",
        "5s",
        _positive_duration,
        "timeout of one webhook POST",
        ("WEBHOOK_TIMEOUT",),
    ),
    Setting("vwap_window", "5m", _positive_duration, "VWAP window", ("VWAP_WINDOW",)),
    Setting("read_timeout", "5s", _positive_duration, "request read timeout", ("READ_TIMEOUT",)),
    Setting(
        "write_timeout", "10s", _positive_duration, "response write timeout", ("WRITE_TIMEOUT",)
    ),
    Setting(
        "idle_timeout", "60s", _positive_duration, "idle keep-alive timeout", ("IDLE_TIMEOUT",)
    ),
    Setting(
        "shutdown_timeout",
        "10s",
        parse_duration,
        "grace period for in-flight requests on shutdown",
        ("SHUTDOWN_TIMEOUT",),
    ),
    Setting("webhook_max_retries", "3", _non_negative_int, "webhook retries after a failure"),
    Setting("webhook_queue_limit", "10000", _non_negative_int, "pending webhook deliveries cap"),
    Setting(
        "webhook_signing_secret", "", _secret, "HMAC-SHA256 secret for X-Signature (off if empty)"
    ),
    Setting("webhook_allow_http", "0", parse_bool, "development only: accept http webhook URLs"),
    Setting(
        "data_dir",
        "./data/exchange",
        _data_dir,
        "journal and snapshot directory (':memory:' keeps state in memory only)",
    ),
    Setting("journal_sync", "fsync", _sync_policy, "fsync (per group commit) or none"),
    Setting(
        "snapshot_every", "100000", _non_negative_int, "journal records between snapshots (0: off)"
    ),
)


@dataclass(frozen=True)
class ExchangeSettings:
    """Resolved settings (seconds for durations)."""

    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    expiration_interval: float = 1.0
    webhook_timeout: float = 5.0
    vwap_window: float = 300.0
    read_timeout: float = 5.0
    write_timeout: float = 10.0
    idle_timeout: float = 60.0
    shutdown_timeout: float = 10.0
    webhook_max_retries: int = 3
    webhook_queue_limit: int = 10_000
    webhook_signing_secret: bytes | None = None
    webhook_allow_http: bool = False
    data_dir: str = ":memory:"
    journal_sync: SyncPolicy = "fsync"
    snapshot_every: int = 100_000

    @property
    def vwap_window_label(self) -> str:
        """The window as the contract shows it (``"5m"``, ``"90s"``, ``"1h"``)."""
        seconds = self.vwap_window
        if seconds >= 3600 and seconds % 3600 == 0:
            return f"{int(seconds // 3600)}h"
        if seconds >= 60 and seconds % 60 == 0:
            return f"{int(seconds // 60)}m"
        if seconds == int(seconds):
            return f"{int(seconds)}s"
        return f"{round(seconds * 1000)}ms"
