"""Order router against a real exchange (uvicorn, REST): idempotency (concurrent and across a
restart, SC-007), the trading switch (SC-008), a venue timeout reconciled to the true state, and
ExecReports delivered to the owning consumer through the dispatcher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import websockets
from test_gw_tradehall import FAR, Exchange, exchange  # noqa: F401 -- the fixture

from services import serve
from tradehall.gateway.databus import TradingSwitch
from tradehall.gateway.dispatcher import AsyncDispatcher
from tradehall.gateway.events import ExecReport, ExecState, Side
from tradehall.gateway.orders import (
    OrderRequest,
    OrderRouter,
    OrderStore,
    TradehallOrders,
    UnknownOutcomeError,
)
from tradehall.gateway.service import GatewayConfig, GatewayService
from tradehall.gateway.venues.tradehall import tradehall_symbols

SYMBOLS = tradehall_symbols(["BTC-USD", "ETH-USD"])


class TimeoutOnce(httpx.AsyncBaseTransport):
    """Forwards requests; the next ``POST /orders`` reaches the exchange but its answer is lost."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lose_next_answer = False
        self.posts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/orders":
            self.posts += 1
            if self.lose_next_answer:
                self.lose_next_answer = False
                await response.aread()
                raise httpx.ReadTimeout("answer lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Rig:
    def __init__(self, server: Exchange, db: Path) -> None:
        self.exchange = server
        self.transport = TimeoutOnce()
        self.http = httpx.AsyncClient(base_url=server.base, transport=self.transport)
        self.switch = TradingSwitch()
        self.dispatcher = AsyncDispatcher()
        self.store = OrderStore(db)
        self.venue = TradehallOrders(self.http, symbol_map=SYMBOLS.to_venue)
        self.router = OrderRouter(
            self.store, {"tradehall": self.venue}, self.switch, self.dispatcher.publish
        )

    async def start(self) -> None:
        await self.store.open()
        await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.store.close()
        await self.http.aclose()

    async def orders(self, broker: str = "alice") -> list[dict[str, Any]]:
        resp = await self.exchange.http.get(f"/brokers/{broker}/orders?limit=100")
        result: list[dict[str, Any]] = resp.json()["orders"]
        return result


@pytest.fixture
async def rig(exchange: Exchange, tmp_path: Path) -> AsyncIterator[Rig]:  # noqa: F811
    r = Rig(exchange, tmp_path / "orders.sqlite")
    await r.start()
    yield r
    await r.stop()


def _request(cid: str, consumer: str = "alice", qty: int = 3) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        consumer=consumer,
        venue="tradehall",
        symbol="BTC-USD",
        side=Side.SELL,
        type="limit",
        quantity=Decimal(qty),
        price=Decimal("150.25"),
        expires_at=FAR,
    )


async def test_trading_switch_off_refuses_and_sends_nothing(rig: Rig) -> None:
    outcome = await rig.router.submit(_request("o1"))
    assert outcome.status == "refused" and rig.transport.posts == 0
    assert await rig.store.get("o1") is None  # not even claimed: it can be sent once enabled
    rig.switch.set("alice", True)
    assert (await rig.router.submit(_request("o1"))).status == "accepted"
    rig.switch.set("alice", False)
    assert (await rig.router.submit(_request("o2"))).status == "refused"
    assert len(await rig.orders()) == 1


async def test_concurrent_duplicates_send_one_order_and_share_its_outcome(rig: Rig) -> None:
    rig.switch.set("alice", True)
    feed = rig.dispatcher.consumer("alice")
    outcomes = await asyncio.gather(*(rig.router.submit(_request("dup1")) for _ in range(10)))
    assert rig.transport.posts == 1
    assert len(await rig.orders()) == 1
    first = [o for o in outcomes if not o.duplicate]
    assert len(first) == 1 and first[0].state is ExecState.ACK
    assert {o.venue_order_id for o in outcomes} == {first[0].venue_order_id}
    report = await asyncio.wait_for(feed.get(), 2)
    assert isinstance(report, ExecReport) and report.client_order_id == "dup1"
    assert report.venue_order_id == first[0].venue_order_id and len(feed.queue) == 0


async def test_a_repeat_after_a_restart_returns_the_original_outcome(
    exchange: Exchange,  # noqa: F811
    tmp_path: Path,
) -> None:
    db = tmp_path / "orders.sqlite"
    first = Rig(exchange, db)
    await first.start()
    first.switch.set("alice", True)
    original = await first.router.submit(_request("keep1"))
    await first.stop()
    second = Rig(exchange, db)  # a new process: fresh memory, same SQLite file
    await second.start()
    try:
        second.switch.set("alice", True)
        again = await second.router.submit(_request("keep1", qty=99))
        assert again.duplicate and again.venue_order_id == original.venue_order_id
        assert second.transport.posts == 0
        assert len(await second.orders()) == 1
    finally:
        await second.stop()


async def test_a_lost_answer_is_reconciled_to_the_true_state_never_resent(rig: Rig) -> None:
    rig.switch.set("alice", True)
    feed = rig.dispatcher.consumer("alice")
    await rig.exchange.order("bob", "BTC-USD", "bid", 2, "150.25")  # will partly fill ours
    rig.transport.lose_next_answer = True
    outcome = await rig.router.submit(_request("lost1"))
    assert outcome.status == "accepted" and outcome.state is ExecState.PARTIAL  # the truth
    orders = await rig.orders()
    assert len(orders) == 1 and orders[0]["order_id"] == outcome.venue_order_id
    assert rig.transport.posts == 1  # reconciled by a query, not by sending again
    report = await asyncio.wait_for(feed.get(), 2)
    assert isinstance(report, ExecReport) and report.state is ExecState.PARTIAL
    repeat = await rig.router.submit(_request("lost1"))
    assert repeat.duplicate and rig.transport.posts == 1


async def test_an_order_that_never_arrived_stays_unknown_and_is_not_resent(rig: Rig) -> None:
    rig.switch.set("alice", True)
    original_place = rig.venue.place

    async def place(request: OrderRequest) -> tuple[str, ExecState]:
        raise UnknownOutcomeError("connect failed")  # lost before it reached the exchange

    rig.venue.place = place  # type: ignore[method-assign]
    outcome = await rig.router.submit(_request("ghost1"))
    assert outcome.status == "unknown" and outcome.reason == "not found at the venue"
    rig.venue.place = original_place  # type: ignore[method-assign]
    again = await rig.router.submit(_request("ghost1"))
    assert again.status == "unknown" and rig.transport.posts == 0  # never blindly re-sent
    assert [r.client_order_id for r in await rig.store.unfinished()] == ["ghost1"]
    assert await rig.orders() == []


async def test_rejections_are_reported(rig: Rig) -> None:
    rig.switch.set("carol", True)  # no such broker at the exchange
    feed = rig.dispatcher.consumer("carol")
    outcome = await rig.router.submit(_request("rej1", consumer="carol"))
    assert outcome.status == "rejected" and "broker_not_found" in outcome.reason
    report = await asyncio.wait_for(feed.get(), 2)
    assert isinstance(report, ExecReport) and report.state is ExecState.REJECTED
    bad = await rig.router.submit(_request("not-alnum!", consumer="carol"))
    assert bad.status == "rejected" and rig.transport.posts == 1


async def test_orders_over_the_websocket_bus_with_exec_reports_back(
    exchange: Exchange,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = GatewayConfig(
        venues=("tradehall",),
        symbols=("BTC-USD",),
        tradehall_url=exchange.base,
        orders_db=str(tmp_path / "orders.sqlite"),
    )
    service = GatewayService(config)
    await service.start()
    try:
        async with serve(service.app()) as port:
            order = {
                "op": "order",
                "client_order_id": "ws1",
                "venue": "tradehall",
                "symbol": "BTC-USD",
                "side": "sell",
                "type": "limit",
                "quantity": "2",
                "price": "160.50",
                "expires_at": FAR,
            }
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?consumer=alice") as ws:
                await ws.send(json.dumps(order | {"id": 1}))
                refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert refused["type"] == "order_result" and refused["status"] == "refused"
                await ws.send(json.dumps({"op": "set_trading_mode", "enabled": True, "id": 2}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ack"
                await ws.send(json.dumps(order | {"id": 3}))
                messages = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
                result = next(m for m in messages if m.get("type") == "order_result")
                report = next(m for m in messages if m.get("event_type") == "exec_report")
                assert result["status"] == "accepted" and result["state"] == "ACK"
                assert report["client_order_id"] == "ws1" and report["state"] == "ACK"
                assert report["venue_order_id"] == result["venue_order_id"]
                await ws.send(json.dumps(order | {"id": 4}))
                again = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert again["duplicate"] is True
                await ws.send(json.dumps({"op": "set_trading_mode", "enabled": False, "id": 5}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ack"
                await ws.send(json.dumps({"op": "cancel", "client_order_id": "ws1", "id": 6}))
                messages = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
                cancelled = next(m for m in messages if m.get("type") == "cancel_result")
                report = next(m for m in messages if m.get("event_type") == "exec_report")
                assert cancelled["status"] == "accepted" and cancelled["state"] == "CANCELLED"
                assert report["state"] == "CANCELLED" and report["client_order_id"] == "ws1"
                await ws.send(json.dumps({"op": "cancel", "client_order_id": "ws1", "id": 7}))
                gone = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert gone["status"] == "rejected" and gone["reason"] == "no such open order"
            resp = await exchange.http.get("/brokers/alice/orders")
            orders = resp.json()["orders"]
            assert [(o["document_number"], o["status"]) for o in orders] == [("ws1", "cancelled")]
    finally:
        await service.stop()


async def test_open_orders_are_followed_to_their_final_state_in_order(rig: Rig) -> None:
    rig.switch.set("alice", True)
    feed = rig.dispatcher.consumer("alice")
    placed = await rig.router.submit(_request("follow1", qty=5))
    other = await rig.router.submit(
        msgspec.structs.replace(_request("follow2", qty=1), price=Decimal("170.00"))
    )
    assert await rig.router.poll() == 0  # nothing changed yet
    await rig.exchange.order("bob", "BTC-USD", "bid", 2, "150.25")
    assert await rig.router.poll() == 1
    await rig.exchange.order("bob", "BTC-USD", "bid", 3, "150.25")
    resp = await rig.exchange.http.delete(f"/orders/{other.venue_order_id}")
    assert resp.status_code == 200
    assert await rig.router.poll() == 2
    assert rig.router.open == {}  # both final: no longer followed
    reports = [await asyncio.wait_for(feed.get(), 2) for _ in range(5)]
    seen = [
        (r.client_order_id, r.state, r.last_qty, r.cum_qty)
        for r in reports
        if isinstance(r, ExecReport)
    ]
    assert seen == [
        ("follow1", ExecState.ACK, 0, 0),
        ("follow2", ExecState.ACK, 0, 0),
        ("follow1", ExecState.PARTIAL, 2, 2),
        ("follow1", ExecState.FILLED, 3, 5),
        ("follow2", ExecState.CANCELLED, 0, 0),
    ]
    assert placed.venue_order_id == reports[0].venue_order_id  # type: ignore[union-attr]
    # after a restart, open orders are followed again
    third = await rig.router.submit(_request("follow3", qty=1))
    assert third.state is ExecState.ACK
    router2 = OrderRouter(rig.store, {"tradehall": rig.venue}, rig.switch, rig.dispatcher.publish)
    await router2.load_open()
    assert set(router2.open) == {"follow3"}
    # only the owner can cancel
    assert (await router2.cancel("bob", "follow3")).status == "rejected"
    assert (await router2.cancel("alice", "follow3")).state is ExecState.CANCELLED
    assert router2.open == {}
