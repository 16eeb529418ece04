"""WebhookDispatcher against a real HTTP receiver on 127.0.0.1.

The receiver is a small HTTP/1.1 server on asyncio streams (keep-alive, Content-Length bodies) that
records every request and answers from a per-test script: a status code, ``HANG`` (never answer)
or ``DROP`` (close the connection without an answer). Back-off waits go through a VirtualClock;
only the HTTP round trips take real time, and the tests that need a timeout use a short one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
import pytest
import structlog

from tradehall.core.clock import VirtualClock
from tradehall.exchange.webhook_delivery import (
    USER_AGENT,
    Delivery,
    DeliveryOutcome,
    WebhookDispatcher,
)

HANG = "hang"
DROP = "drop"
Action = int | str


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int


@dataclass
class Receiver:
    """A recording HTTP server; ``script(request, earlier)`` picks the answer.

    ``earlier`` is how many requests with the same ``X-Delivery-Id`` came before this one.
    """

    script: Callable[[Request, int], Action] = lambda _request, _earlier: 200
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    max_concurrent_per_path: dict[str, int] = field(default_factory=dict)
    _concurrent: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait_requests(self, count: int) -> None:
        async with asyncio.timeout(3):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def paths(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def close(self) -> None:
        self._release.set()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        self._writers.add(writer)
        try:
            while request := await self._read(reader, connection):
                earlier = sum(
                    1
                    for r in self.requests
                    if r.headers.get("x-delivery-id") == request.headers.get("x-delivery-id")
                )
                self.requests.append(request)
                self._arrived.set()
                action = self.script(request, earlier)
                self._concurrent[request.path] = self._concurrent.get(request.path, 0) + 1
                self.max_concurrent_per_path[request.path] = max(
                    self.max_concurrent_per_path.get(request.path, 0),
                    self._concurrent[request.path],
                )
                try:
                    if action == HANG:
                        await self._release.wait()
                        return
                    if action == DROP:
                        return
                    await asyncio.sleep(0)  # let other connections interleave
                    writer.write(
                        f"HTTP/1.1 {action} Scripted\r\nContent-Type: text/plain\r\n"
                        "Content-Length: 2\r\n\r\nok".encode()
                    )
                    await writer.drain()
                finally:
                    self._concurrent[request.path] -= 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader, connection: int) -> Request | None:
        line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Request(method, target, headers, body, connection)


class StepClock(VirtualClock):
    """A VirtualClock that records every requested sleep and signals when one starts."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []
        self.sleeping = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.sleeping.set()
        await super().sleep(seconds)


class CeilingRandom(random.Random):
    """Jitter that always picks the top of its range, to expose the back-off ceilings."""

    def uniform(self, a: float, b: float) -> float:
        assert a == 0.0
        return b


@dataclass
class Harness:
    clock: StepClock
    registry: prometheus_client.CollectorRegistry
    outcomes: dict[str, DeliveryOutcome]
    settled: asyncio.Event
    dispatchers: list[WebhookDispatcher]

    def make(self, **kwargs: Any) -> WebhookDispatcher:
        def record(delivery: Delivery, outcome: DeliveryOutcome) -> None:
            assert delivery.delivery_id not in self.outcomes, "settled twice"
            self.outcomes[delivery.delivery_id] = outcome
            self.settled.set()

        kwargs.setdefault("on_settled", record)
        kwargs.setdefault("rng", random.Random(7))
        dispatcher = WebhookDispatcher(clock=self.clock, registry=self.registry, **kwargs)
        self.dispatchers.append(dispatcher)
        return dispatcher

    async def run(self, dispatcher: WebhookDispatcher) -> None:
        """Drain ``dispatcher``, advancing the clock whenever a back-off sleep is waiting."""
        drain = asyncio.ensure_future(dispatcher.drain())
        try:
            # A hang guard, not a speed check: a drain of a few hundred real HTTP round trips took
            # over 4 s on a loaded two-core machine.
            async with asyncio.timeout(30):
                while not drain.done():
                    sleeping = asyncio.ensure_future(self.clock.sleeping.wait())
                    await asyncio.wait({drain, sleeping}, return_when=asyncio.FIRST_COMPLETED)
                    if sleeping.done():
                        self.clock.sleeping.clear()
                        await self.clock.advance(60)
                    else:
                        sleeping.cancel()
                await drain
        finally:
            drain.cancel()

    async def wait_outcome(self, delivery_id: str) -> DeliveryOutcome:
        async with asyncio.timeout(3):
            while delivery_id not in self.outcomes:
                self.settled.clear()
                await self.settled.wait()
        return self.outcomes[delivery_id]

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness(StepClock(), prometheus_client.CollectorRegistry(), {}, asyncio.Event(), [])
    yield h
    for dispatcher in h.dispatchers:
        await dispatcher.close()


def delivery(url: str, n: int = 0, event: str = "trade.executed") -> Delivery:
    body = json.dumps({"event": event, "data": {"n": n}}, separators=(",", ":")).encode()
    return Delivery(str(uuid.uuid4()), f"wh-{n % 3}", event, url, body)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def started(dispatcher: WebhookDispatcher) -> WebhookDispatcher:
    await dispatcher.start()
    return dispatcher


async def within(awaitable: Awaitable[Any], seconds: float = 3) -> Any:
    async with asyncio.timeout(seconds):
        return await awaitable


# --- wire format ----------------------------------------------------------------------------------


async def test_headers_body_and_signature(receiver: Receiver, harness: Harness) -> None:
    secret = b"s3cret"
    dispatcher = await started(harness.make(signing_secret=secret))
    d = Delivery(
        "6f1c1f9e-2f55-4a4e-9f0c-0d4b8e1f3a21",
        "9b2d7c1e-1111-4222-8333-444455556666",
        "order.cancelled",
        receiver.url("/hooks/broker-1?x=1"),
        b'{"event":"order.cancelled","timestamp":"2026-02-17T10:15:00Z","data":{"price":150.00}}',
    )
    dispatcher.submit([d])
    await harness.run(dispatcher)

    assert harness.outcomes == {d.delivery_id: "delivered"}
    [request] = receiver.requests
    assert request.method == "POST"
    assert request.path == "/hooks/broker-1?x=1"
    assert request.body == d.body
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-delivery-id"] == d.delivery_id
    assert request.headers["x-webhook-id"] == d.webhook_id
    assert request.headers["x-event-type"] == "order.cancelled"
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["content-length"] == str(len(d.body))
    scheme, _, digest = request.headers["x-signature"].partition("=")
    assert scheme == "sha256"
    assert digest == digest.lower() and len(digest) == 64
    expected = hmac.new(secret, request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(digest, expected)


async def test_no_signature_header_without_secret(receiver: Receiver, harness: Harness) -> None:
    dispatcher = await started(harness.make())
    dispatcher.submit([delivery(receiver.url())])
    await harness.run(dispatcher)
    [request] = receiver.requests
    assert "x-signature" not in request.headers


async def test_keep_alive_reuses_one_connection(receiver: Receiver, harness: Harness) -> None:
    dispatcher = await started(harness.make())
    batch = [delivery(receiver.url(), n) for n in range(5)]
    dispatcher.submit(batch)
    await harness.run(dispatcher)
    assert len(receiver.requests) == 5
    assert receiver.connections == 1


# --- ordering and isolation -----------------------------------------------------------------------


async def test_order_preserved_per_url_with_retries(receiver: Receiver, harness: Harness) -> None:
    # Every 7th delivery fails once with 503; its retry must still precede the next one.
    def script(request: Request, earlier: int) -> Action:
        n = json.loads(request.body)["data"]["n"]
        return 503 if n % 7 == 0 and earlier == 0 else 200

    receiver.script = script
    dispatcher = await started(harness.make())
    paths = [f"/r{i}" for i in range(4)]
    batch = [delivery(receiver.url(paths[n % 4]), n) for n in range(200)]
    for start in range(0, 200, 25):  # several submit calls, interleaving URLs
        dispatcher.submit(batch[start : start + 25])
    await harness.run(dispatcher)

    assert set(harness.outcomes.values()) == {"delivered"}
    assert len(harness.outcomes) == 200
    for path in paths:
        seen = [json.loads(r.body)["data"]["n"] for r in receiver.paths(path)]
        expected = [n for n in range(200) if paths[n % 4] == path]
        retried = [n for n in expected if n % 7 == 0]
        assert seen == sorted(expected + retried)  # in order, each 503 followed by its retry
        assert receiver.max_concurrent_per_path[path] == 1
    assert dispatcher.pending == 0
    assert harness.metric("tradehall_webhook_lanes") == 0


async def test_dead_url_does_not_delay_another(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda request, _earlier: HANG if request.path == "/dead" else 200
    dispatcher = await started(harness.make(timeout=30))
    dead = [delivery(receiver.url("/dead"), n) for n in range(2)]
    live = [delivery(receiver.url("/live"), n) for n in range(3)]
    dispatcher.submit([dead[0], live[0], dead[1], live[1], live[2]])

    for d in live:
        assert await harness.wait_outcome(d.delivery_id) == "delivered"
    assert all(d.delivery_id not in harness.outcomes for d in dead)
    assert len(receiver.paths("/dead")) == 1  # the head is stuck; the one behind it waits
    assert dispatcher.pending == 2

    await within(dispatcher.close())
    assert [harness.outcomes[d.delivery_id] for d in dead] == ["abandoned", "abandoned"]


# --- retries --------------------------------------------------------------------------------------


async def test_503_retried_with_same_delivery_id(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda _request, earlier: 503 if earlier < 2 else 204
    dispatcher = await started(harness.make(max_retries=3, rng=random.Random(42)))
    d = delivery(receiver.url())
    dispatcher.submit([d])
    await harness.run(dispatcher)

    assert harness.outcomes[d.delivery_id] == "delivered"
    assert [r.headers["x-delivery-id"] for r in receiver.requests] == [d.delivery_id] * 3
    assert all(r.body == d.body for r in receiver.requests)
    jitter = random.Random(42)
    assert harness.clock.slept == [jitter.uniform(0, 0.2), jitter.uniform(0, 0.4)]
    assert harness.metric("tradehall_webhook_attempts_total") == 3
    assert harness.metric("tradehall_webhook_deliveries_total", outcome="delivered") == 1


async def test_backoff_waits_on_the_clock(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda _request, earlier: 500 if earlier == 0 else 200
    dispatcher = await started(harness.make(rng=CeilingRandom(), backoff_base=1.5))
    d = delivery(receiver.url())
    dispatcher.submit([d])
    await receiver.wait_requests(1)
    await within(harness.clock.sleeping.wait())
    assert harness.clock.slept == [1.5]

    await harness.clock.advance(1.499)
    assert harness.clock.sleepers == 1
    assert len(receiver.requests) == 1
    await harness.clock.advance(0.002)
    await receiver.wait_requests(2)
    assert await harness.wait_outcome(d.delivery_id) == "delivered"


async def test_backoff_is_exponential_and_capped(harness: Harness) -> None:
    dispatcher = await started(
        harness.make(max_retries=6, backoff_base=1.0, backoff_max=4.0, rng=CeilingRandom())
    )
    d = delivery(closed_port_url())
    dispatcher.submit([d])
    await harness.run(dispatcher)
    assert harness.clock.slept == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert harness.outcomes[d.delivery_id] == "failed"
    assert harness.metric("tradehall_webhook_attempts_total") == 7


async def test_400_is_rejected_without_retry(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda _request, _earlier: 400
    dispatcher = await started(harness.make())
    d = delivery(receiver.url())
    dispatcher.submit([d])
    await harness.run(dispatcher)
    assert harness.outcomes[d.delivery_id] == "rejected"
    assert len(receiver.requests) == 1
    assert harness.clock.slept == []


async def test_redirect_is_not_followed_and_rejected(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda _request, _earlier: 302
    dispatcher = await started(harness.make())
    d = delivery(receiver.url())
    dispatcher.submit([d])
    await harness.run(dispatcher)
    assert harness.outcomes[d.delivery_id] == "rejected"
    assert len(receiver.requests) == 1


async def test_closed_port_is_retried_then_failed(harness: Harness) -> None:
    dispatcher = await started(harness.make(max_retries=2))
    d = delivery(closed_port_url())
    dispatcher.submit([d])
    await harness.run(dispatcher)
    assert harness.outcomes[d.delivery_id] == "failed"
    assert harness.metric("tradehall_webhook_attempts_total") == 3
    assert len(harness.clock.slept) == 2
    assert harness.metric("tradehall_webhook_deliveries_total", outcome="failed") == 1


async def test_timeout_is_retried_then_failed(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda _request, _earlier: HANG
    dispatcher = await started(harness.make(timeout=0.2, max_retries=1))
    d = delivery(receiver.url())
    dispatcher.submit([d])
    await harness.run(dispatcher)
    assert harness.outcomes[d.delivery_id] == "failed"
    assert [r.headers["x-delivery-id"] for r in receiver.requests] == [d.delivery_id] * 2


async def test_dropped_connection_is_retried(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda _request, earlier: DROP if earlier == 0 else 200
    dispatcher = await started(harness.make())
    d = delivery(receiver.url())
    dispatcher.submit([d])
    await harness.run(dispatcher)
    assert harness.outcomes[d.delivery_id] == "delivered"
    assert len(receiver.requests) == 2


async def test_unusable_url_fails_without_retry(harness: Harness) -> None:
    dispatcher = await started(harness.make())
    d = delivery("ftp://127.0.0.1/hook")
    dispatcher.submit([d])
    await harness.run(dispatcher)
    assert harness.outcomes[d.delivery_id] == "failed"
    assert harness.clock.slept == []


# --- bounds, lifecycle, callbacks -----------------------------------------------------------------


async def test_queue_overflow_drops_without_blocking(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda _request, _earlier: HANG
    dispatcher = await started(harness.make(queue_limit=3, timeout=30))
    batch = [delivery(receiver.url(f"/p{n % 2}"), n) for n in range(5)]
    with structlog.testing.capture_logs() as logs:
        dispatcher.submit(batch)  # synchronous: outcomes below are known before any await
    assert harness.outcomes == {
        batch[3].delivery_id: "dropped",
        batch[4].delivery_id: "dropped",
    }
    assert dispatcher.pending == 3
    dropped_logs = [e for e in logs if e["event"] == "webhook_dropped"]
    assert [e["delivery_id"] for e in dropped_logs] == [batch[3].delivery_id, batch[4].delivery_id]
    assert harness.metric("tradehall_webhook_deliveries_total", outcome="dropped") == 2
    assert harness.metric("tradehall_webhook_pending") == 3

    await within(dispatcher.close())
    assert sorted(harness.outcomes.values()) == ["abandoned"] * 3 + ["dropped"] * 2


async def test_close_abandons_in_flight_and_queued(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda _request, _earlier: HANG
    dispatcher = await started(harness.make(timeout=30))
    batch = [delivery(receiver.url(), n) for n in range(3)]
    dispatcher.submit(batch)
    await receiver.wait_requests(1)

    await within(dispatcher.close(), 1)
    assert [harness.outcomes[d.delivery_id] for d in batch] == ["abandoned"] * 3
    assert dispatcher.pending == 0
    assert len(receiver.requests) == 1

    late = delivery(receiver.url(), 9)
    dispatcher.submit([late])
    assert harness.outcomes[late.delivery_id] == "abandoned"
    assert dispatcher.pending == 0
    assert harness.metric("tradehall_webhook_deliveries_total", outcome="abandoned") == 4
    assert harness.metric("tradehall_webhook_pending") == 0
    with pytest.raises(RuntimeError):
        await dispatcher.start()


async def test_submit_before_start_waits_for_start(receiver: Receiver, harness: Harness) -> None:
    dispatcher = harness.make()
    batch = [delivery(receiver.url(), n) for n in range(3)]
    dispatcher.submit(batch)
    assert dispatcher.pending == 3
    with pytest.raises(RuntimeError):
        await dispatcher.drain()
    assert receiver.requests == []

    await dispatcher.start()
    await harness.run(dispatcher)
    assert [r.body for r in receiver.requests] == [d.body for d in batch]
    assert dispatcher.pending == 0


async def test_raising_callback_does_not_break_the_lane(
    receiver: Receiver, harness: Harness
) -> None:
    calls: list[str] = []

    def explode(d: Delivery, _outcome: DeliveryOutcome) -> None:
        calls.append(d.delivery_id)
        raise RuntimeError("outbox unavailable")

    dispatcher = await started(harness.make(on_settled=explode))
    batch = [delivery(receiver.url(), n) for n in range(3)]
    with structlog.testing.capture_logs() as logs:
        dispatcher.submit(batch)
        await harness.run(dispatcher)
    assert calls == [d.delivery_id for d in batch]
    assert len(receiver.requests) == 3
    assert dispatcher.pending == 0
    assert sum(e["event"] == "webhook_on_settled_error" for e in logs) == 3


async def test_metrics_after_mixed_outcomes(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda request, _earlier: 200 if request.path == "/ok" else 404
    dispatcher = await started(harness.make())
    ok, gone = receiver.url("/ok"), receiver.url("/gone")
    dispatcher.submit([delivery(ok, 1), delivery(ok, 2), delivery(gone, 3)])
    await harness.run(dispatcher)
    assert harness.metric("tradehall_webhook_deliveries_total", outcome="delivered") == 2
    assert harness.metric("tradehall_webhook_deliveries_total", outcome="rejected") == 1
    assert harness.metric("tradehall_webhook_attempts_total") == 3
    assert harness.metric("tradehall_webhook_delivery_seconds_count", outcome="delivered") == 2
    assert harness.metric("tradehall_webhook_delivery_seconds_count", outcome="rejected") == 1
    assert harness.metric("tradehall_webhook_pending") == 0
    assert harness.metric("tradehall_webhook_lanes") == 0


async def test_drain_waits_only_for_earlier_submissions(
    receiver: Receiver, harness: Harness
) -> None:
    receiver.script = lambda request, _earlier: HANG if request.path == "/later" else 200
    dispatcher = await started(harness.make(timeout=30))
    first = delivery(receiver.url("/now"))
    dispatcher.submit([first])
    drain = asyncio.ensure_future(dispatcher.drain())
    await asyncio.sleep(0)  # drain() takes its snapshot of the lanes now
    dispatcher.submit([delivery(receiver.url("/later"))])
    await within(drain)
    assert harness.outcomes == {first.delivery_id: "delivered"}
    assert dispatcher.pending == 1


async def test_close_releases_a_pending_drain(receiver: Receiver, harness: Harness) -> None:
    receiver.script = lambda _request, _earlier: HANG
    dispatcher = await started(harness.make(timeout=30))
    d = delivery(receiver.url())
    dispatcher.submit([d])
    drain = asyncio.ensure_future(dispatcher.drain())
    await receiver.wait_requests(1)
    assert not drain.done()
    await within(dispatcher.close(), 1)
    await within(drain, 1)
    assert harness.outcomes == {d.delivery_id: "abandoned"}


async def test_queue_limit_zero_drops_everything(receiver: Receiver, harness: Harness) -> None:
    dispatcher = await started(harness.make(queue_limit=0))
    batch = [delivery(receiver.url(), n) for n in range(2)]
    dispatcher.submit(batch)
    assert [harness.outcomes[d.delivery_id] for d in batch] == ["dropped", "dropped"]
    await within(dispatcher.drain())
    assert receiver.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": 0}, {"max_retries": -1}, {"backoff_base": -0.1}, {"queue_limit": -1}],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        WebhookDispatcher(clock=VirtualClock(), **kwargs)
