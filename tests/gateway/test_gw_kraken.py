"""Kraken v2 adapter: checksum over a long clean feed (pure) and faults over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from gw_helpers import KRAKEN_DOC_SNAPSHOT, Collector, eventually

from tradehall.gateway.assembler import BookState
from tradehall.gateway.events import BookSnapshot, BookStatus, BookUpdate, Ticker, Trade
from tradehall.gateway.fakes.kraken import BookView, FakeKraken
from tradehall.gateway.fakes.market import MarketSim
from tradehall.gateway.fakes.server import Fault
from tradehall.gateway.symbols import KRAKEN
from tradehall.gateway.venues.base import AdapterSettings
from tradehall.gateway.venues.kraken import KrakenAdapter

SYMBOLS = ("BTC-USD", "ETH-USD")
FAST = AdapterSettings(
    stale_after=0.8,
    sync_timeout=1.0,
    idle_timeout=1.0,
    tick=0.02,
    backoff_base=0.05,
    backoff_cap=0.2,
    depth=10,
)


def _offline_adapter(sink: Collector | None = None) -> KrakenAdapter:
    adapter = KrakenAdapter(
        ["BTC-USD"], sink or Collector(), settings=AdapterSettings(kline_interval=None)
    )
    adapter.assemblers["BTC-USD"].start(0.0)
    return adapter


def test_doc_snapshot_goes_live_and_a_corrupted_copy_is_refused() -> None:
    sink = Collector()
    adapter = _offline_adapter(sink)
    adapter.handle_frame(KRAKEN_DOC_SNAPSHOT)
    assert adapter.state("BTC-USD") is BookState.LIVE
    snapshot = sink.of(BookSnapshot)[0]
    assert isinstance(snapshot, BookSnapshot)
    status = sink.of(BookStatus)[-1]
    assert status.trace_id == snapshot.trace_id != ""  # one frame, one trace id
    assert snapshot.asks[0] == (Decimal("45285.2"), Decimal("0.00100000"))
    update = {
        "channel": "book",
        "type": "update",
        "data": [
            {
                "symbol": "BTC/USD",
                "bids": [{"price": 45284.0, "qty": 0.5}],
                "asks": [],
                "checksum": 1818405665,
                "timestamp": "2023-10-06T17:35:56.000000Z",
            }
        ],
    }
    adapter.handle_frame(json.dumps(update))  # note: "0.5" on the wire, checksum still holds
    assert sink.events[-1].trace_id not in ("", snapshot.trace_id)
    assert adapter.state("BTC-USD") is BookState.LIVE
    assert len(adapter.book("BTC-USD").bids) == 10  # truncated to the subscribed depth
    bad = _offline_adapter()
    bad.handle_frame(KRAKEN_DOC_SNAPSHOT.replace("3310070434", "3310070435"))
    assert bad.state("BTC-USD") is BookState.RESYNCING
    assert bad.assemblers["BTC-USD"].stats.checksum_failed == 1
    sent = [json.loads(m) for m in bad._outbox]
    assert [(m["method"], m["params"]["symbol"]) for m in sent] == [
        ("unsubscribe", ["BTC/USD"]),
        ("subscribe", ["BTC/USD"]),
    ]


def test_checksum_success_is_total_on_100k_clean_updates_and_every_corruption_is_caught() -> None:
    entry = KRAKEN.entry("BTC-USD")
    sim = MarketSim(seed=11, mid=Decimal(68000), price_places=1, qty_places=8)
    view = BookView(sim, entry, depth=10)
    adapter = _offline_adapter()
    asm = adapter.assemblers["BTC-USD"]
    adapter.handle_frame(view.snapshot())
    corrupted = 0
    step = 0
    while asm.stats.checksum_ok < 100_000:
        step += 1
        corrupt = step % 5000 == 0
        message, _ = view.update(sim.step(), corrupt=corrupt)
        if message is None:
            continue
        corrupted += corrupt
        adapter.handle_frame(message)
        if corrupt:
            assert asm.state is BookState.RESYNCING
            adapter._outbox.clear()
            adapter.handle_frame(view.snapshot())  # the resubscription's snapshot
        assert asm.state is BookState.LIVE
    assert corrupted >= 19
    assert asm.stats.checksum_failed == corrupted  # every corruption, nothing else
    assert asm.book.as_dicts() == (dict(sim.book.top_bids(10)), dict(sim.book.top_asks(10)))


class Rig:
    def __init__(self, fake: FakeKraken, adapter: KrakenAdapter, sink: Collector) -> None:
        self.fake, self.adapter, self.sink = fake, adapter, sink

    def live(self, symbol: str) -> bool:
        return self.adapter.state(symbol) is BookState.LIVE

    def resyncs(self, symbol: str) -> list[str]:
        return [reason for sym, reason, _ in self.adapter.resync_log if sym == symbol]

    async def assert_books_match(self) -> None:
        self.fake.pause()
        try:
            for symbol in SYMBOLS:
                await eventually(
                    lambda s=symbol: (
                        self.live(s)  # type: ignore[misc]
                        and self.adapter.book(s).as_dicts() == self.fake.true_book(s, 10)
                    ),
                    within=3.0,
                )
        finally:
            self.fake.resume()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with FakeKraken(SYMBOLS, interval=0.005, heartbeat_every=0.1) as fake:
        sink = Collector()
        adapter = KrakenAdapter(SYMBOLS, sink, ws_url=f"{fake.base_ws}/v2", settings=FAST)
        task = asyncio.create_task(adapter.run())
        r = Rig(fake, adapter, sink)
        await eventually(lambda: all(r.live(s) for s in SYMBOLS))
        yield r
        await adapter.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_clean_feed(rig: Rig) -> None:
    await eventually(lambda: len(rig.sink.of(Trade)) >= 5 and len(rig.sink.of(BookUpdate)) >= 20)
    await rig.assert_books_match()
    assert rig.sink.of(Ticker, "ETH-USD")
    trade = rig.sink.of(Trade, "BTC-USD")[0]
    assert isinstance(trade, Trade) and trade.ts_provider is not None
    assert rig.adapter.assemblers["BTC-USD"].stats.checksum_failed == 0
    assert rig.adapter.assemblers["BTC-USD"].stats.checksum_ok > 5
    await eventually(lambda: rig.fake.pings >= 1, within=3.0)  # application-level keepalive
    for symbol in SYMBOLS:  # no integrity fault on a clean feed
        assert set(rig.resyncs(symbol)) <= {"initial", "stale"}


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.CORRUPT_CHECKSUM, "checksum"),
        (Fault.MISSING_REFILL, "checksum"),
        (Fault.DROP_DIFF, "checksum"),
    ],
)
async def test_book_faults_resubscribe_only_that_symbol(
    rig: Rig, fault: Fault, reason: str
) -> None:
    eth_before = rig.resyncs("ETH-USD")
    rig.fake.inject(fault, "BTC-USD")
    await eventually(lambda: reason in rig.resyncs("BTC-USD"), within=3.0)
    took = await eventually(lambda: rig.live("BTC-USD"), within=1.0)
    assert took < 1.0
    assert rig.resyncs("ETH-USD") == eth_before
    assert rig.adapter.runner.connects == 1
    await rig.assert_books_match()


async def test_silent_book_goes_stale_alone(rig: Rig) -> None:
    rig.fake.silence("BTC-USD", 1.5)
    await eventually(lambda: "stale" in rig.resyncs("BTC-USD"), within=2.0)
    assert "stale" not in rig.resyncs("ETH-USD")
    await rig.assert_books_match()
    assert rig.adapter.runner.connects == 1


@pytest.mark.parametrize("fault", [Fault.ABRUPT_CLOSE, Fault.SHUTDOWN_NOTICE, Fault.SILENCE_ALL])
async def test_connection_faults_reconnect_and_resubscribe(rig: Rig, fault: Fault) -> None:
    if fault is Fault.SILENCE_ALL:
        rig.fake.silence(None, 2.0)
    else:
        rig.fake.inject(fault)
    await eventually(lambda: rig.adapter.runner.connects == 2, within=3.0)
    if fault is Fault.SHUTDOWN_NOTICE:
        assert rig.adapter.maintenance_notices == 1
        assert rig.adapter.runner.disconnects[0] == "shutdown_notice"
    if fault is Fault.SILENCE_ALL:
        assert rig.adapter.runner.disconnects[0] == "idle"
    await eventually(lambda: all(rig.live(s) for s in SYMBOLS), within=3.0)
    await rig.assert_books_match()


async def test_unknown_pair_is_reported() -> None:
    async with FakeKraken(("BTC-USD",), interval=0.01, heartbeat_every=0.1) as fake:
        sink = Collector()
        adapter = KrakenAdapter(
            ("BTC-USD", "SOL-USD"), sink, ws_url=f"{fake.base_ws}/v2", settings=FAST
        )
        task = asyncio.create_task(adapter.run())
        try:
            await eventually(lambda: adapter.state("BTC-USD") is BookState.LIVE)
            await eventually(lambda: any("SOL/USD" in e for e in adapter.errors))
            assert adapter.state("SOL-USD") is not BookState.LIVE
        finally:
            await adapter.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
