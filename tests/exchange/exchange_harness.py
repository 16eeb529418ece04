"""Test-side helpers shared by the in-process Exchange tests (see ``conftest.py``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from tradehall.core.clock import VirtualClock
from tradehall.exchange.service import ExchangeService

T0 = 1_790_000_000 * 10**9  # 2026-09-21T14:13:20Z
FUTURE = "2030-01-01T00:00:00Z"
WAIT_SECONDS = 5.0
_ENCODER = msgspec.json.Encoder(decimal_format="number")


def loads(text: str | bytes) -> Any:
    """JSON with numbers as Decimal, so ``150.00`` is checked exactly."""
    return json.loads(text, parse_float=Decimal)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return loads(self.body)


@dataclass
class WebhookReceiver:
    """What a real HTTP receiver got; ``statuses`` are answers to give in order (then 200)."""

    url: str
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, item: Received) -> int:
        self.received.append(item)
        self._arrived.set()
        return self.statuses.pop(0) if self.statuses else 200

    async def wait_for(self, count: int) -> list[Received]:
        """Wait (bounded) until ``count`` requests have arrived."""
        async with asyncio.timeout(WAIT_SECONDS):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received


@dataclass
class ExchangeHarness:
    service: ExchangeService
    client: httpx.AsyncClient
    clock: VirtualClock

    async def broker(self, broker_id: str, cash: str = "1000000", **holdings: int) -> None:
        items = ", ".join(f'{{"symbol": "{s}", "quantity": {q}}}' for s, q in holdings.items())
        body = (
            f'{{"broker_id": "{broker_id}", "initial_cash": {cash}, "initial_holdings": [{items}]}}'
        )
        response = await self.post("/brokers", body)
        assert response.status_code == 201, response.text

    async def post(self, path: str, body: str) -> httpx.Response:
        return await self.client.post(
            path, content=body, headers={"Content-Type": "application/json"}
        )

    async def order(self, **fields: Any) -> httpx.Response:
        payload = {"type": "limit", "document_number": "D1", "expires_at": FUTURE, **fields}
        if payload["type"] == "market":
            payload.pop("expires_at")
        if isinstance(payload.get("price"), str):
            payload["price"] = Decimal(payload["price"])  # sent as a JSON number, digits kept
        return await self.post("/orders", _ENCODER.encode(payload).decode())
