"""Hourly online backups of the tap database (ADR-001: "hourly ``.backup``, never a file copy").

:func:`backup_once` uses SQLite's online backup API (``sqlite3.Connection.backup``, what the
``sqlite3`` shell's ``.backup`` runs): it copies the database page by page inside one read
transaction, so the copy is a consistent snapshot that includes what is still in the WAL, and
in WAL mode the single writer is never blocked. Copying the file instead could capture a torn
page or miss committed transactions that live only in ``tap.db-wal``.

Each backup is written under a temporary name, checked with ``PRAGMA quick_check``, fsynced and
renamed to ``tap_<UTC time>.db`` in the backup directory (default ``DATA/backups``); then all but
the newest ``keep`` (3: each is a full copy of the hot database, so 24 copies of a large
week would fill the disk the guards watch) are deleted. The server runs it every
``backup_interval_s`` (1 h; 0 disables) and sets ``last_successful_backup_timestamp``; a failure
is logged and retried at the next interval. ``tradehall tap backup`` runs one now. The daily full
copy to object storage is the weekly archive's job plus whatever ships this directory off the
machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradehall.core.clock import Clock
from tradehall.tap.log import LazyLogger
from tradehall.tap.metrics import TapMetrics

__all__ = ["BackupResult", "Backups", "backup_once", "list_backups"]

_NAME = re.compile(r"^tap_\d{8}T\d{6}(?:\d{3})?Z\.db$")
_log = LazyLogger("tap.backup")


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size_bytes: int
    at_ms: int
    removed: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "at": self.at_ms,
            "removed": self.removed,
        }


def list_backups(directory: Path) -> list[Path]:
    """The backups in ``directory``, oldest first (names sort by time)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def backup_once(db_path: Path, directory: Path, now_ms: int, keep: int) -> BackupResult:
    """Back ``db_path`` up into ``directory`` (online backup API); keep the newest ``keep``."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    if not db_path.is_file():  # sqlite3 would create an empty database and back that up
        raise FileNotFoundError(f"no database at {db_path}")
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(now_ms / 1000, UTC)
    name = f"tap_{stamp:%Y%m%dT%H%M%S}{now_ms % 1000:03d}Z.db"
    final = directory / name
    temp = directory / f".{name}.part"
    temp.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{db_path}?mode=rw", uri=True, isolation_level=None)
    try:
        target = sqlite3.connect(str(temp), isolation_level=None)
        try:
            source.backup(target)  # every page in one step: one consistent read transaction
            (check,) = target.execute("PRAGMA quick_check").fetchone()
        finally:
            target.close()
    finally:
        source.close()
    try:
        if check != "ok":
            raise sqlite3.DatabaseError(f"backup failed quick_check: {check}")
        with temp.open("rb+") as fh:
            os.fsync(fh.fileno())
        temp.replace(final)
    finally:
        temp.unlink(missing_ok=True)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)
    backups = list_backups(directory)
    removed = backups[: max(0, len(backups) - keep)]
    for old in removed:
        old.unlink(missing_ok=True)
    return BackupResult(final, final.stat().st_size, now_ms, [p.name for p in removed])


class Backups:
    """The server's hourly backup job."""

    def __init__(
        self,
        db_path: Path,
        directory: Path,
        clock: Clock,
        metrics: TapMetrics,
        *,
        interval_s: float,
        keep: int,
    ) -> None:
        self.db_path = db_path
        self.directory = directory
        self.clock = clock
        self.metrics = metrics
        self.interval_s = interval_s
        self.keep = keep

    async def run(self) -> BackupResult:
        """One backup now (off the event loop); updates the last-success gauge."""
        now_ms = self.clock.time_ns() // 1_000_000
        result = await asyncio.to_thread(
            backup_once, self.db_path, self.directory, now_ms, self.keep
        )
        self.metrics.last_backup.set(now_ms / 1000)
        _log.info("backup_complete", **result.to_json())
        return result

    async def loop(self) -> None:
        while True:
            await self.clock.sleep(self.interval_s)
            try:
                await self.run()
            except (OSError, sqlite3.Error) as exc:
                # the gauge stays at the last success: alert on its age
                _log.error("backup_failed", error=repr(exc))
