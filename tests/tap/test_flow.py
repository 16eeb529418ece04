"""Time-driven flows over real sockets with virtual time: breaker, resolution, WebSocket pushes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tradehall.tap import ledger

from .conftest import PRICE, Harness, running


@pytest.fixture(params=["memory", "redis"])
async def tap(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """This module runs against both backends (Part A §2: the same suite for both)."""
    async with running(tmp_path, request.param) as harness:
        await harness.tick(31)
        yield harness


async def next_of(ws: ClientConnection, kind: str, limit: int = 100) -> dict[str, Any]:
    for _ in range(limit):
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if msg["type"] == kind:
            data: dict[str, Any] = msg["data"]
            return data
    raise AssertionError(f"no {kind} message")


async def status_becomes(ws: ClientConnection, health: str) -> None:
    for _ in range(20):
        if (await next_of(ws, "system:status"))["price_health"] == health:
            return
    raise AssertionError(f"status never became {health}")


async def test_breaker_flow(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 10_000)
    async with connect(tap.url.replace("http", "ws") + "/ws") as ws:
        await status_becomes(ws, "healthy")
        await tap.tick(9, price=None)  # last price 10 s ago: degraded, bets still open
        assert tap.service.breaker.state.value == "degraded"
        await status_becomes(ws, "degraded")
        assert (await tap.bet(token, tap.placeable_cells()[0]["cell_id"])).status_code == 202
        await tap.tick(1, price=None)  # 11 s: critical
        await status_becomes(ws, "critical")
        resp = await tap.bet(token, tap.placeable_cells()[1]["cell_id"])
        assert resp.status_code == 503
        assert resp.json()["error"] == "PRICE_FEED_STALE" and resp.json()["retry_after"] == 10
        assert resp.headers["Retry-After"] == "10"
        health = await tap.http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["checks"]["circuit_breaker"]["status"] == "open"
        await tap.tick(30)  # fresh prices, 29 s of recovery so far
        assert (await tap.bet(token, tap.placeable_cells()[1]["cell_id"])).status_code == 503
        await tap.tick(1)
        await status_becomes(ws, "healthy")
        assert (await tap.bet(token, tap.placeable_cells()[1]["cell_id"])).status_code == 202


async def test_interrupted_recovery_restarts(tap: Harness) -> None:
    await tap.tick(12, price=None)
    assert tap.service.breaker.state.value == "critical"
    await tap.tick(20)
    await tap.tick(4, price=None)  # age 4 s: recovery restarts
    await tap.tick(30)
    assert tap.service.breaker.state.value == "critical"
    await tap.tick(1)
    assert tap.service.breaker.state.value == "healthy"


def cell_with(tap: Harness, *, holds_price: bool) -> dict[str, Any]:
    first = tap.layout().first_placeable_col_start
    for cell in tap.placeable_cells():
        if cell["col_start"] != first:
            continue
        inside = cell["lower"] <= PRICE <= cell["upper"]
        far = cell["lower"] > PRICE + 5_000
        if (holds_price and inside) or (not holds_price and far):
            return cell
    raise AssertionError("no such cell")


async def test_resolution_win_and_loss_with_ws_events(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    win, lose = cell_with(tap, holds_price=True), cell_with(tap, holds_price=False)
    async with connect(tap.url.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await next_of(ws, "auth:ok")
        win_bet = (await tap.bet(token, win["cell_id"], 100)).json()
        confirmed = await next_of(ws, "bet:confirmed")
        assert confirmed["bet_id"] == win_bet["bet_id"] and confirmed["new_balance"] == 900
        lose_bet = (await tap.bet(token, lose["cell_id"], 100)).json()
        await tap.tick(win["col_end"] + 2 - tap.now_s - 1)
        auth = {"Authorization": f"Bearer {token}"}
        pending = await tap.http.get(f"/api/bets/{win_bet['bet_id']}", headers=auth)
        assert pending.json()["status"] == "confirmed"  # not before col_end + 2 s
        await tap.tick(2)
        resolved = {}
        for _ in range(2):
            event = await next_of(ws, "bet:resolved")
            resolved[event["bet_id"]] = event
        payout = int((Decimal(100) * Decimal(win["rate"])).to_integral_value(rounding=ROUND_FLOOR))
        assert resolved[win_bet["bet_id"]]["status"] == "won"
        assert resolved[win_bet["bet_id"]]["payout"] == payout
        assert resolved[lose_bet["bet_id"]]["status"] == "lost"
    won = (await tap.http.get(f"/api/bets/{win_bet['bet_id']}", headers=auth)).json()
    assert won["payout"] == payout and won["resolution_price"] == PRICE
    assert win["col_start"] * 1000 <= won["resolution_tick_ts"] < win["col_end"] * 1000
    assert won["ticks_examined"] >= 9
    me = (await tap.http.get("/api/me", headers=auth)).json()
    assert me["balance"] == 800 + payout
    assert await tap.service.db.read(ledger.integrity_check) == []
    types = [
        e["ref_type"] for e in (await tap.http.get("/api/ledger", headers=auth)).json()["entries"]
    ]
    assert types == ["PAYOUT", "BET", "BET", "DEPOSIT"]
    await tap.tick(5)  # paid once only
    assert (await tap.http.get("/api/me", headers=auth)).json()["balance"] == 800 + payout


async def test_gap_voids_and_refunds_after_pause(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    cell = cell_with(tap, holds_price=True)
    bet = (await tap.bet(token, cell["cell_id"], 100)).json()
    silent_from = cell["col_start"] - 1 - tap.now_s
    await tap.tick(silent_from)
    await tap.tick(14, price=None)  # the whole column has no ticks; breaker opens
    assert tap.service.breaker.state.value == "critical"
    assert tap.now_s > cell["col_end"] + 2
    auth = {"Authorization": f"Bearer {token}"}
    paused = (await tap.http.get(f"/api/bets/{bet['bet_id']}", headers=auth)).json()
    assert paused["status"] == "confirmed"  # resolution paused while critical
    await tap.tick(32)
    voided = (await tap.http.get(f"/api/bets/{bet['bet_id']}", headers=auth)).json()
    assert voided["status"] == "void"
    assert (await tap.http.get("/api/me", headers=auth)).json()["balance"] == 1_000
    entries = (await tap.http.get("/api/ledger", headers=auth)).json()["entries"]
    assert entries[0]["ref_type"] == "REFUND" and entries[0]["amount"] == 100
    assert await tap.service.db.read(ledger.integrity_check) == []


async def test_ws_prices_and_token_query(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    url = tap.url.replace("http", "ws") + f"/ws?token={token}"
    async with connect(url) as ws, connect(tap.url.replace("http", "ws") + "/ws") as anon:
        await next_of(ws, "auth:ok")
        await tap.tick(1, price=PRICE + 123)
        assert (await next_of(ws, "price"))["price"] == PRICE + 123
        assert (await next_of(anon, "price"))["price"] == PRICE + 123
        await tap.bet(token, tap.placeable_cells()[0]["cell_id"])
        assert (await next_of(ws, "bet:confirmed"))["status"] == "confirmed"
        await ws.send(json.dumps({"type": "ping"}))
        await next_of(ws, "pong")
        await anon.send(json.dumps({"type": "ping"}))
        # the anonymous socket never sees another user's bet events
        for _ in range(3):
            msg = json.loads(await asyncio.wait_for(anon.recv(), 5))
            assert not msg["type"].startswith("bet:")
            if msg["type"] == "pong":
                break


async def test_status_pushed_every_5s(tap: Harness) -> None:
    async with connect(tap.url.replace("http", "ws") + "/ws") as ws:
        await next_of(ws, "system:status")
        before_ms = tap.clock.time_ns() // 1_000_000
        await tap.tick(5)
        # with the Redis bus, statuses published before we connected may still arrive first
        for _ in range(20):
            status = await next_of(ws, "system:status")
            if status["timestamp"] > before_ms:
                break
        assert status["timestamp"] > before_ms
        assert status["price_health"] == "healthy"
