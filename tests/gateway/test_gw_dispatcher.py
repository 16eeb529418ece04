"""The asyncio dispatcher on a VirtualClock: ordering with the periodic flush, async-iterator
consumers, a slow consumer that slows nobody (SC-003/SC-004 end to end) and token pacing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from dispatch_helpers import exec_report, ticker, trade

from tradehall.core.clock import VirtualClock
from tradehall.gateway.dispatcher import AsyncDispatcher, Consumer
from tradehall.gateway.events import BookSnapshot, BookUpdate, Event, ExecReport, Trade
from tradehall.gateway.service import GatewayConfig, GatewayService


@pytest.fixture
async def dispatcher() -> AsyncIterator[tuple[AsyncDispatcher, VirtualClock]]:
    clock = VirtualClock()
    d = AsyncDispatcher(clock=clock, flush_interval=0.05, lateness=0.15)
    await d.start()
    yield d, clock
    await d.stop()


class Reader:
    """Collects what a consumer yields, in a task."""

    def __init__(self, consumer: Consumer) -> None:
        self.got: list[Event] = []
        self.task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: Consumer) -> None:
        async for event in consumer:
            self.got.append(event)

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _seqs(events: list[Event]) -> list[int | None]:
    return [e.seq_provider for e in events]


async def test_events_are_ordered_and_holes_flushed_on_the_clock(
    dispatcher: tuple[AsyncDispatcher, VirtualClock],
) -> None:
    d, clock = dispatcher
    consumer = d.consumer("c")
    consumer.subscribe(symbol="BTC-USD", event_types=["trade"])
    reader = Reader(consumer)
    d.publish(trade(1))
    await reader.settle()
    assert reader.got == []  # a new dense stream waits out the lateness window once
    await clock.advance(0.15)
    await reader.settle()
    assert _seqs(reader.got) == [1]
    d.publish(trade(3))
    d.publish(trade(2))
    d.publish(trade(2, symbol="ETH-USD"))  # not subscribed
    await reader.settle()
    assert _seqs(reader.got) == [1, 2, 3]
    d.publish(trade(5))
    await clock.advance(0.1)
    await reader.settle()
    assert _seqs(reader.got) == [1, 2, 3]  # 4 may still come
    await clock.advance(0.1)
    await reader.settle()
    assert _seqs(reader.got) == [1, 2, 3, 5]  # given up on 4 within lateness + flush
    d.publish(trade(4))
    await reader.settle()
    assert d.core.reorderer.stats.late == 1 and len(reader.got) == 4
    await reader.stop()


async def test_a_consumer_that_never_reads_slows_nobody_and_still_gets_every_exec_report(
    dispatcher: tuple[AsyncDispatcher, VirtualClock],
) -> None:
    d, _ = dispatcher
    fast = [d.consumer(f"fast{i}", capacity=100) for i in range(3)]
    slow = d.consumer("slow", capacity=100)
    for consumer in (*fast, slow):
        consumer.subscribe()
    readers = [Reader(c) for c in fast]
    for i in range(5000):
        d.publish(trade(i, provider="coinbase"))  # coinbase trades: released at once
        d.publish(ticker(i, provider="coinbase"))
        if i % 50 == 0:
            d.publish(exec_report(i), owner="slow")
        if i % 10 == 0:
            await asyncio.sleep(0)  # the readers run between bursts, as on a live loop
    for reader in readers:
        await reader.settle()
        trades = [e for e in reader.got if isinstance(e, Trade)]
        assert _seqs(trades) == list(range(5000))  # full rate, nothing lost, in order
        assert not any(isinstance(e, ExecReport) for e in reader.got)
    assert len(slow.queue) <= 100 + 100 + 1  # bounded: trades + exec reports + one ticker slot
    assert slow.queue.stats.overflow == 5000 - 100
    got: list[Event] = []
    while len(slow.queue):
        got.append(await asyncio.wait_for(slow.get(), 1))
    reports = [e.client_order_id for e in got if isinstance(e, ExecReport)]
    assert reports == [f"c{i}" for i in range(0, 5000, 50)]
    assert got[: len(reports)] == [e for e in got if isinstance(e, ExecReport)]  # first in line
    assert d.core.dead_letters.total == 5000 - 100
    for reader in readers:
        await reader.stop()


async def test_token_bucket_paces_a_consumer_on_the_clock(
    dispatcher: tuple[AsyncDispatcher, VirtualClock],
) -> None:
    d, clock = dispatcher
    consumer = d.consumer("paced", rate=10.0, burst=5.0)
    consumer.subscribe(provider="coinbase")
    reader = Reader(consumer)
    for i in range(20):
        d.publish(trade(i, provider="coinbase"))
    await reader.settle()
    assert len(reader.got) == 5  # the burst
    await clock.advance(0.5)
    await reader.settle()
    assert len(reader.got) == 10  # 10 per second
    d.publish(exec_report(1), owner="paced")
    await reader.settle()
    assert isinstance(reader.got[-1], ExecReport)  # never throttled
    await reader.stop()


async def test_unsubscribe_and_close(dispatcher: tuple[AsyncDispatcher, VirtualClock]) -> None:
    d, _ = dispatcher
    async with d.consumer("c") as consumer:
        consumer.subscribe(provider="coinbase")
        d.publish(trade(1, provider="coinbase"))
        assert _seqs([await asyncio.wait_for(consumer.get(), 1)]) == [1]
        consumer.unsubscribe(provider="coinbase")
        d.publish(trade(2, provider="coinbase"))
        assert len(consumer.queue) == 0
    assert "c" not in d.consumers
    assert [e async for e in consumer] == []  # a closed consumer's iteration ends


async def test_the_service_feeds_adapter_events_to_in_process_consumers() -> None:
    config = GatewayConfig(venues=("kraken",), symbols=("BTC-USD",), sim=True, sim_interval=0.01)
    service = GatewayService(config)
    consumer = service.dispatcher.consumer("strategy")
    consumer.subscribe(provider="kraken", event_types=["book_snapshot", "book_update", "trade"])
    await service.start()
    try:
        got: list[Event] = []
        async with asyncio.timeout(10):
            while sum(isinstance(e, BookUpdate) for e in got) < 20:
                got.append(await consumer.get())
    finally:
        await service.stop()
    assert isinstance(got[0], BookSnapshot)  # diffs only ever follow their snapshot
    assert {e.event_type for e in got} <= {"book_snapshot", "book_update", "trade"}
    trade_ids = [e.seq_provider for e in got if isinstance(e, Trade)]
    assert trade_ids == sorted(trade_ids)
