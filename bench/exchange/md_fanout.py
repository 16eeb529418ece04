"""Market-data fan-out benchmark: order throughput with 0 vs N WebSocket clients on one symbol.

    python bench/exchange/md_fanout.py --clients 0 100 --seconds 10 --connections 16

For each client count it starts a real ``tradehall exchange`` process (no journal, so the figure is
matching + HTTP + market data, not the disk), connects N ``/ws/market`` clients subscribed to
``book``, ``trades`` and ``ticker`` of one symbol (in a separate process, reading as fast as they
can), and drives ``POST /orders`` with wrk: alternating limit asks and crossing limit bids at the
same price, so every other order trades and every order changes the book. Printed per run:
orders/s, latency p50/p99, market-data messages delivered to all clients, slow-consumer
disconnects. wrk, the clients and the server share the machine's cores.

    python bench/exchange/md_fanout.py --inproc --clients 0 100 --seconds 10

``--inproc`` measures matching throughput without HTTP: the server (uvicorn on uvloop) runs in
this process and a driver on the same event loop submits the same ask/crossing-bid pairs straight
to the service, 16 commands per loop iteration, so the fan-out (capture, flush, 100 writers on
real sockets) competes with matching for the one loop exactly as in production.

``--rate N`` paces that driver to N commands/s (default: as fast as the loop lets it).

``--repeat N`` alternates the client counts N times and prints the median per count, because
on a shared 2-core machine single runs vary by tens of percent.

``--src DIR`` runs the exchange from another source tree (e.g. a ``git worktree`` of an older
commit, for a before/after in one session): the server process over HTTP gets
``PYTHONPATH=DIR``; for ``--inproc`` set ``PYTHONPATH`` yourself, the server is this process.
The ``dropped`` column counts clients the server disconnected (slow consumer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import cpu_seconds
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


def run(clients: int, connections: int, seconds: int, src: str | None = None) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: run bench/exchange/ensure_wrk.sh")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        proc = start_server(port, "memory", tmpdir, src)
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
            cpu = cpu_seconds(proc.pid)
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
            cpu = cpu_seconds(proc.pid) - cpu
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
        "per_cpu": rps * seconds / cpu,
        "p50": float(latency.group(1)),
        "p99": float(latency.group(2)),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
        "trades": float(state["trades"]),
        **stats,
    }


def run_inproc(
    clients: int, seconds: int, flush_ms: float | None = None, rate: float = 0.0
) -> dict[str, float]:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(_inproc(clients, seconds, flush_ms, rate))


async def _inproc(
    clients: int, seconds: int, flush_ms: float | None, rate: float
) -> dict[str, float]:
    import uvicorn

    from tradehall.exchange import requests as rq
    from tradehall.exchange.app import create_app
    from tradehall.exchange.service import ExchangeService
    from tradehall.exchange.settings import ExchangeSettings

    service = ExchangeService(ExchangeSettings())
    port = free_port()
    config = uvicorn.Config(
        create_app(service), host="127.0.0.1", port=port, log_level="error", http="httptools"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 -- uvicorn has no startup event
        await asyncio.sleep(0.01)
    if flush_ms is not None:
        hub = getattr(service.on_executed, "__self__")  # noqa: B009 -- the bound hook's hub
        hub.min_interval, hub.per_client = flush_ms / 1000, 0.0
    holdings = [{"symbol": SYMBOL, "quantity": 10**9}]
    service.register_broker(
        rq.parse_broker({"broker_id": "seller", "initial_cash": 0, "initial_holdings": holdings})
    )
    service.register_broker(rq.parse_broker({"broker_id": "buyer", "initial_cash": 10**12}))
    order = {"type": "limit", "document_number": "1", "symbol": SYMBOL, "quantity": 1}
    order |= {"price": 100, "expires_at": "2030-01-01T00:00:00Z"}
    ask = rq.parse_order({**order, "broker_id": "seller", "side": "ask"})
    bid = rq.parse_order({**order, "broker_id": "buyer", "side": "bid"})
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        proc = None
        if clients:
            url = f"ws://127.0.0.1:{port}/ws/market"
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--serve-clients", url, str(clients), tmp
            )
            while not (tmpdir / "ready").exists():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        commands = 0
        cpu = time.process_time()
        started = loop.time()
        end = started + seconds
        while (now := loop.time()) < end:
            if rate and commands > (now - started) * rate:
                await asyncio.sleep(16 / rate)  # ahead of the pace: let the loop do the rest
                continue
            for _ in range(8):
                service.submit(ask)
                service.submit(bid)
            commands += 16
            await asyncio.sleep(0)
        elapsed = loop.time() - started
        cpu = time.process_time() - cpu
        stats = {"messages": 0.0, "disconnects": 0.0}
        if proc is not None:
            (tmpdir / "stop").touch()
            await proc.wait()
            out = (tmpdir / "out.json").read_text()
            stats = {k: float(v) for k, v in json.loads(out).items()}
    server.should_exit = True
    await task
    return {
        "rps": commands / elapsed,
        "per_cpu": commands / cpu,
        "trades": float(service.engine.trade_count),
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
    parser.add_argument("--inproc", action="store_true", help="no HTTP: drive the service")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="--inproc: commands/s (0: max)")
    parser.add_argument("--src", help="run the HTTP server from this source tree")
    args = parser.parse_args()
    print(
        f"{'clients':>7} {'orders/s':>9} {'/cpu-s':>7} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7}"
        f" {'trades':>8} {'md msgs':>10} {'md msgs/s':>10} {'dropped':>7}"
    )
    rates: dict[int, list[float]] = {c: [] for c in args.clients}
    per_cpu: dict[int, list[float]] = {c: [] for c in args.clients}
    for _ in range(args.repeat):
        for clients in args.clients:
            if args.inproc:
                r = run_inproc(clients, args.seconds, rate=args.rate)
            else:
                r = run(clients, args.connections, args.seconds, args.src)
            rates[clients].append(r["rps"])
            per_cpu[clients].append(r["per_cpu"])
            # --inproc has no HTTP requests: no latency or status to show (not zeros)
            http = (
                f"{'-':>7} {'-':>7} {'-':>7}"
                if args.inproc
                else f"{r['p50']:7.2f} {r['p99']:7.2f} {r['errors']:7.0f}"
            )
            print(
                f"{clients:7d} {r['rps']:9.0f} {r['per_cpu']:7.0f} {http}"
                f" {r['trades']:8.0f} {r['messages']:10.0f}"
                f" {r['messages'] / args.seconds:10.0f} {r['disconnects']:7.0f}",
                flush=True,
            )
    mode = "commands" if args.inproc else "orders"
    for label, series in ((f"{mode}/s", rates), (f"{mode} per server CPU-second", per_cpu)):
        medians = {c: statistics.median(v) for c, v in series.items()}
        first = medians[args.clients[0]]
        for clients, median in medians.items():
            change = median / first - 1
            print(f"median {label} with {clients:3d} clients: {median:8.0f} ({change:+.1%})")


if __name__ == "__main__":
    main()
