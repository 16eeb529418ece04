"""The lean HTTP path: byte-identical answers to uvicorn's ASGI path, HTTP/1.1 semantics kept.

Two kinds of test: the protocol fed in-process with a recording transport (deterministic: every
split point of a request stream, no sockets), and real uvicorn servers on loopback sockets
(pipelining, keep-alive, Connection: close, HTTP/1.0, deadlines, shutdown, journal failure).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from exchange_harness import FUTURE, T0, loads
from uvicorn.config import Config
from uvicorn.server import ServerState

from services import free_port, serve
from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange import lean_http
from tradehall.exchange.app import create_app
from tradehall.exchange.fastroutes import FastRoutes
from tradehall.exchange.http_protocol import CoalescingHttpToolsProtocol
from tradehall.exchange.lean_http import LeanHttpProtocol
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

BROKER = (
    b'{"broker_id":"s","initial_cash":100000,"initial_holdings":[{"symbol":"AAPL","quantity":50}]}'
)
ASK = (
    b'{"type":"limit","broker_id":"s","document_number":"D1","side":"ask","symbol":"AAPL",'
    b'"quantity":2,"price":10.00,"expires_at":"' + FUTURE.encode() + b'"}'
)
BID = ASK.replace(b'"ask"', b'"bid"').replace(b"10.00", b"9.50")


def post(path: str, body: bytes, *extra: str, ctype: str = "application/json") -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Type: {ctype}"]
    head += [f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def request(method: str, path: str, *extra: str, version: str = "1.1") -> bytes:
    return (
        "\r\n".join([f"{method} {path} HTTP/{version}", "Host: x", *extra]) + "\r\n\r\n"
    ).encode()


def split_responses(data: bytes, heads: frozenset[int] = frozenset()) -> list[bytes]:
    """Raw responses one by one (by Content-Length; the ``heads``-th ones have no body), with
    uvicorn's ``date`` header line removed since it moves with the wall clock."""
    responses: list[bytes] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data
        lines = [line for line in head.split(b"\r\n") if not line.startswith(b"date: ")]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b": ")
            if name.lower() == b"content-length":
                length = int(value)
        if len(responses) in heads:
            length = 0
        responses.append(b"\r\n".join(lines) + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return responses


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> Any:
    return loads(response.partition(b"\r\n\r\n")[2])


def _service(**settings: Any) -> ExchangeService:
    return ExchangeService(
        ExchangeSettings(snapshot_every=0, **settings), clock=VirtualClock(T0), ids=SequentialIds()
    )


# ---------------------------------------------------------------- in-process protocol
class _Transport(asyncio.Transport):
    """Records what the protocol writes; stands in for the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed
        self.data += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def feed(
    protocol_class: type, chunks: list[bytes], responses: int, app: FastRoutes | None = None
) -> bytes:
    """Feed ``chunks`` to a fresh protocol serving ``app`` (else a fresh in-memory exchange);
    what it wrote once ``responses`` responses are out (uvicorn's path runs in loop tasks)."""
    if app is None:
        async with in_memory() as fresh:
            return await feed(protocol_class, chunks, responses, fresh)
    config = Config(app, proxy_headers=False, access_log=False)
    config.load()
    loop = asyncio.get_running_loop()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = _Transport()
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
        await asyncio.sleep(0)
    for _ in range(1000):
        if bytes(transport.data).count(b"HTTP/1.1 ") >= responses or transport.closed:
            break
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return bytes(transport.data)


@asynccontextmanager
async def in_memory() -> AsyncIterator[FastRoutes]:
    """A fresh in-memory exchange (virtual clock, sequential ids) behind its ASGI front."""
    service = _service()
    await service.start()
    try:
        yield create_app(service, manage_service=False)
    finally:
        await service.stop()


STREAM = [
    post("/brokers", BROKER),
    post("/orders", ASK),
    post("/orders", ASK.replace(b"10.00", b"10.001")),  # refused: 400
    request("GET", "/stocks/AAPL/book?depth=1"),
    request("HEAD", "/brokers/s/balance"),  # not lean: through uvicorn's cycle
    post("/orders", BID),
    request("GET", "/brokers/s/orders?status=pending&limit=5"),
    request("DELETE", "/webhooks/nope"),
    request("GET", "/brokers/s/balance"),
]


async def test_answers_are_byte_identical_to_the_asgi_path_in_process() -> None:
    data = b"".join(STREAM)
    lean = await feed(LeanHttpProtocol, [data], len(STREAM))
    asgi = await feed(CoalescingHttpToolsProtocol, [data], len(STREAM))
    assert lean == asgi
    statuses = [status_of(r) for r in split_responses(lean, frozenset({4}))]
    assert statuses == [201, 201, 400, 200, 200, 201, 200, 404, 200]


async def test_a_stream_split_at_every_byte_gets_the_same_answers() -> None:
    # Requests that leave the state as it is, so one exchange serves every split point; the
    # commands that succeed are split in the test below and in the socket tests.
    stream = [
        post("/brokers", BROKER),  # 409: it exists
        post("/orders", ASK.replace(b"10.00", b"10.001")),
        post("/orders", ASK, ctype="text/plain"),
        request("GET", "/stocks/AAPL/book?depth=1"),
        request("HEAD", "/brokers/s/balance"),
        request("GET", "/brokers/s/orders?status=pending&limit=5"),
        request("DELETE", "/orders/nope"),
        request("GET", "/brokers/s/balance"),
    ]
    data = b"".join(stream)
    async with in_memory() as app:
        setup = await feed(LeanHttpProtocol, STREAM[:2], 2, app)
        assert [status_of(r) for r in split_responses(setup)] == [201, 201]
        whole = await feed(LeanHttpProtocol, [data], len(stream), app)
        statuses = [status_of(r) for r in split_responses(whole, frozenset({4}))]
        assert statuses == [409, 400, 400, 200, 200, 200, 404, 200]
        for cut in range(1, len(data)):
            split = await feed(LeanHttpProtocol, [data[:cut], data[cut:]], len(stream), app)
            assert split == whole, cut


async def test_a_body_arriving_byte_by_byte_is_handed_to_uvicorn_intact() -> None:
    data = post("/brokers", BROKER) + request("GET", "/brokers/s/balance")
    whole = await feed(LeanHttpProtocol, [data], 2)
    trickle = await feed(LeanHttpProtocol, [data[i : i + 1] for i in range(len(data))], 2)
    assert trickle == whole
    assert [status_of(r) for r in split_responses(whole)] == [201, 200]


async def test_unusual_requests_are_left_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    lean_answers: list[int] = []
    answered = LeanHttpProtocol.answered

    def counting(self: LeanHttpProtocol, status: int, payload: bytes, keep_alive: bool) -> None:
        lean_answers.append(status)
        answered(self, status, payload, keep_alive)

    monkeypatch.setattr(LeanHttpProtocol, "answered", counting)
    unusual = [
        request("HEAD", "/healthz"),
        request("PUT", "/orders"),  # 405 with Allow
        request("GET", "/orders/"),
        request("GET", "/orders/a%20b"),
        request("GET", "/openapi.json"),
        request("GET", "http://x/healthz"),  # absolute form
        post("/brokers", BROKER, "Expect: 100-continue"),
        request("POST", "/brokers", "Transfer-Encoding: chunked", "Content-Type: application/json")
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(BROKER), BROKER),
    ]
    count = len(unusual) + 1  # and a 100 Continue
    lean = await feed(LeanHttpProtocol, [b"".join(unusual)], count)
    asgi = await feed(CoalescingHttpToolsProtocol, [b"".join(unusual)], count)
    assert lean_answers == []
    assert lean == asgi
    statuses = [status_of(r) for r in split_responses(lean, frozenset({0}))]
    assert statuses == [200, 405, 404, 404, 200, 200, 100, 201, 409]
    assert b"allow: " in lean.lower()
    assert (await feed(LeanHttpProtocol, [request("GET", "/healthz")], 1)).endswith(b'"ok"}')
    assert lean_answers == [200]


async def test_malformed_request_after_a_lean_one_gets_400_after_its_answer() -> None:
    data = request("GET", "/healthz") + b"NOT HTTP AT ALL\r\n\r\n"
    out = await feed(LeanHttpProtocol, [data], 2)
    first, second = split_responses(out)
    assert status_of(first) == 200 and body_of(first) == {"status": "ok"}
    assert status_of(second) == 400 and b"connection: close" in second


# ---------------------------------------------------------------- real sockets
@asynccontextmanager
async def lean_server(service: ExchangeService, **options: Any) -> AsyncIterator[int]:
    app = create_app(service)
    async with serve(
        app, http=LeanHttpProtocol, lifespan="on", proxy_headers=False, **options
    ) as port:
        yield port


async def talk(port: int, chunks: list[bytes], *, pause: float = 0.0) -> bytes:
    """Send ``chunks`` on one connection (``pause`` lets the server read each one separately)
    and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)  # a real socket: no clock to advance
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_socket_answers_match_the_asgi_and_starlette_paths(tmp_path: Path) -> None:
    stream = [*STREAM[:-1], request("GET", "/brokers/s/balance", "Connection: close")]
    heads = frozenset({4})
    outputs = []
    for index, protocol in enumerate((LeanHttpProtocol, CoalescingHttpToolsProtocol)):
        service = _service(data_dir=str(tmp_path / str(index)), journal_sync="none")
        app = create_app(service)
        async with serve(app, http=protocol, lifespan="on", proxy_headers=False) as port:
            outputs.append(split_responses(await talk(port, [b"".join(stream)]), heads))
    assert outputs[0] == outputs[1]
    assert outputs[0][-1].endswith(b"}") and b"connection: close" in outputs[0][-1]
    # The Starlette app behind the front: same statuses, bodies and content types.
    service = _service()
    front = create_app(service)
    async with serve(front.fallback, lifespan="on", proxy_headers=False) as port:
        starlette = split_responses(await talk(port, [b"".join(stream)]), heads)
    for lean, slow in zip(outputs[0], starlette, strict=True):
        assert status_of(lean) == status_of(slow)
        assert lean.partition(b"\r\n\r\n")[2] == slow.partition(b"\r\n\r\n")[2]
        assert (b"content-type: application/json" in lean) == (
            b"content-type: application/json" in slow
        )


async def test_pipelined_commands_and_fallbacks_answer_in_request_order(tmp_path: Path) -> None:
    service = _service(data_dir=str(tmp_path), journal_sync="fsync")
    stream = [
        post("/brokers", BROKER),
        request("GET", "/brokers/s/balance"),
        post("/orders", ASK),
        request("HEAD", "/brokers/s/balance"),
        post("/orders", BID),
        request("PUT", "/orders"),
        request("GET", "/stocks/AAPL/book"),
        request("DELETE", "/orders/nope"),
        request("GET", "/healthz", "Connection: close"),
    ]
    async with lean_server(service) as port:
        out = split_responses(await talk(port, [b"".join(stream)]), frozenset({3}))
    assert [status_of(r) for r in out] == [201, 200, 201, 200, 201, 405, 200, 404, 200]
    book = body_of(out[6])
    assert [level["price"] for level in book["asks"]] == [10]
    assert [level["price"] for level in book["bids"]] == [loads("9.5")]


async def test_keep_alive_serves_requests_one_after_another(tmp_path: Path) -> None:
    service = _service(data_dir=str(tmp_path), journal_sync="none")
    async with (
        lean_server(service) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        headers = {"Content-Type": "application/json"}
        created = await client.post("/brokers", content=BROKER, headers=headers)
        assert created.status_code == 201
        for _ in range(5):
            placed = await client.post("/orders", content=BID, headers=headers)
            assert placed.status_code == 201
            assert placed.headers.get("connection") is None
        book = (await client.get("/stocks/AAPL/book")).json()
        assert book["bids"][0]["order_count"] == 5
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1  # every request on the same connection


async def test_connection_close_and_http_1_0_end_the_connection() -> None:
    async with lean_server(_service()) as port:
        for closing in (
            request("GET", "/healthz", "Connection: close"),
            request("GET", "/healthz", version="1.0"),
            request("GET", "/healthz", "Connection: keep-alive", version="1.0"),
        ):
            # talk() reads until EOF: the server must close after the one answer.
            (answer,) = split_responses(await talk(port, [closing]))
            assert status_of(answer) == 200 and b"connection: close" in answer
            assert body_of(answer) == {"status": "ok"}


async def test_split_packets_over_a_socket(tmp_path: Path) -> None:
    service = _service(data_dir=str(tmp_path), journal_sync="none")
    data = post("/brokers", BROKER) + request("GET", "/brokers/s/balance", "Connection: close")
    async with lean_server(service) as port:
        cuts = [10, data.index(b"\r\n\r\n") + 4, data.index(b"\r\n\r\n") + 20]
        pieces = [
            data[: cuts[0]],
            data[cuts[0] : cuts[1]],
            data[cuts[1] : cuts[2]],
            data[cuts[2] :],
        ]
        created, balance = split_responses(await talk(port, pieces, pause=0.02))
    assert status_of(created) == 201 and body_of(created)["broker_id"] == "s"
    assert status_of(balance) == 200 and body_of(balance)["cash_balance"] == 100000


async def test_a_stalled_body_gets_408_and_a_huge_one_413() -> None:
    async with lean_server(_service(read_timeout=0.2)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/brokers", BROKER)[:-5])  # the body never completes
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"}"), 5)
        writer.close()
        assert status_of(answer) == 408
        assert body_of(answer)["error"] == "request_timeout"
        huge = request("POST", "/orders", "Content-Length: 2000000", "Connection: close")
        (refused,) = split_responses(await talk(port, [huge]))
        assert status_of(refused) == 413


async def test_websocket_upgrade_still_works() -> None:
    async with lean_server(_service()) as port:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/market") as ws:
            await ws.send('{"op": "symbols", "id": 1}')
            assert loads(await asyncio.wait_for(ws.recv(), 5))
        (answer,) = split_responses(
            await talk(port, [request("GET", "/healthz", "Connection: close")])
        )
        assert status_of(answer) == 200


async def test_failed_journal_write_answers_503_on_the_lean_path(tmp_path: Path) -> None:
    service = _service(data_dir=str(tmp_path), journal_sync="fsync")
    service.recover()
    (tmp_path / "journal-0000000000000001.log").mkdir()  # the first segment cannot be opened
    await service.start()
    app = create_app(service, manage_service=False)
    try:
        async with serve(app, http=LeanHttpProtocol, lifespan="on", proxy_headers=False) as port:
            second = post("/brokers", BROKER.replace(b'"s"', b'"t"'), "Connection: close")
            first, second = split_responses(await talk(port, [post("/brokers", BROKER), second]))
    finally:
        await service.stop()
    assert status_of(first) == 503 and body_of(first)["error"] == "service_unavailable"
    assert status_of(second) == 503
    assert "t" not in service.engine.brokers


class _Gate:
    """Holds every journal ``fdatasync`` until released, so a command stays in flight."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._real: Callable[[int], None] = os.fdatasync

    def __call__(self, fd: int) -> None:
        self.entered.set()
        assert self.release.wait(10)
        self._real(fd)


async def test_shutdown_lets_an_in_flight_command_answer_then_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _Gate()
    monkeypatch.setattr(os, "fdatasync", gate)
    service = _service(data_dir=str(tmp_path), journal_sync="fsync")
    config = uvicorn.Config(
        create_app(service),
        host="127.0.0.1",
        port=free_port(),
        http=LeanHttpProtocol,
        lifespan="on",
        proxy_headers=False,
        log_level="error",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 -- uvicorn has no startup event
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", config.port)
    writer.write(post("/brokers", BROKER))
    await writer.drain()
    await asyncio.to_thread(gate.entered.wait, 10)  # executed, waiting for the disk
    server.should_exit = True
    for _ in range(50):  # uvicorn's shutdown has asked the connection to finish
        await asyncio.sleep(0.01)
        if not server.servers or not server.servers[0].is_serving():
            break
    gate.release.set()
    answer = await asyncio.wait_for(reader.read(), 10)  # complete, then closed
    writer.close()
    await asyncio.wait_for(serving, 15)
    (created,) = split_responses(answer)
    assert status_of(created) == 201 and b"connection: close" in created
    restarted = _service(data_dir=str(tmp_path), journal_sync="fsync")
    restarted.recover()
    assert "s" in restarted.engine.brokers
    assert restarted.journal is not None
    await restarted.journal.close()


def test_the_lean_path_is_off_behind_middleware_or_a_root_path() -> None:
    service = _service()
    front = create_app(service, manage_service=False)
    state = ServerState()
    loop = asyncio.new_event_loop()
    try:
        for options, lean in (
            ({"proxy_headers": False}, True),
            ({"proxy_headers": True}, False),
            ({"proxy_headers": False, "root_path": "/x"}, False),
            ({"proxy_headers": False, "limit_concurrency": 10}, False),
        ):
            config = Config(front, **options)
            protocol = LeanHttpProtocol(config=config, server_state=state, app_state={}, _loop=loop)
            assert isinstance(protocol._front, FastRoutes) is lean, options
    finally:
        loop.close()
    assert lean_http.LEAN_BODY_LIMIT < 1 << 20


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async with lean_server(_service(), timeout_keep_alive=1) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            loop = asyncio.get_running_loop()
            for _ in range(3):  # each answer restarts the idle period
                writer.write(request("GET", "/healthz"))
                await writer.drain()
                assert (await asyncio.wait_for(reader.readuntil(b"}"), 5)).endswith(b'"ok"}')
            answered = loop.time()
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
            assert loop.time() - answered >= 0.9
        finally:
            writer.close()


def test_request_targets_match_only_in_origin_form_without_escapes() -> None:
    front = create_app(_service(), manage_service=False)
    found = front.match_target(b"GET", b"/stocks/AAPL/book?depth=3")
    assert found is not None
    assert (found[0].name, found[1], found[2]) == ("GET /stocks/{symbol}/book", "AAPL", b"depth=3")
    assert front.match_target(b"GET", b"/stocks/AAPL/book?depth=3") == found  # cached
    for method, target in [
        (b"GET", b"/orders/a%20b"),
        (b"GET", b"http://x/healthz"),
        (b"GET", b"/healthz#top"),
        (b"GET", "/orders/é".encode()),
        (b"HEAD", b"/healthz"),
        (b"PUT", b"/orders"),
        (b"GET", b"/orders/"),
    ]:
        assert front.match_target(method, target) is None, target


async def test_requests_pipelined_after_connection_close_are_not_run() -> None:
    service = _service()
    async with lean_server(service) as port:
        closing = request("GET", "/healthz", "Connection: close")
        (answer,) = split_responses(await talk(port, [closing + post("/brokers", BROKER)]))
    assert status_of(answer) == 200
    assert "s" not in service.engine.brokers


async def test_an_unexpected_error_is_a_json_500_and_the_connection_goes_on() -> None:
    async def broken() -> None:
        raise RuntimeError("disk on fire")

    def broken_waiter() -> None:
        raise RuntimeError("disk on fire")

    async with in_memory() as app:
        app.service.durable = broken  # type: ignore[method-assign]  # the ASGI path's wait
        app.service.durable_waiter = broken_waiter  # type: ignore[method-assign]  # the lean one
        stream = [post("/brokers", BROKER), request("GET", "/healthz")]
        lean = split_responses(await feed(LeanHttpProtocol, [b"".join(stream)], 2, app))
        stream[0] = post("/brokers", BROKER.replace(b'"s"', b'"t"'))  # "s" exists now
        asgi = split_responses(await feed(CoalescingHttpToolsProtocol, stream, 2, app))
    for out in (lean, asgi):
        assert [status_of(r) for r in out] == [500, 200]
        assert body_of(out[0])["error"] == "internal_error"
