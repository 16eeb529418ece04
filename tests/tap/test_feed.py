"""Price sources: the simulated walk, Binance parsing, and the Binance client against a local
WebSocket server standing in for the exchange (a fake at the network edge)."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal

from websockets.asyncio.server import ServerConnection, serve

from tradehall.core.clock import VirtualClock
from tradehall.tap.feed import BinanceSource, SimSource, backoff_delays, parse_binance_trade


def test_parse_binance_trade() -> None:
    msg = json.dumps({"e": "trade", "s": "BTCUSDT", "p": "97000.12000000", "T": 1})
    assert parse_binance_trade(msg) == 9_700_012
    assert parse_binance_trade(b'{"p": "1.005"}') == 100  # rounded to the cent
    assert parse_binance_trade('{"p": "abc"}') is None
    assert parse_binance_trade('{"p": "-1"}') is None
    assert parse_binance_trade("{}") is None
    assert parse_binance_trade("not json") is None
    assert parse_binance_trade('{"p": "NaN"}') is None


def test_backoff_starts_near_1s_and_caps_at_5s() -> None:
    delays = backoff_delays(random.Random(1))
    assert 0.5 <= delays[0] <= 1.0
    assert all(d <= 5.0 for d in delays)
    assert max(delays[3:]) > 2.5


async def test_sim_source_ticks_on_the_virtual_clock() -> None:
    clock = VirtualClock()
    prices: list[int] = []
    task = asyncio.create_task(SimSource(clock, start_cents=6_000_000, seed=3).run(prices.append))
    await clock.advance(0)
    assert prices == [6_000_000]
    await clock.advance(10)
    assert len(prices) == 11
    assert len(set(prices)) > 5 and all(p > 0 for p in prices)
    task.cancel()
    again: list[int] = []
    task = asyncio.create_task(SimSource(clock, start_cents=6_000_000, seed=3).run(again.append))
    await clock.advance(10)
    task.cancel()
    assert again == prices  # deterministic for a seed


async def test_binance_client_reads_trades_and_reconnects() -> None:
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        base = Decimal("97000.00") + connections
        for i in range(3):
            await ws.send(json.dumps({"e": "trade", "p": str(base + Decimal(i) / 100)}))
        await ws.send("garbage")
        await ws.close()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        clock = VirtualClock()
        got: list[int] = []
        arrived = asyncio.Event()

        def emit(price: int) -> None:
            got.append(price)
            if len(got) in (3, 6):
                arrived.set()

        source = BinanceSource(clock, f"ws://127.0.0.1:{port}")
        task = asyncio.create_task(source.run(emit))
        await asyncio.wait_for(arrived.wait(), 10)
        assert got == [9_700_100, 9_700_101, 9_700_102]
        arrived.clear()
        for _ in range(200):  # the client is sleeping out its back-off on the virtual clock
            if clock.sleepers:
                break
            await asyncio.sleep(0.01)
        await clock.advance(1.0)
        await asyncio.wait_for(arrived.wait(), 10)
        assert got[3:] == [9_700_200, 9_700_201, 9_700_202]
        task.cancel()
