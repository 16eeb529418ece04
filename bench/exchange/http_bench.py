"""HTTP benchmarks of the Exchange with wrk: one command starts a server, loads it, prints figures.

    python bench/exchange/http_bench.py resting --sync fsync --connections 16 --seconds 10

Scenarios (request bodies in the ``*.lua`` files beside this script):

- ``resting``: POST /orders, limit bids that never cross (every order rests).

The server runs as a real ``tradehall exchange`` process on a fresh data directory, with the
given journal sync policy (``fsync``, ``none``, or ``memory`` for no journal at all). wrk shares
the machine's cores with the server, as in the issue's reference figures. Needs ``wrk``
(Debian package ``wrk``; ``bench/exchange/ensure_wrk.sh`` installs it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
SCRIPTS = {"resting": "resting_bid.lua"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, sync: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRADEHALL_LOG_LEVEL": "warn", "TRADEHALL_SNAPSHOT_EVERY": "0"}
    if sync == "memory":
        env["TRADEHALL_DATA_DIR"] = ":memory:"
    else:
        env["TRADEHALL_DATA_DIR"] = str(data_dir)
        env["TRADEHALL_JOURNAL_SYNC"] = sync
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradehall", "exchange", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def run(scenario: str, sync: str, connections: int, seconds: int) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: run bench/exchange/ensure_wrk.sh")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(port, sync, Path(tmp))
        try:
            base = f"http://127.0.0.1:{port}"
            httpx.post(f"{base}/brokers", json={"broker_id": "bench", "initial_cash": 10**12})
            out = subprocess.run(
                [
                    wrk,
                    "-t1",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "-s",
                    str(HERE / SCRIPTS[scenario]),
                    base + "/orders",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = re.search(r"LATENCY p50=([\d.]+) p99=([\d.]+)", out)
    assert latency is not None, out
    p50, p99 = float(latency.group(1)), float(latency.group(2))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": float(non2xx.group(1)) if non2xx else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCRIPTS))
    parser.add_argument(
        "--sync", nargs="+", default=["fsync", "none"], choices=["fsync", "none", "memory"]
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[16])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    header = ("scenario", "sync", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx")
    print("{:10} {:7} {:>5} {:>9} {:>8} {:>8} {:>8}".format(*header))
    for connections in args.connections:
        for sync in args.sync:
            r = run(args.scenario, sync, connections, args.seconds)
            print(
                f"{args.scenario:10} {sync:7} {connections:5d} {r['rps']:9.0f} {r['p50_ms']:8.2f}"
                f" {r['p99_ms']:8.2f} {r['errors']:8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
