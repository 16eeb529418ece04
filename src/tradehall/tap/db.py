"""SQLite access: one writer (a child process or a thread), one reader thread, WAL, FULL sync.

Part A §5 wants a single writer: every write (bets, deposits, ticks, resolutions, archival
rotation) runs as a function on the one write connection inside a dedicated process (the default,
:mod:`tradehall.tap.writerproc`) or thread, so writes are serialised without ``SQLITE_BUSY``
and the event loop never blocks on disk. Reads go to a second connection on its own thread; WAL
lets them run beside a write transaction.

``synchronous=FULL`` is the default (C-26: a commit is on disk before the bet is answered 202,
even across power loss); ``NORMAL`` is available for hosts whose fsync is too slow, at the cost of
the last commits on power loss (a process crash still loses nothing).

Writes use ``BEGIN IMMEDIATE`` with explicit ``COMMIT`` (``isolation_level=None``). The schema
follows the ADR-010/P1 plan with the C-5/C-7/C-20/C-32/C-35 fixes: bets carry their window, band,
nonce and resolution evidence; ``(user, cell)`` and ``(user, nonce)`` are unique; ledger
``(ref_type, ref_id)`` is unique. Times are integer milliseconds since the epoch; rates are decimal
strings (exact, unlike REAL). ``PRAGMA user_version`` holds the schema version; every writable
connection runs :func:`migrate`, which applies the missing steps of :data:`MIGRATIONS` in one
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tradehall.tap.writerproc import WriterProcess

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Database", "barrier", "connect", "migrate"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  wallet_address TEXT UNIQUE NOT NULL,
  balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
  version INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS transaction_ledger (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  amount INTEGER NOT NULL,
  balance_after INTEGER NOT NULL,
  ref_type TEXT NOT NULL,
  ref_id TEXT NOT NULL,
  metadata TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_ledger_user_time ON transaction_ledger(user_id, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS idx_ledger_ref ON transaction_ledger(ref_type, ref_id);
CREATE TABLE IF NOT EXISTS bets (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  cell_id TEXT NOT NULL,
  nonce TEXT NOT NULL,
  amount INTEGER NOT NULL CHECK (amount > 0),
  reward_rate TEXT NOT NULL,
  status TEXT NOT NULL,
  col_start INTEGER NOT NULL,
  col_end INTEGER NOT NULL,
  price_lower INTEGER NOT NULL,
  price_upper INTEGER NOT NULL,
  placed_at INTEGER NOT NULL,
  resolved_at INTEGER,
  payout_amount INTEGER,
  resolution_price INTEGER,
  resolution_tick_ts INTEGER,
  ticks_examined INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_bets_user_cell ON bets(user_id, cell_id)
  WHERE status <> 'insufficient_funds';
CREATE UNIQUE INDEX IF NOT EXISTS idx_bets_user_nonce ON bets(user_id, nonce);
CREATE INDEX IF NOT EXISTS idx_bets_open ON bets(col_end) WHERE status = 'confirmed';
CREATE TABLE IF NOT EXISTS prices (
  ts_ms INTEGER NOT NULL,
  price INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_prices_ts ON prices(ts_ms);
CREATE TABLE IF NOT EXISTS archives (
  week TEXT PRIMARY KEY,
  path TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  archived_at INTEGER NOT NULL,
  status TEXT NOT NULL
);
"""


SCHEMA_VERSION = 2  # PRAGMA user_version of a database that :func:`migrate` brought up to date

# Steps from one schema version to the next, applied in order by :func:`migrate`.
MIGRATIONS: dict[int, str] = {
    # 1 -> 2: bets(user_id, placed_at) was a fourth index with a random leaf per bet (every
    # batch of 100 wrote ~120 more WAL frames for it); the unique (user_id, nonce) index leads
    # with user_id too and serves the per-user history query (a user's hot bets, then sorted).
    2: "DROP INDEX IF EXISTS idx_bets_user;",
}


def migrate(conn: sqlite3.Connection) -> int:
    """Bring a writable database up to :data:`SCHEMA_VERSION`; returns the version found.

    A database created before versioning reads ``user_version`` 0 and is treated as version 1
    (the first schema). Each step runs in one ``BEGIN IMMEDIATE`` transaction with the version
    bump, so a crash leaves the old version or the new one, never half a step. A database newer
    than this code is refused rather than written with the wrong assumptions.
    """
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {found} is newer than this server's {SCHEMA_VERSION}"
        )
    if found == SCHEMA_VERSION:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = max(1, int(conn.execute("PRAGMA user_version").fetchone()[0]))
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def connect(
    path: Path | str, *, readonly: bool = False, synchronous: str = "FULL"
) -> sqlite3.Connection:
    """Open a connection with the project PRAGMAs (ADR-001, C-26); create the schema if writable."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    if not readonly:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only effective before tables exist
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not enable WAL (journal_mode={mode})")
        conn.executescript(SCHEMA)
        migrate(conn)
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError("synchronous must be FULL or NORMAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA cache_size=-64000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA mmap_size=268435456")
    return conn


WRITER_AUTOCHECKPOINT = 20_000  # pages; a fallback only, the checkpointer keeps the WAL short
CHECKPOINT_EVERY_S = 0.5


def start_checkpointer(path: Path | str, synchronous: str) -> threading.Event:
    """Checkpoint the WAL from a background thread so the writer's commits never pay for it.

    ``PASSIVE`` never blocks the writer or readers; it copies what it can. Returns an event that
    stops the thread when set.
    """
    stop = threading.Event()

    def run() -> None:
        conn = connect(path, synchronous=synchronous)
        try:
            while not stop.wait(CHECKPOINT_EVERY_S):
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()

    threading.Thread(target=run, name="tap-db-checkpointer", daemon=True).start()
    return stop


class Database:
    """The single write connection and one read connection.

    ``writer="thread"`` runs writes on a dedicated thread of this process. ``writer="process"``
    runs them in a dedicated child process (:class:`~tradehall.tap.writerproc.WriterProcess`), so
    SQLite's CPU work and fsync waits never contend with the event loop for the GIL (measured:
    batch writes 2-3x slower in a thread when the loop is busy). In process mode the functions
    passed to :meth:`write` must be picklable (module-level functions or ``functools.partial`` of
    them) and their results too. The child commits before answering, so an acknowledged write is
    on disk whatever happens to either process.
    """

    def __init__(
        self, path: Path | str, *, synchronous: str = "FULL", writer: str = "thread"
    ) -> None:
        if writer not in ("thread", "process"):
            raise ValueError("writer must be thread or process")
        self.path = Path(path)
        self.synchronous = synchronous
        self.writer = writer
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="tap-db-writer")
        self._process: WriterProcess | None = None
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="tap-db-reader")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._open = False
        self._checkpointer: threading.Event | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        if self.writer == "process":
            self._process = WriterProcess(self.path, self.synchronous)
            await self._process.start()
        else:
            self._write_conn = await loop.run_in_executor(
                self._writer_pool, lambda: connect(self.path, synchronous=self.synchronous)
            )
            await loop.run_in_executor(
                self._writer_pool,
                self._write_conn.execute,
                f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT}",
            )
            self._checkpointer = start_checkpointer(self.path, self.synchronous)
        self._read_conn = await loop.run_in_executor(
            self._reader_pool, lambda: connect(self.path, readonly=True)
        )
        self._open = True

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._read_conn is not None:
            await loop.run_in_executor(self._reader_pool, self._read_conn.close)
            self._read_conn = None
        if self._process is not None:
            await self._process.close()  # tolerates a dead writer
            self._process = None
        if self._write_conn is not None:
            await loop.run_in_executor(self._writer_pool, self._write_conn.close)
            self._write_conn = None
        self._open = False
        if self._checkpointer is not None:
            self._checkpointer.set()
            self._checkpointer = None
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the write connection, in the writer thread or process."""
        if not self._open:
            raise RuntimeError("database is not open")
        if self._process is not None:
            return await self._process.submit(fn)  # handed over before this first await
        conn = self._write_conn
        if conn is None:
            raise RuntimeError("database is not open")
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, fn, conn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the read connection, in the reader thread."""
        conn = self._read_conn
        if conn is None:
            raise RuntimeError("database is not open")
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, fn, conn)


def barrier(conn: sqlite3.Connection) -> None:
    """A write that does nothing: awaiting it waits for every earlier queued write."""
    return None
