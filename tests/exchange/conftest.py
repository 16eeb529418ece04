"""Fixtures for in-process Exchange tests: a virtual clock, deterministic ids, a real receiver.

``exchange`` runs the full ASGI app in-process (httpx ``ASGITransport``) over an
:class:`ExchangeService` whose clock is a :class:`VirtualClock`, so expiry and webhook retries are
driven by ``await ex.clock.advance(...)`` instead of sleeping. ``receiver`` is a real HTTP server on
127.0.0.1 (uvicorn) that records every webhook POST it gets.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest
from exchange_harness import T0, ExchangeHarness, Received, WebhookReceiver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services import free_port, serve
from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.app import create_app
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings
from tradehall.exchange.webhook_delivery import WebhookDispatcher


@pytest.fixture
async def exchange() -> AsyncIterator[ExchangeHarness]:
    clock = VirtualClock(T0)
    settings = ExchangeSettings(webhook_allow_http=True, expiration_interval=1.0)
    dispatcher = WebhookDispatcher(clock=clock, timeout=2.0, rng=random.Random(7))
    service = ExchangeService(settings, clock=clock, ids=SequentialIds(), dispatcher=dispatcher)
    app = create_app(service, manage_service=False)
    await service.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://exchange.test") as client:
        yield ExchangeHarness(service, client, clock)
    await service.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    port = free_port()
    recorder = WebhookReceiver(url=f"http://127.0.0.1:{port}/hooks")

    async def hook(request: Request) -> Response:
        item = Received(request.url.path, dict(request.headers), await request.body())
        return Response(status_code=recorder.record(item))

    app = Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])
    async with serve(app, port=port, start_within=5, lifespan="off"):
        yield recorder
