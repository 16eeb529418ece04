"""Market-data fan-out benchmark: order throughput with 0 vs N WebSocket clients on one symbol.

    python bench/exchange/md_fanout.py --clients 0 100 --seconds 10 --connections 16

For each client count it starts a real ``tradehall exchange`` process (no journal, so the figure is
matching + HTTP + market data, not the disk), connects N ``/ws/market`` clients subscribed to
``book``, ``trades`` and ``ticker`` of one symbol (in a separate process, reading as fast as they
can), and drives ``POST /orders`` with wrk: alternating limit asks and crossing limit bids at the
same price, so every other order trades and every order changes the book. Printed per run:
orders/s, latency p50/p99, market-data messages delivered to all clients, slow-consumer
disconnects. wrk, the clients and the server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_bench import free_port, start_server

SYMBOL = "AAPL"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local ask = '{"type":"limit","broker_id":"seller","document_number":"1","side":"ask",' ..
  '"symbol":"AAPL","quantity":1,"price":100.00,"expires_at":"2030-01-01T00:00:00Z"}'
local bid = '{"type":"limit","broker_id":"buyer","document_number":"1","side":"bid",' ..
  '"symbol":"AAPL","quantity":1,"price":100.00,"expires_at":"2030-01-01T00:00:00Z"}'
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then return wrk.format(nil, nil, nil, bid) end
  return wrk.format(nil, nil, nil, ask)
end
done = function(summary, latency, requests)
  io.write(string.format("LATENCY p50=%.3f p99=%.3f\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


async def _clients(url: str, count: int, ready: Path, stop: Path, out: Path) -> None:
    import websockets

    received = [0] * count
    closes: list[str] = []

    async def one(i: int) -> None:
        async with websockets.connect(url, compression=None, max_size=None) as ws:
            await ws.send(json.dumps({"op": "subscribe", "symbol": SYMBOL}))
            try:
                async for frame in ws:  # count without parsing: the clients share the CPU
                    received[i] += str(frame).count('{"type"')
            except websockets.ConnectionClosed as exc:
                closes.append(f"{exc.rcvd.code if exc.rcvd else None}")

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.sleep(1)
    ready.touch()  # noqa: ASYNC240 -- files are the cross-process signals
    while not stop.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # let the tail arrive
    summary = {"messages": sum(received), "disconnects": len(closes)}
    out.write_text(json.dumps(summary))  # noqa: ASYNC240
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run(clients: int, connections: int, seconds: int) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: run bench/exchange/ensure_wrk.sh")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        proc = start_server(port, "memory", tmpdir)
        client_proc: subprocess.Popen[bytes] | None = None
        try:
            for broker, cash, qty in (("seller", 0, 10**9), ("buyer", 10**12, 0)):
                body: dict[str, object] = {"broker_id": broker, "initial_cash": cash}
                if qty:
                    body["initial_holdings"] = [{"symbol": SYMBOL, "quantity": qty}]
                httpx.post(f"{base}/brokers", json=body).raise_for_status()
            ready, stop, out = tmpdir / "ready", tmpdir / "stop", tmpdir / "out.json"
            if clients:
                client_proc = subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--serve-clients",
                        f"ws://127.0.0.1:{port}/ws/market",
                        str(clients),
                        str(tmpdir),
                    ]
                )
                deadline = time.monotonic() + 30
                while not ready.exists():
                    if time.monotonic() > deadline or client_proc.poll() is not None:
                        raise SystemExit("clients did not connect")
                    time.sleep(0.05)
            script = tmpdir / "cross.lua"
            script.write_text(LUA)
            result = subprocess.run(
                [
                    wrk,
                    "-t1",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "-s",
                    str(script),
                    base + "/orders",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            stats = {"messages": 0.0, "disconnects": 0.0}
            if client_proc is not None:
                stop.touch()
                client_proc.wait(timeout=60)
                stats = {k: float(v) for k, v in json.loads(out.read_text()).items()}
            state = httpx.get(f"{base}/admin/state").json()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            if client_proc is not None and client_proc.poll() is None:
                client_proc.kill()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", result).group(1))  # type: ignore[union-attr]
    latency = re.search(r"LATENCY p50=([\d.]+) p99=([\d.]+)", result)
    assert latency is not None, result
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result)
    return {
        "rps": rps,
        "p50": float(latency.group(1)),
        "p99": float(latency.group(2)),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
        "trades": float(state["trades"]),
        **stats,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-clients":
        url, count, tmp = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
        asyncio.run(_clients(url, count, tmp / "ready", tmp / "stop", tmp / "out.json"))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[0, 100])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    print(
        f"{'clients':>7} {'orders/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7}"
        f" {'trades':>8} {'md msgs':>10} {'md msgs/s':>10} {'dropped':>7}"
    )
    baseline = None
    for clients in args.clients:
        r = run(clients, args.connections, args.seconds)
        baseline = baseline or r["rps"]
        print(
            f"{clients:7d} {r['rps']:9.0f} {r['p50']:7.2f} {r['p99']:7.2f} {r['errors']:7.0f}"
            f" {r['trades']:8.0f} {r['messages']:10.0f} {r['messages'] / args.seconds:10.0f}"
            f" {r['disconnects']:7.0f}   ({r['rps'] / baseline - 1:+.1%} vs first row)",
            flush=True,
        )


if __name__ == "__main__":
    main()
