"""Weekly archival (Part A §8, ADR-006 with C-39/C-42/C-43): snapshot, compress, verify, rotate.

1. ``VACUUM INTO`` a consistent snapshot of the whole database (users, bets, ledger, prices);
2. compress it with zstd, hashing the compressed bytes (sha256) on the way;
3. copy it to the cold store (a directory: a mounted bucket or backup disk) under a temporary
   name, read the copy back and compare size and sha256, then rename it into place;
4. only then rotate, in one write transaction: per user, the ledger rows before the week boundary
   are replaced by a single ``OPENING_BALANCE`` row carrying their sum and the last
   ``balance_after`` (opening-balance carry-forward), and bets settled before the boundary are
   removed. Balances and ledger sums are unchanged, so the integrity check still sees zero
   drift; open bets stay;
5. record the archive (week, path, size, sha256, status ``complete``) in the ``archives`` table,
   which is also what the dead man's switch gauge ``last_successful_archive_timestamp`` reads;
6. keep the uncompressed snapshot as a local read-only partition
   (:class:`~tradehall.tap.partitions.Partitions`, the last 4 weeks, FR-17).

Weeks start Sunday 00:00 UTC (C-41); the archive is named after the start of the week it closes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import zstandard

from tradehall.core.clock import Clock
from tradehall.tap.coldstore import ColdStore, DirectoryStore, file_digests
from tradehall.tap.db import Database
from tradehall.tap.partitions import Partitions

__all__ = ["ArchiveResult", "archived_weeks", "last_archive_time", "run_archive", "week_start"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveResult:
    week: str
    location: str  # a file path for a directory store, a URL for S3
    size_bytes: int
    sha256: str
    rotated_ledger_rows: int
    removed_bets: int
    archived_at_ms: int

    @property
    def path(self) -> Path:
        return Path(self.location)

    def to_json(self) -> dict[str, Any]:
        return {
            "week": self.week,
            "path": self.location,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "rotated_ledger_rows": self.rotated_ledger_rows,
            "removed_bets": self.removed_bets,
            "archived_at": self.archived_at_ms,
        }


def week_start(now_ns: int) -> datetime:
    """Sunday 00:00 UTC on or before ``now_ns``."""
    now = datetime.fromtimestamp(now_ns / 1e9, UTC)
    days_since_sunday = (now.weekday() + 1) % 7
    return (now - timedelta(days=days_since_sunday)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def _snapshot_and_compress(db_path: Path, staging: Path, label: str) -> tuple[Path, Path, int, str]:
    staging.mkdir(parents=True, exist_ok=True)
    raw = staging / f"tap_{label}.db"
    raw.unlink(missing_ok=True)
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    try:
        conn.execute("VACUUM INTO ?", (str(raw),))
    finally:
        conn.close()
    compressed = staging / f"tap_{label}.db.zst"
    with raw.open("rb") as src, compressed.open("wb") as dst:
        zstandard.ZstdCompressor(level=10).copy_stream(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
    size, digest, _ = file_digests(compressed)
    return raw, compressed, size, digest


def _rotate(conn: sqlite3.Connection, cutoff_ms: int, label: str) -> tuple[int, int]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        carried = conn.execute(
            "SELECT user_id, SUM(amount), COUNT(*), MAX(rowid) FROM transaction_ledger"
            " WHERE created_at < ? GROUP BY user_id",
            (cutoff_ms,),
        ).fetchall()
        rotated = 0
        for user_id, total, count, last_rowid in carried:
            (last_balance,) = conn.execute(
                "SELECT balance_after FROM transaction_ledger WHERE rowid = ?", (last_rowid,)
            ).fetchone()
            conn.execute(
                "DELETE FROM transaction_ledger WHERE user_id = ? AND created_at < ?",
                (user_id, cutoff_ms),
            )
            conn.execute(
                "INSERT INTO transaction_ledger"
                " (id, user_id, amount, balance_after, ref_type, ref_id, metadata, created_at)"
                " VALUES (?, ?, ?, ?, 'OPENING_BALANCE', ?, NULL, ?)",
                (str(uuid.uuid4()), user_id, total, last_balance, f"{label}:{user_id}", cutoff_ms),
            )
            rotated += count
        removed = conn.execute(
            "DELETE FROM bets WHERE resolved_at IS NOT NULL AND resolved_at < ?", (cutoff_ms,)
        ).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return rotated, removed


def _record(
    conn: sqlite3.Connection, label: str, path: str, size: int, digest: str, now_ms: int
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO archives (week, path, size_bytes, sha256, archived_at, status)"
        " VALUES (?, ?, ?, ?, ?, 'complete')",
        (label, path, size, digest, now_ms),
    )


def archived_weeks(conn: sqlite3.Connection) -> list[str]:
    """Labels of the complete archives, oldest first."""
    rows = conn.execute("SELECT week FROM archives WHERE status = 'complete' ORDER BY week")
    return [str(r[0]) for r in rows]


def last_archive_time(conn: sqlite3.Connection) -> int | None:
    """Unix ms of the last complete archive, for the dead man's switch."""
    row = conn.execute("SELECT MAX(archived_at) FROM archives WHERE status = 'complete'").fetchone()
    return None if row[0] is None else int(row[0])


async def run_archive(
    db: Database,
    store: Path | ColdStore,
    clock: Clock,
    *,
    cutoff_ns: int | None = None,
    partitions: Partitions | None = None,
) -> ArchiveResult:
    """Archive and rotate everything before ``cutoff_ns`` (default: this week's start).

    With ``partitions`` the uncompressed snapshot stays as a local read-only week.
    """
    if cutoff_ns is None:
        cutoff_ms = int(week_start(clock.time_ns()).timestamp() * 1000)
    else:
        cutoff_ms = cutoff_ns // 1_000_000
    closed_week = datetime.fromtimestamp(cutoff_ms / 1000, UTC) - timedelta(days=7)
    label = closed_week.strftime("%Y-%m-%d")
    staging = db.path.parent / "archive-staging"
    raw, local, size, digest = await asyncio.to_thread(
        _snapshot_and_compress, db.path, staging, label
    )
    cold = DirectoryStore(store) if isinstance(store, Path) else store
    try:
        final = await cold.put(local, size, digest)
        rotated, removed = await db.write(
            functools.partial(_rotate, cutoff_ms=cutoff_ms, label=label)
        )
        now_ms = clock.time_ns() // 1_000_000
        await db.write(
            functools.partial(
                _record, label=label, path=final, size=size, digest=digest, now_ms=now_ms
            )
        )
    except BaseException:
        raw.unlink(missing_ok=True)
        raise
    local.unlink(missing_ok=True)  # C-42: the local copy goes only after the record exists
    if partitions is not None:
        await asyncio.to_thread(partitions.add, raw, label)
    else:
        raw.unlink(missing_ok=True)
    return ArchiveResult(label, final, size, digest, rotated, removed, now_ms)
