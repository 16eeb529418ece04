"""The market maker against a real exchange served over HTTP (uvicorn on a free port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services import serve
from tradehall.core.clock import VirtualClock
from tradehall.exchange.app import create_app
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings
from tradehall.platform.bots import (
    MAKER,
    Listing,
    MarketMaker,
    format_listings,
    parse_listings,
    price_step,
    quotes_around,
    seed_listings,
)

T0 = 1_790_000_000 * 10**9
LISTINGS = (Listing("BTCUSD", 68_000_00), Listing("AAPL", 190_00))


# -- pure parts ------------------------------------------------------------------------------


def test_quotes_are_never_crossed_and_step_apart() -> None:
    for mid in (100, 19_000, 19_004, 6_800_000, 6_800_680):
        step = price_step(mid)
        quotes = quotes_around(mid, step, levels=3, quantity=2)
        bids = sorted((q.price_cents for q in quotes if q.side == "bid"), reverse=True)
        asks = sorted(q.price_cents for q in quotes if q.side == "ask")
        assert len(asks) == 3
        assert bids[0] < mid < asks[0]
        assert all(p % step == 0 for p in bids + asks)
        assert [a - b for a, b in zip(asks[1:], asks, strict=False)] == [step, step]


def test_listings_round_trip_and_bad_ones_are_refused() -> None:
    parsed = parse_listings("btcusd=68000, AAPL=190.50")
    assert parsed == (Listing("BTCUSD", 6_800_000), Listing("AAPL", 19_050))
    assert parse_listings(format_listings(parsed)) == parsed
    for bad in ("", "AAPL", "AAPL=1.001", "AAPL=0.5", "AAPL=x", "A1=5", "AAPL=5,AAPL=6"):
        with pytest.raises(ValueError):
            parse_listings(bad)


# -- against a real exchange -----------------------------------------------------------------


@pytest.fixture
async def exchange() -> AsyncIterator[tuple[httpx.AsyncClient, VirtualClock]]:
    clock = VirtualClock(T0)
    service = ExchangeService(ExchangeSettings(data_dir=":memory:"), clock=clock)
    await service.start()
    async with (
        serve(create_app(service, manage_service=False), lifespan="off") as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http,
    ):
        yield http, clock
    await service.stop()


async def maker_orders(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    orders = []
    for status in ("pending", "partially_filled"):
        r = await http.get(f"/brokers/{MAKER}/orders", params={"status": status, "limit": 100})
        assert r.status_code == 200
        orders += r.json()["orders"]
    return orders


async def test_quotes_both_sides_and_replaces_them_without_leaking_orders(
    exchange: tuple[httpx.AsyncClient, VirtualClock],
) -> None:
    http, clock = exchange
    mm = MarketMaker(http, LISTINGS, levels=2, quantity=3, cross_probability=0.0, seed=1,
                     clock=clock)  # fmt: skip
    await mm.setup()
    for _ in range(20):
        for symbol in ("BTCUSD", "AAPL"):
            await mm.step(symbol)
    for listing in LISTINGS:
        book = (await http.get(f"/stocks/{listing.symbol}/book")).json()
        assert len(book["bids"]) == 2 and len(book["asks"]) == 2
        assert book["bids"][0]["price"] < book["asks"][0]["price"]
        assert all(level["total_quantity"] == 3 for level in book["bids"] + book["asks"])
    assert len(await maker_orders(http)) == 8  # old quotes were cancelled, not left behind
    assert mm.placed > 8 and mm.cancelled == mm.placed - 8
    assert mm.errors == 0


async def test_crossing_prints_trades(exchange: tuple[httpx.AsyncClient, VirtualClock]) -> None:
    http, clock = exchange
    mm = MarketMaker(http, LISTINGS[:1], cross_probability=1.0, seed=2, clock=clock)
    await mm.setup()
    for _ in range(5):
        await mm.step("BTCUSD")
    price = (await http.get("/stocks/BTCUSD/price")).json()
    assert price["trades_in_window"] >= 4  # the first step may find no liquidity yet on a side
    assert mm.crossed >= 4
    assert mm.errors == 0


async def test_a_restarted_bot_cancels_the_quotes_of_its_predecessor(
    exchange: tuple[httpx.AsyncClient, VirtualClock],
) -> None:
    http, clock = exchange
    first = MarketMaker(http, LISTINGS, cross_probability=0.0, seed=3, clock=clock)
    await first.setup()
    for symbol in ("BTCUSD", "AAPL"):
        await first.step(symbol)
    assert len(await maker_orders(http)) == 8
    second = MarketMaker(http, LISTINGS, cross_probability=0.0, seed=4, clock=clock)
    await second.setup()  # brokers exist already (409) and that is fine
    assert await maker_orders(http) == []


async def test_seeding_lists_symbols_idempotently(
    exchange: tuple[httpx.AsyncClient, VirtualClock],
) -> None:
    http, _ = exchange
    assert (await http.get("/stocks/ETHUSD/book")).status_code == 404
    await seed_listings(http, [Listing("ETHUSD", 3_400_00)])
    await seed_listings(http, [Listing("ETHUSD", 3_400_00)])
    assert (await http.get("/stocks/ETHUSD/book")).status_code == 200


async def test_keeps_retrying_while_the_exchange_is_unreachable() -> None:
    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("connection refused", request=request)

    clock = VirtualClock(T0)
    stop = asyncio.Event()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(refuse), base_url="http://x"
    ) as http:
        mm = MarketMaker(http, LISTINGS, clock=clock)
        task = asyncio.create_task(mm.run(stop))
        for _ in range(3):
            await clock.advance(1.0)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert attempts >= 3


class _Switchable(httpx.AsyncBaseTransport):
    """The real HTTP transport, or a refused connection while ``down`` is set."""

    def __init__(self) -> None:
        self.down = False
        self.real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def _eventually(condition: Any, what: str) -> None:
    try:
        async with asyncio.timeout(10):
            while not await condition():  # noqa: ASYNC110 -- progress over real HTTP
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"gave up waiting for {what}")


async def test_after_an_outage_the_bot_cancels_what_it_left_and_quotes_afresh(
    exchange: tuple[httpx.AsyncClient, VirtualClock],
) -> None:
    http, clock = exchange
    transport = _Switchable()
    stop = asyncio.Event()
    async with httpx.AsyncClient(transport=transport, base_url=http.base_url) as bot_http:
        mm = MarketMaker(bot_http, LISTINGS, cross_probability=0.0, seed=5, clock=clock)
        task = asyncio.create_task(mm.run(stop))

        async def quoting() -> bool:
            return mm.placed >= 8

        await _eventually(quoting, "the first quotes")
        transport.down = True
        await clock.advance(1.0)

        async def failed() -> bool:
            return mm.errors >= 1

        await _eventually(failed, "a failed step")
        transport.down = False
        placed = mm.placed
        await clock.advance(1.0)

        async def requoted() -> bool:
            return mm.placed >= placed + 8

        await _eventually(requoted, "fresh quotes")
        assert len(await maker_orders(http)) == 8  # the 8 left during the outage were cancelled
        stop.set()
        await asyncio.wait_for(task, 5)
