"""Reconnect behaviour with an injected clock and RNG: no test waits for real back-off."""

from __future__ import annotations

import asyncio
import contextlib
import random

from gw_helpers import Collector, eventually

from services import free_port
from tradehall.core.clock import VirtualClock
from tradehall.gateway.assembler import BookState
from tradehall.gateway.backoff import Backoff
from tradehall.gateway.fakes.binance import FakeBinance
from tradehall.gateway.fakes.server import Fault
from tradehall.gateway.venues.base import AdapterSettings
from tradehall.gateway.venues.binance import BinanceAdapter


def test_backoff_is_jittered_exponential_capped_and_resettable() -> None:
    backoff = Backoff(0.5, 8.0, minimum=0.0, rng=random.Random(3))
    ceilings = [backoff.ceiling(n) for n in range(7)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    delays = [backoff.next_delay() for _ in range(7)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 7  # jittered, not lock-step
    again = Backoff(0.5, 8.0, minimum=0.0, rng=random.Random(3))
    assert [again.next_delay() for _ in range(7)] == delays  # the RNG is the only randomness
    backoff.reset()
    assert backoff.attempts == 0 and backoff.next_delay() <= 0.5
    assert Backoff(1.0, 2.0, minimum=0.3, rng=random.Random(0)).ceiling(100) == 2.0


async def test_failed_connects_wait_for_backoff_on_the_injected_clock() -> None:
    clock = VirtualClock()
    port = free_port()  # nothing listens: every attempt is refused at once
    settings = AdapterSettings(backoff_base=1.0, backoff_cap=60.0, tick=1.0)
    adapter = BinanceAdapter(
        ["BTC-USD"],
        Collector(),
        ws_url=f"ws://127.0.0.1:{port}",
        rest_url=f"http://127.0.0.1:{port}",
        settings=settings,
        clock=clock,
        rng=random.Random(42),
    )
    expected = Backoff(1.0, 60.0, rng=random.Random(42))
    task = asyncio.create_task(adapter.run())
    try:
        runner = adapter.runner
        for attempt in range(1, 5):
            await eventually(lambda n=attempt: len(runner.disconnects) == n and clock.sleepers == 1)  # type: ignore[misc]
            delay = expected.next_delay()
            margin = delay * 0.02
            await clock.advance(delay - margin)
            await asyncio.sleep(0.02)
            assert len(runner.disconnects) == attempt  # still waiting: no early retry
            await clock.advance(margin + 1e-6)
        assert all(reason.startswith("error") for reason in runner.disconnects)
        assert runner.backoff.attempts >= 4
    finally:
        await adapter.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_reconnect_after_close_waits_for_backoff_then_resubscribes_everything() -> None:
    clock = VirtualClock()
    symbols = ("BTC-USD", "ETH-USD")
    async with FakeBinance(symbols, interval=0.005) as fake:
        settings = AdapterSettings(
            backoff_base=2.0, backoff_cap=2.0, tick=1.0, max_age=30.0, idle_timeout=300.0
        )
        adapter = BinanceAdapter(
            symbols,
            Collector(),
            ws_url=fake.base_ws,
            rest_url=fake.base_http,
            settings=settings,
            clock=clock,
            rng=random.Random(1),
        )
        task = asyncio.create_task(adapter.run())
        try:

            def all_live() -> bool:
                return all(adapter.state(s) is BookState.LIVE for s in symbols)

            async def live() -> None:
                # a snapshot re-fetch waits a few (virtual) ms: let virtual time trickle on
                for _ in range(500):
                    if all_live():
                        return
                    await clock.advance(0.01)
                    await asyncio.sleep(0.005)
                raise AssertionError("books not live")

            await live()
            fake.inject(Fault.ABRUPT_CLOSE)
            await eventually(lambda: len(adapter.runner.disconnects) == 1)
            await asyncio.sleep(0.05)
            assert adapter.runner.connects == 1  # sleeping on the virtual clock, not reconnecting
            assert not any(adapter.state(s) is BookState.LIVE for s in symbols)
            await clock.advance(2.0)
            await eventually(lambda: adapter.runner.connects == 2)
            await live()
            # proactive reconnect at max_age: immediate, no back-off
            await clock.advance(31.0)
            await eventually(lambda: adapter.runner.connects == 3)
            assert adapter.runner.disconnects[-1] == "max_age"
            await live()
        finally:
            await adapter.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
