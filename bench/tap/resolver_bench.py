"""One resolver pass: event-loop CPU and the longest hold of the single writer.

Places ``--bets`` bets of ``--users`` users on the 20 bands of one column (the writer process, as
in the server), stores a tick every ``--tick-ms`` through the window, then times one
:func:`~tradehall.tap.resolver.settle_due` pass of up to 500 due bets: its wall time, the CPU of
this process (the event loop's share: reading, judging, building settlements) and the longest
single write it made, which is how long a bet batch queued behind it could wait. Run it with
``PYTHONPATH`` pointing at an older checkout to compare (``--chunk`` is ignored by code that has
no chunks).

    .venv/bin/python bench/tap/resolver_bench.py --bets 500 --users 500
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tradehall.tap import ledger, resolver
from tradehall.tap.db import Database

T = TypeVar("T")
NS = 1_000_000_000
COL = 1_790_000_000


class TimedDatabase(Database):
    """The real database, recording how long each write took."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, writer="process")
        self.write_times: list[float] = []

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        started = time.perf_counter()
        try:
            return await super().write(fn)
        finally:
            self.write_times.append(time.perf_counter() - started)


async def run(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="resolver-bench-"))
    db = TimedDatabase(directory / "tap.db")
    await db.open()
    try:
        users = []
        for u in range(args.users):
            user = await db.write(
                functools.partial(
                    ledger.deposit, wallet=f"0x{u:040x}", amount=10**9, now_ms=0, deposit_id=f"d{u}"
                )
            )
            users.append(user.id)

        def lower(i: int) -> int:  # every band; a user's bets on different bands
            return 6_000_000 + (i + i // len(users)) % 20 * 1_000

        bets = [
            ledger.BetRequest(
                f"bet-{i:06d}",
                users[i % len(users)],
                f"{COL}_{lower(i)}_{lower(i) + 1_000}",
                f"nonce-{i:06d}",
                100,
                "2.35",
                COL,
                COL + 10,
                lower(i),
                lower(i) + 1_000,
            )
            for i in range(args.bets)
        ]
        for start in range(0, len(bets), 100):
            await db.write(
                functools.partial(ledger.place_batch, bets=bets[start : start + 100], now_ms=0)
            )
        ticks = [
            (COL * 1000 + t, 6_000_000 + (t // args.tick_ms) % 50 * 100)  # bands 0-4 hit
            for t in range(-args.tick_ms, 10_000, args.tick_ms)
        ]
        await db.write(functools.partial(ledger.insert_ticks, ticks=ticks))
        db.write_times.clear()
        kwargs = {"now_ns": (COL + 12) * NS, "delay_s": 2, "max_gap_s": 10, "limit": 500}
        if "chunk" in inspect.signature(resolver.settle_due).parameters:
            kwargs["chunk"] = args.chunk
        wall0, cpu0 = time.perf_counter(), time.process_time()
        settled = await resolver.settle_due(db, **kwargs)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        won = sum(res.outcome.value == "won" for _, res, _ in settled)
        print(
            f"settled {len(settled)} ({won} won) of {args.bets} bets, {len(ticks)} ticks: pass"
            f" {wall * 1e3:.1f} ms wall, {cpu * 1e3:.1f} ms CPU in this process;"
            f" {len(db.write_times)} writes, longest {max(db.write_times) * 1e3:.1f} ms"
        )
    finally:
        await db.close()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bets", type=int, default=500)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--tick-ms", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
