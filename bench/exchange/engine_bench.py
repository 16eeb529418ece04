"""Engine-only benchmark: the pure matching engine in-process on one core, no HTTP, no journal.

    python bench/exchange/engine_bench.py [--commands 300000] [--seed 1]

Mixed flow per the performance issue: 60% resting limit orders, 25% cancels of resting orders,
15% crossing orders that fill 1-3 resting orders, including all trade, settlement and event work.
Prints commands/s and per-command latency percentiles (perf_counter_ns around each command).
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from tradehall.core.clock import SystemClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.engine import Engine, OrderRequest

FAR = 4_102_444_800 * 10**9  # 2100-01-01


def build_flow(count: int, seed: int) -> list[tuple[str, object]]:
    rng = random.Random(seed)
    flow: list[tuple[str, object]] = []
    for _ in range(count):
        roll = rng.random()
        side = rng.choice(("bid", "ask"))
        broker = "maker"
        if roll < 0.60:  # resting: bids 90.00-99.99, asks 100.01-110.00
            price = rng.randint(9000, 9999) if side == "bid" else rng.randint(10001, 11000)
            flow.append(
                (
                    "submit",
                    OrderRequest("limit", broker, "D", side, "SYM", rng.randint(1, 5), price, FAR),
                )
            )
        elif roll < 0.85:
            flow.append(("cancel", rng.random()))
        else:  # crossing: a marketable limit sized to take 1-3 resting orders
            price = 20000 if side == "bid" else 1
            qty = rng.randint(1, 3) * 3
            flow.append(
                ("submit", OrderRequest("limit", "taker", "D", side, "SYM", qty, price, FAR))
            )
    return flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    engine = Engine(SystemClock(), SequentialIds(), vwap_window_ns=300 * 10**9)
    engine.register_broker("maker", 10**15, [("SYM", 10**12)])
    engine.register_broker("taker", 10**15, [("SYM", 10**12)])
    flow = build_flow(args.commands, args.seed)
    resting: list[str] = []
    latencies: list[int] = []
    trades_before = engine.trade_count
    gc.collect()
    clock = time.perf_counter_ns
    started = clock()
    for kind, payload in flow:
        t0 = clock()
        if kind == "submit":
            order, _events = engine.submit(payload)  # type: ignore[arg-type]
            if order.remaining and order.type == "limit":
                resting.append(order.order_id)
        else:
            while resting:
                index = int(payload * len(resting))  # type: ignore[operator]
                order_id = resting[index]
                resting[index] = resting[-1]
                resting.pop()
                if engine.orders[order_id].is_active:
                    engine.cancel(order_id)
                    break
        latencies.append(clock() - t0)
    elapsed = (clock() - started) / 1e9
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] / 1000  # noqa: E731
    print(f"commands         {len(flow):>10}")
    print(f"trades           {engine.trade_count - trades_before:>10}")
    print(f"resting at end   {engine.resting_orders:>10}")
    print(f"commands/s       {len(flow) / elapsed:>10.0f}")
    print(f"p50 / p99 / p99.9 per command: {pct(0.5):.1f} / {pct(0.99):.1f} / {pct(0.999):.1f} us")


if __name__ == "__main__":
    main()
