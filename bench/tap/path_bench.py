"""CPU cost of the bet request path, without sockets: ASGI calls straight into the tap app.

Wall-clock load figures on the shared 2-core machine swing by 2x from one minute to the next, so
this measures what changes in the code actually move: CPU seconds per bet in the server process
(event loop plus its helper threads) and in the SQLite writer process, for ``--bets`` bets sent
by ``--concurrency`` tasks through the full ASGI app (rate limit, session, validation, batcher,
commit, 202), each of ``--users`` users betting on distinct placeable cells. ``--profile`` prints
the top functions of the server process (cProfile, standard asyncio loop). ``--redis URL`` (or
``--redis start``: a private server from ``tests/services.py``) runs the Redis backend and prints
the Redis commands the run issued (``INFO commandstats``) per bet.

    .venv/bin/python bench/tap/path_bench.py --bets 20000 --concurrency 100 --users 2000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import msgspec
from proc_cpu import children_cpu

from tradehall.core.clock import SystemClock, VirtualClock
from tradehall.core.config import resolve
from tradehall.tap import ledger
from tradehall.tap.app import create_app
from tradehall.tap.cli import SETTINGS, build
from tradehall.tap.ids import new_id


async def command_stats(url: str) -> dict[str, int]:
    """Calls per Redis command so far (``INFO commandstats``)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        info = await client.info("commandstats")
    finally:
        await client.aclose()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="tap-path-"))
    values = resolve(
        SETTINGS,
        {
            "data_dir": str(data_dir),
            "price_source": "none",
            "breaker_recovery": "0s",
            "bet_rate_limit": "100000000",
            "ip_rate_limit": "100000000",
            "flush_interval": args.flush_interval,
            "batch_size": str(args.batch_size),
            "db_writer": args.writer,
            "redis_url": args.redis or "",
            "redis_prefix": f"bench-{uuid.uuid4().hex[:8]}:",
        },
        environ={},
    )
    service, hub = build(values, SystemClock())
    # the domain clock stands still so the grid does not move under the run (no cell closes);
    # the batch timer and the bet wait keep real time
    service.clock = VirtualClock(time.time_ns())
    app = create_app(service, hub, manage_service=False)
    await service.start(background=False)
    try:
        service.ingest_price(6_000_000)
        service.evaluate_breaker()
        await service.refresh_snapshot()
        tokens = []
        for i in range(args.users):
            wallet = f"0x{i:040x}"
            user = await service.db.write(
                functools.partial(
                    ledger.deposit, wallet=wallet, amount=10**10, now_ms=0, deposit_id=new_id()
                )
            )
            tokens.append((await service.sessions.create(user.id, wallet)).id)
        grid = service.grid_json()
        cells = [c["cell_id"] for c in grid["cells"] if c["placeable"]]
        per_user = min(len(cells), -(-args.bets // args.users))
        plan = [
            (tokens[i % args.users], cells[(i // args.users) % per_user]) for i in range(args.bets)
        ]
        random.Random(1).shuffle(plan)
        statuses: dict[int, int] = {}
        errors: dict[str, int] = {}
        latencies: list[float] = []

        async def one(token: str, cell: str) -> None:
            body = msgspec.json.encode({"cell_id": cell, "amount": 100, "nonce": uuid.uuid4().hex})
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/api/bets",
                "headers": [
                    (b"host", b"bench"),
                    (b"authorization", f"Bearer {token}".encode()),
                    (b"content-type", b"application/json"),
                ],
                "client": ("127.0.0.1", 1),
                "query_string": b"",
            }
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    await asyncio.Event().wait()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1

            started = time.perf_counter()
            await app(scope, receive, send)
            latencies.append(time.perf_counter() - started)

        queue = iter(plan)

        async def worker() -> None:
            for token, cell in queue:
                await one(token, cell)

        profiler = cProfile.Profile() if args.profile else None
        commands0 = await command_stats(args.redis) if args.redis else {}
        wall0, cpu0, child0 = time.perf_counter(), time.process_time(), children_cpu(os.getpid())
        if profiler is not None:
            profiler.enable()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        child = children_cpu(os.getpid()) - child0
        n = len(latencies)
        if args.redis:
            await service.balances.cache.flush()
            commands = await command_stats(args.redis)
            used = {k: v - commands0.get(k, 0) for k, v in commands.items()}
            per_bet = {k: round(v / n, 3) for k, v in sorted(used.items()) if v and k != "info"}
            print(f"redis commands per bet: {per_bet}")
            pipe = getattr(service.admission, "script", None)
            if pipe is not None and pipe.pipelines:
                print(
                    f"admission scripts: {pipe.calls} in {pipe.pipelines} pipelines "
                    f"({pipe.calls / pipe.pipelines:.1f} per pipeline)"
                )
        latencies.sort()
        print(f"bets: {n} in {wall:.2f} s ({n / wall:.0f}/s), statuses {statuses} {errors}")
        print(
            f"cpu per bet: server process {cpu / n * 1e6:.0f} us, writer process "
            f"{child / n * 1e6:.0f} us ({args.writer} writer)"
        )
        print(
            f"latency ms (in-process, no HTTP): p50 {latencies[n // 2] * 1000:.1f} "
            f"p99 {latencies[int(n * 0.99)] * 1000:.1f}; batches {service.batcher.flushes}"
        )
        if profiler is not None:
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumtime").print_stats("tradehall|redis/asyncio/client", 30)
    finally:
        await service.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bets", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--flush-interval", default="5ms")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--writer", default="process", choices=["process", "thread"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--redis", help="Redis URL, or 'start' for a private server")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    if args.redis == "start":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
        from services import start_redis

        with start_redis() as url:
            args.redis = url
            asyncio.run(run(args))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
