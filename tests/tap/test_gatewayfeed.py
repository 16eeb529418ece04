"""The ``gateway`` price source against a real gateway: ``GatewayService`` serving ``/ws`` on
uvicorn, with events published into its dispatcher (exact control over what is sent) or produced
by the in-repo fake Kraken venue (the whole pipeline). Back-off runs on a ``VirtualClock``."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest
import uvicorn
from websockets.asyncio.server import ServerConnection, serve

from services import free_port
from tradehall.core.clock import VirtualClock
from tradehall.core.config import resolve
from tradehall.gateway.events import Event, Side, Ticker, Trade
from tradehall.gateway.service import GatewayConfig, GatewayService
from tradehall.tap.cli import SETTINGS, build
from tradehall.tap.gatewayfeed import GatewaySource, to_cents

_ids = itertools.count(1)


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for real network I/O to reach a state (fails after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def trade(price: str, symbol: str = "BTC-USD", provider: str = "kraken") -> Trade:
    n = next(_ids)
    return Trade(
        event_id=f"t{n}",
        provider=provider,
        symbol=symbol,
        seq_provider=None,
        ts_ingest=time.time_ns(),
        price=Decimal(price),
        qty=Decimal("0.5"),
        side=Side.BUY,
        trade_id=str(n),
    )


def ticker(bid: str, ask: str, last: str | None = None) -> Ticker:
    return Ticker(
        event_id=f"k{next(_ids)}",
        provider="kraken",
        symbol="BTC-USD",
        ts_ingest=time.time_ns(),
        bid=Decimal(bid),
        bid_qty=Decimal(1),
        ask=Decimal(ask),
        ask_qty=Decimal(1),
        last=None if last is None else Decimal(last),
    )


class Gateway:
    """A gateway service on uvicorn that can be stopped and started again on the same port."""

    def __init__(self, config: GatewayConfig, on_event: Callable[[Event], None] | None = None):
        self.service = GatewayService(config, on_event=on_event)
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def up(self) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(self.service.app(), host="127.0.0.1", port=self.port, log_level="error")
        )
        self._task = asyncio.create_task(self._server.serve())
        await until(lambda: self._server is not None and self._server.started)

    async def down(self) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task

    def publish(self, event: Event) -> None:
        self.service.sink(event)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway(GatewayConfig(venues=(), symbols=("BTC-USD", "ETH-USD")))
    await gw.service.start()
    await gw.up()
    yield gw
    if gw._server is not None and not gw._server.should_exit:
        await gw.down()
    await gw.service.stop()


def test_to_cents_is_exact_decimal_arithmetic() -> None:
    assert to_cents("97000.12") == 9_700_012
    assert to_cents("97000.12000000") == 9_700_012
    assert to_cents("0.1") == 10
    assert to_cents("1.005") == 100 and to_cents("1.015") == 102  # half-even
    assert to_cents("90071992547409.93") == 9_007_199_254_740_993  # beyond a float's 2**53
    for bad in ("abc", "-1", "0", "0.001", "NaN", "Infinity", ""):
        assert to_cents(bad) is None


async def test_prices_from_trades_and_tickers_of_the_symbol_only(gateway: Gateway) -> None:
    clock = VirtualClock()
    source = GatewaySource(clock, gateway.url)
    got: list[int] = []
    task = asyncio.create_task(source.run(got.append))
    await until(lambda: source.connections == 1)
    assert len(gateway.service.dispatcher.consumers) == 1
    gateway.publish(trade("1.00", symbol="ETH-USD"))  # other symbol: not sent by the gateway
    gateway.publish(ticker("97002.00", "97001.00"))  # crossed: ignored
    gateway.publish(trade("97000.125"))  # half-even: .5 of a cent down to even
    await until(lambda: len(got) == 1)
    # one ticker at a time: the gateway coalesces a stream's tickers for a lagging reader
    gateway.publish(ticker("97000.00", "97001.01", last="97000.50"))  # last trade price
    await until(lambda: len(got) == 2)
    gateway.publish(ticker("97000.00", "97001.01"))  # no last: mid, floored to the cent
    await until(lambda: len(got) == 3)
    gateway.publish(trade("97003.99", provider="coinbase"))  # every venue by default
    await until(lambda: len(got) == 4)
    assert got == [9_700_012, 9_700_050, 9_700_050, 9_700_399]
    assert source.ignored == 1  # the crossed ticker
    task.cancel()


async def test_provider_filter_is_sent_to_the_gateway(gateway: Gateway) -> None:
    source = GatewaySource(VirtualClock(), gateway.url, provider="coinbase")
    got: list[int] = []
    task = asyncio.create_task(source.run(got.append))
    await until(lambda: source.connections == 1)
    gateway.publish(trade("50000.00", provider="kraken"))
    gateway.publish(trade("50001.00", provider="coinbase"))
    await until(lambda: len(got) == 1)
    assert got == [5_000_100]
    task.cancel()


async def test_reconnects_with_backoff_after_the_gateway_restarts(gateway: Gateway) -> None:
    clock = VirtualClock()
    source = GatewaySource(clock, gateway.url)
    got: list[int] = []
    task = asyncio.create_task(source.run(got.append))
    await until(lambda: source.connections == 1)
    gateway.publish(trade("60000.01"))
    await until(lambda: got == [6_000_001])
    await gateway.down()
    await until(lambda: bool(clock.sleepers))  # backing off on the virtual clock, not crashed
    assert not task.done()
    await clock.advance(1.0)  # first retry (<= 1 s) while the gateway is still down: refused
    await until(lambda: bool(clock.sleepers))
    assert source.connections == 1
    await gateway.up()
    await clock.advance(2.0)  # second delay is at most 2 s
    await until(lambda: source.connections == 2)
    gateway.publish(trade("60000.02"))
    await until(lambda: len(got) == 2)
    assert got == [6_000_001, 6_000_002]
    task.cancel()


async def test_refused_subscription_and_garbage_frames_never_crash_the_source() -> None:
    subscriptions: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        subscriptions.append(str(await ws.recv()))
        if len(subscriptions) == 1:
            await ws.send('{"type":"error","code":"invalid_request","message":"no","id":1}')
            await ws.wait_closed()
            return
        await ws.send('{"type":"ack","op":"subscribe","id":1}')
        await ws.send("not json")
        await ws.send(b"\xff\xfe")
        await ws.send('{"event_type":"trade","symbol":"BTC-USD","price":"oops"}')
        await ws.send('{"event_type":"trade","symbol":"ETH-USD","price":"3000.1"}')
        await ws.send('{"event_type":"book_update","symbol":"BTC-USD","bids":[]}')
        await ws.send('{"event_type":"trade","symbol":"BTC-USD","price":"70000.1"}')
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        clock = VirtualClock()
        source = GatewaySource(clock, f"ws://127.0.0.1:{port}/ws")
        got: list[int] = []
        task = asyncio.create_task(source.run(got.append))
        await until(lambda: bool(clock.sleepers))  # refused -> backing off
        assert source.connections == 0
        await clock.advance(1.0)
        await until(lambda: got == [7_000_010])
        assert source.connections == 1 and source.ignored == 5
        assert '"op":"subscribe"' in subscriptions[1] and '"symbol":"BTC-USD"' in subscriptions[1]
        task.cancel()


async def test_tap_service_follows_the_fake_kraken_venue_through_the_gateway(
    tmp_path: Path,
) -> None:
    """``--price-source gateway``: the service's price is a BTC-USD price the gateway saw."""
    seen: set[int] = set()

    def record(event: Event) -> None:
        if event.symbol != "BTC-USD":
            return
        if isinstance(event, Trade):
            seen.add(int(event.price * 100))
        elif isinstance(event, Ticker) and event.last is not None:
            seen.add(int(event.last * 100))
        elif isinstance(event, Ticker):
            seen.add((int(event.bid * 100) + int(event.ask * 100)) // 2)

    gw = Gateway(
        GatewayConfig(venues=("kraken",), symbols=("BTC-USD",), sim=True, sim_interval=0.01),
        on_event=record,
    )
    await gw.service.start()
    await gw.up()
    values = resolve(
        SETTINGS,
        {"price_source": "gateway", "gateway_url": gw.url, "data_dir": str(tmp_path)},
        environ={},
    )
    service, _hub = build(values)
    assert isinstance(service.source, GatewaySource) and service.source.symbol == "BTC-USD"
    prices: list[int] = []
    ingest = service.ingest_price

    def spy(price: int) -> None:
        prices.append(price)
        ingest(price)

    service.ingest_price = spy  # type: ignore[method-assign]
    await service.start()
    try:
        # The fake venue may repeat one price for a while, so wait for a change rather than
        # assume one within a fixed number of ticks (a loaded machine slows the walk).
        await until(lambda: len(prices) >= 20 and len(set(prices)) > 1, within=30.0)
        assert all(p in seen for p in prices)  # exact cents of events the gateway published
        assert service.price in seen
        _ok, health = await service.health()
        assert health["checks"]["price_feed"]["source"] == "gateway"
    finally:
        await service.stop()
        await gw.down()
        await gw.service.stop()
