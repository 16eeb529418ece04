"""The HTTP adapter in-process: expiry by virtual time, webhooks to a real receiver, bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator

import httpx
import pytest
from exchange_harness import ExchangeHarness, WebhookReceiver, loads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.app import create_app
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings
from tradehall.exchange.webhook_delivery import WebhookDispatcher

SOON = "2026-09-21T14:13:22.500Z"  # 2.5 s after the harness clock starts


async def subscribe(ex: ExchangeHarness, broker: str, url: str, *events: str) -> None:
    body = json.dumps({"broker_id": broker, "url": url, "events": list(events)})
    response = await ex.post("/webhooks", body)
    assert response.status_code == 201, response.text


async def test_expiry_sweep_runs_on_virtual_time(exchange: ExchangeHarness) -> None:
    await exchange.broker("s1", AAPL=100)
    placed = loads(
        (
            await exchange.order(
                broker_id="s1",
                side="ask",
                symbol="AAPL",
                quantity=10,
                price="10.00",
                expires_at=SOON,
            )
        ).text
    )
    await exchange.clock.advance(2)
    assert (
        loads((await exchange.client.get(f"/orders/{placed['order_id']}")).text)["status"]
        == "pending"
    )
    await exchange.clock.advance(1)  # sweep at t=3 s sees expires_at=2.5 s
    order = loads((await exchange.client.get(f"/orders/{placed['order_id']}")).text)
    assert order["status"] == "expired"
    assert order["expired_at"] == "2026-09-21T14:13:22Z"
    assert order["cancelled_quantity"] == 10
    balance = loads((await exchange.client.get("/brokers/s1/balance")).text)
    assert balance["holdings"][0]["reserved_quantity"] == 0


async def test_trade_webhooks_one_per_trade_per_side_in_match_order(
    exchange: ExchangeHarness, receiver: WebhookReceiver
) -> None:
    await exchange.broker("seller", AAPL=100)
    await exchange.broker("buyer")
    await subscribe(exchange, "seller", receiver.url, "trade.executed")
    await subscribe(exchange, "buyer", receiver.url, "trade.executed")
    for price in ("10.00", "10.50"):
        await exchange.order(broker_id="seller", side="ask", symbol="AAPL", quantity=5, price=price)
    response = await exchange.order(
        broker_id="buyer", side="bid", symbol="AAPL", quantity=8, price="11.00"
    )
    assert response.status_code == 201
    got = await receiver.wait_for(4)
    bodies = [r.json for r in got]
    assert [b["data"]["broker_id"] for b in bodies] == ["buyer", "seller", "buyer", "seller"]
    buyer = [b["data"] for b in bodies if b["data"]["broker_id"] == "buyer"]
    assert [
        (d["order_status"], d["order_filled_quantity"], d["order_remaining_quantity"])
        for d in buyer
    ] == [("partially_filled", 5, 3), ("filled", 8, 0)]
    assert [str(d["trade_price"]) for d in buyer] == ["10.00", "10.50"]
    assert b'"trade_price":10.00' in got[0].body
    first = got[0]
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-event-type"] == "trade.executed"
    assert first.headers["x-webhook-id"]
    assert len({r.headers["x-delivery-id"] for r in got}) == 4
    assert bodies[0]["event"] == "trade.executed"
    assert bodies[0]["timestamp"].endswith("Z")


async def test_cancel_and_expire_webhooks(
    exchange: ExchangeHarness, receiver: WebhookReceiver
) -> None:
    await exchange.broker("b1")
    await subscribe(exchange, "b1", receiver.url, "order.cancelled", "order.expired")
    cancel_me = loads(
        (
            await exchange.order(
                broker_id="b1", side="bid", symbol="MSFT", quantity=3, price="1.00"
            )
        ).text
    )
    await exchange.order(
        broker_id="b1", side="bid", symbol="MSFT", quantity=4, price="1.00", expires_at=SOON
    )
    await exchange.client.delete(f"/orders/{cancel_me['order_id']}")
    await exchange.clock.advance(3)
    got = await receiver.wait_for(2)
    assert [r.headers["x-event-type"] for r in got] == ["order.cancelled", "order.expired"]
    cancelled, expired = got[0].json, got[1].json
    assert cancelled["data"]["status"] == "cancelled"
    assert cancelled["data"]["cancelled_quantity"] == 3
    assert cancelled["data"]["remaining_quantity"] == 0
    assert expired["data"]["status"] == "expired"
    assert expired["timestamp"] == "2026-09-21T14:13:22Z"  # the deadline, not the sweep time
    assert set(expired["data"]) == {
        "broker_id",
        "order_id",
        "symbol",
        "side",
        "price",
        "quantity",
        "filled_quantity",
        "cancelled_quantity",
        "remaining_quantity",
        "status",
    }


async def test_market_ioc_leftover_sends_no_cancel_webhook(
    exchange: ExchangeHarness, receiver: WebhookReceiver
) -> None:
    await exchange.broker("s", AAPL=5)
    await exchange.broker("b")
    await subscribe(exchange, "b", receiver.url, "order.cancelled", "trade.executed")
    await exchange.order(broker_id="s", side="ask", symbol="AAPL", quantity=5, price="2.00")
    response = await exchange.order(
        type="market", broker_id="b", side="bid", symbol="AAPL", quantity=9
    )
    assert loads(response.text)["status"] == "cancelled"
    await exchange.service.dispatcher.drain()
    assert [r.headers["x-event-type"] for r in receiver.received] == ["trade.executed"]


async def test_webhook_retried_with_same_delivery_id_and_signed(
    receiver: WebhookReceiver,
) -> None:
    clock = VirtualClock()
    secret = b"s3cret"
    dispatcher = WebhookDispatcher(clock=clock, signing_secret=secret, rng=random.Random(1))
    service = ExchangeService(
        ExchangeSettings(webhook_allow_http=True, webhook_signing_secret=secret),
        clock=clock,
        ids=SequentialIds(),
        dispatcher=dispatcher,
    )
    await service.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(service, manage_service=False)),
            base_url="http://exchange.test",
        ) as client:
            ex = ExchangeHarness(service, client, clock)
            await ex.broker("b")
            await subscribe(ex, "b", receiver.url, "order.cancelled")
            receiver.statuses = [503, 502]
            placed = loads(
                (
                    await ex.order(broker_id="b", side="bid", symbol="X", quantity=1, price="1.00")
                ).text
            )
            await client.delete(f"/orders/{placed['order_id']}")
            await receiver.wait_for(1)
            for _ in range(2):
                await clock.advance(10)  # back-off happens on the virtual clock
            got = await receiver.wait_for(3)
    finally:
        await service.stop()
    assert len({r.headers["x-delivery-id"] for r in got}) == 1
    expected = hmac.new(secret, got[0].body, hashlib.sha256).hexdigest()
    assert got[2].headers["x-signature"] == f"sha256={expected}"


async def test_unknown_routes_and_methods_use_the_error_shape(exchange: ExchangeHarness) -> None:
    missing = await exchange.client.get("/nowhere")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = await exchange.client.put("/orders")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    slash = await exchange.client.get("/healthz/")
    assert slash.status_code == 404


async def test_openapi_docs_and_metrics(exchange: ExchangeHarness) -> None:
    await exchange.broker("m", AAPL=1)
    document = (await exchange.client.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    assert "/orders" in document["paths"]
    assert "LimitOrderOut" in document["components"]["schemas"]
    docs = await exchange.client.get("/docs")
    assert docs.status_code == 200
    assert "/stocks/{symbol}/quote" in docs.text
    home = await exchange.client.get("/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (307, "/console")
    metrics = (await exchange.client.get("/metrics")).text
    assert (
        'tradehall_http_requests_total{method="POST",route="POST /brokers",status="201"} 1.0'
        in metrics
    )
    assert "tradehall_resting_orders 0.0" in metrics


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
ORDER_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["limit", "market", "LIMIT", ""]) | JSON_VALUES,
        "broker_id": st.sampled_from(["rich", "ghost", ""]) | JSON_VALUES,
        "document_number": st.sampled_from(["D1", "bad doc"]) | JSON_VALUES,
        "side": st.sampled_from(["bid", "ask", "buy"]) | JSON_VALUES,
        "symbol": st.sampled_from(["AAPL", "aapl", "TOOLONGSYMBOL"]) | JSON_VALUES,
        "quantity": st.integers(-2, 10**6) | JSON_VALUES,
        "price": st.sampled_from(["1.00", 1.001, -1, 0, "abc"]) | JSON_VALUES,
        "expires_at": st.sampled_from(["2030-01-01T00:00:00Z", "2001-01-01T00:00:00Z", "x"])
        | JSON_VALUES,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=ORDER_FIELDS | JSON_VALUES, raw=st.binary(max_size=40))
async def test_malformed_input_never_5xx_and_never_changes_state(
    exchange: ExchangeHarness, body: object, raw: bytes
) -> None:
    service = exchange.service
    if "rich" not in service.engine.brokers:
        await exchange.broker("rich", AAPL=10)
    before = (
        len(service.engine.orders),
        service.engine.brokers["rich"].cash,
        service.engine.brokers["rich"].reserved_cash,
        len(service.engine.brokers),
    )
    for path in ("/orders", "/brokers", "/webhooks"):
        for payload in (json.dumps(body).encode(), raw):
            response = await exchange.client.post(
                path, content=payload, headers={"Content-Type": "application/json"}
            )
            assert response.status_code < 500, response.text
            error = response.json().get("error") if response.status_code >= 400 else None
            assert response.status_code in (200, 201) or error is not None
            if response.status_code >= 400:
                assert (
                    len(service.engine.orders),
                    service.engine.brokers["rich"].cash,
                    service.engine.brokers["rich"].reserved_cash,
                    len(service.engine.brokers),
                ) == before
            else:
                before = (
                    len(service.engine.orders),
                    service.engine.brokers["rich"].cash,
                    service.engine.brokers["rich"].reserved_cash,
                    len(service.engine.brokers),
                )


@pytest.mark.parametrize(
    "query",
    ["depth=0", "depth=51", "depth=abc", "depth=-1", "depth=1.5", "depth="],
)
async def test_bad_book_depth(exchange: ExchangeHarness, query: str) -> None:
    response = await exchange.client.get(f"/stocks/NOPE/book?{query}")
    assert response.status_code == 400
    assert response.json() == {
        "error": "validation_error",
        "message": "depth must be an integer between 1 and 50",
    }


async def test_oversized_body_is_refused_without_state_change(exchange: ExchangeHarness) -> None:
    body = '{"broker_id": "big", "initial_cash": 1, "pad": "' + "x" * (1 << 20) + '"}'
    response = await exchange.post("/brokers", body)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "big" not in exchange.service.engine.brokers


async def test_slow_body_times_out(exchange: ExchangeHarness) -> None:
    exchange.service.settings = dataclasses.replace(exchange.service.settings, read_timeout=0.05)
    app = create_app(exchange.service, manage_service=False)

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"broker_id": "slow",'
        await asyncio.sleep(1)  # a real stalled client: the server's deadline is real time
        yield b' "initial_cash": 1}'

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://exchange.test"
    ) as client:
        response = await client.post(
            "/brokers", content=trickle(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 408
    assert response.json()["error"] == "request_timeout"
    assert "slow" not in exchange.service.engine.brokers


async def test_deliveries_dropped_by_a_full_queue_are_requeued_later(
    receiver: WebhookReceiver,
) -> None:
    clock = VirtualClock()
    settings = ExchangeSettings(webhook_allow_http=True, webhook_queue_limit=2)
    dispatcher = WebhookDispatcher(clock=clock, queue_limit=2, rng=random.Random(1))
    service = ExchangeService(settings, clock=clock, ids=SequentialIds(), dispatcher=dispatcher)
    await service.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(service, manage_service=False)),
            base_url="http://exchange.test",
        ) as client:
            ex = ExchangeHarness(service, client, clock)
            await ex.broker("b")
            await subscribe(ex, "b", receiver.url, "order.cancelled")
            for _ in range(5):  # five cancellations at once: the queue of 2 drops three
                placed = loads(
                    (
                        await ex.order(
                            broker_id="b", side="bid", symbol="X", quantity=1, price="1.00"
                        )
                    ).text
                )
                service.cancel(placed["order_id"])
            assert len(service._dropped) == 3
            await dispatcher.drain()
            for _ in range(3):
                await clock.advance(5)  # the redelivery loop runs on the virtual clock
                await dispatcher.drain()
            got = await receiver.wait_for(5)
    finally:
        await service.stop()
    assert len({r.headers["x-delivery-id"] for r in got}) == 5
    assert not service.machine.outbox
