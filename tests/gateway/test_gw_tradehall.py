"""Tradehall venue adapter against a real exchange (uvicorn on 127.0.0.1, ``:memory:`` data).

Orders go through the exchange's REST API; the adapter connects to its ``/ws/market`` over a
real socket. The gateway's assembled book must equal the exchange's REST book, trades must arrive
once each with exact decimals, and a forced gap (one ``book`` message removed from a frame before
the adapter sees it: the fault is at the network edge) must resync that symbol only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from gw_helpers import Collector, eventually
from websockets.asyncio.client import ClientConnection

from services import serve
from tradehall.core.clock import VirtualClock
from tradehall.core.config import ConfigError, resolve
from tradehall.core.ids import SequentialIds
from tradehall.exchange.app import create_app
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings
from tradehall.gateway.assembler import BookState
from tradehall.gateway.cli import SETTINGS, SIM, build_config
from tradehall.gateway.events import BookSnapshot, BookStatus, BookUpdate, Side, Ticker, Trade
from tradehall.gateway.service import GatewayService
from tradehall.gateway.venues.base import AdapterSettings
from tradehall.gateway.venues.tradehall import (
    TradehallAdapter,
    market_ws_url,
    parse_symbol_overrides,
    tradehall_symbols,
)

SYMBOLS = ("BTC-USD", "ETH-USD")
VENUE = {"BTC-USD": "BTCUSD", "ETH-USD": "ETHUSD"}
FAR = "2030-01-01T00:00:00Z"
FAST = AdapterSettings(
    sync_timeout=2.0, idle_timeout=2.0, tick=0.02, backoff_base=0.05, backoff_cap=0.2
)


@dataclass
class Exchange:
    http: httpx.AsyncClient
    base: str

    async def order(self, broker: str, symbol: str, side: str, qty: int, price: str) -> None:
        body = {
            "type": "limit",
            "broker_id": broker,
            "document_number": "1",
            "side": side,
            "symbol": VENUE[symbol],
            "quantity": qty,
            "price": float(price),
            "expires_at": FAR,
        }
        resp = await self.http.post("/orders", json=body)
        assert resp.status_code == 201, resp.text

    async def book(self, symbol: str) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        resp = await self.http.get(f"/stocks/{VENUE[symbol]}/book?depth=50")
        assert resp.status_code == 200
        data: dict[str, Any] = json.loads(resp.content, parse_float=Decimal)
        bids = {lv["price"]: Decimal(lv["total_quantity"]) for lv in data["bids"]}
        asks = {lv["price"]: Decimal(lv["total_quantity"]) for lv in data["asks"]}
        return bids, asks


@pytest.fixture
async def exchange() -> AsyncIterator[Exchange]:
    service = ExchangeService(ExchangeSettings(), clock=VirtualClock(), ids=SequentialIds())
    async with serve(create_app(service), lifespan="on") as port:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            for broker in ("alice", "bob"):
                holdings = [{"symbol": v, "quantity": 100_000} for v in VENUE.values()]
                resp = await http.post(
                    "/brokers",
                    json={
                        "broker_id": broker,
                        "initial_cash": 100_000_000,
                        "initial_holdings": holdings,
                    },
                )
                assert resp.status_code == 201
            yield Exchange(http, base)


class GapInjector(TradehallAdapter):
    """Drops the next ``book`` message of one symbol from the frame it arrives in."""

    drop_next: str | None = None
    dropped = 0

    async def on_message(self, ws: ClientConnection, data: str | bytes) -> None:
        target = self.drop_next
        if target is not None:
            batch = json.loads(data)
            hits = [i for i, m in enumerate(batch) if m["type"] == "book" and m["symbol"] == target]
            if hits:
                del batch[hits[0]]
                self.drop_next = None
                self.dropped += 1
                if not batch:
                    return
                data = json.dumps(batch)
        await super().on_message(ws, data)


@contextlib.asynccontextmanager
async def adapter_on(exchange: Exchange, sink: Collector) -> AsyncIterator[GapInjector]:
    adapter = GapInjector(SYMBOLS, sink, ws_url=exchange.base, settings=FAST)
    task = asyncio.create_task(adapter.run())
    try:
        yield adapter
    finally:
        await adapter.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _live(adapter: TradehallAdapter) -> bool:
    return all(adapter.state(s) is BookState.LIVE for s in SYMBOLS)


async def _assert_books_match(adapter: TradehallAdapter, exchange: Exchange) -> None:
    for symbol in SYMBOLS:
        expected = await exchange.book(symbol)
        await eventually(lambda s=symbol, e=expected: adapter.book(s).as_dicts() == e)  # type: ignore[misc]


def test_symbol_map_defaults_overrides_and_urls() -> None:
    m = tradehall_symbols(["BTC-USD", "ETH-USD"], {"ETH-USD": "ETHER"})
    assert m.to_venue("BTC-USD") == "BTCUSD" and m.to_canonical("ETHER") == "ETH-USD"
    assert parse_symbol_overrides("btc-usd=xbt, ETH-USD=ETH") == {
        "BTC-USD": "XBT",
        "ETH-USD": "ETH",
    }
    with pytest.raises(ValueError):
        parse_symbol_overrides("BTC-USD")
    with pytest.raises(ValueError, match="A-Z"):
        tradehall_symbols(["BTC-USD"], {"BTC-USD": "BTC/USD"})
    with pytest.raises(ValueError, match="A-Z"):
        tradehall_symbols(["VERYLONGBASE-USD"])
    assert market_ws_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/ws/market"
    assert market_ws_url("https://x.example") == "wss://x.example/ws/market"
    assert market_ws_url("ws://h:1/ws/market") == "ws://h:1/ws/market"
    with pytest.raises(ValueError):
        market_ws_url("ftp://h")


def test_a_frame_is_an_array_and_levels_trades_tickers_are_exact() -> None:
    sink = Collector()
    adapter = TradehallAdapter(["BTC-USD"], sink, settings=AdapterSettings(kline_interval=None))
    adapter.assemblers["BTC-USD"].start(0.0)
    level = {"price": 100.10, "total_quantity": 3, "order_count": 1}
    adapter.handle_frame(  # raw wire text: two decimals, as the exchange writes them
        '[{"type":"subscribed","symbol":"BTCUSD","channels":["book"],"id":"x"},'
        '{"type":"book_snapshot","symbol":"BTCUSD","sequence":7,'
        '"bids":[{"price":100.10,"total_quantity":3,"order_count":1}],'
        '"asks":[{"price":100.20,"total_quantity":5,"order_count":2}]}]'
    )
    adapter.handle_frame(
        json.dumps(
            [
                {"type": "trades_snapshot", "symbol": "BTCUSD", "sequence": 4, "trades": []},
                {"type": "book", "symbol": "BTCUSD", "first_sequence": 7, "sequence": 7,
                 "bids": [level], "asks": []},
                {"type": "book", "symbol": "BTCUSD", "first_sequence": 8, "sequence": 9,
                 "bids": [{"price": 100.10, "total_quantity": 0, "order_count": 0}], "asks": []},
                {"type": "trade", "symbol": "BTCUSD", "sequence": 4, "trade_id": "old",
                 "price": 100.20, "quantity": 1, "taker_side": "bid",
                 "executed_at": "2026-01-01T00:00:00Z"},
                {"type": "trade", "symbol": "BTCUSD", "sequence": 5, "trade_id": "t5",
                 "price": 100.20, "quantity": 2, "taker_side": "bid",
                 "executed_at": "2026-01-01T00:00:00Z"},
                {"type": "ticker", "symbol": "BTCUSD", "book_sequence": 9, "best_bid": None,
                 "best_bid_quantity": None, "best_ask": 100.20, "best_ask_quantity": 5,
                 "last_price": 100.20, "last_quantity": 2},
                {"type": "ticker", "symbol": "BTCUSD", "book_sequence": 9, "best_bid": 99.00,
                 "best_bid_quantity": 1, "best_ask": 100.20, "best_ask_quantity": 5,
                 "last_price": 100.20, "last_quantity": 2},
            ]
        )
    )  # fmt: skip
    assert adapter.state("BTC-USD") is BookState.LIVE
    snap = sink.of(BookSnapshot)[0]
    assert isinstance(snap, BookSnapshot) and snap.seq_provider == 7
    assert snap.bids == ((Decimal("100.10"), Decimal(3)),)
    assert str(snap.asks[0][0]) == "100.20"  # wire text kept, never a float
    updates = sink.of(BookUpdate)
    assert len(updates) == 1  # sequence 7 is covered by the snapshot
    assert isinstance(updates[0], BookUpdate) and updates[0].seq_first == 8
    assert adapter.book("BTC-USD").as_dicts()[0] == {}
    trades = sink.of(Trade)
    assert [t.trade_id for t in trades if isinstance(t, Trade)] == ["t5"]
    assert isinstance(trades[0], Trade) and trades[0].side is Side.BUY
    assert trades[0].qty == Decimal(2) and trades[0].ts_provider is not None
    tickers = sink.of(Ticker)
    assert len(tickers) == 1 and isinstance(tickers[0], Ticker)
    assert tickers[0].bid == Decimal("99.00") and tickers[0].last == Decimal("100.20")
    # a skipped sequence is a gap: only a fresh book subscription of that symbol is queued
    adapter.handle_frame(
        json.dumps([{"type": "book", "symbol": "BTCUSD", "first_sequence": 11, "sequence": 11,
                     "bids": [], "asks": [level]}])
    )  # fmt: skip
    assert adapter.state("BTC-USD") is BookState.RESYNCING
    assert [json.loads(m) for m in adapter._outbox] == [
        {"op": "subscribe", "symbol": "BTCUSD", "channels": ["book"], "id": "BTC-USD:1"}
    ]


async def test_book_equals_rest_book_and_trades_arrive(exchange: Exchange) -> None:
    sink = Collector()
    await exchange.order("alice", "BTC-USD", "ask", 5, "101.00")  # before the gateway connects
    async with adapter_on(exchange, sink) as adapter:
        await eventually(lambda: _live(adapter))
        await _assert_books_match(adapter, exchange)
        for i in range(10):
            await exchange.order("alice", "BTC-USD", "ask", 3, f"{102 + i}.25")
            await exchange.order("bob", "BTC-USD", "bid", 2, f"{99 - i}.50")
            await exchange.order("alice", "ETH-USD", "ask", 1 + i, f"{50 + i}.05")
        await exchange.order("bob", "BTC-USD", "bid", 7, "102.25")  # 5 @ 101.00, 2 @ 102.25
        await exchange.order("bob", "ETH-USD", "bid", 4, "50.05")  # crosses one ETH ask
        await exchange.order("alice", "BTC-USD", "ask", 1, "99.50")  # sells into the best bid
        await _assert_books_match(adapter, exchange)
        await eventually(lambda: len(sink.of(Trade)) == 4)
        trades = [t for t in sink.of(Trade) if isinstance(t, Trade)]
        btc = [(t.price, t.qty, t.side) for t in trades if t.symbol == "BTC-USD"]
        assert btc == [
            (Decimal("101.00"), Decimal(5), Side.BUY),
            (Decimal("102.25"), Decimal(2), Side.BUY),
            (Decimal("99.50"), Decimal(1), Side.SELL),
        ]
        eth = [(t.price, t.qty, t.side) for t in trades if t.symbol == "ETH-USD"]
        assert eth == [(Decimal("50.05"), Decimal(1), Side.BUY)]
        assert [t.seq_provider for t in trades if t.symbol == "BTC-USD"] == [1, 2, 3]
        await eventually(lambda: any(
            isinstance(t, Ticker) and t.symbol == "BTC-USD" and t.last == Decimal("99.50")
            for t in sink.events
        ))  # fmt: skip
        assert not [r for r in adapter.resync_log if r[1] not in ("initial", "synced")]
        assert not adapter.errors


async def test_forced_gap_resyncs_only_that_symbol(exchange: Exchange) -> None:
    sink = Collector()
    async with adapter_on(exchange, sink) as adapter:
        await eventually(lambda: _live(adapter))
        eth_epoch = adapter.assemblers["ETH-USD"].epoch
        btc_epoch = adapter.assemblers["BTC-USD"].epoch
        await exchange.order("alice", "BTC-USD", "ask", 3, "110.00")
        await exchange.order("alice", "ETH-USD", "ask", 3, "60.00")
        await _assert_books_match(adapter, exchange)
        adapter.drop_next = "BTCUSD"
        await exchange.order("alice", "BTC-USD", "ask", 4, "111.00")  # this diff is lost
        await eventually(lambda: adapter.dropped == 1)
        await exchange.order("bob", "BTC-USD", "bid", 2, "100.00")  # the next one shows the gap
        await exchange.order("bob", "ETH-USD", "bid", 2, "55.00")
        await eventually(lambda: adapter.assemblers["BTC-USD"].epoch == btc_epoch + 1)
        await eventually(lambda: _live(adapter))
        await _assert_books_match(adapter, exchange)
        assert list(adapter.resync_log)[-1] == ("BTC-USD", "gap", btc_epoch + 1)
        assert adapter.assemblers["ETH-USD"].epoch == eth_epoch  # untouched
        assert adapter.runner.connects == 1  # no reconnect: one symbol resubscribed
        statuses = [e for e in sink.of(BookStatus, "ETH-USD") if isinstance(e, BookStatus)]
        assert [s.reason for s in statuses] == ["initial", "synced"]
        # the book keeps following the exchange after the resync
        await exchange.order("alice", "BTC-USD", "ask", 1, "111.00")
        await _assert_books_match(adapter, exchange)
        snapshots = [e for e in sink.of(BookSnapshot, "BTC-USD") if isinstance(e, BookSnapshot)]
        assert [s.epoch for s in snapshots] == [btc_epoch, btc_epoch + 1]


async def test_abrupt_close_reconnects_resyncs_every_book_and_resumes(exchange: Exchange) -> None:
    sink = Collector()
    async with adapter_on(exchange, sink) as adapter:
        await eventually(lambda: _live(adapter))
        await exchange.order("alice", "BTC-USD", "ask", 3, "120.00")
        await _assert_books_match(adapter, exchange)
        ws = adapter.runner._ws
        assert ws is not None
        ws.transport.abort()  # abrupt close at the network edge
        await eventually(lambda: adapter.runner.connects == 2)
        await eventually(lambda: _live(adapter))
        await exchange.order("bob", "BTC-USD", "bid", 1, "120.00")
        await _assert_books_match(adapter, exchange)
        await eventually(lambda: len(sink.of(Trade)) == 1)
        assert {s for s, reason, _ in adapter.resync_log if reason.startswith("disconnect")} == set(
            SYMBOLS
        )


def test_cli_settings_add_the_tradehall_venue() -> None:
    values = resolve(
        [SIM, *SETTINGS],
        {"tradehall_url": "http://127.0.0.1:9999", "venues": "kraken"},
        {"TRADEHALL_TRADEHALL_SYMBOLS": "BTC-USD=XBT"},
    )
    config = build_config(values)
    assert config.venues == ("kraken", "tradehall")
    assert config.tradehall_url == "http://127.0.0.1:9999"
    assert dict(config.tradehall_symbols) == {"BTC-USD": "XBT"}
    assert build_config(resolve([SIM, *SETTINGS], {}, {})).venues == (
        "binance",
        "coinbase",
        "kraken",
    )
    with pytest.raises(ConfigError, match="tradehall_url"):
        resolve(SETTINGS, {"tradehall_url": "ftp://x"}, {})
    with pytest.raises(ConfigError, match="tradehall_symbols"):
        resolve(SETTINGS, {"tradehall_symbols": "BTC-USD"}, {})


async def test_service_runs_the_tradehall_venue_with_the_kraken_fake(exchange: Exchange) -> None:
    values = resolve(
        [SIM, *SETTINGS],
        {"sim": "true", "venues": "kraken", "tradehall_url": exchange.base, "sim_interval": "20ms"},
        {},
    )
    service = GatewayService(build_config(values))
    await service.start()
    try:
        await exchange.order("alice", "BTC-USD", "ask", 2, "130.00")
        await eventually(
            lambda: all(
                state == "LIVE" for books in service.health()["books"].values()
                for state in books.values()
            )
        )  # fmt: skip
        assert set(service.health()["books"]) == {"kraken", "tradehall"}
        adapter = service.adapters["tradehall"]
        await eventually(lambda: adapter.book("BTC-USD").best_ask() == (Decimal("130.00"), 2))
    finally:
        await service.stop()
