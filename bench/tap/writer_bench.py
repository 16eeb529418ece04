"""The writer's cost per bet batch on a filled database: wall time, CPU and WAL frames.

Runs :func:`tradehall.tap.ledger.place_batch` in this process (no server, no sockets) on a
fresh database holding ``--users`` funded users and ``--prefill`` bets, then times ``--batches``
batches of 100 bets from random users on random open cells. The WAL is truncated every 20 batches
outside the timed part, so each batch's WAL growth is exactly the frames its commit wrote: the
dirty pages, i.e. the random index leaves the bets touch. ``--schema v1`` adds back the index
that schema version 2 dropped (``bets(user_id, placed_at)``) to compare the two, and times the
per-user history query of a user with many bets, which version 2 answers from the unique
``(user_id, nonce)`` index.

    .venv/bin/python bench/tap/writer_bench.py --schema v1
    .venv/bin/python bench/tap/writer_bench.py --schema current
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from tradehall.tap import db, ledger
from tradehall.tap.ids import new_id

FRAME = 4096 + 24  # page size plus the WAL frame header
V1_INDEX = "CREATE INDEX idx_bets_user ON bets(user_id, placed_at)"


class Bets:
    """Random bets of 100 cents on the ten open columns of a 20-row grid."""

    def __init__(self, users: list[str], seed: int) -> None:
        self.users = users
        self.rng = random.Random(seed)

    def make(self, count: int, now_s: int, user: str | None = None) -> list[ledger.BetRequest]:
        out = []
        for _ in range(count):
            col = now_s - now_s % 10 + 20 + 10 * self.rng.randrange(10)
            lower = 1_000 * self.rng.randrange(20)
            out.append(
                ledger.BetRequest(
                    new_id(),
                    user or self.rng.choice(self.users),
                    f"{col}_{lower}_{lower + 1_000}",
                    uuid.UUID(int=self.rng.getrandbits(128)).hex,
                    100,
                    "1.5",
                    col,
                    col + 10,
                    lower,
                    lower + 1_000,
                )
            )
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="current", choices=["current", "v1"])
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--prefill", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--heavy-user-bets", type=int, default=5_000)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="writer-bench-"))
    try:
        conn = db.connect(directory / "tap.db", synchronous=args.synchronous)
        if args.schema == "v1":
            conn.execute(V1_INDEX)
        rng = random.Random(1)
        users = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(args.users)]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO users (id, wallet_address, balance, created_at, updated_at)"
            " VALUES (?, ?, ?, 0, 0)",
            [(u, f"0x{i:040x}", 10**12) for i, u in enumerate(users)],
        )
        conn.execute("COMMIT")
        bets = Bets(users, 2)
        start_s = 1_790_000_000
        for i in range(args.prefill // 100):  # 5 000 bets a second of simulated time
            now_s = start_s + i // 50
            ledger.place_batch(conn, bets.make(100, now_s), now_s * 1000)
        heavy = users[0]
        for i in range(args.heavy_user_bets // 100):
            now_s = start_s + i * 100  # ten columns later each time: fresh cells
            ledger.place_batch(conn, bets.make(100, now_s, heavy), now_s * 1000)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        wal = directory / "tap.db-wal"
        walls, cpus, frames = [], [], []
        now_s = start_s + args.prefill // 5_000
        for i in range(args.batches):
            now_s += 1 if i % 50 == 0 else 0
            batch = bets.make(100, now_s)
            before = wal.stat().st_size if wal.exists() else 0
            wall0, cpu0 = time.perf_counter(), time.process_time()
            ledger.place_batch(conn, batch, now_s * 1000)
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
            frames.append((wal.stat().st_size - before) / FRAME)
            if i % 20 == 19:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        walls.sort()
        n = len(walls)
        held = conn.execute("SELECT COUNT(*) FROM bets WHERE user_id = ?", (heavy,)).fetchone()[0]
        history0 = time.perf_counter()
        for _ in range(20):
            ledger.list_bets(conn, heavy, limit=100)
        history_ms = (time.perf_counter() - history0) / 20 * 1e3
        indexes = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bets'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        print(f"schema {args.schema}: bets indexes {', '.join(indexes)}")
        print(
            f"users {args.users}, bets in the database {args.prefill + args.heavy_user_bets},"
            f" synchronous {args.synchronous}, {n} batches of 100"
        )
        print(
            f"per batch: WAL frames {sum(frames) / n:.0f}, CPU {sum(cpus) / n * 1e3:.2f} ms,"
            f" wall p50 {walls[n // 2] * 1e3:.2f} p90 {walls[int(n * 0.9)] * 1e3:.2f} ms"
        )
        print(f"history (100 newest) of a user with {held} bets: {history_ms:.2f} ms")
        conn.close()
        return 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
