"""The coalescing httptools protocol on a real uvicorn server: keep-alive, pipelining, upgrades."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets

from services import serve
from tradehall.core.ids import SequentialIds
from tradehall.exchange.app import create_app
from tradehall.exchange.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings


@pytest.fixture
async def port() -> AsyncIterator[int]:
    service = ExchangeService(ExchangeSettings(), ids=SequentialIds())
    app = create_app(service)
    async with serve(app, http=CoalescingHttpToolsProtocol, lifespan="on") as number:
        yield number


async def test_keep_alive_connection_serves_a_sequence_of_requests(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        broker = {"broker_id": "k", "initial_cash": 100, "initial_holdings": []}
        assert (await client.post("/brokers", json=broker)).status_code == 201
        order = (
            '{"type":"limit","broker_id":"k","document_number":"D","side":"bid",'
            '"symbol":"AAPL","quantity":1,"price":1.00,"expires_at":"2030-01-01T00:00:00Z"}'
        )
        headers = {"Content-Type": "application/json"}
        for _ in range(5):
            placed = await client.post("/orders", content=order, headers=headers)
            assert placed.status_code == 201
        book = (await client.get("/stocks/AAPL/book")).json()
        assert book["bids"][0]["order_count"] == 5
        assert (await client.get("/nowhere")).status_code == 404


async def test_pipelined_requests_get_complete_responses_in_order(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /brokers/nobody/balance HTTP/1.1\r\n"
    writer.write(request + b"Host: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
    writer.close()
    first, second = data.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK") and first.endswith(b'{"status":"ok"}')
    assert second.startswith(b"404 Not Found")
    assert b'"error":"broker_not_found"' in second


async def test_websocket_upgrade_still_works(port: int) -> None:
    url = f"ws://127.0.0.1:{port}/ws/market"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"op": "symbols", "id": 1}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/healthz")).status_code == 200


class _Recorder(asyncio.Transport):
    """Stands in for the socket transport: records what reaches it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[object] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(bytes(data))

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_iteration_become_one_write_and_close_flushes_first() -> None:
    raw = _Recorder()
    wrapper = CoalescingTransport(raw, asyncio.get_running_loop())
    wrapper.write(b"head ")
    wrapper.write(b"body")
    assert raw.calls == []
    assert wrapper.get_write_buffer_size() == 9
    await asyncio.sleep(0)
    assert raw.calls == [b"head body"]
    wrapper.write(b"last")
    wrapper.close()
    assert raw.calls == [b"head body", b"last", "close"]
    wrapper.write(b"late")
    await asyncio.sleep(0)
    assert raw.calls == [b"head body", b"last", "close"]  # nothing written after close
