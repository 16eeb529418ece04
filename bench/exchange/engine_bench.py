"""Engine benchmark: the matching engine in-process on one core, no HTTP, no journal I/O.

    python bench/exchange/engine_bench.py [--commands 300000] [--seed 1] [--repeat 3]
                                          [--layer engine|machine|service|null]
                                          [--ids sequential|random]
                                          [--engine auto|native|python]

Mixed flow per the performance issue: 60% resting limit orders, 25% cancels of resting orders,
15% crossing orders that fill 1-3 resting orders, including all trade, settlement and event work.

What one command includes:

- ``--layer engine`` (default): :meth:`Engine.submit` / :meth:`Engine.cancel` -- validation, funds
  check, reservation, matching, trades, settlement, VWAP window, listing and expiry indexes,
  and the events (``TradeExecuted`` + two ``OrderFilled`` per trade, ``OrderClosed``).
- ``--layer machine``: what the server runs per command on top of that, short of HTTP and the
  journal write: :meth:`ExchangeMachine.execute` (the recorder capturing clock readings and ids,
  webhook deliveries, the journal :class:`Record`) and ``encode_record`` (the journal bytes).
- ``--layer service``: :meth:`ExchangeService.submit` / :meth:`ExchangeService.cancel` of an
  in-memory service (no journal) with market data started, so each command also pays for the
  metrics and the market-data capture and release (book diff, trades, ticker check); the
  market-data hub is flushed every 64 commands (no WebSocket clients), as its timer would.
- ``--layer null``: no exchange at all -- ``submit`` hands back one pre-built resting order and
  ``cancel`` does nothing, both C callables as the engine's own methods are -- so its figures are
  what the benchmark loop alone costs: about 0.15 us per command on the 2-core development VM
  (``--commands 300000``: 6.5-7.5 M commands/s), to subtract when reading the other layers.
  Every run also prints it (``loop alone``, best of three untimed passes) as a gauge of the
  machine's speed that minute: on this VM kind it has read 1.2M and 7.5M steps/s on the same day.

The loop keeps the resting orders themselves (swap-remove of a random one, skipped when filled
meanwhile) and cancels by ``order.order_id``, so the engine still finds the order by id in its own
``orders`` dict, once, as a client's cancel does; the harness does no lookup of its own.

``--engine`` picks the engine build (:attr:`Engine.build`): ``native`` the optional C core
(an error if it is not built), ``python`` the pure-Python reference, ``auto`` (the default) what
the server would get -- the C core when it is built, unless ``TRADEHALL_ENGINE=python``. The
machine and the service construct their own engine, so the choice reaches every layer through
``TRADEHALL_ENGINE``; the build the layer's engine actually got is printed and checked. Trees
from before the C core (``PYTHONPATH=<old src>`` for a before/after pair) have no
``Engine.build``: they count as ``python``.

Ids come from a counter (``--ids sequential``, the default for ``engine``) or are random
UUIDs as in the server (``--ids random``, the default for ``machine``).

``--gc off`` disables the cycle collector during the timed loops, to show what it costs;
``--gc server`` tunes it as ``tradehall exchange`` does (start-up objects frozen, young passes
every 50 000 net allocations instead of 700: ``exchange/cli.py``).

Each repeat runs the flow twice on fresh engines: once untimed per command, for throughput (wall
clock and process CPU time, so other load on the machine shows as a gap between the two), and once
with ``perf_counter_ns`` around each command for the latency percentiles. The best repeat counts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import time
from collections.abc import Callable
from functools import partial
from itertools import repeat
from pathlib import Path

import tradehall.exchange.engine as engine_module
from tradehall.core.clock import SystemClock
from tradehall.core.ids import IdSource, RandomIds, SequentialIds
from tradehall.exchange.commands import CancelOrder, RegisterBroker, SubmitOrder, encode_record
from tradehall.exchange.engine import Engine, OrderRequest
from tradehall.exchange.machine import ExchangeMachine
from tradehall.exchange.marketdata import MarketData
from tradehall.exchange.model import Order
from tradehall.exchange.requests import BrokerRequest
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

FAR = 4_102_444_800 * 10**9  # 2100-01-01
Step = tuple[bool, object]  # (is_submit, OrderRequest | cancel pick in [0, 1))


def build_flow(count: int, seed: int) -> list[Step]:
    rng = random.Random(seed)
    flow: list[Step] = []
    for _ in range(count):
        roll = rng.random()
        side = rng.choice(("bid", "ask"))
        broker = "maker"
        if roll < 0.60:  # resting: bids 90.00-99.99, asks 100.01-110.00
            price = rng.randint(9000, 9999) if side == "bid" else rng.randint(10001, 11000)
            qty = rng.randint(1, 5)
            flow.append((True, OrderRequest("limit", broker, "D", side, "SYM", qty, price, FAR)))
        elif roll < 0.85:
            flow.append((False, rng.random()))
        else:  # crossing: a marketable limit sized to take 1-3 resting orders
            price = 20000 if side == "bid" else 1
            qty = rng.randint(1, 3) * 3
            flow.append((True, OrderRequest("limit", "taker", "D", side, "SYM", qty, price, FAR)))
    return flow


class Runner:
    """One fresh exchange at the chosen layer, with submit and cancel as plain callables."""

    def __init__(self, layer: str, ids: IdSource, wanted: str | None) -> None:
        self.trades: Callable[[], int]
        self.build: str  # the engine build this layer got: "native" or "python"
        # ``submit`` returns (order, events) when ``pairs`` (the engine's own method, called
        # directly: a wrapper taking ``[0]`` would cost a Python frame per command), else the order
        self.pairs = False
        self.submit: Callable[[OrderRequest], object]
        self.cancel: Callable[[str], object]
        if layer == "engine":
            engine = Engine(SystemClock(), ids, vwap_window_ns=300 * 10**9)
            self.build = build_of(engine)
            engine.register_broker("maker", 10**15, [("SYM", 10**12)])
            engine.register_broker("taker", 10**15, [("SYM", 10**12)])
            self.trades = lambda: engine.trade_count
            self.submit, self.cancel, self.pairs = engine.submit, engine.cancel, True
        elif layer == "null":
            # next(repeat(x), request) is x: C callables of one argument, like Core.submit
            rests = Order("null", "limit", "maker", "D", "bid", "SYM", 1, 9000, FAR, 0, 1)
            self.build = "none"
            self.trades = lambda: 0
            self.submit = partial(next, repeat(rests))
            self.cancel = partial(next, repeat(None))
        elif layer == "service":
            service = ExchangeService(ExchangeSettings(), ids=ids)
            for broker in ("maker", "taker"):
                service.register_broker(BrokerRequest(broker, 10**15, [("SYM", 10**12)]))
            market = MarketData(service)
            market.start()
            self.build = build_of(service.engine)
            self.trades = lambda: service.engine.trade_count
            served = 0

            def submit_via_service(request: OrderRequest) -> Order:
                nonlocal served
                served += 1
                if not served & 63:
                    market.flush()
                return service.submit(request)

            def cancel_via_service(order_id: str) -> object:
                nonlocal served
                served += 1
                if not served & 63:
                    market.flush()
                return service.cancel(order_id)

            self.submit, self.cancel = submit_via_service, cancel_via_service
        else:
            machine = ExchangeMachine(SystemClock(), ids, vwap_window_ns=300 * 10**9)
            machine.execute(RegisterBroker("maker", 10**15, [("SYM", 10**12)]))
            machine.execute(RegisterBroker("taker", 10**15, [("SYM", 10**12)]))
            self.build = build_of(machine.engine)
            self.trades = lambda: machine.engine.trade_count
            execute = machine.execute

            def submit(request: OrderRequest) -> Order:
                executed = execute(SubmitOrder(request))
                encode_record(executed.record)
                return executed.result  # type: ignore[return-value]

            def cancel(order_id: str) -> object:
                executed = execute(CancelOrder(order_id))
                encode_record(executed.record)
                return executed.result

            self.submit, self.cancel = submit, cancel
        if wanted not in (None, self.build) and layer != "null":  # never mislabel figures
            raise RuntimeError(f"--layer {layer} got the {self.build} engine, not {wanted}")


def pick(resting: list[Order], fraction: float) -> Order | None:
    """A random resting order (swap-remove; orders filled meanwhile are dropped)."""
    while resting:
        index = int(fraction * len(resting))
        order = resting[index]
        resting[index] = resting[-1]
        resting.pop()
        if order.remaining:
            return order
    return None


Result = tuple[float, float, list[int], int, str]  # wall s, CPU s, latencies ns, trades, build


def run(flow: list[Step], layer: str, ids: str, wanted: str | None, *, timed: bool) -> Result:
    runner = Runner(layer, SequentialIds() if ids == "sequential" else RandomIds(), wanted)
    submit, cancel, pairs = runner.submit, runner.cancel, runner.pairs
    resting: list[Order] = []
    latencies: list[int] = []
    record = latencies.append
    clock = time.perf_counter_ns
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for is_submit, payload in flow:
        if is_submit:
            t0 = clock() if timed else 0
            done = submit(payload)  # type: ignore[arg-type]
            if timed:
                record(clock() - t0)
            order: Order = done[0] if pairs else done  # type: ignore[index,assignment]
            if order.remaining:
                resting.append(order)
        else:
            target = pick(resting, payload)  # type: ignore[arg-type]
            if target is not None:
                t0 = clock() if timed else 0
                cancel(target.order_id)
                if timed:
                    record(clock() - t0)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall, cpu, latencies, runner.trades(), runner.build


def compiled_note() -> str:
    """Whether ``engine.py`` itself was compiled (``mypyc_probe.py`` runs this script so)."""
    path = Path(engine_module.__file__ or "?")
    return "" if path.suffix == ".py" else f" (engine module compiled: {path.name})"


def build_of(engine: Engine) -> str:
    """The engine's build; trees from before the C core have no ``Engine.build`` and no C core."""
    build: str = getattr(engine, "build", "python")
    return build


def choose_engine(choice: str) -> str | None:
    """The build ``--engine`` wants (``None``: whatever ``auto`` gives), set up for every layer.

    Each layer constructs its engine with the default ``native=None``, which reads
    ``TRADEHALL_ENGINE`` (``native=`` itself is unknown to trees from before the C core).
    """
    if choice == "python":
        os.environ["TRADEHALL_ENGINE"] = "python"
        return "python"
    if choice == "native":
        os.environ.pop("TRADEHALL_ENGINE", None)
        return "native"
    return None


def run_layer(flow: list[Step], layer: str, ids: str, wanted: str | None, *, timed: bool) -> Result:
    """:func:`run`, inside an event loop for the service layer (market-data release uses it)."""
    if layer != "service":
        return run(flow, layer, ids, wanted, timed=timed)

    async def in_loop() -> Result:
        return run(flow, layer, ids, wanted, timed=timed)

    return asyncio.run(in_loop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--layer", choices=("engine", "machine", "service", "null"), default="engine"
    )
    parser.add_argument("--ids", choices=("sequential", "random"), default=None)
    parser.add_argument("--gc", choices=("default", "off", "server"), default="default")
    parser.add_argument("--engine", choices=("auto", "native", "python"), default="auto")
    args = parser.parse_args()
    wanted = choose_engine(args.engine)
    if wanted == "native":
        try:
            Engine(SystemClock(), SequentialIds(), native=True)
        except (ImportError, TypeError) as error:  # not built (or a tree without the C core)
            parser.error(str(error))
    ids = args.ids or ("sequential" if args.layer in ("engine", "null") else "random")
    flow = build_flow(args.commands, args.seed)
    if args.gc == "off":
        gc.disable()  # run() still collects once before each timed loop
    elif args.gc == "server":
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
    best_wall = best_cpu = float("inf")
    best_latencies: list[int] = []
    # The machine's speed at this minute: the same loop with no exchange (--layer null). Figures
    # taken at different times compare through it (this VM kind swings 2-5x between minutes).
    loop_cpu = min(run(flow, "null", ids, None, timed=False)[1] for _ in range(3))
    for _ in range(args.repeat):
        wall, cpu, _, trades, build = run_layer(flow, args.layer, ids, wanted, timed=False)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
        _, _, latencies, _, _ = run_layer(flow, args.layer, ids, wanted, timed=True)
        latencies.sort()
        if (
            not best_latencies
            or latencies[len(latencies) * 99 // 100]
            < best_latencies[len(best_latencies) * 99 // 100]
        ):
            best_latencies = latencies
    commands = len(best_latencies)  # cancels with nothing left to cancel are not commands

    def pct(p: float) -> float:
        return best_latencies[min(commands - 1, int(commands * p))] / 1000

    print(f"engine build       {build}{compiled_note()}  (--engine {args.engine})")
    print(f"layer / ids / gc   {args.layer} / {ids} / {args.gc}")
    print(f"commands           {commands:>10} (of {len(flow)} steps)")
    print(f"trades             {trades:>10}")
    print(f"commands/s (wall)  {commands / best_wall:>10.0f}")
    print(f"commands/s (CPU)   {commands / best_cpu:>10.0f}")
    print(f"loop alone (CPU)   {len(flow) / loop_cpu:>10.0f} steps/s (--layer null, this minute)")
    print(f"p50 / p99 / p99.9 per command: {pct(0.5):.1f} / {pct(0.99):.1f} / {pct(0.999):.1f} us")


if __name__ == "__main__":
    main()
