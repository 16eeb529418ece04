"""Observability (spec §8): every listed metric on ``/metrics``, structured decision logs with
``decision_id``/``trace_id`` (routing, merge windows, orders), and the bounded, inspectable
dead-letter queue (``/dlq``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
import websockets
from gw_helpers import eventually

from tradehall.gateway.events import BookSnapshot, Event, ExecState, Side, Trade
from tradehall.gateway.fanout import DeadLetters
from tradehall.gateway.orchestrator import Orchestrator
from tradehall.gateway.orders import OrderRequest
from tradehall.gateway.service import GatewayConfig, GatewayService

# spec §8 item -> the metric families that show it
SPEC_METRICS = {
    "events in/out per stream": ["gateway_stream_events_in", "gateway_stream_events_out"],
    "end-to-end latency histogram": ["gateway_delivery_latency_seconds"],
    "buffer depth": ["gateway_dispatch_queue_depth", "gateway_dispatch_buffered"],
    "coalesced and dropped counts": [
        "gateway_dispatch_coalesced",
        "gateway_dispatch_overflow",
        "gateway_dispatch_reorder",
        "gateway_dead_letters",
    ],
    "throttled time": ["gateway_dispatch_throttled_seconds"],
    "resyncs and checksum success/failure per venue": [
        "gateway_book_resyncs",
        "gateway_checksum_checks",
    ],
    "reconnects": ["gateway_reconnects"],
    "orders by state": ["gateway_orders", "gateway_orders_open", "gateway_order_decisions"],
}


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[GatewayService]:
    config = GatewayConfig(
        venues=("kraken",),
        symbols=("BTC-USD",),
        sim=True,
        sim_interval=0.01,
        orders_db=str(tmp_path / "orders.sqlite"),
    )
    svc = GatewayService(config)
    await svc.start()
    yield svc
    await svc.stop()


async def _get(svc: GatewayService, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=svc.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.get(path)


def _order(cid: str) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        consumer="alice",
        venue="kraken",
        symbol="BTC-USD",
        side=Side.BUY,
        type="limit",
        quantity=Decimal("0.1"),
        price=Decimal("60000"),
    )


async def test_every_spec_metric_is_exposed(service: GatewayService) -> None:
    feed = service.dispatcher.consumer("alice")
    feed.subscribe(provider="kraken", symbol="BTC-USD")
    await eventually(lambda: service.health()["books"]["kraken"]["BTC-USD"] == "LIVE")
    while (await asyncio.wait_for(feed.get(), 5)).event_type != "book_snapshot":
        pass
    service.trading.set("alice", True)
    assert (await service.submit_order(_order("m1"))).status == "accepted"
    metrics = (await _get(service, "/metrics")).text
    for item, families in SPEC_METRICS.items():
        for family in families:
            typed = f"# TYPE {family} " in metrics or f"# TYPE {family}_total " in metrics
            assert typed, (item, family)
    stream = 'event_type="book_snapshot",provider="kraken",symbol="BTC-USD"'
    assert f"gateway_stream_events_in_total{{{stream}}} 1.0" in metrics
    assert f"gateway_stream_events_out_total{{{stream}}} 1.0" in metrics
    assert 'gateway_orders_total{state="ACK",venue="kraken"} 1.0' in metrics
    assert 'gateway_orders_open{venue="kraken"} 1.0' in metrics
    assert 'gateway_order_decisions{outcome="accepted"} 1.0' in metrics
    assert 'gateway_checksum_checks{provider="kraken",result="failed"} 0.0' in metrics
    assert "gateway_dead_letters_queued 0.0" in metrics


async def test_order_decisions_are_logged_with_decision_and_trace_ids(
    service: GatewayService,
) -> None:
    with structlog.testing.capture_logs() as logs:
        assert (await service.submit_order(_order("L1"))).status == "refused"
        service.trading.set("alice", True)
        assert (await service.submit_order(_order("L1"))).state is ExecState.ACK
        assert (await service.submit_order(_order("L1"))).duplicate
    decisions = [e for e in logs if e["event"] == "order_decision"]
    assert [e["outcome"] for e in decisions] == ["refused", "accepted", "duplicate"]
    assert {e["trace_id"] for e in decisions} == {"L1"}
    assert len({e["decision_id"] for e in decisions}) == 3
    assert decisions[1]["venue_order_id"] and decisions[1]["state"] == "ACK"


def _snap(provider: str, ts: int) -> Event:
    level = ((Decimal("100"), Decimal("1")),)
    ask = ((Decimal("101"), Decimal("1")),)
    return BookSnapshot(
        event_id=f"{provider}{ts}",
        provider=provider,
        symbol="BTC-USD",
        ts_ingest=ts,
        bids=level,
        asks=ask,
        depth=1,
        epoch=1,
    )


def test_merge_window_decisions_are_logged_and_merged_events_carry_the_merge_id() -> None:
    orch = Orchestrator(max_events=2, max_age=10.0)
    orch.merge("BTC-USD", ["kraken", "coinbase"])
    with structlog.testing.capture_logs() as logs:
        out = orch.on_event(_snap("kraken", 1), 0.0) + orch.on_event(_snap("coinbase", 2), 0.1)
        out += orch.on_event(_snap("kraken", 3), 0.2) + orch.on_event(_snap("kraken", 4), 0.3)
    closes = [e for e in logs if e["event"] == "merge_window_closed"]
    assert [(c["outcome"], c["closed_by"]) for c in closes] == [
        ("emitted", "count"),
        ("suppressed_partial", "count"),
    ]
    assert closes[1]["missing"] == ["coinbase"]
    assert [c["decision_id"] for c in closes] == ["BTC-USD:1", "BTC-USD:2"]
    assert out and all(e.trace_id == "BTC-USD:1" for e in out)


async def test_routing_decisions_are_logged() -> None:
    svc = GatewayService(GatewayConfig(venues=("kraken",), symbols=("BTC-USD",)))
    server = uvicorn.Server(
        uvicorn.Config(svc.app(), host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)
        port = server.servers[0].sockets[0].getsockname()[1]
        with structlog.testing.capture_logs() as logs:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?consumer=c1") as ws:
                await ws.send(
                    '{"op":"subscribe","provider":"kraken","event_types":["trade"],"id":1}'
                )
                ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert ack == {"type": "ack", "op": "subscribe", "id": 1}
                await ws.send('{"op":"set_trading_mode","enabled":true,"id":2}')
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["trading_enabled"]
    finally:
        server.should_exit = True
        await task
    route = next(e for e in logs if e["event"] == "route_changed")
    assert route["consumer"] == "c1" and route["provider"] == "kraken"
    assert route["event_types"] == ["trade"] and route["decision_id"]
    mode = next(e for e in logs if e["event"] == "trading_mode_set")
    assert mode["enabled"] is True and mode["decision_id"] != route["decision_id"]


def _trade(i: int) -> Trade:
    return Trade(
        event_id=str(i),
        provider="p",
        symbol="S",
        seq_provider=i,
        ts_ingest=0,
        price=Decimal(1),
        qty=Decimal(1),
        side=Side.BUY,
        trade_id=str(i),
    )


def test_dead_letter_queue_is_bounded_and_counts_evictions() -> None:
    dlq = DeadLetters(limit=3)
    for i in range(5):
        dlq.add("c", "overflow", _trade(i))
    assert (len(dlq), dlq.total, dlq.limit) == (3, 5, 3)
    assert [d.event.event_id for d in dlq] == ["2", "3", "4"]  # the oldest were evicted


async def test_dlq_endpoint_filters_and_bounds(service: GatewayService) -> None:
    slow = service.dispatcher.consumer("slow", capacity=2)
    slow.subscribe(provider="kraken", event_types=["trade"])  # never read: trades overflow
    await eventually(lambda: service.dispatcher.core.dead_letters.total >= 3, within=20)
    body: dict[str, Any] = (await _get(service, "/dlq?consumer=slow&limit=2")).json()
    assert body["limit"] == 10_000 and body["queued"] >= 3 and body["matching"] >= 3
    assert len(body["recent"]) == 2
    assert all(d["consumer"] == "slow" and d["reason"] == "overflow" for d in body["recent"])
    assert all(d["event"]["event_type"] == "trade" for d in body["recent"])
    assert (await _get(service, "/dlq?consumer=nobody")).json()["recent"] == []
    assert (await _get(service, "/dlq?limit=x")).status_code == 400
    legacy = (await _get(service, "/deadletters")).json()  # the older path, same handler
    assert legacy["total"] >= body["total"] and len(legacy["recent"]) <= 100
