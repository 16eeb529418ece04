"""HTTP benchmarks of the Exchange with wrk: one command starts a server, loads it, prints figures.

    bash bench/exchange/ensure_wrk.sh
    python bench/exchange/http_bench.py resting --sync fsync --connections 16 --seconds 10
    python bench/exchange/http_bench.py crossing --sync none --seconds 30   # + per-second series
    python bench/exchange/http_bench.py book balance --sync memory

Scenarios (request bodies in the ``*.lua`` files beside this script):

- ``resting``: POST /orders, limit bids at 1.00 that never cross (every order rests).
  Body: ``{"type":"limit","broker_id":"bench","document_number":"B1","side":"bid",
  "symbol":"AAPL","quantity":1,"price":1.00,"expires_at":"2030-01-01T00:00:00Z"}``
- ``crossing``: POST /orders alternating a limit ask (broker ``seller``) and a limit bid (broker
  ``buyer``), quantity 1 at 100.00: every other order trades. Prints requests answered per second
  so a slowdown as trades accumulate shows.
- ``book``: GET /stocks/AAPL/book?depth=10 with 200 resting orders (100 bid and 100 ask levels).
- ``balance``: GET /brokers/bench/balance (a broker holding two symbols).
- ``healthz``: GET /healthz, a constant answer: the cost of the HTTP path itself.

The server runs as a real ``tradehall exchange`` process on a fresh data directory, with the
given journal sync policy (``fsync``, ``none``, or ``memory`` for no journal at all). wrk shares
the machine's cores with the server, as in the issue's reference figures. Besides wrk's figures,
each row gives the server's own CPU time per request (from /proc), which other load on the
machine skews far less than req/s; ``--src`` runs the server from another source tree (a
checkout of an older commit) to compare before/after in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx
from benchkit import cpu_seconds

HERE = Path(__file__).resolve().parent
JSON = {"Content-Type": "application/json"}


def _setup_resting(client: httpx.Client) -> None:
    client.post("/brokers", json={"broker_id": "bench", "initial_cash": 10**12}).raise_for_status()


def _setup_crossing(client: httpx.Client) -> None:
    seller = {
        "broker_id": "seller",
        "initial_cash": 0,
        "initial_holdings": [{"symbol": "AAPL", "quantity": 10**12}],
    }
    client.post("/brokers", json=seller).raise_for_status()
    client.post("/brokers", json={"broker_id": "buyer", "initial_cash": 10**12}).raise_for_status()


def _setup_book(client: httpx.Client) -> None:
    maker = {
        "broker_id": "maker",
        "initial_cash": 10**9,
        "initial_holdings": [{"symbol": "AAPL", "quantity": 10**6}],
    }
    client.post("/brokers", json=maker).raise_for_status()
    for i in range(100):  # 100 bid levels 1.00-1.99 and 100 ask levels 200.00-200.99
        for side, price in (("bid", f"1.{i:02d}"), ("ask", f"200.{i:02d}")):
            order = {
                "type": "limit",
                "broker_id": "maker",
                "document_number": "M1",
                "side": side,
                "symbol": "AAPL",
                "quantity": 10,
                "price": price,
                "expires_at": "2030-01-01T00:00:00Z",
            }
            body = json.dumps(order).replace(f'"{price}"', price)  # a JSON number, 2 decimals
            client.post("/orders", content=body, headers=JSON).raise_for_status()


def _setup_balance(client: httpx.Client) -> None:
    broker = {
        "broker_id": "bench",
        "initial_cash": 1000000,
        "initial_holdings": [
            {"symbol": "AAPL", "quantity": 500},
            {"symbol": "MSFT", "quantity": 300},
        ],
    }
    client.post("/brokers", json=broker).raise_for_status()


# scenario -> (set-up, wrk script, path)
SCENARIOS: dict[str, tuple[Callable[[httpx.Client], None], str, str]] = {
    "resting": (_setup_resting, "resting_bid.lua", "/orders"),
    "crossing": (_setup_crossing, "crossing.lua", "/orders"),
    "book": (_setup_book, "get_latency.lua", "/stocks/AAPL/book?depth=10"),
    "balance": (_setup_balance, "get_latency.lua", "/brokers/bench/balance"),
    "healthz": (lambda client: None, "get_latency.lua", "/healthz"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    port: int,
    sync: str,
    data_dir: Path,
    src: str | None,
    *,
    wrapper: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    ready_seconds: float = 20,
) -> subprocess.Popen[bytes]:
    """Start ``tradehall exchange`` on ``port`` and return once it answers /healthz.

    ``wrapper`` prefixes the command (e.g. valgrind), ``extra_env`` adds variables, and
    ``ready_seconds`` bounds the wait; each health probe may take a twentieth of it, so a server
    slowed down by a wrapper is not probed again before it answers the first probe.
    """
    env = {
        **os.environ,
        "TRADEHALL_LOG_LEVEL": "warn",
        "TRADEHALL_SNAPSHOT_EVERY": "0",
        **(extra_env or {}),
    }
    if src is not None:
        env["PYTHONPATH"] = src
    if sync == "memory":
        env["TRADEHALL_DATA_DIR"] = ":memory:"
    else:
        env["TRADEHALL_DATA_DIR"] = str(data_dir)
        env["TRADEHALL_JOURNAL_SYNC"] = sync
    proc = subprocess.Popen(
        [*wrapper, sys.executable, "-m", "tradehall", "exchange", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + ready_seconds
    probe = ready_seconds / 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=probe).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def run(
    scenario: str, sync: str, connections: int, seconds: int, src: str | None
) -> dict[str, object]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: run bench/exchange/ensure_wrk.sh")
    setup, script, path = SCENARIOS[scenario]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(port, sync, Path(tmp), src)
        try:
            with httpx.Client(base_url=base) as client:
                setup(client)
            cpu_before = cpu_seconds(proc.pid)
            command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(HERE / script)]
            out = subprocess.run(
                [*command, base + path], check=True, capture_output=True, text=True
            ).stdout
            cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    total = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    latency = re.search(r"LATENCY p50=([\d.]+) p99=([\d.]+)", out)
    assert total and rps and latency, out
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(total.group(1))
    series = [int(n) for _, n in re.findall(r"SECOND (\d+) (\d+)", out)]
    return {
        "rps": float(rps.group(1)),
        "p50_ms": float(latency.group(1)),
        "p99_ms": float(latency.group(2)),
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "cpu_us": cpu / max(requests, 1) * 1e6,
        "series": series[1:-1],  # the first and last seconds are partial
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+", choices=sorted(SCENARIOS))
    parser.add_argument("--sync", nargs="+", default=["none"], choices=["fsync", "none", "memory"])
    parser.add_argument("--connections", type=int, nargs="+", default=[16])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--src", help="run the server from this source directory (PYTHONPATH)")
    args = parser.parse_args()
    header = ("scenario", "sync", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx", "cpu µs/req")
    print("{:10} {:7} {:>5} {:>9} {:>8} {:>8} {:>8} {:>10}".format(*header), flush=True)
    for scenario in args.scenarios:
        for connections in args.connections:
            for sync in args.sync:
                r = run(scenario, sync, connections, args.seconds, args.src)
                print(
                    f"{scenario:10} {sync:7} {connections:5d} {r['rps']:9.0f} {r['p50_ms']:8.2f}"
                    f" {r['p99_ms']:8.2f} {r['errors']:8d} {r['cpu_us']:10.1f}",
                    flush=True,
                )
                series = r["series"]
                if series:
                    assert isinstance(series, list)
                    print(f"  per second: {' '.join(map(str, series))}")
                    half = len(series) // 2 or 1
                    first, last = series[:half], series[-half:]
                    ratio = (sum(last) / len(last)) / max(sum(first) / len(first), 1)
                    print(f"  second half / first half: {ratio:.2f}", flush=True)


if __name__ == "__main__":
    main()
