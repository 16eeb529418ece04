"""Binance adapter against the wire-compatible fake, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import websockets
from gw_helpers import Collector, eventually

from tradehall.gateway.assembler import BookState
from tradehall.gateway.events import BookSnapshot, BookUpdate, Ticker, Trade
from tradehall.gateway.fakes.binance import FakeBinance
from tradehall.gateway.fakes.server import Fault
from tradehall.gateway.venues.base import AdapterSettings
from tradehall.gateway.venues.binance import BinanceAdapter

SYMBOLS = ("BTC-USD", "ETH-USD")
FAST = AdapterSettings(
    stale_after=0.8,
    sync_timeout=1.0,
    idle_timeout=1.0,
    tick=0.02,
    backoff_base=0.05,
    backoff_cap=0.2,
    refresh_every=None,
    snapshot_limit=1000,
)


class Rig:
    def __init__(self, fake: FakeBinance, adapter: BinanceAdapter, sink: Collector) -> None:
        self.fake, self.adapter, self.sink = fake, adapter, sink

    def live(self, symbol: str) -> bool:
        return self.adapter.state(symbol) is BookState.LIVE

    def resyncs(self, symbol: str) -> list[str]:
        return [reason for sym, reason, _ in self.adapter.resync_log if sym == symbol]

    async def assert_books_match(self) -> None:
        """Pause the venue, let the adapter catch up, compare every book with the true one."""
        self.fake.pause()
        try:
            for symbol in SYMBOLS:
                asm = self.adapter.assemblers[symbol]
                await eventually(
                    lambda a=asm, s=symbol: (
                        a.state is BookState.LIVE  # type: ignore[misc]
                        and a.update_id == self.fake.update_ids[s]
                    ),
                    # Generous: this compares contents; resync speed has its own assertions.
                    # (A rare slow catch-up after a refresh is under investigation.)
                    within=8.0,
                )
                assert asm.book.as_dicts() == self.fake.true_book(symbol)
        finally:
            self.fake.resume()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with FakeBinance(SYMBOLS, interval=0.005) as fake:
        sink = Collector()
        adapter = BinanceAdapter(
            SYMBOLS, sink, ws_url=fake.base_ws, rest_url=fake.base_http, settings=FAST
        )
        task = asyncio.create_task(adapter.run())
        r = Rig(fake, adapter, sink)
        await eventually(lambda: all(r.live(s) for s in SYMBOLS))
        yield r
        await adapter.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_clean_feed_books_match_and_events_are_canonical(rig: Rig) -> None:
    await eventually(lambda: len(rig.sink.of(Trade)) >= 5 and len(rig.sink.of(BookUpdate)) >= 20)
    await rig.assert_books_match()
    snapshot = rig.sink.of(BookSnapshot, "BTC-USD")[0]
    assert isinstance(snapshot, BookSnapshot) and snapshot.provider == "binance"
    assert snapshot.bids[0][0] > snapshot.bids[1][0]
    update = rig.sink.of(BookUpdate, "ETH-USD")[-1]
    assert isinstance(update, BookUpdate) and update.seq_first is not None
    assert update.seq_provider is not None and update.seq_provider >= update.seq_first
    assert all(isinstance(p, Decimal) for p, _ in update.bids + update.asks)
    trade = rig.sink.of(Trade)[0]
    assert isinstance(trade, Trade) and trade.trade_id == str(trade.seq_provider)
    ticker = rig.sink.of(Ticker, "BTC-USD")[-1]
    assert isinstance(ticker, Ticker) and ticker.bid < ticker.ask
    # a clean feed never trips an integrity check (a first snapshot older than the stream is
    # re-fetched by the official rule; a starved CI box may see a staleness resync)
    for symbol in SYMBOLS:
        assert set(rig.resyncs(symbol)) <= {"initial", "stale_snapshot", "stale"}
    assert rig.adapter.runner.connects == 1


@pytest.mark.parametrize(
    ("fault", "reasons"),
    [
        (Fault.DROP_DIFF, {"gap"}),
        (Fault.CROSSED, {"crossed"}),
    ],
)
async def test_book_fault_resyncs_only_that_symbol(
    rig: Rig, fault: Fault, reasons: set[str]
) -> None:
    eth_before = rig.resyncs("ETH-USD")
    rig.fake.inject(fault, "BTC-USD")
    await eventually(lambda: bool(set(rig.resyncs("BTC-USD")) & reasons), within=2.0)
    took = await eventually(lambda: rig.live("BTC-USD"), within=1.0)
    assert took < 1.0
    assert rig.resyncs("ETH-USD") == eth_before
    assert rig.adapter.runner.connects == 1  # the connection was never touched
    await rig.assert_books_match()


async def test_stale_snapshot_is_detected_and_refetched(rig: Rig) -> None:
    rig.fake.inject(Fault.STALE_SNAPSHOT, "BTC-USD")
    rig.fake.inject(Fault.DROP_DIFF, "BTC-USD")  # force a re-fetch that gets the stale answer
    await eventually(lambda: "gap" in rig.resyncs("BTC-USD"))
    await eventually(lambda: rig.fake.faults[(Fault.STALE_SNAPSHOT, "BTC-USD")] == 0)
    # the old snapshot is refused (official rule) or its first diff shows a gap: never applied
    await eventually(
        lambda: (
            rig.adapter.assemblers["BTC-USD"].stats.resyncs.get("stale_snapshot", 0)
            + rig.resyncs("BTC-USD").count("gap")
            >= 2
        )
    )
    await eventually(lambda: rig.live("BTC-USD"), within=1.0)
    await rig.assert_books_match()


async def test_silent_symbol_goes_stale_alone(rig: Rig) -> None:
    rig.fake.silence("BTC-USD", 1.5)
    await eventually(lambda: "stale" in rig.resyncs("BTC-USD"), within=2.0)
    assert "stale" not in rig.resyncs("ETH-USD")
    await eventually(lambda: rig.live("BTC-USD"), within=3.0)
    await rig.assert_books_match()
    assert rig.adapter.runner.connects == 1


@pytest.mark.parametrize("fault", [Fault.ABRUPT_CLOSE, Fault.SHUTDOWN_NOTICE, Fault.SILENCE_ALL])
async def test_connection_faults_reconnect_and_resubscribe(rig: Rig, fault: Fault) -> None:
    if fault is Fault.SILENCE_ALL:
        rig.fake.silence(None, 2.0)
    else:
        rig.fake.inject(fault)
    await eventually(lambda: rig.adapter.runner.connects == 2, within=3.0)
    expected = {
        Fault.ABRUPT_CLOSE: "error: ConnectionClosedError",
        Fault.SHUTDOWN_NOTICE: "shutdown_notice",
        Fault.SILENCE_ALL: "idle",
    }[fault]
    assert rig.adapter.runner.disconnects[0].startswith(expected.split(":")[0])
    if fault is Fault.SHUTDOWN_NOTICE:
        assert rig.adapter.shutdown_notices == 1
    await eventually(lambda: all(rig.live(s) for s in SYMBOLS), within=3.0)
    await rig.assert_books_match()


async def test_book_equals_venue_book_after_every_message_with_faults() -> None:
    """Every BookUpdate/BookSnapshot leaves the local book equal to the venue's book at that id."""
    async with FakeBinance(SYMBOLS, interval=0.003) as fake:
        checked: list[int] = []
        mismatches: list[str] = []

        def sink(event: object) -> None:
            if not isinstance(event, BookUpdate | BookSnapshot):
                return
            asm = adapter.assemblers[event.symbol]
            for uid, bids, asks in reversed(fake.history[event.symbol]):
                if uid == asm.update_id:
                    if asm.book.as_dicts() != (dict(bids), dict(asks)):
                        mismatches.append(f"{event.symbol}@{uid}")
                    checked.append(uid)
                    return

        adapter = BinanceAdapter(
            SYMBOLS, sink, ws_url=fake.base_ws, rest_url=fake.base_http, settings=FAST
        )
        task = asyncio.create_task(adapter.run())
        try:
            for round_ in range(6):
                await eventually(lambda: all(adapter.state(s) is BookState.LIVE for s in SYMBOLS))
                fake.inject(Fault.DROP_DIFF if round_ % 2 else Fault.CROSSED, SYMBOLS[round_ % 2])
                start = len(checked)
                await eventually(lambda n=start: len(checked) > n + 30)  # type: ignore[misc]
            await eventually(lambda: all(adapter.state(s) is BookState.LIVE for s in SYMBOLS))
        finally:
            await adapter.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert mismatches == []
        assert len(checked) >= 180
        reasons = [reason for _, reason, _ in adapter.resync_log]
        assert reasons.count("gap") >= 3 and reasons.count("crossed") >= 3


async def test_periodic_refresh_resnapshots_without_losing_the_book() -> None:
    settings = AdapterSettings(
        stale_after=5.0, sync_timeout=1.0, idle_timeout=5.0, tick=0.02, refresh_every=0.3
    )
    async with FakeBinance(SYMBOLS, interval=0.005) as fake:
        sink = Collector()
        adapter = BinanceAdapter(
            SYMBOLS, sink, ws_url=fake.base_ws, rest_url=fake.base_http, settings=settings
        )
        task = asyncio.create_task(adapter.run())
        try:
            # Two periodic refreshes of BTC-USD, whatever epochs other resyncs (a slow sync on
            # a loaded machine) may have used up in between.
            await eventually(
                lambda: (
                    sum(1 for entry in adapter.resync_log if entry[:2] == ("BTC-USD", "refresh"))
                    >= 2
                )
            )
            requests = fake.snapshot_requests
            assert requests >= 4  # initial + refreshes, per symbol
            # Refresh seen; stop it before comparing: with the venue paused for the comparison,
            # a 0.3 s refresh would keep re-snapshotting into the 1 s quiet-market grace.
            for assembler in adapter.assemblers.values():
                assembler.refresh_every = None
            await Rig(fake, adapter, sink).assert_books_match()
        finally:
            await adapter.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_fake_speaks_raw_streams_and_live_subscribe() -> None:
    async with FakeBinance(("BTC-USD",), interval=0.005) as fake:
        async with websockets.connect(f"{fake.base_ws}/ws/btcusdt@trade") as ws:
            await ws.send(
                json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 7})
            )
            seen: set[str] = set()
            while not {"ack", "trade", "ticker"} <= seen:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
                if msg.get("id") == 7:
                    assert msg == {"result": None, "id": 7}
                    seen.add("ack")
                elif msg.get("e") == "trade":
                    assert "stream" not in msg  # raw streams are not wrapped
                    seen.add("trade")
                elif "b" in msg and "u" in msg and "e" not in msg:
                    seen.add("ticker")
        async with httpx.AsyncClient(base_url=fake.base_http) as client:
            bad = await client.get("/api/v3/depth", params={"symbol": "NOPE"})
            assert bad.status_code == 400 and bad.json()["code"] == -1121
            ok = await client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5"})
            body = ok.json()
            assert len(body["bids"]) == 5 and isinstance(body["lastUpdateId"], int)


async def test_malformed_frame_is_skipped_not_fatal(rig: Rig) -> None:
    rig.fake.inject(Fault.MALFORMED, "BTC-USD")
    await eventually(lambda: rig.adapter.runner.bad_frames == 1)
    assert rig.adapter.runner.connects == 1
    assert not set(rig.resyncs("BTC-USD")) & {"gap", "crossed"}  # no ids were consumed
    await rig.assert_books_match()


async def test_venue_pings_are_answered() -> None:
    # the fake pings every 50 ms and drops connections that do not pong within 0.5 s
    async with FakeBinance(SYMBOLS, interval=0.005, ping_interval=0.05, ping_timeout=0.5) as fake:
        adapter = BinanceAdapter(
            SYMBOLS, Collector(), ws_url=fake.base_ws, rest_url=fake.base_http, settings=FAST
        )
        task = asyncio.create_task(adapter.run())
        try:
            await eventually(lambda: all(adapter.state(s) is BookState.LIVE for s in SYMBOLS))
            await asyncio.sleep(1.2)  # over twenty ping rounds, past the pong deadline
            assert adapter.runner.connects == 1 and adapter.runner.disconnects == []
        finally:
            await adapter.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_buffer_overflow_while_waiting_for_a_slow_snapshot_restarts_the_sync() -> None:
    settings = AdapterSettings(
        stale_after=5.0, sync_timeout=5.0, idle_timeout=5.0, tick=0.02, max_buffer=60
    )
    async with FakeBinance(SYMBOLS, interval=0.005) as fake:
        sink = Collector()
        adapter = BinanceAdapter(
            SYMBOLS, sink, ws_url=fake.base_ws, rest_url=fake.base_http, settings=settings
        )
        task = asyncio.create_task(adapter.run())
        try:
            rig = Rig(fake, adapter, sink)
            await eventually(lambda: all(rig.live(s) for s in SYMBOLS))
            fake.slow_answer = 30.0  # held until released: the buffer must overflow meanwhile
            fake.inject(Fault.SLOW_SNAPSHOT)
            fake.inject(Fault.DROP_DIFF, "ETH-USD")  # forces the re-fetch that will be slow
            await eventually(lambda: "buffer_overflow" in rig.resyncs("ETH-USD"), within=10.0)
            assert adapter.assemblers["ETH-USD"].buffered <= 60  # bounded, never grows past
            fake.release()
            await eventually(lambda: rig.live("ETH-USD"), within=5.0)
            assert "buffer_overflow" not in rig.resyncs("BTC-USD")
            await rig.assert_books_match()
        finally:
            await adapter.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_rate_limited_snapshot_honours_retry_after(rig: Rig) -> None:
    before = rig.fake.snapshot_requests
    rig.fake.inject(Fault.RATE_LIMITED, "BTC-USD")
    rig.fake.inject(Fault.DROP_DIFF, "BTC-USD")
    await eventually(lambda: "gap" in rig.resyncs("BTC-USD"))
    await eventually(lambda: rig.fake.snapshot_requests > before)
    started = asyncio.get_running_loop().time()
    await eventually(lambda: rig.live("BTC-USD"), within=4.0)
    assert asyncio.get_running_loop().time() - started >= 0.9  # waited for Retry-After: 1
    assert rig.fake.faults[(Fault.RATE_LIMITED, "BTC-USD")] == 0
    await rig.assert_books_match()
