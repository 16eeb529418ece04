"""Redis pub/sub data bus against a real Redis server (the project's ``redis_url`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import redis.asyncio as aioredis
from dispatch_helpers import exec_report, ticker, trade

from tradehall.gateway.dispatcher import AsyncDispatcher
from tradehall.gateway.events import AnyEvent, Ticker, Trade
from tradehall.gateway.redisbus import RedisPublisher, RedisSubscriber
from tradehall.gateway.service import GatewayConfig, GatewayService


async def _collect(sub: RedisSubscriber, n: int, into: list[AnyEvent]) -> None:
    async for event in sub.events():
        into.append(event)
        if len(into) >= n:
            return


async def test_two_subscriber_processes_share_one_gateway(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    dispatcher = AsyncDispatcher()
    await dispatcher.start()
    publisher = RedisPublisher(dispatcher, redis_url, prefix=prefix)
    await publisher.start()
    probe = aioredis.from_url(redis_url)
    before = await probe.pubsub_numpat()
    everything = RedisSubscriber(redis_url, prefix=prefix)
    trades_only = RedisSubscriber(redis_url, prefix=prefix)
    await everything.subscribe()
    await trades_only.subscribe(provider="coinbase", symbol="BTC-USD", event_type="trade")
    async with asyncio.timeout(5):  # both patterns registered on the server before publishing
        while await probe.pubsub_numpat() < before + 2:  # noqa: ASYNC110 -- no server event
            await asyncio.sleep(0.005)
    await probe.aclose()
    got_all: list[AnyEvent] = []
    got_trades: list[AnyEvent] = []
    tasks = [
        asyncio.create_task(_collect(everything, 401, got_all)),
        asyncio.create_task(_collect(trades_only, 200, got_trades)),
    ]
    try:
        for seq in range(1, 201):
            dispatcher.publish(trade(seq, provider="coinbase"))
            dispatcher.publish(trade(seq, provider="coinbase", symbol="ETH-USD"))
            if seq % 50 == 0:
                await asyncio.sleep(0)
        dispatcher.publish(ticker(7, bid="123.45", provider="coinbase"))
        dispatcher.publish(exec_report(1), owner="someone")  # not for the shared bus
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await everything.close()
        await trades_only.close()
        await publisher.stop()
        await dispatcher.stop()
    btc = [e.seq_provider for e in got_trades if isinstance(e, Trade)]
    assert btc == list(range(1, 201)) and all(e.symbol == "BTC-USD" for e in got_trades)
    eth = [e.seq_provider for e in got_all if isinstance(e, Trade) and e.symbol == "ETH-USD"]
    assert eth == list(range(1, 201))  # per-stream order survives the bus
    tick = [e for e in got_all if isinstance(e, Ticker)]
    assert len(tick) == 1 and str(tick[0].bid) == "123.45"  # exact decimal round trip
    assert not any(e.event_type == "exec_report" for e in got_all)
    assert publisher.published == 401 and publisher.errors == 0


async def test_the_service_publishes_adapter_events_when_given_a_redis_url(redis_url: str) -> None:
    config = GatewayConfig(
        venues=("kraken",), symbols=("BTC-USD",), sim=True, sim_interval=0.01, redis_url=redis_url
    )
    service = GatewayService(config)
    sub = RedisSubscriber(redis_url)  # the default prefix, as another process would use it
    await sub.subscribe(provider="kraken", event_type="book_*")
    await service.start()
    got: list[AnyEvent] = []
    try:
        async with asyncio.timeout(10):
            await _collect(sub, 20, got)
    finally:
        await sub.close()
        await service.stop()
    books = [e for e in got if e.event_type != "book_status"]  # "book_*" matches statuses too
    assert books[0].event_type == "book_snapshot"  # diffs only ever follow their snapshot
    assert {e.event_type for e in got} <= {"book_snapshot", "book_update", "book_status"}
    assert service.redis is not None and service.redis.published >= 20
