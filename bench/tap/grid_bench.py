"""The once-a-second grid refresh: its CPU, and how long it holds the event loop.

``compute``: microseconds per :meth:`GridPricer.compute` of the default 12 x 20 grid with a full
volatility window (``--ticks`` sampled ticks, 3,000 = 300 s at 100 ms), best and median of
``--repeat``, and the longest single slice of the sliced build when the code has one.

``stall``: an event loop kept busy by a heartbeat task (``await asyncio.sleep(0)`` in a loop, as a
loaded server's loop never idles) runs ``--refreshes`` refreshes, in each mode the code offers:
``thread`` (``asyncio.to_thread(pricer.compute, ...)``, the refresh before the sliced build) and
``sliced`` (a column per step, yielding between steps, as ``TapService.refresh_snapshot`` does
now); ``none`` (an 8 ms sleep) is the machine's own noise floor. The longest gap between
heartbeats during a refresh is the longest the loop was held.
Run it with ``PYTHONPATH`` pointing at an older checkout's ``src`` to measure the old code.

    .venv/bin/python bench/tap/grid_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

from tradehall.tap.grid import GridConfig
from tradehall.tap.pricing import GridPricer, GridSnapshot
from tradehall.tap.rates import BrownianTouchModel

NS = 1_000_000_000
NOW_S = 1_790_000_003
# (time in ns, price in cents) pairs: the recent ticks a grid refresh takes its volatility from
Recent = list[tuple[int, int]]


def ticks(n: int, seed: int = 1) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    price, out = 6_000_000, []
    for i in range(n):
        price += rng.randint(-900, 900)
        out.append(((NOW_S - 300) * NS + i * NS // 10, price))
    return out


def bench_compute(pricer: GridPricer, recent: list[tuple[int, int]], repeat: int) -> None:
    price = recent[-1][1] if recent else 6_000_000
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        pricer.compute(NOW_S + i, price, recent)
        times.append(time.perf_counter() - t0)
    print(
        f"compute: best {min(times) * 1e6:.0f} us, median {statistics.median(times) * 1e6:.0f} us"
        f" per refresh ({len(recent)} ticks, 240 cells)"
    )
    if not hasattr(pricer, "begin"):
        print("sliced build: not in this code")
        return
    longest: list[float] = []
    longest_cpu: list[float] = []
    slices = 0
    for i in range(repeat):
        build = pricer.begin(NOW_S + i, price, recent)
        worst = worst_cpu = 0.0
        done = False
        while not done:
            t0, c0 = time.perf_counter(), time.thread_time()
            done = build.step()
            worst = max(worst, time.perf_counter() - t0)
            worst_cpu = max(worst_cpu, time.thread_time() - c0)
            slices += i == 0
        longest.append(worst)
        longest_cpu.append(worst_cpu)
    print(
        f"sliced build: {slices} slices; longest slice wall best {min(longest) * 1e6:.0f} us,"
        f" median {statistics.median(longest) * 1e6:.0f} us, max {max(longest) * 1e6:.0f} us;"
        f" CPU median {statistics.median(longest_cpu) * 1e6:.0f} us,"
        f" max {max(longest_cpu) * 1e6:.0f} us"
    )


async def _no_refresh(pricer: GridPricer, now_s: int, price: int, recent: Recent) -> None:
    await asyncio.sleep(0.008)  # the machine's own noise: the loop holds nothing here


async def _thread_refresh(pricer: GridPricer, now_s: int, price: int, recent: Recent) -> None:
    await asyncio.to_thread(pricer.compute, now_s, price, list(recent))


async def _sliced_refresh(pricer: GridPricer, now_s: int, price: int, recent: Recent) -> None:
    build = pricer.begin(now_s, price, list(recent))
    done = build.step()
    while not done:
        await asyncio.sleep(0)
        done = build.step()
    snap: GridSnapshot = build.result()
    del snap


async def bench_stall(
    name: str,
    refresh: Callable[[GridPricer, int, int, Recent], Awaitable[None]],
    pricer: GridPricer,
    recent: list[tuple[int, int]],
    refreshes: int,
) -> None:
    price = recent[-1][1] if recent else 6_000_000
    gaps: list[float] = []
    stop = False
    measuring = False

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0)
            now = time.perf_counter()
            if measuring:
                gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    worst: list[float] = []
    walls: list[float] = []
    for i in range(refreshes):
        gaps.clear()
        measuring = True
        t0 = time.perf_counter()
        await refresh(pricer, NOW_S + i, price, recent)
        walls.append(time.perf_counter() - t0)
        measuring = False
        worst.append(max(gaps, default=0.0))
        await asyncio.sleep(0.02)
    stop = True
    await beat
    print(
        f"stall {name:7s}: longest loop hold per refresh median"
        f" {statistics.median(worst) * 1e3:.2f} ms, max {max(worst) * 1e3:.2f} ms;"
        f" refresh wall median {statistics.median(walls) * 1e3:.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", type=int, default=3_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--refreshes", type=int, default=30)
    args = ap.parse_args()
    pricer = GridPricer(GridConfig(), BrownianTouchModel(Decimal("0.05")))
    recent = ticks(args.ticks)
    print(f"python {sys.version.split()[0]}, switch interval {sys.getswitchinterval() * 1e3} ms")
    bench_compute(pricer, recent, args.repeat)
    asyncio.run(bench_stall("none", _no_refresh, pricer, recent, args.refreshes))
    asyncio.run(bench_stall("thread", _thread_refresh, pricer, recent, args.refreshes))
    if hasattr(pricer, "begin"):
        asyncio.run(bench_stall("sliced", _sliced_refresh, pricer, recent, args.refreshes))


if __name__ == "__main__":
    main()
