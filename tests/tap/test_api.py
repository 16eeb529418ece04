"""The HTTP API over real sockets: auth, bets, errors, history, deposits, health."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from tradehall.tap import ledger

from .conftest import ADMIN, Harness, eventually, running


@pytest.fixture(params=["memory", "redis"])
async def tap(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """This module runs against both backends (Part A §2: the same suite for both)."""
    async with running(tmp_path, request.param) as harness:
        await harness.tick(31)
        yield harness


async def test_login_me_logout(tap: Harness) -> None:
    token, account = await tap.login()
    auth = {"Authorization": f"Bearer {token}"}
    me = await tap.http.get("/api/me", headers=auth)
    assert me.status_code == 200
    assert me.json()["wallet"] == account.address.lower() and me.json()["balance"] == 0
    # the same wallet logs in again to the same user
    token2, _ = await tap.login(account)
    me2 = await tap.http.get("/api/me", headers={"Authorization": f"Bearer {token2}"})
    assert me2.json()["id"] == me.json()["id"]
    assert (await tap.http.post("/api/auth/logout", headers=auth)).status_code == 200
    gone = await tap.http.get("/api/me", headers=auth)
    assert gone.status_code == 401 and gone.json()["error"] == "unauthorized"
    assert (await tap.http.get("/api/me")).status_code == 401
    assert (await tap.http.get("/api/me", headers={"Authorization": "Basic x"})).status_code == 401


async def test_login_response_shape_and_expiry(tap: Harness) -> None:
    account = Account.create()
    resp = await tap.http.post("/api/auth/login", json=tap.login_body(account))
    body = resp.json()
    assert body["expires_at"] == tap.now_s + 86_400
    assert len(body["session_id"]) == 64
    assert body["user"]["balance"] == 0
    tap.clock.set_ns(tap.clock.time_ns() + 86_400 * 10**9)
    me = await tap.http.get("/api/me", headers={"Authorization": f"Bearer {body['session_id']}"})
    assert me.status_code == 401


async def test_every_replay_case_is_401(tap: Harness) -> None:
    account, other = Account.create(), Account.create()
    good = tap.login_body(account, nonce="fixed-nonce-1")
    assert (await tap.http.post("/api/auth/login", json=good)).status_code == 200

    def resign(body: dict[str, Any], **change: Any) -> dict[str, Any]:
        return {**body, **change}

    cases = {
        "reused nonce": good,
        "31 s old": tap.login_body(account, ts=tap.now_s - 31),
        "6 s ahead": tap.login_body(account, ts=tap.now_s + 6),
        "other chain": tap.login_body(account, chain=137),
        "tampered timestamp": resign(tap.login_body(account), timestamp=tap.now_s - 1),
        "tampered nonce": resign(tap.login_body(account), nonce=uuid.uuid4().hex),
        "tampered chain": resign(tap.login_body(account), chain_id=2),
        "wrong signer": resign(tap.login_body(other), wallet=account.address),
        "64-byte signature": resign(
            tap.login_body(account), signature=tap.login_body(account)["signature"][:-2]
        ),
    }
    for name, body in cases.items():
        resp = await tap.http.post("/api/auth/login", json=body)
        assert resp.status_code == 401, name
        assert resp.json()["error"] == "invalid_signature", name


async def test_v_27_28_and_0_1_accepted(tap: Harness) -> None:
    seen = set()
    for _ in range(6):
        account = Account.create()
        body = tap.login_body(account)
        v = int(body["signature"][-2:], 16)
        seen.add(v)
        low = {**body, "signature": body["signature"][:-2] + f"{v - 27:02x}"}
        assert (await tap.http.post("/api/auth/login", json=low)).status_code == 200
        fresh = tap.login_body(account)
        assert (await tap.http.post("/api/auth/login", json=fresh)).status_code == 200
    assert seen <= {27, 28}


async def test_bet_accepted_then_history_and_ledger(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    cell = tap.placeable_cells()[0]
    resp = await tap.bet(token, cell["cell_id"], 100)
    assert resp.status_code == 202
    body = resp.json()
    assert body["status"] == "accepted" and body["new_balance"] == 900
    auth = {"Authorization": f"Bearer {token}"}
    one = (await tap.http.get(f"/api/bets/{body['bet_id']}", headers=auth)).json()
    assert one["status"] == "confirmed" and one["rate"] == cell["rate"]
    listed = (await tap.http.get("/api/bets", headers=auth)).json()["bets"]
    assert [b["bet_id"] for b in listed] == [body["bet_id"]]
    entries = (await tap.http.get("/api/ledger", headers=auth)).json()["entries"]
    assert [(e["ref_type"], e["amount"], e["balance_after"]) for e in entries] == [
        ("BET", -100, 900),
        ("DEPOSIT", 1_000, 1_000),
    ]
    # other users cannot read it
    other, _ = await tap.login()
    hidden = await tap.http.get(
        f"/api/bets/{body['bet_id']}", headers={"Authorization": f"Bearer {other}"}
    )
    assert hidden.status_code == 404


async def test_bet_errors(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 150)
    cells = tap.placeable_cells()
    grid = tap.layout()
    current = f"{grid.current_col_start}_{grid.row_lowers[0]}_{grid.row_lowers[1]}"

    async def error_of(resp_coro: Any) -> tuple[int, str]:
        resp = await resp_coro
        return resp.status_code, resp.json()["error"]

    assert await error_of(tap.bet(token, cells[0]["cell_id"], 7)) == (400, "invalid_amount")
    assert await error_of(tap.bet(token, current)) == (400, "cell_unavailable")
    assert await error_of(tap.bet(token, "nonsense")) == (400, "validation_error")
    assert await error_of(tap.bet(token, cells[0]["cell_id"], 100, nonce="a b")) == (
        400,
        "validation_error",
    )
    auth = {"Authorization": f"Bearer {token}"}
    bad = await tap.http.post("/api/bets", content=b"{", headers=auth)
    assert (bad.status_code, bad.json()["error"]) == (400, "validation_error")
    missing = await tap.http.post("/api/bets", json={"cell_id": "x"}, headers=auth)
    assert missing.status_code == 400 and missing.json()["error"] == "validation_error"
    assert (await tap.bet(token, cells[0]["cell_id"], 100)).status_code == 202
    assert await error_of(tap.bet(token, cells[0]["cell_id"], 10)) == (409, "duplicate_bet")
    assert await error_of(tap.bet(token, cells[1]["cell_id"], 100)) == (400, "insufficient_funds")
    changed = await tap.http.post(
        "/api/bets",
        json={"cell_id": cells[2]["cell_id"], "amount": 10, "nonce": "n-12345678", "rate": "1.5"},
        headers=auth,
    )
    if cells[2]["rate"] != "1.50":
        assert (changed.status_code, changed.json()["error"]) == (409, "rate_changed")
    unauth = await tap.http.post("/api/bets", json={"cell_id": "x", "amount": 1, "nonce": "n"})
    assert unauth.status_code == 401


async def test_repeated_nonce_returns_original_result(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    cells = tap.placeable_cells()
    first = await tap.bet(token, cells[0]["cell_id"], 100, nonce="idem-000001")
    again = await tap.bet(token, cells[0]["cell_id"], 100, nonce="idem-000001")
    other_cell = await tap.bet(token, cells[1]["cell_id"], 100, nonce="idem-000001")
    assert first.status_code == again.status_code == other_cell.status_code == 202
    assert first.json() == again.json() == other_cell.json()
    me = await tap.http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["balance"] == 900
    # even after the column closed, the nonce still answers with the stored result
    await tap.tick(30)
    late = await tap.bet(token, cells[0]["cell_id"], 100, nonce="idem-000001")
    assert late.status_code == 202 and late.json()["bet_id"] == first.json()["bet_id"]


async def test_column_expiry(tap: Harness) -> None:
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    grid = tap.layout()
    first = grid.first_placeable_col_start
    row = grid.row_lowers[10]
    cell = f"{first}_{row}_{row + 1_000}"
    seconds_left = first - 10 - tap.now_s  # it stops being placeable when it is current + 1
    await tap.tick(seconds_left - 1)
    assert (await tap.bet(token, cell)).status_code == 202
    await tap.tick(1)
    later = f"{first}_{row + 1_000}_{row + 2_000}"
    resp = await tap.bet(token, later)
    assert resp.status_code == 400 and resp.json()["error"] == "cell_unavailable"


async def test_rate_limit_11th_bet(tap_with: Callable[..., Any]) -> None:
    async with tap_with(bet_rate_limit=10) as tap:
        token, account = await tap.login()
        await tap.fund(account, 10_000)
        cells = tap.placeable_cells()
        for cell in cells[:10]:
            assert (await tap.bet(token, cell["cell_id"], 10)).status_code == 202
        resp = await tap.bet(token, cells[10]["cell_id"], 10)
        assert resp.status_code == 429 and resp.json()["error"] == "rate_limited"
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        await tap.tick(60)
        cells = tap.placeable_cells()
        assert (await tap.bet(token, cells[-1]["cell_id"], 10)).status_code == 202


async def test_double_spend_100_concurrent(tap_with: Callable[..., Any]) -> None:
    async with tap_with(max_batch=100) as tap:
        token, account = await tap.login()
        await tap.fund(account, 100)
        cells = tap.placeable_cells()[:100]
        responses = await asyncio.gather(*(tap.bet(token, c["cell_id"], 10) for c in cells))
        codes = sorted(r.status_code for r in responses)
        assert codes.count(202) == 10 and codes.count(400) == 90
        assert {r.json()["error"] for r in responses if r.status_code == 400} == {
            "insufficient_funds"
        }
        balances = sorted(r.json()["new_balance"] for r in responses if r.status_code == 202)
        assert balances == list(range(0, 100, 10))
        me = await tap.http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["balance"] == 0
        assert await tap.service.db.read(ledger.integrity_check) == []
        total = await tap.service.db.read(
            lambda c: c.execute("SELECT SUM(amount) FROM transaction_ledger").fetchone()[0]
        )
        assert total == 0


async def test_full_queue_503_then_timer_flush(tap_with: Callable[..., Any]) -> None:
    async with tap_with(max_batch=100, max_queue=2) as tap:
        token, account = await tap.login()
        await tap.fund(account, 1_000)
        cells = tap.placeable_cells()
        queued = [asyncio.ensure_future(tap.bet(token, c["cell_id"], 10)) for c in cells[:2]]
        await eventually(lambda: tap.service.batcher.depth == 2)
        over = await tap.bet(token, cells[2]["cell_id"], 10)
        assert over.status_code == 503 and over.json()["error"] == "overloaded"
        assert not any(q.done() for q in queued)
        await tap.timer.advance(0.1)
        assert [r.status_code for r in await asyncio.gather(*queued)] == [202, 202]


async def test_timeout_504_then_bet_visible(tap_with: Callable[..., Any]) -> None:
    async with tap_with(max_batch=100, flush_interval_s=10.0) as tap:
        token, account = await tap.login()
        await tap.fund(account, 1_000)
        cell = tap.placeable_cells()[0]
        pending = asyncio.ensure_future(tap.bet(token, cell["cell_id"], 10))
        await eventually(lambda: tap.service.batcher.depth == 1)
        await tap.timer.advance(5.0)
        resp = await pending
        assert resp.status_code == 504 and resp.json()["error"] == "timeout"
        bet_id = resp.json()["bet_id"]
        await tap.timer.advance(5.0)
        auth = {"Authorization": f"Bearer {token}"}
        for _ in range(100):
            found = await tap.http.get(f"/api/bets/{bet_id}", headers=auth)
            if found.status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert found.status_code == 200 and found.json()["status"] == "confirmed"


async def test_admin_deposit_guarded(tap: Harness) -> None:
    body = {"wallet": "0x" + "ab" * 20, "amount": 500}
    assert (await tap.http.post("/api/admin/deposit", json=body)).status_code == 403
    bad = await tap.http.post(
        "/api/admin/deposit", json=body, headers={"Authorization": "Bearer wrong"}
    )
    assert bad.status_code == 403
    ok = await tap.http.post(
        "/api/admin/deposit", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert ok.status_code == 200 and ok.json()["balance"] == 500
    neg = await tap.http.post(
        "/api/admin/deposit",
        json={**body, "amount": -5},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert neg.status_code == 400 and neg.json()["error"] == "invalid_amount"
    # self-funding is off by default
    token, _ = await tap.login()
    fund = await tap.http.post(
        "/api/dev/fund", json={"amount": 100}, headers={"Authorization": f"Bearer {token}"}
    )
    assert fund.status_code == 404


async def test_admin_withdrawal_debits_with_a_ledger_row_and_never_overdraws(
    tap: Harness,
) -> None:
    wallet = "0x" + "cd" * 20
    admin = {"Authorization": f"Bearer {ADMIN}"}
    url = "/api/admin/withdraw"
    assert (await tap.http.post(url, json={"wallet": wallet, "amount": 1})).status_code == 403
    unknown = await tap.http.post(url, json={"wallet": wallet, "amount": 1}, headers=admin)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    await tap.http.post("/api/admin/deposit", json={"wallet": wallet, "amount": 500}, headers=admin)
    ok = await tap.http.post(url, json={"wallet": wallet, "amount": 200}, headers=admin)
    assert ok.status_code == 200 and ok.json()["balance"] == 300
    too_much = await tap.http.post(url, json={"wallet": wallet, "amount": 301}, headers=admin)
    assert (too_much.status_code, too_much.json()["error"]) == (400, "insufficient_funds")
    for bad in (0, -5):
        resp = await tap.http.post(url, json={"wallet": wallet, "amount": bad}, headers=admin)
        assert (resp.status_code, resp.json()["error"]) == (400, "invalid_amount")
    rows = await tap.service.db.read(
        lambda c: c.execute(
            "SELECT l.amount, l.balance_after, l.ref_type FROM transaction_ledger l"
            " JOIN users u ON u.id = l.user_id WHERE u.wallet_address = ? ORDER BY l.rowid",
            (wallet,),
        ).fetchall()
    )
    assert rows == [(500, 500, "DEPOSIT"), (-200, 300, "WITHDRAWAL")]
    assert await tap.service.db.read(ledger.integrity_check) == []


async def test_health_version_metrics(tap: Harness) -> None:
    health = await tap.http.get("/healthz")
    assert health.status_code == 200
    checks = health.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["circuit_breaker"]["status"] == "closed"
    assert (await tap.http.get("/version")).json()["version"]
    await tap.http.get("/api/grid")
    text = (await tap.http.get("/metrics")).text
    for name in (
        "http_requests_total",
        "http_request_duration_seconds",
        "price_feed_staleness_seconds",
        "circuit_breaker_state",
        "last_successful_archive_timestamp",
        "bets_placed_total",
        "bets_resolved_total",
    ):
        assert name in text, name
    assert 'endpoint="grid"' in text


async def test_require_bet_signature(tap_with: Callable[..., Any]) -> None:
    from eth_account.messages import encode_defunct

    from tradehall.tap.auth import bet_text

    async with tap_with(require_bet_signature=True) as tap:
        token, account = await tap.login()
        await tap.fund(account, 1_000)
        cells = tap.placeable_cells()
        auth = {"Authorization": f"Bearer {token}"}

        def signed(
            cell_id: str, nonce: str, *, signer: Any = account, ts: int = 0
        ) -> dict[str, Any]:
            stamp = ts or tap.now_s
            text = bet_text(cell_id=cell_id, amount=100, nonce=nonce, timestamp=stamp, chain_id=1)
            sig = signer.sign_message(encode_defunct(text=text))
            return {
                "cell_id": cell_id,
                "amount": 100,
                "nonce": nonce,
                "timestamp": stamp,
                "chain_id": 1,
                "signature": "0x" + bytes(sig.signature).hex(),
            }

        unsigned = await tap.bet(token, cells[0]["cell_id"])
        assert unsigned.status_code == 401 and unsigned.json()["error"] == "invalid_signature"
        ok = await tap.http.post(
            "/api/bets", json=signed(cells[0]["cell_id"], "sb-000001"), headers=auth
        )
        assert ok.status_code == 202
        tampered = {**signed(cells[1]["cell_id"], "sb-000002"), "cell_id": cells[2]["cell_id"]}
        bad = await tap.http.post("/api/bets", json=tampered, headers=auth)
        assert bad.status_code == 401
        other = signed(cells[1]["cell_id"], "sb-000003", signer=Account.create())
        assert (await tap.http.post("/api/bets", json=other, headers=auth)).status_code == 401
        old = signed(cells[1]["cell_id"], "sb-000004", ts=tap.now_s - 31)
        assert (await tap.http.post("/api/bets", json=old, headers=auth)).status_code == 401
        replay = await tap.http.post(
            "/api/bets", json=signed(cells[0]["cell_id"], "sb-000001"), headers=auth
        )
        assert replay.status_code == 202 and replay.json()["bet_id"] == ok.json()["bet_id"]


async def test_before_first_price_everything_is_stale(tmp_path: Path) -> None:
    async with running(tmp_path) as cold:  # no price has arrived yet
        grid = await cold.http.get("/api/grid")
        assert grid.status_code == 503 and grid.json()["error"] == "PRICE_FEED_STALE"
        health = await cold.http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["checks"]["price_feed"]["stale_for_ms"] is None


async def test_dev_self_fund_and_ws_auth_error(tap_with: Callable[..., Any]) -> None:
    import json

    from websockets.asyncio.client import connect

    async with tap_with(dev_self_fund=True) as tap:
        token, _ = await tap.login()
        auth = {"Authorization": f"Bearer {token}"}
        funded = await tap.http.post("/api/dev/fund", json={"amount": 5_000}, headers=auth)
        assert funded.status_code == 200 and funded.json()["balance"] == 5_000
        too_much = await tap.http.post("/api/dev/fund", json={"amount": 10**7}, headers=auth)
        assert too_much.status_code == 400
        entries = (await tap.http.get("/api/ledger", headers=auth)).json()["entries"]
        assert [(e["ref_type"], e["amount"]) for e in entries] == [("DEPOSIT", 5_000)]
        async with connect(tap.url.replace("http", "ws") + "/ws?token=nope") as ws:
            kinds = [json.loads(await ws.recv())["type"] for _ in range(2)]
            assert "auth:error" in kinds


async def test_disk_guard_stops_bets(tap_with: Callable[..., Any]) -> None:
    import collections

    usage = collections.namedtuple("usage", "total used free")
    async with tap_with() as tap:
        token, account = await tap.login()
        await tap.fund(account, 1_000)
        tap.service.disk_usage = lambda _: usage(100, 86, 14)
        await tap.tick(10)  # the monitor looks at the disk every 10 s
        resp = await tap.bet(token, tap.placeable_cells()[0]["cell_id"])
        assert resp.status_code == 503 and resp.json()["error"] == "DISK_CRITICAL"
        health = await tap.http.get("/healthz")
        assert health.status_code == 503 and health.json()["checks"]["disk"]["status"] == "critical"
        tap.service.disk_usage = lambda _: usage(100, 50, 50)
        await tap.tick(10)
        assert (await tap.bet(token, tap.placeable_cells()[0]["cell_id"])).status_code == 202
