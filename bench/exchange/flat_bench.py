"""Flat-cost check: per-operation cost of the engine's hot paths as history grows.

    python bench/exchange/flat_bench.py [--sizes 10000 100000 1000000] [--samples 2000]

For each size N the engine gets N resting orders of one broker (on 2 000 price levels, every
order with its own deadline) and N trades in its history (all inside the VWAP window), with a
quarter of its orders cancelled and the rest still pending, partially filled or filled. Then each
operation below is timed ``--samples`` times (median, microseconds):

- ``cross``: a marketable order filling one resting order (trade history, settlement, indexes);
- ``rest`` / ``cancel``: a resting limit order placed, then cancelled;
- ``vwap``: ``GET /stocks/{symbol}/price``'s figures;
- ``list p1`` / ``list deep``: a broker's orders filtered by status (``filled``), first page and a
  page half-way through the history (limit 50);
- ``expire 1``: an order placed, then swept by expiry alone among the N resting;
- ``book d10``: the top 10 levels of one side.

The issue asks for no accidental O(n) in these paths: the columns should stay flat as N grows
tenfold (``book d10`` grows with the number of price levels, fixed here, not with N).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from itertools import islice

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.engine import Engine, OrderRequest

T0 = 1_790_000_000 * 10**9
FAR = T0 + 10**18
LEVELS = 2_000


def build(size: int) -> tuple[Engine, VirtualClock]:
    clock = VirtualClock(T0)
    engine = Engine(clock, SequentialIds(), vwap_window_ns=10**15)
    engine.register_broker("maker", 10**18, [("SYM", 10**15)])
    engine.register_broker("taker", 10**18, [("SYM", 10**15)])
    engine.register_broker("sweeper", 10**18, [("SYM", 10**15)])
    # N trades: asks at 100.00 taken one by one (each a pending, then filled maker order).
    for i in range(size):
        engine.submit(OrderRequest("limit", "maker", "D", "ask", "SYM", 1, 10_000, FAR + i))
        engine.submit(OrderRequest("limit", "taker", "D", "bid", "SYM", 1, 10_000, FAR))
    # N resting bids below, each with its own deadline; a quarter of them cancelled.
    ids = [
        engine.submit(
            OrderRequest("limit", "maker", "D", "bid", "SYM", 5, 9_000 - i % LEVELS, FAR + i)
        )[0].order_id
        for i in range(size)
    ]
    for order_id in ids[::4]:
        engine.cancel(order_id)
    return engine, clock


def median_us(samples: int, op: Callable[[], object]) -> float:
    timings = []
    clock = time.perf_counter_ns
    for _ in range(samples):
        t0 = clock()
        op()
        timings.append(clock() - t0)
    return statistics.median(timings) / 1000


def measure(size: int, samples: int) -> dict[str, float]:
    engine, clock = build(size)
    figures: dict[str, float] = {}
    ask = OrderRequest("limit", "maker", "D", "ask", "SYM", 1, 20_000, FAR)
    cross = OrderRequest("limit", "taker", "D", "bid", "SYM", 1, 20_000, FAR)

    def cross_one() -> None:
        engine.submit(ask)
        engine.submit(cross)

    figures["cross"] = median_us(samples, cross_one) / 2  # per command
    rest = OrderRequest("limit", "maker", "D", "bid", "SYM", 1, 8_500, FAR + 5 * 10**17)
    placed: list[str] = []
    figures["rest"] = median_us(samples, lambda: placed.append(engine.submit(rest)[0].order_id))
    figures["cancel"] = median_us(samples, lambda: engine.cancel(placed.pop()))
    figures["vwap"] = median_us(samples, lambda: engine.vwap("SYM"))
    total = engine.broker_orders("maker", "filled", 1, 50)[1]
    figures["list p1"] = median_us(samples, lambda: engine.broker_orders("maker", "filled", 1, 50))
    deep = max(1, total // 100)
    figures["list deep"] = median_us(
        samples, lambda: engine.broker_orders("maker", "filled", deep, 50)
    )

    def expire_one() -> None:
        deadline = clock.time_ns() + 1_000
        engine.submit(OrderRequest("limit", "sweeper", "D", "bid", "SYM", 1, 8_000, deadline))
        clock.set_ns(deadline + 1)
        assert len(engine.expire_due()) == 1

    figures["expire 1"] = median_us(samples, expire_one)
    bids = engine.book("SYM").bids
    figures["book d10"] = median_us(samples, lambda: list(islice(bids.levels(), 10)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--samples", type=int, default=2_000)
    args = parser.parse_args()
    rows = {size: measure(size, args.samples) for size in args.sizes}
    names = list(next(iter(rows.values())))
    print("median us per op  " + "".join(f"{name:>11}" for name in names))
    for size, figures in rows.items():
        print(f"N = {size:<13}" + "".join(f"{figures[name]:>11.1f}" for name in names))


if __name__ == "__main__":
    main()
