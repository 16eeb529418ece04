"""End to end: ``tradehall up --sim`` as real processes, used the way a user would.

One test walks the whole wiring, because starting the platform is the expensive part:

1. the platform starts on free ports with a temporary data directory and prints its summary;
2. orders placed on the Exchange's REST API show up on the Gateway's ``/ws`` as events of the
   ``tradehall`` venue (a resting bid as a book level, a market order as a trade with the
   exchange's trade id, the cancel as the level's deletion);
3. a test wallet logs into the Tap with an EIP-191 signature, funds itself (development mode,
   on with ``--sim``), places a bet once the price feed -- the Gateway's BTC-USD -- is healthy,
   and sees the bet resolved from those prices;
4. SIGINT stops everything: exit status 0 and every port closed.

The Tap's grid runs with 1 s columns, a 1 s resolution delay and a 1 s breaker recovery (its
own settings, passed as ``TRADEHALL_*`` variables that only the Tap has), so a bet resolves
within seconds. Every wait is a poll against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from eth_account import Account
from eth_account.messages import encode_defunct

from services import free_ports
from tradehall.tap.auth import LoginRequest, login_text

START_DEADLINE = 60.0
STEP_DEADLINE = 25.0
# Real processes on a possibly loaded 2-core CI machine: above the suite's 120 s default, below
# the sum of every deadline a test could use.
pytestmark = pytest.mark.timeout(240)


@dataclass
class Platform:
    process: asyncio.subprocess.Process
    exchange: str
    gateway_ws: str
    tap: str
    ports: list[int]
    output: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def log(self) -> str:
        return "\n".join(self.output[-80:])


async def _read(process: asyncio.subprocess.Process, sink: list[str]) -> None:
    assert process.stdout is not None
    async for raw in process.stdout:
        sink.append(raw.decode(errors="replace").rstrip())


async def until(
    what: str, check: Callable[[], Awaitable[Any]], platform: Platform, deadline: float
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the platform's output."""
    end = time.monotonic() + deadline
    while True:
        result = await check()
        if result:
            return result
        if platform.process.returncode is not None or time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}; platform output:\n{platform.log()}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    env = {
        "TRADEHALL_COLUMN_SECONDS": "1",
        "TRADEHALL_RESOLVE_DELAY": "1",
        "TRADEHALL_BREAKER_RECOVERY": "1s",
        "TRADEHALL_JOURNAL_SYNC": "none",
    }
    p = await _run_up(tmp_path, env, bots=True)
    process, reader = p.process, p.reader

    async def started() -> bool:
        return any(line.startswith("Tradehall is up") for line in p.output)

    try:
        await until("the startup summary", started, p, START_DEADLINE)
        yield p
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 40)
            except TimeoutError:
                process.kill()
                await process.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader, 5)


async def test_the_platform_end_to_end(platform: Platform) -> None:
    p = platform
    summary = "\n".join(p.output)
    assert f"{p.exchange}/console" in summary and f"{p.tap}/" in summary
    assert p.gateway_ws in summary

    # -- exchange orders seen on the gateway's data bus as tradehall-venue events -----------
    async with (
        httpx.AsyncClient(base_url=p.exchange, timeout=10.0) as ex,
        websockets.connect(p.gateway_ws + "?consumer=e2e") as bus,
    ):
        await bus.send(json.dumps({"op": "subscribe", "provider": "tradehall", "symbol": "BTC-USD",
                                   "event_types": ["book_update", "trade"], "id": 1}))  # fmt: skip
        events: list[dict[str, Any]] = []

        async def pump() -> None:
            async for frame in bus:
                events.append(json.loads(frame))

        pumping = asyncio.create_task(pump())

        async def acked() -> bool:
            return any(e.get("type") == "ack" and e.get("id") == 1 for e in events)

        await until("the subscription ack", acked, p, STEP_DEADLINE)
        buyer = f"e2e{uuid.uuid4().hex[:8]}"
        r = await ex.post("/brokers", json={"broker_id": buyer, "initial_cash": 10_000_000})
        assert r.status_code == 201, r.text
        r = await ex.post("/orders", json={
            "type": "limit", "broker_id": buyer, "document_number": "1", "side": "bid",
            "symbol": "BTCUSD", "quantity": 7, "price": 1234.56,
            "expires_at": "2030-01-01T00:00:00Z"})  # fmt: skip
        assert r.status_code == 201, r.text
        resting = r.json()["order_id"]

        def level(price: str, qty: str) -> Callable[[], Awaitable[bool]]:
            async def seen() -> bool:
                return any(
                    e.get("event_type") == "book_update"
                    and e["provider"] == "tradehall"
                    and e["symbol"] == "BTC-USD"
                    and [Decimal(x) for x in lv] == [Decimal(price), Decimal(qty)]
                    for e in events
                    for lv in e.get("bids", [])
                )

            return seen

        await until("our bid on the gateway", level("1234.56", "7"), p, STEP_DEADLINE)

        async def market_order() -> dict[str, Any] | None:
            r = await ex.post("/orders", json={
                "type": "market", "broker_id": buyer, "document_number": "2", "side": "bid",
                "symbol": "BTCUSD", "quantity": 1})  # fmt: skip
            if r.status_code == 409:  # the bots' asks were momentarily being replaced
                return None
            assert r.status_code == 201, r.text
            result: dict[str, Any] = r.json()
            return result

        order = await until("a filled market order", market_order, p, STEP_DEADLINE)
        trade = order["trades"][0]

        async def our_trade() -> bool:
            return any(
                e.get("event_type") == "trade" and e["provider"] == "tradehall"
                and e["trade_id"] == trade["trade_id"]
                and Decimal(e["price"]) == Decimal(str(trade["price"]))
                and Decimal(e["qty"]) == 1 and e["side"] == "buy"
                for e in events
            )  # fmt: skip

        await until("our trade on the gateway", our_trade, p, STEP_DEADLINE)
        r = await ex.delete(f"/orders/{resting}")
        assert r.status_code == 200, r.text
        await until("our bid's deletion on the gateway", level("1234.56", "0"), p, STEP_DEADLINE)
        pumping.cancel()

    # -- a Tap bet priced and resolved from the gateway's BTC-USD --------------------------
    async with httpx.AsyncClient(base_url=p.tap, timeout=10.0) as tap:
        account = Account.create()
        request = LoginRequest(account.address, uuid.uuid4().hex, int(time.time()), 1, "0x")
        signature = account.sign_message(encode_defunct(text=login_text(request)))
        r = await tap.post("/api/auth/login", json={
            "wallet": request.wallet, "nonce": request.nonce, "timestamp": request.timestamp,
            "chain_id": 1, "signature": "0x" + bytes(signature.signature).hex()})  # fmt: skip
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['session_id']}"}
        r = await tap.post("/api/dev/fund", json={"amount": 10_000}, headers=auth)
        assert r.status_code == 200, r.text

        async def healthy() -> dict[str, Any] | None:
            r = await tap.get("/healthz")
            return r.json() if r.status_code == 200 else None

        health = await until("a healthy tap price feed", healthy, p, STEP_DEADLINE)
        assert health["checks"]["price_feed"]["source"] == "gateway"

        async def bet() -> dict[str, Any] | None:
            grid = (await tap.get("/api/grid")).json()
            cells = [c for c in grid.get("cells", []) if c["placeable"]]
            if not cells:
                return None
            first = min(c["col_start"] for c in cells)
            price = grid["price"]
            cell = min(
                (c for c in cells if c["col_start"] == first),
                key=lambda c: abs((c["lower"] + c["upper"]) // 2 - price),
            )
            r = await tap.post("/api/bets", headers=auth, json={
                "cell_id": cell["cell_id"], "amount": grid["presets"][0],
                "nonce": uuid.uuid4().hex})  # fmt: skip
            if r.status_code in (400, 409, 503) and r.json().get("error") in (
                "cell_unavailable", "rate_changed", "PRICE_FEED_STALE",
            ):  # fmt: skip
                return None  # the column moved on between the grid and the bet: try again
            assert r.status_code == 202, r.text
            result: dict[str, Any] = r.json()
            return result

        placed = await until("an accepted bet", bet, p, STEP_DEADLINE)

        async def resolved() -> dict[str, Any] | None:
            r = await tap.get(f"/api/bets/{placed['bet_id']}", headers=auth)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body if body["status"] in ("won", "lost", "void") else None

        outcome = await until("the bet's resolution", resolved, p, STEP_DEADLINE)
        assert outcome["status"] in ("won", "lost"), outcome  # prices kept flowing: no void
        if outcome["status"] == "won":  # a win is proven by a stored tick inside the band
            assert outcome["ticks_examined"] > 0, outcome

    # -- Ctrl-C stops everything -----------------------------------------------------------
    p.process.send_signal(signal.SIGINT)
    status = await asyncio.wait_for(p.process.wait(), 40)
    assert p.reader is not None
    await asyncio.wait_for(p.reader, 10)  # the last lines are still in the pipe
    assert status == 0, p.log()
    assert any("stopped cleanly" in line for line in p.output)
    for port in p.ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


# -- supervision with the real systems ---------------------------------------------------------


async def _run_up(tmp_path: Path, env: dict[str, str], *extra: str, bots: bool = False) -> Platform:
    """``tradehall up --sim`` on free ports (``--no-bots`` unless ``bots``), its output read."""
    ports = free_ports(3)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradehall", "up", "--sim", *(() if bots else ("--no-bots",)),
        "--exchange-port", str(ports[0]), "--gateway-port", str(ports[1]),
        "--tap-port", str(ports[2]), "--data-dir", str(tmp_path / "data"), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )  # fmt: skip
    p = Platform(
        process,
        exchange=f"http://127.0.0.1:{ports[0]}",
        gateway_ws=f"ws://127.0.0.1:{ports[1]}/ws",
        tap=f"http://127.0.0.1:{ports[2]}",
        ports=ports,
    )
    p.reader = asyncio.create_task(_read(process, p.output))
    return p


async def _finish(p: Platform, deadline: float = 40) -> int:
    try:
        status = await asyncio.wait_for(p.process.wait(), deadline)
    except TimeoutError:
        p.process.kill()
        await p.process.wait()
        pytest.fail(f"tradehall up did not exit; output:\n{p.log()}")
    assert p.reader is not None
    await asyncio.wait_for(p.reader, 10)
    for port in p.ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    return status


async def test_a_system_that_cannot_start_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    # 0 s columns are refused by the Tap's own settings: it exits during start-up
    p = await _run_up(tmp_path, {"TRADEHALL_COLUMN_SECONDS": "0"})
    status = await _finish(p, deadline=START_DEADLINE)
    assert status == 1, p.log()
    log = p.log()
    assert "up       | could not start: tap exited during startup (exit status 2)" in log
    assert "column_seconds" in log  # the Tap's own message is shown
    assert "exchange ready" in log and "gateway ready" in log  # ...and they were stopped again
    assert "Tradehall is up" not in log


async def test_a_killed_system_is_restarted_and_sigterm_stops_everything(tmp_path: Path) -> None:
    p = await _run_up(tmp_path, {})

    async def started() -> bool:
        return any(line.startswith("Tradehall is up") for line in p.output)

    await until("the startup summary", started, p, START_DEADLINE)
    processes = next(line for line in p.output if "Processes:" in line)
    gateway_pid = int(processes.split("gateway ")[1].split(",")[0])
    os.kill(gateway_pid, signal.SIGKILL)

    async def back() -> bool:
        return any("gateway is back" in line for line in p.output)

    await until("the gateway's restart", back, p, STEP_DEADLINE)
    log = p.log()
    assert "gateway stopped unexpectedly (killed by SIGKILL)" in log
    assert "restarting gateway in 1 s" in log
    async with httpx.AsyncClient(timeout=5.0) as http:
        gateway = p.gateway_ws.replace("ws://", "http://").removesuffix("/ws")

        async def tradehall_live() -> bool:
            with contextlib.suppress(httpx.TransportError):
                books = (await http.get(f"{gateway}/healthz")).json()["books"]
                return bool(books["tradehall"]["BTC-USD"] == "LIVE")
            return False

        await until("the new gateway's tradehall book", tradehall_live, p, STEP_DEADLINE)
    p.process.send_signal(signal.SIGTERM)
    assert await _finish(p) == 0, p.log()
    assert "stopped cleanly" in p.log()
