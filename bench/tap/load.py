"""Load benchmark for the tap server: accepted bets per second and latency percentiles.

Starts ``tradehall tap`` in a subprocess (sim feed, a fresh data directory, per-wallet limits
raised for the load, C-45) unless ``--url`` points at a running server; logs in ``--wallets``
wallets with real EIP-191 signatures, funds them through the admin endpoint, then runs
``--connections`` keep-alive HTTP/1.1 connections in a closed loop for ``--duration`` seconds,
each posting bets for its wallets on distinct placeable cells of the live grid.

The client is a minimal raw-socket HTTP/1.1 client on uvloop, so the load generator costs as
little CPU as possible on the shared 2-core machine. It prints accepted bets/s, the status mix and
p50/p95/p99/max latency of ``POST /api/bets``, and checks zero drift at the end.

``--redis URL`` (or ``--redis start``: a private server from ``tests/services.py``) runs the
servers with ``TRADEHALL_REDIS_URL``; ``--processes N`` (needs Redis) starts N ``tradehall tap``
processes on one data directory: the first with every job, the others with ``--jobs api``.
Wallets log in through the first, connection ``i`` posts to process ``i % N``, bets go on cells
placeable in every process's grid (each sim feed walks on its own), CPU is summed over all.

    .venv/bin/python bench/tap/load.py --duration 15 --connections 64 --wallets 400
    .venv/bin/python bench/tap/load.py --redis start --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from proc_cpu import children_cpu, process_cpu

ADMIN = "bench-admin"


class Conn:
    """One keep-alive HTTP/1.1 connection with just enough parsing for JSON responses."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None and self.reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        raw_head = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw_head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(data) if data else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Wallet:
    token: str
    used: set[str] = field(default_factory=set)


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    port: int,
    data_dir: Path,
    flush: str,
    batch: int,
    sync: str,
    redis_url: str = "",
    jobs: str = "all",
    prefix: str = "",
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRADEHALL_ADMIN_TOKEN": ADMIN,
        "TRADEHALL_BET_RATE_LIMIT": "1000000",
        "TRADEHALL_IP_RATE_LIMIT": "100000000",
        "TRADEHALL_BREAKER_RECOVERY": "0s",
        "TRADEHALL_FLUSH_INTERVAL": flush,
        "TRADEHALL_BATCH_SIZE": str(batch),
        "TRADEHALL_SQLITE_SYNCHRONOUS": sync,
        "TRADEHALL_LOG_LEVEL": "warn",
        "TRADEHALL_REDIS_URL": redis_url,
        "TRADEHALL_REDIS_PREFIX": prefix or "tap:",
        "TRADEHALL_JOBS": jobs,
    }
    exe = Path(sys.executable).with_name("tradehall")
    cmd = [str(exe), "tap", "--port", str(port), "--data-dir", str(data_dir)]
    return subprocess.Popen(cmd, env=env)


async def wait_healthy(host: str, port: int, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        conn = Conn(host, port)
        try:
            status, _ = await conn.request("GET", "/healthz")
            if status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        await asyncio.sleep(0.2)
    raise RuntimeError("server did not become healthy")


async def make_wallets(host: str, port: int, count: int, chain_id: int) -> list[Wallet]:
    conn = Conn(host, port)
    wallets = []
    for _ in range(count):
        account = Account.create()
        nonce, ts = uuid.uuid4().hex, int(time.time())
        text = "\n".join(
            (
                "Tap Trading Bet",
                "Action: login",
                "Cell: -",
                "Amount: 0",
                f"Nonce: {nonce}",
                f"Timestamp: {ts}",
                f"Chain: {chain_id}",
                "Version: 1",
            )
        )
        sig = "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()
        body = {
            "wallet": account.address,
            "nonce": nonce,
            "timestamp": ts,
            "chain_id": chain_id,
            "signature": sig,
        }
        status, resp = await conn.request("POST", "/api/auth/login", body)
        assert status == 200, resp
        token = resp["session_id"]
        status, resp = await conn.request(
            "POST",
            "/api/admin/deposit",
            {"wallet": account.address, "amount": 100_000_000},
            token=ADMIN,
        )
        assert status == 200, resp
        wallets.append(Wallet(token))
    conn.close()
    return wallets


async def grid_watcher(
    targets: list[tuple[str, int]], cells: list[list[str]], stop: asyncio.Event
) -> None:
    """Keep ``cells[0]`` = the cells placeable in every target's grid."""
    conns = [Conn(host, port) for host, port in targets]
    while not stop.is_set():
        common: set[str] | None = None
        order: list[str] = []
        for conn in conns:
            status, grid = await conn.request("GET", "/api/grid")
            if status != 200:
                common = None
                break
            placeable = [c["cell_id"] for c in grid["cells"] if c["placeable"]]
            order = order or placeable
            common = set(placeable) if common is None else common & set(placeable)
        if common is not None:
            cells[0] = [c for c in order if c in common]
        await asyncio.sleep(0.5)
    for conn in conns:
        conn.close()


async def worker(
    host: str,
    port: int,
    wallets: list[Wallet],
    cells: list[list[str]],
    stats: Stats,
    stop: asyncio.Event,
    rng: random.Random,
    interval: float = 0.0,
) -> None:
    """Post bets until ``stop``: back to back, or one every ``interval`` s (open loop).

    In the open loop a request's latency counts from when it was due, so a server that falls
    behind is charged for the wait (no coordinated omission).
    """
    conn = Conn(host, port)
    await conn.open()
    i = 0
    due = time.perf_counter() + rng.uniform(0, interval)
    while not stop.is_set():
        if interval:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        wallet = wallets[i % len(wallets)]
        i += 1
        body = bet_body(rng, cells[0], wallet)
        if body is None:  # this wallet has a bet on every open cell: let time open new columns
            await asyncio.sleep(0.05)
            continue
        started = due if interval else time.perf_counter()
        due += interval
        status, resp = await conn.request("POST", "/api/bets", body, wallet.token)
        stats.latencies.append(time.perf_counter() - started)
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        if status != 202 and isinstance(resp, dict):
            stats.errors[resp.get("error", "?")] = stats.errors.get(resp.get("error", "?"), 0) + 1
    conn.close()


async def print_batches(host: str, port: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    text = (await reader.read()).decode()
    writer.close()
    values = {}
    for line in text.splitlines():
        for name in (
            "batcher_flush_size_sum",
            "batcher_flush_size_count",
            "batcher_flush_seconds_sum",
        ):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("batcher_flush_size_count", 0.0)
    if count:
        size = values["batcher_flush_size_sum"] / count
        ms = values["batcher_flush_seconds_sum"] / count * 1000
        print(f"batches: {count:.0f}, mean size {size:.1f}, mean write {ms:.1f} ms")


def _cpu_split(pids: list[int]) -> tuple[float, float]:
    """CPU seconds of the ``pids`` themselves and of their live children."""
    table = process_cpu()
    own = sum(table[pid][1] for pid in pids if pid in table)
    return own, sum(children_cpu(pid, table) for pid in pids)


def integrity_check(data_dir: Path) -> str:
    """Run ``tradehall tap integrity-check`` on a stopped server's data and say what it found."""
    check = subprocess.run(
        [
            str(Path(sys.executable).with_name("tradehall")),
            "tap",
            "--data-dir",
            str(data_dir),
            "integrity-check",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"integrity check (exit {check.returncode}): {check.stdout.strip()}"


def bet_body(rng: random.Random, open_cells: list[str], wallet: Wallet) -> dict[str, Any] | None:
    """A $1 bet on a random open cell this wallet has not bet on yet (None: there is none)."""
    choices = [c for c in rng.sample(open_cells, min(8, len(open_cells))) if c not in wallet.used]
    if not choices:
        choices = [c for c in open_cells if c not in wallet.used]
    if not choices:
        return None
    wallet.used.add(choices[0])
    return {"cell_id": choices[0], "amount": 100, "nonce": uuid.uuid4().hex}


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run(args: argparse.Namespace) -> int:
    procs: list[subprocess.Popen[bytes]] = []
    data_dir = None
    if args.url:
        host, port = args.url.removeprefix("http://").split(":")
        targets = [(host, int(port))]
    else:
        host = "127.0.0.1"
        targets = [(host, free_port()) for _ in range(args.processes)]
        data_dir = Path(tempfile.mkdtemp(prefix="tap-bench-"))
        prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    try:
        for i, (_, port) in enumerate(targets if data_dir is not None else []):
            assert data_dir is not None
            procs.append(
                start_server(
                    port,
                    data_dir,
                    args.flush_interval,
                    args.batch_size,
                    args.synchronous,
                    args.redis or "",
                    "all" if i == 0 else "api",
                    prefix,
                )
            )
            await wait_healthy(host, port)  # one by one: the first creates the schema
        port_n = targets[0][1]
        setup = time.perf_counter()
        wallets = await make_wallets(host, port_n, args.wallets, args.chain_id)
        print(
            f"setup: {len(wallets)} wallets logged in and funded in "
            f"{time.perf_counter() - setup:.1f} s"
        )
        cells: list[list[str]] = [[]]
        stop = asyncio.Event()
        watcher = asyncio.create_task(grid_watcher(targets, cells, stop))
        for _ in range(200):
            if cells[0]:
                break
            await asyncio.sleep(0.05)
        # warm-up
        warm = Stats()
        interval = args.connections / args.rate if args.rate else 0.0
        per = max(1, len(wallets) // args.connections)
        groups = [wallets[i * per : (i + 1) * per] or wallets for i in range(args.connections)]
        warm_stop = asyncio.Event()
        tasks = [
            asyncio.create_task(
                worker(
                    *targets[i % len(targets)],
                    g,
                    cells,
                    warm,
                    warm_stop,
                    random.Random(i),
                    interval,
                )
            )
            for i, g in enumerate(groups)
        ]
        await asyncio.sleep(args.warmup)
        warm_stop.set()
        await asyncio.gather(*tasks)
        stats = Stats()
        tasks = [
            asyncio.create_task(
                worker(
                    *targets[i % len(targets)],
                    g,
                    cells,
                    stats,
                    stop,
                    random.Random(100 + i),
                    interval,
                )
            )
            for i, g in enumerate(groups)
        ]
        started = time.perf_counter()
        pids = [p.pid for p in procs]
        split0 = _cpu_split(pids) if procs else (0.0, 0.0)
        cpu_server0 = sum(split0)
        cpu_self0 = time.process_time()
        await asyncio.sleep(args.duration)
        stop.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        split1 = _cpu_split(pids) if procs else (0.0, 0.0)
        cpu_server = sum(split1) - cpu_server0
        cpu_self = time.process_time() - cpu_self0
        await watcher
        lat = sorted(stats.latencies)
        accepted = stats.statuses.get(202, 0)
        five_xx = sum(n for s, n in stats.statuses.items() if s >= 500)
        print(
            f"duration: {elapsed:.1f} s, connections: {args.connections}, "
            f"wallets: {len(wallets)}, offered: {args.rate or 'closed loop'}, "
            f"flush interval: {args.flush_interval}, "
            f"batch size: {args.batch_size}, synchronous: {args.synchronous}, "
            f"processes: {len(targets)}, backend: {'redis' if args.redis else 'in-process'}"
        )
        print(f"requests: {len(lat)} ({len(lat) / elapsed:.0f}/s)")
        print(f"accepted bets: {accepted} ({accepted / elapsed:.0f}/s)")
        print(f"status mix: {dict(sorted(stats.statuses.items()))} errors: {stats.errors}")
        print(f"5xx: {five_xx}")
        print(
            f"cpu: server + writer {cpu_server / elapsed:.2f} cores, "
            f"load generator {cpu_self / elapsed:.2f} cores"
        )
        if lat and procs:
            own = (split1[0] - split0[0]) / len(lat) * 1e6
            writer = (split1[1] - split0[1]) / len(lat) * 1e6
            print(
                f"server + writer cpu per request: {cpu_server / len(lat) * 1e6:.0f} us"
                f" (server process {own:.0f} us, writer process {writer:.0f} us)"
            )
        print(
            "latency ms: "
            f"p50 {pct(lat, 0.50) * 1000:.1f}  p95 {pct(lat, 0.95) * 1000:.1f}  "
            f"p99 {pct(lat, 0.99) * 1000:.1f}  max {lat[-1] * 1000:.1f}"
        )
        for target in targets:
            await print_batches(*target)
        if data_dir is not None and procs:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
            procs = []
            print(integrity_check(data_dir))
        return 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if data_dir is not None and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="use a running server (http://host:port)")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="open loop: bets/s offered in total (0: closed)"
    )
    parser.add_argument("--wallets", type=int, default=400)
    parser.add_argument("--chain-id", type=int, default=1)
    parser.add_argument("--flush-interval", default="20ms")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--redis", help="Redis URL for the servers, or 'start' (a private one)")
    parser.add_argument("--processes", type=int, default=1, help="API processes (N > 1: Redis)")
    args = parser.parse_args()
    if args.processes > 1 and not args.redis:
        parser.error("--processes > 1 needs --redis (sessions and limits must be shared)")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.redis == "start":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
        from services import start_redis

        with start_redis() as url:
            args.redis = url
            return asyncio.run(run(args))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
