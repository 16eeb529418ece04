"""Golden transcript: the exact market-data messages and metric samples of a fixed flow.

A seeded flow of limit, market and crossing orders on two symbols, cancels (some of orders that
are gone), rejected submissions and expiry sweeps runs through the real service and
:class:`MarketData`; subscribers with different subscription sets join and leave along the way.
Every flushed message (per subscriber, in order), every snapshot taken at subscribe time and the
exported ``tradehall_*`` samples go into one transcript, compared line by line with
``data/md_golden.txt``. So a change to the command path (metrics, capture, release, flush) that
alters any byte, order or sequence number fails here. The same flow with a journal (market data
released only after each group commit) must give the same transcript.

To regenerate after an intended change of the messages:
``python tests/exchange/test_md_golden.py > tests/exchange/data/md_golden.txt``.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from prometheus_client import generate_latest

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.errors import ExchangeError
from tradehall.exchange.marketdata import Channel, Frames, Item, MarketData, encoder
from tradehall.exchange.requests import BrokerRequest
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

GOLDEN = Path(__file__).parent / "data" / "md_golden.txt"
T0 = 1_790_000_000 * 10**9
S = 10**9
SYMBOLS = ("AAA", "BBB")
BROKERS = ("a", "b", "c")
STEPS = 400


class Sink:
    """A subscriber that writes what each flush hands it into its own transcript (the hub hands
    a flush to its subscribers in no particular order)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.signature: frozenset[tuple[str, Channel]] = frozenset()

    def push_batch(self, batch: Frames, items: list[Item]) -> None:
        self.lines.append(f"{self.name} frames={len(batch.frames)} trades={batch.trades}")
        self.lines.extend(f"{self.name} {item.text}" for item in items)


def _subscribe(hub: MarketData, sink: Sink, symbol: str, channel: Channel) -> None:
    hub.flush()  # as the WebSocket handler does: the snapshot follows what was sent
    hub.subscribe(sink, symbol, channel)
    sink.signature = sink.signature | {(symbol, channel)}
    if channel == "book":
        snapshot: object = hub.book_snapshot(symbol)
    elif channel == "trades":
        snapshot = hub.trades_snapshot(symbol)
    else:
        snapshot = hub.ticker(symbol)
    sink.lines.append(f"{sink.name} subscribe {encoder.encode(snapshot).decode()}")


def _unsubscribe(hub: MarketData, sink: Sink, symbol: str, channel: Channel) -> None:
    hub.flush()
    hub.unsubscribe(sink, symbol, channel)
    sink.signature = sink.signature - {(symbol, channel)}
    sink.lines.append(f"{sink.name} unsubscribe {symbol} {channel}")


def _step(
    service: ExchangeService, clock: VirtualClock, rng: random.Random, placed: list[str]
) -> str:
    """Run one random command; its outcome as a transcript line."""
    roll = rng.random()
    symbol = rng.choice(SYMBOLS)
    broker = rng.choice(BROKERS)
    side = rng.choice(("bid", "ask"))
    try:
        if roll < 0.45:  # resting or crossing limit orders around 100.00, some short-lived
            price = rng.randint(9_990, 10_010)
            ttl = rng.choice((2, 5, 3600)) * S
            quantity = rng.randint(1, 30)
            order = service.submit(
                OrderRequest(
                    "limit", broker, "D", side, symbol, quantity, price, clock.time_ns() + ttl
                )
            )
            placed.append(order.order_id)
            return f"limit {order.order_id} {order.status} {order.remaining}"
        if roll < 0.55:  # sweeps one or more levels (or finds no liquidity)
            order = service.submit(
                OrderRequest("market", broker, "D", side, symbol, rng.randint(1, 60))
            )
            return f"market {order.order_id} {order.status} {order.remaining}"
        if roll < 0.60:  # refused: more than the broker can pay for
            far = clock.time_ns() + 3600 * S
            service.submit(OrderRequest("limit", broker, "D", "bid", symbol, 10**9, 10**6, far))
            return "huge accepted?"
        if roll < 0.85:
            if not placed:
                return "cancel none"
            index = rng.randrange(len(placed))  # swap-remove: some are filled or gone anyway
            target, placed[index] = placed[index], placed[-1]
            placed.pop()
            order = service.cancel(target)
            return f"cancel {order.order_id} {order.status}"
        clock.set_ns(clock.time_ns() + rng.randint(1, 3) * S)
        return f"expired {service.expire_due()}"
    except ExchangeError as exc:
        return f"rejected {exc.code}"


def _setup(service: ExchangeService) -> MarketData:
    holdings = [(symbol, 100_000) for symbol in SYMBOLS]
    for broker in BROKERS:
        service.register_broker(BrokerRequest(broker, 10**9, holdings))
    hub = MarketData(service, min_interval=3600.0)  # flushed by the test only, never by the timer
    hub.start()
    return hub


async def _transcript(settings: ExchangeSettings) -> list[str]:
    clock = VirtualClock(T0)
    service = ExchangeService(settings, clock=clock, ids=SequentialIds())
    service.recover()
    await service.start()
    hub = _setup(service)
    lines: list[str] = []
    everything, ticker, book_b = sinks = Sink("all"), Sink("tick"), Sink("bookB")
    for symbol in SYMBOLS:
        for channel in ("book", "trades", "ticker"):
            _subscribe(hub, everything, symbol, channel)  # type: ignore[arg-type]
    rng = random.Random(20261121)
    placed: list[str] = []
    for n in range(STEPS):
        if n == 60:
            _subscribe(hub, book_b, "BBB", "book")
        if n == 120:
            _subscribe(hub, ticker, "AAA", "ticker")
            _subscribe(hub, ticker, "BBB", "trades")
        if n == 300:
            _unsubscribe(hub, book_b, "BBB", "book")
        lines.append(f"step {n} {_step(service, clock, rng, placed)}")
        await service.durable()  # with a journal: released once written
        if rng.random() < 0.3:
            hub.flush()
            lines.append(f"seq {hub.book_sequence('AAA')} {hub.book_sequence('BBB')}")
            for sink in sinks:
                sink.lines.append(f"{sink.name} flushed after step {n}")
    hub.flush()
    for sink in sinks:
        lines.extend(sink.lines)
    for symbol in SYMBOLS:
        lines.append(f"final {encoder.encode(hub.book_snapshot(symbol)).decode()}")
        lines.append(f"final {encoder.encode(hub.trades_snapshot(symbol)).decode()}")
        lines.append(f"final {encoder.encode(hub.ticker(symbol)).decode()}")
    exposition = generate_latest(service.registry).decode().splitlines()
    lines.extend(
        line for line in exposition if line.startswith("tradehall_") and "_created" not in line
    )
    hub.stop()
    await service.stop()
    return lines


def transcript_in_memory() -> list[str]:
    return asyncio.run(_transcript(ExchangeSettings()))


def test_in_memory_transcript_matches_the_golden_file() -> None:
    lines = transcript_in_memory()
    golden = GOLDEN.read_text().splitlines()
    assert len(lines) > 1000  # the flow trades, sweeps, cancels and expires a lot
    for number, (got, want) in enumerate(zip(lines, golden, strict=False), start=1):
        assert got == want, f"line {number} differs"
    assert len(lines) == len(golden)


def test_journaled_transcript_is_the_same(tmp_path: Path) -> None:
    settings = ExchangeSettings(data_dir=str(tmp_path), journal_sync="none", snapshot_every=0)
    assert asyncio.run(_transcript(settings)) == transcript_in_memory()


if __name__ == "__main__":
    print("\n".join(transcript_in_memory()))
