"""The lean ASGI front: same answers as the Starlette fallback, right hand-offs, durability kept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from exchange_harness import FUTURE, ExchangeHarness, loads
from hypothesis import given
from hypothesis import strategies as st

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.app import create_app
from tradehall.exchange.fastroutes import FastRoutes, parse_query
from tradehall.exchange.journal import FileJournal
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

ORDER = (
    '{"type":"limit","broker_id":"fa","document_number":"D1","side":"bid","symbol":"AAPL",'
    f'"quantity":2,"price":10.00,"expires_at":"{FUTURE}"}}'
)


def _front(exchange: ExchangeHarness) -> FastRoutes:
    transport = exchange.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    assert isinstance(transport.app, FastRoutes)
    return transport.app


@pytest.fixture
async def fallback(exchange: ExchangeHarness) -> Any:
    """A client talking to the Starlette app behind the front, on the same service."""
    transport = httpx.ASGITransport(app=_front(exchange).fallback)
    async with httpx.AsyncClient(transport=transport, base_url="http://exchange.test") as client:
        yield client


async def test_read_routes_answer_exactly_like_the_fallback(
    exchange: ExchangeHarness, fallback: httpx.AsyncClient
) -> None:
    await exchange.broker("fa", AAPL=50)
    await exchange.broker("fb", AAPL=50)
    placed = loads((await exchange.post("/orders", ORDER)).text)
    ask = ORDER.replace('"fa"', '"fb"').replace('"bid"', '"ask"').replace("10.00", "10.50")
    assert (await exchange.post("/orders", ask)).status_code == 201
    paths = [
        "/brokers/fa/balance",
        "/brokers/ghost/balance",
        "/brokers/fa/orders?status=pending&page=1&limit=5",
        "/brokers/fa/orders?limit=0",
        f"/orders/{placed['order_id']}",
        "/orders/nope",
        "/stocks/AAPL/book?depth=1",
        "/stocks/AAPL/book?depth=x",
        "/stocks/AAPL/book?with_sequence=1",
        "/stocks/NOPE/book",
        "/stocks/AAPL/price",
        "/stocks/AAPL/quote?side=ask&quantity=3",
        "/stocks/AAPL/quote?side=up&quantity=3",
        "/webhooks?broker_id=fa",
        "/webhooks",
        "/healthz",
    ]
    for path in paths:
        fast, slow = await exchange.client.get(path), await fallback.get(path)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content), path
        assert fast.headers["content-type"] == slow.headers["content-type"], path
        assert fast.headers["content-length"] == str(len(fast.content)), path


async def test_refused_commands_answer_exactly_like_the_fallback(
    exchange: ExchangeHarness, fallback: httpx.AsyncClient
) -> None:
    await exchange.broker("fa", AAPL=1)
    before = exchange.service.machine.state_hash()
    cases = [
        ("/orders", ORDER.replace("10.00", "10.001"), "application/json"),
        ("/orders", ORDER.replace('"fa"', '"ghost"'), "application/json"),
        ("/orders", ORDER, "text/plain"),
        ("/orders", "{not json", "application/json"),
        ("/brokers", '{"broker_id":"fa","initial_cash":1}', "application/json; charset=utf-8"),
        (
            "/webhooks",
            '{"broker_id":"fa","url":"ftp://x","events":["order.filled"]}',
            "application/json",
        ),
    ]
    for path, body, content_type in cases:
        headers = {"Content-Type": content_type}
        fast = await exchange.client.post(path, content=body, headers=headers)
        slow = await fallback.post(path, content=body, headers=headers)
        assert fast.status_code >= 400, (path, body)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (path, body)
    assert exchange.service.machine.state_hash() == before


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/orders/", 404, None),
        ("GET", "/brokers/x/balance/", 404, None),
        ("GET", "//orders", 404, None),
        ("PUT", "/orders", 405, "POST"),
        ("PATCH", "/orders/abc", 405, "DELETE, GET, HEAD"),
        ("POST", "/stocks/AAPL/book", 405, "GET, HEAD"),
    ],
)
async def test_unmatched_requests_fall_back_with_the_contract_error_shape(
    exchange: ExchangeHarness, method: str, path: str, status: int, allow: str | None
) -> None:
    # An absolute URL, so that httpx does not read "//orders" as a host name.
    response = await exchange.client.request(method, httpx.URL(f"http://exchange.test{path}"))
    assert response.status_code == status
    assert response.json()["error"] == ("not_found" if status == 404 else "method_not_allowed")
    if allow is not None:
        assert sorted(response.headers["allow"].split(", ")) == allow.split(", ")


async def test_head_is_served_by_the_fallback_without_a_body(exchange: ExchangeHarness) -> None:
    await exchange.broker("fa")
    response = await exchange.client.head("/brokers/fa/balance")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


async def test_fast_requests_are_counted_in_metrics(exchange: ExchangeHarness) -> None:
    await exchange.broker("fa", AAPL=1)
    for _ in range(3):
        assert (await exchange.post("/orders", ORDER)).status_code == 201
    await exchange.client.get("/orders/missing")
    metrics = (await exchange.client.get("/metrics")).text
    assert 'tradehall_http_requests_total{method="POST",route="POST /orders",status="201"} 3.0' in (
        metrics
    )
    assert (
        'tradehall_http_requests_total{method="GET",route="GET /orders/{order_id}",status="404"}'
        " 1.0" in metrics
    )
    assert 'tradehall_http_request_duration_seconds_count{route="POST /orders"} 3.0' in metrics
    assert 'tradehall_orders_total{side="bid",type="limit"} 3.0' in metrics


async def _call(app: FastRoutes, method: str, path: str, messages: list[dict[str, Any]]) -> Any:
    """Run one request through the ASGI app; returns the messages it sent."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    incoming = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # nothing more will come
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_client_gone_mid_body_gets_no_answer_and_changes_nothing(
    exchange: ExchangeHarness,
) -> None:
    before = exchange.service.machine.state_hash()
    partial = {"type": "http.request", "body": b'{"broker_id": "gone",', "more_body": True}
    sent = await _call(_front(exchange), "POST", "/brokers", [partial, {"type": "http.disconnect"}])
    assert sent == []
    assert exchange.service.machine.state_hash() == before


async def test_body_in_chunks_is_joined(exchange: ExchangeHarness) -> None:
    chunks = [b'{"broker_id": "ch', b'unked", "initial_cash"', b": 5}"]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent = await _call(_front(exchange), "POST", "/brokers", messages)
    assert sent[0]["status"] == 201
    assert loads(sent[1]["body"])["broker_id"] == "chunked"


async def test_command_is_answered_only_once_its_journal_record_is_durable(
    tmp_path: Path,
) -> None:
    settings = ExchangeSettings(data_dir=str(tmp_path), journal_sync="fsync", snapshot_every=0)
    service = ExchangeService(settings, clock=VirtualClock(), ids=SequentialIds())
    service.recover()  # opens the real journal; its writer starts below, after the request
    app = create_app(service, manage_service=False)
    body = {"type": "http.request", "body": b'{"broker_id": "d", "initial_cash": 1}'}
    request = asyncio.create_task(_call(app, "POST", "/brokers", [body]))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not request.done()  # executed in memory, but not on disk: no answer yet
    assert "d" in service.engine.brokers
    journal = service.journal
    assert isinstance(journal, FileJournal)
    await journal.start()
    sent = await asyncio.wait_for(request, 5)
    assert sent[0]["status"] == 201
    assert journal.records_written == 1
    await journal.close()
    replayed = ExchangeService(settings, clock=VirtualClock(), ids=SequentialIds())
    replayed.recover()
    assert "d" in replayed.engine.brokers
    assert replayed.journal is not None
    await replayed.journal.close()


def test_match_accepts_only_whole_segments(exchange: ExchangeHarness) -> None:
    front = _front(exchange)
    found = front.match("GET", "/stocks/AAPL/book")
    assert found is not None and found[1] == "AAPL"
    found = front.match("DELETE", "/orders/o-1")
    assert found is not None and found[1] == "o-1"
    for method, path in [
        ("GET", "/stocks//book"),
        ("GET", "/stocks/AAPL/book/"),
        ("GET", "/stocks/AAPL/depth"),
        ("GET", "orders/x"),
        ("GET", "/"),
        ("POST", "/orders/x"),
        ("GET", "/a/b/c/d"),
    ]:
        assert front.match(method, path) is None, path


async def test_failed_journal_write_answers_503_and_refuses_later_commands(
    tmp_path: Path,
) -> None:
    settings = ExchangeSettings(data_dir=str(tmp_path), journal_sync="fsync", snapshot_every=0)
    service = ExchangeService(settings, clock=VirtualClock(), ids=SequentialIds())
    service.recover()
    (tmp_path / "journal-0000000000000001.log").mkdir()  # the segment cannot be opened
    app = create_app(service, manage_service=False)
    journal = service.journal
    assert isinstance(journal, FileJournal)
    await journal.start()
    body = {"type": "http.request", "body": b'{"broker_id": "d", "initial_cash": 1}'}
    sent = await asyncio.wait_for(_call(app, "POST", "/brokers", [body]), 5)
    assert sent[0]["status"] == 503
    assert loads(sent[1]["body"])["error"] == "service_unavailable"
    again = {"type": "http.request", "body": b'{"broker_id": "e", "initial_cash": 1}'}
    sent = await asyncio.wait_for(_call(app, "POST", "/brokers", [again]), 5)
    assert sent[0]["status"] == 503
    assert "e" not in service.engine.brokers
    await journal.close()


@given(st.lists(st.tuples(st.text("ab=&;x ", max_size=4), st.text("ab=&;x ", max_size=4))))
def test_plain_query_strings_parse_like_parse_qsl(pairs: list[tuple[str, str]]) -> None:
    text = "&".join(f"{name}={value}" for name, value in pairs)
    expected = dict(parse_qsl(text, keep_blank_values=True))
    assert parse_query(text.encode("latin-1")) == expected


def test_encoded_query_strings_go_through_parse_qsl() -> None:
    assert parse_query(b"side=a%20b&x=1+2&x=3") == {"side": "a b", "x": "3"}
    assert parse_query(b"") == {}


async def test_book_answers_follow_every_command(exchange: ExchangeHarness) -> None:
    await exchange.broker("fa", AAPL=10)
    soon = "2026-09-21T14:13:22Z"  # 2 s after the harness clock starts
    first = ORDER.replace(FUTURE, soon)
    assert (await exchange.post("/orders", first)).status_code == 201
    book = (await exchange.client.get("/stocks/AAPL/book")).json()
    assert [level["total_quantity"] for level in book["bids"]] == [2]
    placed = loads((await exchange.post("/orders", ORDER.replace("10.00", "9.00"))).text)
    book = (await exchange.client.get("/stocks/AAPL/book")).json()
    assert [level["total_quantity"] for level in book["bids"]] == [2, 2]
    assert (await exchange.client.delete(f"/orders/{placed['order_id']}")).status_code == 200
    book = (await exchange.client.get("/stocks/AAPL/book")).json()
    assert [level["total_quantity"] for level in book["bids"]] == [2]
    await exchange.clock.advance(3)  # the sweep expires the first order
    book = (await exchange.client.get("/stocks/AAPL/book")).json()
    assert book["bids"] == []
    ask = ORDER.replace('"bid"', '"ask"').replace("10.00", "11.00")
    assert (await exchange.post("/orders", ask)).status_code == 201
    book = (await exchange.client.get("/stocks/AAPL/book?depth=1")).json()
    assert [level["price"] for level in book["asks"]] == [11.0]


async def test_book_answer_is_the_encoded_struct_with_the_time_spliced_in(
    exchange: ExchangeHarness,
) -> None:
    await exchange.broker("fa", AAPL=10)
    for price in ("10.00", "9.50", "9.50"):
        assert (await exchange.post("/orders", ORDER.replace("10.00", price))).status_code == 201
    ask = ORDER.replace('"bid"', '"ask"').replace("10.00", "11.25")
    assert (await exchange.post("/orders", ask)).status_code == 201
    for _ in range(2):  # the second answer comes from the cache
        for depth in ("1", "10"):
            plain = (await exchange.client.get(f"/stocks/AAPL/book?depth={depth}")).content
            sequenced = await exchange.client.get(
                f"/stocks/AAPL/book?depth={depth}&with_sequence=1"
            )
            # The sequenced answer is encoded from the whole struct (asdict), the plain one
            # from the cached head + snapshot_at: identical apart from the sequence field.
            sequence = b',"sequence":%d}' % sequenced.json()["sequence"]
            assert sequenced.content.endswith(sequence)
            assert plain == sequenced.content[: -len(sequence)] + b"}"
        await exchange.clock.advance(1)  # a new snapshot_at, same levels


async def test_balance_answers_follow_every_command(exchange: ExchangeHarness) -> None:
    await exchange.broker("fa", AAPL=10)  # cash from the harness's default

    async def reserved() -> Any:
        first = (await exchange.client.get("/brokers/fa/balance")).content
        again = (await exchange.client.get("/brokers/fa/balance")).content  # cached
        assert again == first
        return loads(first)["reserved_cash"]

    assert await reserved() == 0
    soon = "2026-09-21T14:13:22Z"  # 2 s after the harness clock starts
    assert (await exchange.post("/orders", ORDER.replace(FUTURE, soon))).status_code == 201
    assert await reserved() == 20  # 2 x 10.00
    placed = loads((await exchange.post("/orders", ORDER.replace("10.00", "9.00"))).text)
    assert await reserved() == 38
    assert (await exchange.client.delete(f"/orders/{placed['order_id']}")).status_code == 200
    assert await reserved() == 20
    await exchange.clock.advance(3)  # the sweep expires the first order
    assert await reserved() == 0
    assert (await exchange.client.get("/brokers/nobody/balance")).status_code == 404
