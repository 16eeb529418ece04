"""Dispatcher throughput and ingest -> consumer latency (SC-001 / SC-011 shape).

3 providers x 50 symbols (binance book diffs + dense trades, coinbase trades + tickers, kraken
book diffs + tickers: 15 stream kinds x 50 symbols), 3 consumers: one subscribed to everything
by wildcard, one per provider, one per symbol (150 subscriptions). Events are built beforehand.

1. ``core``: the synchronous :class:`Dispatcher` (reorder + routing + queues), each consumer's
   queue drained after every batch of 100; rate = events ingested per second of process CPU time.
2. ``async``: the :class:`AsyncDispatcher` on the real event loop (uvloop if installed) with three
   async-iterator consumers; the producer publishes bursts of ``--burst`` events every
   ``--period`` (default 100 events / 2 ms = 50k events/s) and yields; latency is measured from
   ``publish`` to the consumer's ``__anext__`` returning, per delivered event (x3 consumers).

    .venv/bin/python bench/gateway/dispatch_bench.py [--events 300000] [--burst 100 --period 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from tradehall.gateway.dispatcher import AsyncDispatcher, Dispatcher
from tradehall.gateway.events import BookSnapshot, BookUpdate, Event, Side, Ticker, Trade
from tradehall.gateway.fanout import ConsumerQueue

PROVIDERS = ("binance", "coinbase", "kraken")
SYMBOLS = tuple(f"S{i:02d}-USD" for i in range(50))


def build(n: int) -> tuple[list[Event], list[Event]]:
    """(warm-up events: one snapshot and one trade per stream start, the measured events)."""
    warm: list[Event] = []
    seq: dict[tuple[str, str, str], int] = {}
    ids = iter(range(10**9))
    price, qty = Decimal("100.25"), Decimal("0.5")
    for provider in PROVIDERS:
        for symbol in SYMBOLS:
            warm.append(
                BookSnapshot(
                    event_id=str(next(ids)),
                    provider=provider,
                    symbol=symbol,
                    seq_provider=1000 if provider == "binance" else None,
                    ts_ingest=0,
                    bids=((price, qty),),
                    asks=((price + 1, qty),),
                    depth=1,
                    epoch=1,
                )
            )
            seq[(provider, symbol, "book")] = 1000
            seq[(provider, symbol, "trade")] = 0
    events: list[Event] = []
    i = 0
    while len(events) < n:
        provider = PROVIDERS[i % 3]
        symbol = SYMBOLS[(i // 3) % 50]
        kind = (i // 150) % 3
        i += 1
        eid = str(next(ids))
        if (provider == "binance" and kind < 2) or (provider == "kraken" and kind == 0):
            key = (provider, symbol, "book")
            s = seq[key] = seq[key] + 1
            events.append(
                BookUpdate(
                    event_id=eid,
                    provider=provider,
                    symbol=symbol,
                    seq_provider=s if provider == "binance" else None,
                    seq_first=s if provider == "binance" else None,
                    ts_ingest=0,
                    bids=((price, qty),),
                    asks=(),
                    epoch=1,
                )
            )
        elif (provider == "coinbase" and kind < 2) or provider == "binance":
            key = (provider, symbol, "trade")
            s = seq[key] = seq[key] + 1
            trade = Trade(
                event_id=eid,
                provider=provider,
                symbol=symbol,
                seq_provider=s,
                ts_ingest=0,
                price=price,
                qty=qty,
                side=Side.BUY,
                trade_id=str(s),
            )
            if s == 1:
                warm.append(trade)  # a dense stream's start waits out the lateness once
            else:
                events.append(trade)
        else:
            events.append(
                Ticker(
                    event_id=eid,
                    provider=provider,
                    symbol=symbol,
                    seq_provider=i,
                    ts_ingest=0,
                    bid=price,
                    bid_qty=qty,
                    ask=price + 1,
                    ask_qty=qty,
                )
            )
    return warm, events


def pump(d: Dispatcher, queues: list[ConsumerQueue], events: list[Event]) -> int:
    """Ingest ``events`` 100 at a time, draining every queue after each batch; the deliveries."""
    delivered = 0
    for start in range(0, len(events), 100):
        for event in events[start : start + 100]:
            d.ingest(event, 1.0)
        for q in queues:
            while q.pop(1.0) is not None:
                delivered += 1
    return delivered


def core_bench(warm: list[Event], events: list[Event]) -> None:
    d = Dispatcher()
    queues = [d.fanout.add_consumer(n, capacity=100_000) for n in ("all", "per_venue", "per_sym")]
    d.fanout.subscribe("all")
    for provider in PROVIDERS:
        d.fanout.subscribe("per_venue", provider=provider)
    for provider in PROVIDERS:
        for symbol in SYMBOLS:
            d.fanout.subscribe("per_sym", provider=provider, symbol=symbol)
    for event in warm:
        d.ingest(event, 0.0)
    d.tick(1.0)
    for q in queues:
        while q.pop(1.0) is not None:
            pass
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    delivered = pump(d, queues, events)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(
        f"core: {len(events):,} events in, {delivered:,} deliveries (3 consumers): "
        f"{len(events) / cpu:,.0f} events/s per core ({len(events) / wall:,.0f}/s wall), "
        f"late={d.reorderer.stats.late} gaps={d.reorderer.stats.gaps}"
    )


async def async_bench(warm: list[Event], events: list[Event], burst: int, period: float) -> None:
    d = AsyncDispatcher(flush_interval=0.05)
    await d.start()
    consumers = [d.consumer(n, capacity=100_000) for n in ("all", "per_venue", "per_sym")]
    consumers[0].subscribe()
    for provider in PROVIDERS:
        consumers[1].subscribe(provider=provider)
        for symbol in SYMBOLS:
            consumers[2].subscribe(provider=provider, symbol=symbol)
    for event in warm:
        d.publish(event)
    await asyncio.sleep(0.3)
    for c in consumers:
        while len(c.queue):
            await c.get()
    sent: dict[int, int] = {}
    latencies: list[int] = []
    received = [0, 0, 0]
    total = len(events)

    async def consume(index: int) -> None:
        async for event in consumers[index]:
            t = sent.get(id(event))
            if t is not None:
                latencies.append(time.perf_counter_ns() - t)
            received[index] += 1

    readers = [asyncio.create_task(consume(i)) for i in range(3)]
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    next_at = time.perf_counter()
    for start in range(0, total, burst):
        now_ns = time.perf_counter_ns()
        for event in events[start : start + burst]:
            sent[id(event)] = now_ns
            d.publish(event)
        next_at += period
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    async with asyncio.timeout(60):  # drained: every queue empty (coalesced slots included)
        while any(len(c.queue) for c in consumers):  # noqa: ASYNC110 -- a bench, polling is fine
            await asyncio.sleep(0.0005)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    for task in readers:
        task.cancel()
    await d.stop()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1e6

    print(
        f"async: {total:,} events offered at {burst / period:,.0f}/s, {sum(received):,} deliveries"
        f" in {wall:.2f}s wall, {cpu:.2f}s CPU -> {total / cpu:,.0f} events/s per CPU-second; "
        f"latency ms p50={pct(0.5):.3f} p99={pct(0.99):.3f} p99.9={pct(0.999):.3f} "
        f"max={latencies[-1] / 1e6:.3f}; coalesced (latest-wins under backpressure): "
        f"{sum(c.queue.stats.coalesced for c in consumers):,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--period", type=float, default=0.002)
    args = parser.parse_args()
    warm, events = build(args.events)
    core_bench(warm, events)
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    runner(async_bench(warm, events, args.burst, args.period))


if __name__ == "__main__":
    main()
