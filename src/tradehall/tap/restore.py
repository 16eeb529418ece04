"""On-request restore of archived weeks (FR-17, ADR-006 "restore"), so old history answers again.

History older than the local partitions answers 410 ``archived`` (:mod:`tradehall.tap.history`).
``POST /api/admin/restore {"week": "YYYY-MM-DD"}`` or ``tradehall tap restore YYYY-MM-DD`` brings
it back, for each archived week from the one asked for up to the newest one not held locally:

1. look the week up in the ``archives`` table (location, size, sha256 recorded when it was made);
2. fetch it from the cold store (directory copy or signed S3 ``GET``) into ``restore/``;
3. verify size and sha256 against the record -- a mismatch deletes the download and fails;
4. decompress (zstd) to a temporary name, run ``PRAGMA quick_check`` on it, make it read-only
   (mode 0444) and rename it to ``restore/tap_<week>.db``.

:class:`WeekFiles` then lists restored weeks next to the local partitions, and history opens
them read-only (``mode=ro`` URIs: Part B's "ATTACH read-only"). Every week from the one asked for
onwards is restored because "archived" is one boundary, the *horizon*: history before it is
answered only if nothing between the query and the local weeks is missing. Restored weeks stay
until an operator deletes ``restore/`` (or the 95 % disk guard purges them first: they can be
fetched again).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import sqlite3
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

import zstandard

from tradehall.tap.archive import archived_weeks
from tradehall.tap.coldstore import ColdStore, DirectoryStore, file_digests
from tradehall.tap.db import Database
from tradehall.tap.partitions import Partitions

__all__ = ["RestoreError", "RestoreResult", "WeekFiles", "restore_since"]

_WEEK = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RestoreError(Exception):
    """The restore could not be done; ``code`` is the API's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RestoreResult:
    restored: list[str]  # weeks fetched now, oldest first
    already: list[str]  # weeks asked for that were already local or restored

    def to_json(self) -> dict[str, list[str]]:
        return {"restored": self.restored, "already_available": self.already}


class WeekFiles(Partitions):
    """The local weekly partitions plus the weeks restored on request into ``restore_dir``.

    Reads (labels, paths, the horizon, :meth:`each`) see both; :meth:`add` keeps rotating only the
    local partitions, and :meth:`purge_oldest` frees restored weeks first (they can be fetched
    again).
    """

    def __init__(self, directory: Path, keep: int, restore_dir: Path) -> None:
        super().__init__(directory, keep)
        self.local = Partitions(directory, keep)
        self.restored = Partitions(restore_dir, keep=0)
        self.restore_lock = asyncio.Lock()  # one restore at a time per process

    @classmethod
    def in_data_dir(cls, data_dir: Path, keep: int) -> WeekFiles:
        """``data_dir/partitions`` (the archiver's) and ``data_dir/restore`` (restored weeks)."""
        return cls(data_dir / "partitions", keep, data_dir / "restore")

    def labels(self) -> list[str]:
        return sorted(set(self.local.labels()) | set(self.restored.labels()))

    def path(self, label: str) -> Path:
        local = self.local.path(label)
        restored = self.restored.path(label)
        return restored if not local.exists() and restored.exists() else local

    def add(self, snapshot: Path, label: str) -> list[str]:
        return self.local.add(snapshot, label)

    def purge_oldest(self) -> str | None:
        if self.restored.labels():
            week = self.restored.labels()[0]
            path = self.restored.path(week)
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)
            path.unlink(missing_ok=True)
            return week
        return self.local.purge_oldest()


def _archive_row(conn: sqlite3.Connection, week: str) -> tuple[str, int, str] | None:
    row = conn.execute(
        "SELECT path, size_bytes, sha256 FROM archives WHERE week = ? AND status = 'complete'",
        (week,),
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]), str(row[2]))


def _unpack(compressed: Path, final: Path, size: int, sha256: str) -> None:
    got_size, got_sha, _ = file_digests(compressed)
    if (got_size, got_sha) != (size, sha256):
        compressed.unlink(missing_ok=True)
        raise RestoreError(
            "restore_failed",
            f"{compressed.name}: size/sha256 {got_size}/{got_sha} != recorded {size}/{sha256}",
        )
    temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
    try:
        with compressed.open("rb") as src, temp.open("wb") as dst:
            zstandard.ZstdDecompressor().copy_stream(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        conn = sqlite3.connect(f"file:{temp}?mode=ro", uri=True)
        try:
            (check,) = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
        if check != "ok":
            raise RestoreError("restore_failed", f"{final.name}: quick_check says {check}")
        temp.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # read-only from now on
        temp.replace(final)
    except (zstandard.ZstdError, sqlite3.DatabaseError) as exc:
        raise RestoreError("restore_failed", f"{final.name}: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)
        compressed.unlink(missing_ok=True)


async def restore_since(
    db: Database, store: Path | ColdStore, weeks: WeekFiles, week: str
) -> RestoreResult:
    """Restore ``week`` and every later archived week that is not held locally."""
    if not _WEEK.match(week):
        raise RestoreError("validation_error", "week must be YYYY-MM-DD (a Sunday, UTC)")
    archived = await db.read(archived_weeks)
    if week not in archived:
        raise RestoreError("not_found", f"no complete archive for the week of {week}")
    cold = DirectoryStore(store) if isinstance(store, Path) else store
    async with weeks.restore_lock:
        return await _restore(db, cold, weeks, [w for w in archived if w >= week])


async def _restore(
    db: Database, cold: ColdStore, weeks: WeekFiles, wanted: list[str]
) -> RestoreResult:
    held = set(weeks.labels())
    missing = [w for w in wanted if w not in held]
    directory = weeks.restored.directory
    directory.mkdir(parents=True, exist_ok=True)
    for label in missing:
        row = await db.read(functools.partial(_archive_row, week=label))
        if row is None:  # raced with a rewrite of the record: treat as not found
            raise RestoreError("not_found", f"no complete archive for the week of {label}")
        location, size, sha256 = row
        # a unique name: a CLI restore may run beside the server's
        download = directory / f".tap_{label}.{uuid.uuid4().hex}.db.zst.download"
        try:
            await cold.fetch(location, download)
        except OSError as exc:
            download.unlink(missing_ok=True)
            raise RestoreError("restore_failed", f"fetching {location}: {exc}") from None
        await asyncio.to_thread(_unpack, download, weeks.restored.path(label), size, sha256)
    return RestoreResult(missing, [w for w in wanted if w in held])
