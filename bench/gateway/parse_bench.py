"""Canonical events parsed per second, per core, per venue.

Frames are rendered beforehand from the seeded synthetic market (the same model the fake venues
serve), in each venue's wire format; then each adapter's synchronous ``handle_frame`` (decode +
book assembly + integrity checks + canonical event construction) runs over them on one core,
with no network in the loop. Prints one line per scenario; the per-core rate divides by the
process's CPU time, so other load on the machine does not distort it much.

    .venv/bin/python bench/gateway/parse_bench.py [--frames 100000]

Target from issue 6: >= 50k events/s per core for Binance depth diffs.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from decimal import Decimal

from tradehall.gateway.events import Event
from tradehall.gateway.fakes.kraken import BookView
from tradehall.gateway.fakes.market import MarketSim, Tick
from tradehall.gateway.symbols import BINANCE, KRAKEN
from tradehall.gateway.venues.base import AdapterSettings
from tradehall.gateway.venues.binance import BinanceAdapter
from tradehall.gateway.venues.coinbase import CoinbaseAdapter
from tradehall.gateway.venues.kraken import KrakenAdapter

SETTINGS = AdapterSettings(kline_interval=60, refresh_every=None, stale_after=1e9)


def _f(value: Decimal, places: int = 8) -> str:
    return f"{value:.{places}f}"


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, event: Event) -> None:
        self.count += 1


def _merge(ticks: list[Tick]) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    for tick in ticks:
        bids.update(tick.bids)
        asks.update(tick.asks)
    return bids, asks


def binance_frames(n: int, ticks_per_diff: int) -> tuple[BinanceAdapter, Counter, list[bytes]]:
    sim = MarketSim(seed=1, price_places=2, qty_places=5)
    counter = Counter()
    adapter = BinanceAdapter(["BTC-USD"], counter, settings=SETTINGS)
    asm = adapter.assemblers["BTC-USD"]
    asm.start(0.0)
    from tradehall.gateway.assembler import Snapshot

    uid = 1000
    asm.on_snapshot(Snapshot(sim.book.top_bids(), sim.book.top_asks(), last_id=uid), 1, 0.0)
    asm.check(asm.quiet_grace)  # no diff yet: the held snapshot is accepted (quiet market)
    assert asm.state.value == "LIVE"
    frames = []
    venue = BINANCE.to_venue("BTC-USD")
    for _ in range(n):
        bids, asks = _merge([sim.step() for _ in range(ticks_per_diff)])
        if not bids and not asks:
            continue
        first, uid = uid + 1, uid + len(bids) + len(asks)
        data = {
            "e": "depthUpdate",
            "E": 1700000000000,
            "s": venue,
            "U": first,
            "u": uid,
            "b": [[_f(p), _f(q)] for p, q in bids.items()],
            "a": [[_f(p), _f(q)] for p, q in asks.items()],
        }
        frames.append(json.dumps({"stream": "btcusdt@depth@100ms", "data": data}).encode())
    return adapter, counter, frames


def binance_trade_frames(n: int) -> tuple[BinanceAdapter, Counter, list[bytes]]:
    counter = Counter()
    adapter = BinanceAdapter(["BTC-USD"], counter, settings=SETTINGS)
    frames = []
    for i in range(n):
        data = {
            "e": "trade",
            "E": 1700000000000 + i,
            "s": "BTCUSDT",
            "t": i + 1,
            "p": "68000.12000000",
            "q": "0.00150000",
            "T": 1700000000000 + i,
            "m": i % 2 == 0,
            "M": True,
        }
        frames.append(json.dumps({"stream": "btcusdt@trade", "data": data}).encode())
    return adapter, counter, frames


def kraken_frames(n: int) -> tuple[KrakenAdapter, Counter, list[bytes]]:
    sim = MarketSim(seed=2, mid=Decimal(68000), price_places=1, qty_places=8)
    view = BookView(sim, KRAKEN.entry("BTC-USD"), depth=10)
    counter = Counter()
    adapter = KrakenAdapter(["BTC-USD"], counter, settings=SETTINGS)
    adapter.assemblers["BTC-USD"].start(0.0)
    adapter.handle_frame(view.snapshot())
    frames: list[bytes] = []
    while len(frames) < n:
        message, _ = view.update(sim.step())
        if message is not None:
            frames.append(message.encode())
    return adapter, counter, frames


def coinbase_frames(n: int) -> tuple[Callable[[bytes], None], Counter, list[bytes]]:
    sim = MarketSim(seed=3, price_places=2, qty_places=8)
    counter = Counter()
    adapter = CoinbaseAdapter(["BTC-USD"], counter, settings=SETTINGS)
    session = adapter.sessions["BTC-USD"]
    adapter.assemblers["BTC-USD"].start(0.0)

    def envelope(
        seq: int,
        kind: str,
        bids: list[tuple[Decimal, Decimal]],
        asks: list[tuple[Decimal, Decimal]],
    ) -> bytes:
        updates = [
            {
                "side": side,
                "event_time": "2026-04-07T14:30:00.123456Z",
                "price_level": _f(p, 2),
                "new_quantity": _f(q),
            }
            for side, levels in (("bid", bids), ("offer", asks))
            for p, q in levels
        ]
        return json.dumps(
            {
                "channel": "l2_data",
                "client_id": "",
                "timestamp": "2026-04-07T14:30:00.123456Z",
                "sequence_num": seq,
                "events": [{"type": kind, "product_id": "BTC-USD", "updates": updates}],
            }
        ).encode()

    session.handle_frame(
        envelope(0, "snapshot", list(sim.book.top_bids()), list(sim.book.top_asks()))
    )
    frames = []
    for seq in range(1, n + 1):
        tick = sim.step()
        frames.append(envelope(seq, "update", tick.bid_levels(), tick.ask_levels()))
    return session.handle_frame, counter, frames


def measure(
    name: str, handle: Callable[[bytes], None], counter: Counter, frames: list[bytes]
) -> None:
    gc.collect()
    before = counter.count
    start, cpu_start = time.perf_counter(), time.process_time()
    for frame in frames:
        handle(frame)
    cpu = time.process_time() - cpu_start  # CPU time: robust to other load on the machine
    wall = time.perf_counter() - start
    events = counter.count - before
    print(
        f"{name:<40} {len(frames):>7} frames {events:>7} events "
        f"{events / cpu:>9,.0f} events/s/core (cpu)  {events / wall:>9,.0f} events/s (wall)  "
        f"{cpu / len(frames) * 1e6:5.1f} us/frame"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=100_000)
    n = parser.parse_args().frames
    print(f"gateway parse benchmark: {n} frames per scenario, one core, no network")
    adapter, counter, frames = binance_frames(n, 1)
    measure("binance depth diffs (1 tick/diff)", adapter.handle_frame, counter, frames)
    adapter, counter, frames = binance_frames(n // 2, 10)
    measure("binance depth diffs (10 ticks/diff)", adapter.handle_frame, counter, frames)
    adapter, counter, frames = binance_trade_frames(n)
    measure("binance trades", adapter.handle_frame, counter, frames)
    kadapter, counter, frames = kraken_frames(n)
    measure("kraken book updates (CRC32 checked)", kadapter.handle_frame, counter, frames)
    handle, counter, frames = coinbase_frames(n)
    measure("coinbase l2 updates", handle, counter, frames)


if __name__ == "__main__":
    main()
