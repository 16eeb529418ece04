"""Local read-only weekly partitions and the "archived" answer for older history (FR-17).

Every weekly archive (:mod:`tradehall.tap.archive`) leaves, besides the compressed copy in the
cold store, its uncompressed ``VACUUM INTO`` snapshot here as ``tap_<week start>.db``. The newest
``keep`` (4) are kept; older files are deleted, their weeks living on only in the cold store
(Part B §3: current week hot, 4 weeks local read-only, older weeks archived).

History reads consult the hot database first and then these files, newest first, opened
read-only; a bet id found in several (an open bet carried across a rotation) is taken from the
newest. The *horizon* is the end of the newest archived week that is no longer local: anything
placed before it is only in the cold store, so history asked for before the horizon is answered
with 410 ``archived`` (restore: ``zstd -d`` the archive and open it, see tap-operations.md).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from tradehall.tap.contract import ApiError

__all__ = ["WEEK_MS", "Partitions", "archived_error", "id_time_ms", "week_end_ms"]

T = TypeVar("T")
WEEK_MS = 7 * 86_400_000
_NAME = re.compile(r"^tap_(\d{4}-\d{2}-\d{2})\.db$")


def week_end_ms(label: str) -> int:
    """End (exclusive, Unix ms) of the week that starts on ``label`` (``YYYY-MM-DD``)."""
    start = datetime.strptime(label, "%Y-%m-%d").replace(tzinfo=UTC)
    return int((start + timedelta(days=7)).timestamp() * 1000)


def id_time_ms(bet_id: str) -> int | None:
    """The creation time in a version-7 id (:mod:`tradehall.tap.ids`), or ``None``."""
    head = bet_id.replace("-", "")[:12]
    if len(head) != 12 or len(bet_id) != 36 or bet_id[14:15] != "7":
        return None
    try:
        return int(head, 16)
    except ValueError:
        return None


def archived_error(horizon_ms: int) -> ApiError:
    return ApiError(
        410,
        "archived",
        "this period is archived; it is not queryable online",
        extra={"archived_before": horizon_ms},
    )


class Partitions:
    """The directory of local read-only weekly snapshots."""

    def __init__(self, directory: Path, keep: int = 4) -> None:
        self.directory = directory
        self.keep = keep

    def labels(self) -> list[str]:
        """Weeks held locally, oldest first."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(m.group(1) for m in found if m is not None)

    def path(self, label: str) -> Path:
        return self.directory / f"tap_{label}.db"

    def add(self, snapshot: Path, label: str) -> list[str]:
        """Move ``snapshot`` in as week ``label``, then drop beyond ``keep``; returns dropped."""
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.move(str(snapshot), self.path(label))
        labels = self.labels()
        dropped = labels[: max(0, len(labels) - self.keep)]
        for old in dropped:
            self.path(old).unlink(missing_ok=True)
        return dropped

    def purge_oldest(self) -> str | None:
        """Delete the oldest local week (disk guard at 95 %); its archive stays in the store."""
        labels = self.labels()
        if not labels:
            return None
        self.path(labels[0]).unlink(missing_ok=True)
        return labels[0]

    def horizon_ms(self, archived: Iterable[str]) -> int:
        """Unix ms before which history is only in the cold store (0: everything is local)."""
        local = set(self.labels())
        gone = [label for label in archived if label not in local]
        return max((week_end_ms(label) for label in gone), default=0)

    def each(self, read: Callable[[sqlite3.Connection], T]) -> list[T]:
        """``read`` on every local week, newest first (read-only connections)."""
        results: list[T] = []
        for label in reversed(self.labels()):
            try:
                conn = sqlite3.connect(
                    f"file:{self.path(label)}?mode=ro", uri=True, check_same_thread=False
                )
            except sqlite3.OperationalError:
                continue  # purged meanwhile
            try:
                results.append(read(conn))
            finally:
                conn.close()
        return results
