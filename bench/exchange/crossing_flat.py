"""Does the crossing flow stay flat as trades accumulate? The HTTP app in-process, no network.

    python bench/exchange/crossing_flat.py --orders 2000000 --chunk 100000

Drives the exchange's ASGI app (lean front, endpoints, service, engine, market data; no journal)
directly with the crossing scenario of ``http_bench.py`` -- a limit ask (``seller``) then a limit
bid (``buyer``), quantity 1 at 100.00, so every other order trades -- and prints the CPU time per
order for each chunk. Over HTTP, the per-second series swings with the load of a shared machine;
CPU time per chunk isolates the question whether anything grows with the trade count.
"""

from __future__ import annotations

import argparse
import time
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

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def main(orders: int, chunk: int) -> None:
    service = ExchangeService(ExchangeSettings(snapshot_every=0))
    app = create_app(service, manage_service=False)
    await service.start()
    seller = (
        b'{"broker_id":"seller","initial_cash":0,'
        b'"initial_holdings":[{"symbol":"AAPL","quantity":1000000000}]}'
    )
    assert await call(app, "/brokers", seller) == 201
    assert await call(app, "/brokers", b'{"broker_id":"buyer","initial_cash":10000000000}') == 201
    print(f"{'orders':>10} {'trades':>9} {'cpu µs/order':>13}", flush=True)
    done = 0
    while done < orders:
        started = time.process_time()
        for _ in range(chunk // 2):
            assert await call(app, "/orders", ASK) == 201
            assert await call(app, "/orders", BID) == 201
        done += chunk // 2 * 2
        per_order = (time.process_time() - started) / (chunk // 2 * 2) * 1e6
        print(f"{done:10d} {service.engine.trade_count:9d} {per_order:13.1f}", flush=True)
    await service.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    args = parser.parse_args()
    uvloop.run(main(args.orders, args.chunk))
