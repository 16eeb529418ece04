"""SC-001/SC-011 end to end: 3 fake venues x 50 symbols, real adapters, dispatcher, 3 consumers.

The fake venues run in a **child process** (so the gateway's CPU time is its own); the gateway
process runs the production adapters, the dispatcher and the three consumers of
:mod:`tradehall.gateway.loadrun` (wildcard, per provider, 150 per-symbol subscriptions).

After every book is LIVE and a warm-up, it measures for ``--seconds``:

* events emitted by the adapters per second (the offered load) and deliveries per second;
* the gateway process's CPU time -> events per CPU-second (adapters + dispatcher + consumers);
* ingest -> consumer latency (``ts_ingest`` at the adapter to hand-over to the consumer) p50,
  p99, p99.9, max, over every delivery;

then it pauses the venues, drains, checks every delivery (order, trades exact, the rest
coalesced) and replays the measured window's real events through the synchronous dispatcher
core (reorder + routing + 3 queues + drain) for events per second per core *through the
dispatcher*.

With ``--via ws`` the three consumers are WebSocket clients of the gateway's ``/ws`` (in the same
process, so their JSON decoding costs the gateway's CPU too) and latency is measured when a
client has the frame (no delivery check in that mode).

    .venv/bin/python bench/gateway/e2e_bench.py [--seconds 10] [--interval 0.02] [--via ws]
        [--warmup 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import uvicorn
import websockets
from dispatch_bench import pump
from websockets.asyncio.client import ClientConnection

from tradehall.gateway.dispatcher import Dispatcher
from tradehall.gateway.events import Event
from tradehall.gateway.fakes.binance import FakeBinance
from tradehall.gateway.fakes.coinbase import FakeCoinbase
from tradehall.gateway.fakes.kraken import FakeKraken
from tradehall.gateway.loadrun import CONSUMERS, LoadRecorder, Received
from tradehall.gateway.service import VENUE_NAMES, GatewayConfig, GatewayService
from tradehall.gateway.symbols import UNIVERSE

SYMBOLS = tuple(f"{base}-USD" for base in UNIVERSE)


async def serve_fakes(interval: float) -> None:
    """Child mode: run the three fakes, print their URLs, pause on "pause", exit on EOF.

    The child lowers its own priority: the fakes stand in for venues on other machines, so on a
    shared 2-core box the gateway should not queue behind them for CPU.
    """
    os.nice(10)
    fakes = [cls(SYMBOLS, interval=interval) for cls in (FakeBinance, FakeCoinbase, FakeKraken)]
    for fake in fakes:
        await fake.start()
    binance, coinbase, kraken = fakes
    urls = {
        "binance_ws_url": binance.base_ws,
        "binance_rest_url": binance.base_http,
        "coinbase_ws_url": coinbase.base_ws,
        "kraken_ws_url": f"{kraken.base_ws}/v2",
    }
    print(json.dumps(urls), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "pause":
            for fake in fakes:
                fake.pause()
    for fake in fakes:
        await fake.stop()


def pct(values: list[int], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))] / 1e6


class _Frame(msgspec.Struct):
    ts_ingest: int = 0
    type: str = ""  # acks and errors have one; events do not


class WsClients:
    """The three load consumers as external clients of the gateway's ``/ws`` data bus."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.received = {name: Received() for name in CONSUMERS}
        self.measuring = False
        self._tasks: list[asyncio.Task[None]] = []
        self._sockets: list[ClientConnection] = []

    async def start(self) -> None:
        book_and_trades = ["book_snapshot", "book_update", "trade"]
        plans: dict[str, list[dict[str, object]]] = {
            "everything": [{"op": "subscribe"}],
            "by-provider": [
                {"op": "subscribe", "provider": p, "event_types": book_and_trades}
                for p in VENUE_NAMES
            ],
            "by-symbol": [
                {"op": "subscribe", "provider": p, "symbol": sym}
                for p in VENUE_NAMES
                for sym in SYMBOLS
            ],
        }
        for name, messages in plans.items():
            ws = await websockets.connect(f"{self.url}?consumer={name}", max_size=None)
            self._sockets.append(ws)
            for i, message in enumerate(messages):
                await ws.send(json.dumps({**message, "id": i}))
            acks = 0
            while acks < len(messages):
                acks += _decode(await ws.recv()).type == "ack"
            self._tasks.append(asyncio.create_task(self._read(ws, self.received[name])))

    async def _read(self, ws: ClientConnection, got: Received) -> None:
        async for frame in ws:
            msg = _decode(frame)
            if msg.type:
                continue
            got.count += 1
            if self.measuring:
                got.latencies_ns.append(time.time_ns() - msg.ts_ingest)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for ws in self._sockets:
            await ws.close()


_decoder = msgspec.json.Decoder(_Frame)


def _decode(frame: str | bytes) -> _Frame:
    return _decoder.decode(frame)


async def serve(service: GatewayService) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    server = uvicorn.Server(
        uvicorn.Config(service.app(), host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 -- a bench, polling is fine
        await asyncio.sleep(0.01)
    return server, task, server.servers[0].sockets[0].getsockname()[1]


async def run(seconds: float, interval: float, via: str, warmup: float = 3.0) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-fakes",
        "--interval",
        str(interval),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    urls = json.loads(await child.stdout.readline())
    recorder = LoadRecorder(VENUE_NAMES, SYMBOLS)
    window: list[Event] = []

    def on_event(event: Event) -> None:
        recorder.on_event(event)
        if recorder.measuring:
            window.append(event)

    config = GatewayConfig(venues=VENUE_NAMES, symbols=SYMBOLS, **urls)
    service = GatewayService(config, on_event)
    recorder.measuring = False
    clients: WsClients | None = None
    if via == "ws":
        server, server_task, port = await serve(service)
        clients = WsClients(f"ws://127.0.0.1:{port}/ws")
        await clients.start()
        received = clients.received
    else:
        recorder.attach(service.dispatcher)
        received = recorder.received
    await service.start()
    try:
        t0 = time.monotonic()

        def live() -> int:
            books = service.health()["books"].values()
            return sum(state == "LIVE" for per_venue in books for state in per_venue.values())

        while live() < 150:  # noqa: ASYNC110 -- a bench, polling is fine
            await asyncio.sleep(0.1)
        print(f"150 books LIVE after {time.monotonic() - t0:.1f}s; warming up {warmup:g}s")
        await asyncio.sleep(warmup)
        core = service.dispatcher.core
        emitted0, ingested0 = recorder.emitted_count, core.ingested
        delivered0 = sum(r.count for r in received.values())
        gc.collect()
        recorder.measuring = True
        if clients is not None:
            clients.measuring = True
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        recorder.measuring = False
        if clients is not None:
            clients.measuring = False
        emitted = recorder.emitted_count - emitted0
        ingested = core.ingested - ingested0
        delivered = sum(r.count for r in received.values()) - delivered0
        child.stdin.write(b"pause\n")
        await child.stdin.drain()
        last = -1
        while recorder.emitted_count != last or recorder.pending() or core.reorderer.buffered:
            last = recorder.emitted_count
            await asyncio.sleep(0.5)
        problems = recorder.verify() if clients is None else ["not checked over /ws"]
        coalesced = {
            n: c.queue.stats.coalesced
            for n, c in service.dispatcher.consumers.items()
            if n in CONSUMERS
        }
    finally:
        await recorder.stop()
        if clients is not None:
            await clients.stop()
            server.should_exit = True
            await server_task
        await service.stop()
        child.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), 10)
        if child.returncode is None:
            child.kill()
    lat = sorted(x for r in received.values() for x in r.latencies_ns)
    print(
        f"window {wall:.1f}s: adapters emitted {emitted:,} events ({emitted / wall:,.0f}/s), "
        f"dispatcher ingested {ingested:,}, {delivered:,} deliveries to 3 consumers via {via} "
        f"({delivered / wall:,.0f}/s)"
    )
    print(
        f"gateway process CPU {cpu:.2f}s ({cpu / wall:.2f} cores): "
        f"{ingested / cpu:,.0f} events in per CPU-second (adapters + dispatcher + consumers)"
    )
    print(
        f"ingest -> consumer latency ms over {len(lat):,} deliveries: p50={pct(lat, 0.5):.3f} "
        f"p99={pct(lat, 0.99):.3f} p99.9={pct(lat, 0.999):.3f} max={lat[-1] / 1e6:.3f}"
    )
    print(
        f"check: {len(problems)} problems {problems[:3]}; coalesced {coalesced}; "
        f"reorder {core.reorderer.stats}; dead letters={core.dead_letters.total}"
    )
    replay(window)


def replay(events: list[Event]) -> None:
    """The measured window's events through the synchronous dispatcher core, CPU-timed."""
    d = Dispatcher()
    queues = [d.fanout.add_consumer(n, capacity=100_000) for n in CONSUMERS]
    d.fanout.subscribe("everything")
    for provider in VENUE_NAMES:
        d.fanout.subscribe(
            "by-provider", provider=provider, event_types=["book_snapshot", "book_update", "trade"]
        )
        for symbol in SYMBOLS:
            d.fanout.subscribe("by-symbol", provider=provider, symbol=symbol)
    gc.collect()
    cpu0 = time.process_time()
    delivered = pump(d, queues, events)
    d.tick(10.0)
    for q in queues:
        while q.pop(10.0) is not None:
            delivered += 1
    cpu = time.process_time() - cpu0
    print(
        f"replay through the dispatcher core: {len(events):,} real events, {delivered:,} "
        f"deliveries, {len(events) / cpu:,.0f} events/s per core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.02, help="fake market tick period")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds live before measuring")
    parser.add_argument(
        "--via",
        choices=("inproc", "ws"),
        default="inproc",
        help="consumers in process (async iterators) or as /ws WebSocket clients",
    )
    parser.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    if args.serve_fakes:
        runner(serve_fakes(args.interval))
    else:
        runner(run(args.seconds, args.interval, args.via, args.warmup))


if __name__ == "__main__":
    main()
