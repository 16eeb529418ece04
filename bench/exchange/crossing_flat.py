"""Does the crossing flow stay flat as trades accumulate? The HTTP app in-process, no network.

    python bench/exchange/crossing_flat.py --orders 2000000 --chunk 100000
    python bench/exchange/crossing_flat.py --orders 400000 --chunk 100000 --market-data both

Drives the exchange's ASGI app (lean front, endpoints, service, engine; no journal) directly with
the crossing scenario of ``http_bench.py`` -- a limit ask (``seller``) then a limit bid
(``buyer``), quantity 1 at 100.00, so every other order trades -- and prints the CPU time per
order for each chunk. Over HTTP, the per-second series swings with the load of a shared machine;
CPU time per chunk isolates the question whether anything grows with the trade count.

The app is started as ``tradehall exchange`` starts it, through its ASGI lifespan (service
recovery and start, then market data hooked into the command path: capture on every command,
release and the flush timer), so the figures include market data with no subscriber.
``--market-data off`` starts only the service instead, as this script did before, and ``both``
runs the two one after the other and prints both series. The driver yields to the event loop every
16 orders (as a server does between reads), so the market-data flush timer runs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import uvloop

from tradehall.exchange.app import create_app
from tradehall.exchange.fastroutes import FastRoutes
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

ASK = (
    b'{"type":"limit","broker_id":"seller","document_number":"S1","side":"ask",'
    b'"symbol":"AAPL","quantity":1,"price":100.00,"expires_at":"2030-01-01T00:00:00Z"}'
)
BID = ASK.replace(b'"seller"', b'"buyer"').replace(b'"ask"', b'"bid"')
YIELD_EVERY = 16


async def call(app: FastRoutes, path: str, body: bytes) -> int:
    """One POST through the ASGI app; returns the status."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


@asynccontextmanager
async def lifespan(app: FastRoutes) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan: startup before the body, shutdown after."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def send(message: MutableMapping[str, Any]) -> None:
        await outbox.put(message)

    task = asyncio.create_task(app(scope, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"app startup failed: {started}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def run(orders: int, chunk: int, market_data: bool) -> list[float]:
    """CPU µs per order for each chunk, printed as they come."""
    service = ExchangeService(ExchangeSettings(snapshot_every=0))
    if market_data:
        app = create_app(service)
        context = lifespan(app)
    else:
        app = create_app(service, manage_service=False)
        context = _service_only(service)
    series: list[float] = []
    async with context:
        hooked = service.on_executed is not None
        assert hooked == market_data, "market data hooked in only through the lifespan"
        seller = (
            b'{"broker_id":"seller","initial_cash":0,'
            b'"initial_holdings":[{"symbol":"AAPL","quantity":1000000000}]}'
        )
        assert await call(app, "/brokers", seller) == 201
        buyer = b'{"broker_id":"buyer","initial_cash":10000000000}'
        assert await call(app, "/brokers", buyer) == 201
        label = "market data on" if market_data else "market data off"
        print(f"{label}\n{'orders':>10} {'trades':>9} {'cpu µs/order':>13}", flush=True)
        done = 0
        while done < orders:
            started = time.process_time()
            for n in range(chunk // 2):
                assert await call(app, "/orders", ASK) == 201
                assert await call(app, "/orders", BID) == 201
                if n % (YIELD_EVERY // 2) == 0:
                    await asyncio.sleep(0)  # timers (the market-data flush) run, as in a server
            done += chunk // 2 * 2
            per_order = (time.process_time() - started) / (chunk // 2 * 2) * 1e6
            series.append(per_order)
            print(f"{done:10d} {service.engine.trade_count:9d} {per_order:13.1f}", flush=True)
    return series


@asynccontextmanager
async def _service_only(service: ExchangeService) -> AsyncIterator[None]:
    await service.start()
    try:
        yield
    finally:
        await service.stop()


async def main(orders: int, chunk: int, mode: str) -> None:
    runs = {"on": [True], "off": [False], "both": [False, True]}[mode]
    results = {market_data: await run(orders, chunk, market_data) for market_data in runs}
    if len(results) == 2:
        off, on = results[False], results[True]
        print("cpu µs/order per chunk, market data off -> on:")
        for i, (a, b) in enumerate(zip(off, on, strict=True), 1):
            print(f"  chunk {i}: {a:.1f} -> {b:.1f} ({b / a - 1:+.1%})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument(
        "--market-data",
        choices=["on", "off", "both"],
        default="on",
        help="start the app's lifespan (on, the default), only the service (off), or both",
    )
    args = parser.parse_args()
    uvloop.run(main(args.orders, args.chunk, args.market_data))
