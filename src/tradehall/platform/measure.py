"""Separate processes or one process? The measurement behind ``tradehall up``'s design.

``python -m tradehall.platform.measure`` runs the platform (simulated venues, no bots) twice --
as ``tradehall up``'s separate processes, and with the Exchange, Gateway and Tap servers in one
process and one event loop (``--serve-one``) -- and drives both identically for ``--seconds``:

* exchange load: ``--rate`` orders per second offered (a limit bid far below the market, then
  its cancel: two requests), latency of each request;
* the Tap: ``GET /api/grid`` every 50 ms, latency;
* the Gateway: one ``/ws`` consumer of every venue's BTC-USD events, delivery latency
  (receive time minus the event's ``ts_ingest``);
* CPU: CPU-seconds used by the platform's process tree per wall second (cores busy).

It prints one JSON object per mode. Figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import httpx
import websockets

from tradehall.platform.bots import DEFAULT_LISTINGS, seed_listings

__all__ = ["main"]

_TICK = os.sysconf("SC_CLK_TCK")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


def _tree_cpu(pid: int) -> float:
    """CPU-seconds (user + system) of ``pid`` and all its descendants (from ``/proc/*/stat``)."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    children: dict[int, list[int]] = {}
    for child, (parent, _) in stats.items():
        children.setdefault(parent, []).append(child)
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += stats.get(current, (0, 0.0))[1]
        stack.extend(children.get(current, []))
    return total


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


# -- the one-process variant -------------------------------------------------------------------


async def _serve_one(ports: list[int], data_dir: Path) -> None:
    import uvicorn

    from tradehall.core.config import resolve
    from tradehall.exchange import cli as exchange_cli
    from tradehall.exchange.app import create_app as exchange_app
    from tradehall.exchange.service import ExchangeService
    from tradehall.gateway import cli as gateway_cli
    from tradehall.gateway.service import GatewayService
    from tradehall.tap import cli as tap_cli
    from tradehall.tap.app import create_app as tap_app

    ex_port, gw_port, tap_port = ports
    ex_args = argparse.Namespace(port=str(ex_port), data_dir=str(data_dir / "exchange"))
    exchange = ExchangeService(exchange_cli.load_settings(ex_args))
    gw_values = resolve(
        [gateway_cli.SIM, *gateway_cli.SETTINGS],
        {"sim": "true", "port": str(gw_port), "print_events": "false",
         "tradehall_url": f"http://127.0.0.1:{ex_port}"},
    )  # fmt: skip
    gateway = GatewayService(gateway_cli.build_config(gw_values))
    tap_values = resolve(
        tap_cli.SETTINGS,
        {"port": str(tap_port), "data_dir": str(data_dir / "tap"), "price_source": "gateway",
         "gateway_url": f"ws://127.0.0.1:{gw_port}/ws", "gateway_provider": "coinbase"},
    )  # fmt: skip
    tap, hub = tap_cli.build(tap_values)

    def server(app: Any, port: int, lifespan: Literal["on", "off"]) -> uvicorn.Server:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
            lifespan=lifespan, loop="none",
        )  # fmt: skip
        return uvicorn.Server(config)

    servers = [server(exchange_app(exchange), ex_port, "on")]
    tasks = [asyncio.create_task(servers[0].serve())]
    while not servers[0].started:  # noqa: ASYNC110 -- uvicorn has no startup event
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ex_port}") as http:
        await seed_listings(http, DEFAULT_LISTINGS)
    await gateway.start()
    servers += [server(gateway.app(), gw_port, "off"), server(tap_app(tap, hub), tap_port, "on")]
    tasks += [asyncio.create_task(s.serve()) for s in servers[1:]]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    for s in servers:
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await gateway.stop()


# -- the driver --------------------------------------------------------------------------------


async def _ready(url: str, deadline: float) -> None:
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


async def _exchange_load(base: str, rate: float, until: float, lat: list[float]) -> int:
    sent = 0
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as http:
        r = await http.post("/brokers", json={"broker_id": "measure", "initial_cash": 1e9})
        if r.status_code not in (201, 409):
            raise RuntimeError(r.text)
        period, nxt = 1.0 / rate, time.monotonic()
        pending: set[asyncio.Task[None]] = set()

        async def one(n: int) -> None:
            with contextlib.suppress(httpx.TransportError):
                await place_and_cancel(n)

        async def place_and_cancel(n: int) -> None:
            t0 = time.perf_counter()
            r = await http.post("/orders", json={
                "type": "limit", "broker_id": "measure", "document_number": str(n),
                "side": "bid", "symbol": "BTCUSD", "quantity": 1, "price": 100.0,
                "expires_at": "2030-01-01T00:00:00Z"})  # fmt: skip
            lat.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await http.delete(f"/orders/{r.json()['order_id']}")
            lat.append(time.perf_counter() - t0)

        while time.monotonic() < until:
            task = asyncio.create_task(one(sent))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        await asyncio.gather(*pending, return_exceptions=True)
    return sent


async def _tap_probe(base: str, until: float, lat: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as http:
        while time.monotonic() < until:
            t0 = time.perf_counter()
            with contextlib.suppress(httpx.TransportError):  # an idle keep-alive closed: retry
                await http.get("/api/grid")
                lat.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)


async def _gateway_probe(url: str, until: float, lat: list[float]) -> None:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "symbol": "BTC-USD", "id": 1}))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(until - time.monotonic()):
                async for frame in ws:
                    now = time.time_ns()
                    event = json.loads(frame)
                    if "ts_ingest" in event:
                        lat.append((now - int(event["ts_ingest"])) / 1e9)


async def _measure(mode: str, seconds: float, rate: float) -> dict[str, Any]:
    ports = _free_ports(3)
    ex, gw, tp = (f"http://127.0.0.1:{p}" for p in ports)
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "processes":
            argv = ["-m", "tradehall", "up", "--sim", "--no-bots", "--data-dir", tmp,
                    "--exchange-port", str(ports[0]), "--gateway-port", str(ports[1]),
                    "--tap-port", str(ports[2])]  # fmt: skip
        else:
            argv = ["-m", "tradehall.platform.measure", "--serve-one", ",".join(map(str, ports)),
                    "--data-dir", tmp]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            for url in (f"{ex}/stocks/BTCUSD/book", f"{gw}/healthz", f"{tp}/version"):
                await _ready(url, deadline)
            await asyncio.sleep(3.0)  # warm-up: books live, tap feed running
            ex_lat: list[float] = []
            tap_lat: list[float] = []
            gw_lat: list[float] = []
            cpu0, t0 = _tree_cpu(proc.pid), time.monotonic()
            until = t0 + seconds
            sent, *_ = await asyncio.gather(
                _exchange_load(ex, rate, until, ex_lat),
                _tap_probe(tp, until, tap_lat),
                _gateway_probe(f"ws://127.0.0.1:{ports[1]}/ws", until, gw_lat),
            )
            cpu = (_tree_cpu(proc.pid) - cpu0) / (time.monotonic() - t0)
        finally:
            proc.send_signal(signal.SIGINT)
            await proc.wait()
    return {
        "mode": mode,
        "orders_per_s_offered": rate,
        "orders_sent": sent,
        "exchange_ms_p50": _pct(ex_lat, 0.5),
        "exchange_ms_p99": _pct(ex_lat, 0.99),
        "tap_grid_ms_p50": _pct(tap_lat, 0.5),
        "tap_grid_ms_p99": _pct(tap_lat, 0.99),
        "gateway_events": len(gw_lat),
        "gateway_ms_p50": _pct(gw_lat, 0.5),
        "gateway_ms_p99": _pct(gw_lat, 0.99),
        "platform_cores_busy": round(cpu, 2),
        "driver_load_avg": round(os.getloadavg()[0], 2),
        "samples": {"exchange": len(ex_lat), "tap": len(tap_lat), "gw_mean_ms": round(
            statistics.fmean(gw_lat) * 1000, 2) if gw_lat else None},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the comparison (or, with ``--serve-one``, the one-process platform)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0, help="orders/s offered")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--serve-one", default="", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_one:
        ports = [int(p) for p in args.serve_one.split(",")]
        asyncio.run(_serve_one(ports, Path(args.data_dir)))
        return 0
    os.environ["TRADEHALL_JOURNAL_SYNC"] = "none"  # compare CPU and scheduling, not the disk
    for _ in range(args.rounds):
        for mode in ("processes", "one-process"):
            print(json.dumps(asyncio.run(_measure(mode, args.seconds, args.rate))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
