"""Reconnect behaviour with an injected clock and RNG: no test waits for real back-off."""

from __future__ import annotations

import asyncio
import contextlib
import random

import structlog
from gw_helpers import Collector, eventually
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection, serve

from services import free_port
from tradehall.core.clock import VirtualClock
from tradehall.gateway.assembler import BookState
from tradehall.gateway.backoff import Backoff
from tradehall.gateway.connection import WsRunner
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


class _Quiet:
    """A minimal :class:`WsSession` whose URL the test switches between dead and live."""

    def __init__(self, url: str) -> None:
        self.address = url

    def url(self) -> str:
        return self.address

    async def on_connect(self, ws: ClientConnection) -> None:
        return None

    async def on_message(self, ws: ClientConnection, data: str | bytes) -> None:
        return None

    async def check(self, ws: ClientConnection, now: float) -> None:
        return None

    def on_disconnect(self, reason: str) -> None:
        return None


async def test_connect_failures_warn_once_a_minute_then_one_info_when_back() -> None:
    clock = VirtualClock()
    dead = f"ws://127.0.0.1:{free_port()}"  # nothing listens: refused at once
    session = _Quiet(dead)
    # a fixed 7 s between attempts (minimum == cap), so the minute boundaries are exact
    runner = WsRunner(
        "venue-x", session, clock=clock, backoff=Backoff(7.0, 7.0, minimum=7.0), tick=1.0
    )

    async def hold(ws: ServerConnection) -> None:
        await ws.send("hello")
        await ws.wait_closed()

    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(runner.run())
        try:
            for attempt in range(1, 21):  # attempts at t = 0, 7, ..., 133 s
                await eventually(lambda n=attempt: runner.failures == n and clock.sleepers == 1)  # type: ignore[misc]
                if attempt < 20:
                    await clock.advance(7.0)
            failed = [e for e in logs if e["event"] == "connect_failed"]
            assert [e["attempts"] for e in failed] == list(range(1, 21))
            warned = [
                (e["attempts"], e["failing_for"]) for e in failed if e["log_level"] == "warning"
            ]
            # the first failure, then the first one at least 60 s after the previous warning
            assert warned == [(1, 0.0), (10, 63.0), (19, 126.0)]
            assert all(e["log_level"] in ("warning", "info") for e in failed)
            first = failed[0]
            assert first["venue"] == "venue-x" and first["url"] == dead
            assert first["error"].startswith(("ConnectionRefusedError", "OSError"))
            assert first["retry_in"] == 7.0
            assert not [e for e in logs if e["event"] == "connection_restored"]

            async with serve(hold, "127.0.0.1", 0) as server:
                port = server.sockets[0].getsockname()[1]
                session.address = f"ws://127.0.0.1:{port}"
                await clock.advance(7.0)
                await eventually(lambda: runner.connects == 1)
                await eventually(lambda: runner.failures == 0)
                restored = [e for e in logs if e["event"] == "connection_restored"]
                assert len(restored) == 1
                assert restored[0]["log_level"] == "info"
                assert restored[0]["failed_attempts"] == 20
                assert restored[0]["down_for"] == 140.0
                assert len([e for e in logs if e["event"] == "connect_failed"]) == 20
            # the venue goes away again: a dropped live connection is an info, the next failed
            # attempt starts a new count and warns at once
            await eventually(lambda: len(runner.disconnects) == 21 and clock.sleepers == 1)
            assert logs[-1]["event"] == "reconnecting" and logs[-1]["log_level"] == "info"
            await clock.advance(7.0)
            await eventually(lambda: runner.failures == 1)
            last = logs[-1]
            assert (last["event"], last["log_level"], last["attempts"]) == (
                "connect_failed",
                "warning",
                1,
            )
            assert last["failing_for"] == 0.0
        finally:
            await runner.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
