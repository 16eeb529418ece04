"""Coinbase Advanced Trade adapter against the wire-compatible fake, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import websockets
from gw_helpers import Collector, eventually

from tradehall.gateway.assembler import BookState
from tradehall.gateway.events import BookSnapshot, BookUpdate, Side, Ticker, Trade
from tradehall.gateway.fakes.coinbase import FakeCoinbase
from tradehall.gateway.fakes.server import Fault
from tradehall.gateway.venues.base import AdapterSettings
from tradehall.gateway.venues.coinbase import CoinbaseAdapter

SYMBOLS = ("BTC-USD", "ETH-USD")
FAST = AdapterSettings(
    stale_after=0.8,
    sync_timeout=0.5,
    idle_timeout=1.0,
    tick=0.02,
    backoff_base=0.05,
    backoff_cap=0.2,
)

# A market_trades frame as documented (side "BUY"); pinned mapping: side is the maker's.
TRADES_FIXTURE = (
    '{"channel":"market_trades","client_id":"","timestamp":"2026-04-07T14:30:02.789012Z",'
    '"sequence_num":5,"events":[{"type":"update","trades":[{"trade_id":"995098700",'
    '"product_id":"BTC-USD","price":"68900.50","size":"0.00150000","side":"BUY",'
    '"time":"2026-04-07T14:30:02.789012Z"}]}]}'
)


def test_trade_fixture_maps_to_taker_side_and_exact_decimals() -> None:
    sink = Collector()
    adapter = CoinbaseAdapter(["BTC-USD"], sink)
    adapter.sessions["BTC-USD"].handle_frame(TRADES_FIXTURE)
    (trade,) = sink.of(Trade)
    assert isinstance(trade, Trade)
    assert trade.side is Side.SELL
    assert (trade.price, trade.qty) == (Decimal("68900.50"), Decimal("0.00150000"))
    assert trade.seq_provider == 995098700 and trade.ts_provider is not None


class Rig:
    def __init__(self, fake: FakeCoinbase, adapter: CoinbaseAdapter, sink: Collector) -> None:
        self.fake, self.adapter, self.sink = fake, adapter, sink

    def live(self, symbol: str) -> bool:
        return self.adapter.state(symbol) is BookState.LIVE

    def resyncs(self, symbol: str) -> list[str]:
        return [reason for sym, reason, _ in self.adapter.resync_log if sym == symbol]

    def connects(self) -> int:
        return sum(s.runner.connects for s in self.adapter.sessions.values())

    async def assert_books_match(self) -> None:
        self.fake.pause()
        try:
            for symbol in SYMBOLS:
                await eventually(
                    lambda s=symbol: (
                        self.live(s)  # type: ignore[misc]
                        and self.adapter.book(s).as_dicts() == self.fake.true_book(s)
                    ),
                    within=3.0,
                )
        finally:
            self.fake.resume()


@contextlib.asynccontextmanager
async def running(fake: FakeCoinbase) -> AsyncIterator[Rig]:
    sink = Collector()
    adapter = CoinbaseAdapter(SYMBOLS, sink, ws_url=fake.base_ws, settings=FAST)
    task = asyncio.create_task(adapter.run())
    r = Rig(fake, adapter, sink)
    try:
        await eventually(lambda: all(r.live(s) for s in SYMBOLS))
        yield r
    finally:
        await adapter.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(
            FakeCoinbase(SYMBOLS, interval=0.005, heartbeat_every=0.1)
        )
        yield await stack.enter_async_context(running(fake))


async def test_clean_feed(rig: Rig) -> None:
    await eventually(lambda: len(rig.sink.of(Trade)) >= 5 and len(rig.sink.of(BookUpdate)) >= 20)
    await rig.assert_books_match()
    assert rig.sink.of(Ticker, "BTC-USD") and rig.sink.of(BookSnapshot, "ETH-USD")
    assert rig.connects() == 2  # one connection per product
    assert all(s.gaps == 0 for s in rig.adapter.sessions.values())
    for symbol in SYMBOLS:  # no integrity fault on a clean feed
        assert set(rig.resyncs(symbol)) <= {"initial", "stale"}


async def test_sequence_gap_resyncs_only_that_product(rig: Rig) -> None:
    eth_before = rig.resyncs("ETH-USD")
    rig.fake.inject(Fault.DROP_DIFF, "BTC-USD")
    await eventually(lambda: "gap" in rig.resyncs("BTC-USD"), within=2.0)
    took = await eventually(lambda: rig.live("BTC-USD"), within=1.0)
    assert took < 1.0
    assert rig.resyncs("ETH-USD") == eth_before and rig.connects() == 2
    await rig.assert_books_match()


async def test_oversized_snapshot_is_accepted() -> None:
    async with FakeCoinbase(SYMBOLS, interval=0.005, heartbeat_every=0.1) as fake:
        fake.inject(Fault.OVERSIZED_SNAPSHOT, "BTC-USD")
        async with running(fake) as rig:
            assert fake.largest_frame > 1 << 20
            assert len(rig.adapter.book("BTC-USD").bids) > 5000
            await rig.assert_books_match()


async def test_too_many_subscriptions_error_is_reported_and_retried(rig: Rig) -> None:
    rig.fake.inject(Fault.TOO_MANY_SUBSCRIPTIONS)
    rig.fake.inject(Fault.DROP_DIFF, "ETH-USD")  # forces a level2 resubscribe
    await eventually(lambda: any("too many L2" in e for e in rig.adapter.errors), within=2.0)
    await eventually(lambda: "sync_timeout" in rig.resyncs("ETH-USD"), within=2.0)
    await eventually(lambda: rig.live("ETH-USD"), within=2.0)
    await rig.assert_books_match()


async def test_silent_product_goes_stale_alone(rig: Rig) -> None:
    rig.fake.silence("ETH-USD", 1.5)
    await eventually(lambda: "stale" in rig.resyncs("ETH-USD"), within=2.0)
    assert "stale" not in rig.resyncs("BTC-USD")
    await rig.assert_books_match()


@pytest.mark.parametrize("fault", [Fault.ABRUPT_CLOSE, Fault.SILENCE_ALL])
async def test_connection_faults_reconnect_and_resubscribe(rig: Rig, fault: Fault) -> None:
    if fault is Fault.SILENCE_ALL:
        rig.fake.silence(None, 2.0)
    else:
        rig.fake.inject(fault)
    await eventually(lambda: rig.connects() == 4, within=3.0)
    await eventually(lambda: all(rig.live(s) for s in SYMBOLS), within=3.0)
    await rig.assert_books_match()


async def test_fake_closes_connections_that_do_not_subscribe() -> None:
    async with FakeCoinbase(("BTC-USD",), subscribe_timeout=0.2) as fake:
        async with websockets.connect(fake.base_ws) as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 3.0)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        async with websockets.connect(fake.base_ws) as ws:
            await ws.send(json.dumps({"type": "subscribe", "channels": ["level2"]}))
            error = json.loads(await asyncio.wait_for(ws.recv(), 3.0))
            assert error["type"] == "error"
