"""Webhook delivery: at-least-once POSTs to subscribers, off the matching path.

The engine builds each notification (§5.4 of the contract) as a :class:`Delivery` and hands a batch
to :meth:`WebhookDispatcher.submit` once its atomic unit has finished. ``submit`` is synchronous and
constant-time per item: it only appends to a queue, so a slow or dead receiver can never delay a
response or a matching pass.

Design:

- **Per-URL lanes.** Deliveries to one URL go through a FIFO *lane*, sent one at a time in
  submission order; retries of the head delivery block only that lane, so a receiver always sees
  its events in order. A lane is a task created when its first delivery arrives and retired as soon
  as it is empty, so idle URLs cost nothing. Different URLs run independently.
- **Retries** (contract §10). Network errors, timeouts and 5xx answers are retried up to
  ``max_retries`` times with exponential back-off and full jitter
  (``uniform(0, min(backoff_max, backoff_base * 2**n))`` before retry ``n``), sleeping through the
  injected :class:`~tradehall.core.clock.Clock`. Every attempt carries the same ``X-Delivery-Id``
  so receivers can de-duplicate. Any other non-2xx answer is final: the receiver refused it.
- **Bounded.** At most ``queue_limit`` deliveries are pending (queued or in flight); beyond that,
  ``submit`` drops the new delivery instead of blocking or growing without bound.
- **Outcomes.** Each delivery settles exactly once as ``delivered`` (2xx), ``rejected`` (3xx/4xx,
  not retried), ``failed`` (retries exhausted, or a URL that cannot be requested at all),
  ``dropped`` (queue full) or ``abandoned`` (dispatcher closed first, contract §8 step 3). The
  optional ``on_settled`` callback sees every outcome; the durability layer uses it to clear its
  outbox. Callback errors are logged, never propagated into a lane.

Per-attempt time is bounded by ``timeout`` seconds of real time (the HTTP client's timeouts plus
an overall deadline); only the back-off waits use the injected clock. At most
:data:`MAX_IN_FLIGHT` requests run at once across all lanes, which bounds open sockets.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Literal

import httpx
import msgspec
import prometheus_client

from tradehall import __version__
from tradehall.core.clock import Clock
from tradehall.core.logging import get_logger

__all__ = ["MAX_IN_FLIGHT", "USER_AGENT", "Delivery", "DeliveryOutcome", "WebhookDispatcher"]

DeliveryOutcome = Literal["delivered", "rejected", "failed", "dropped", "abandoned"]

MAX_IN_FLIGHT = 256
"""Requests in flight at once over all URLs (back-off waits do not count)."""

USER_AGENT = f"tradehall-webhooks/{__version__}"

# A receiver's answer is read up to this many bytes so the connection can be reused; beyond it the
# connection is simply closed.
_MAX_RESPONSE_BYTES = 64 * 1024

# Submit-to-settle latency, from a fast local receiver to retries spread over several seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_OUTCOMES: tuple[DeliveryOutcome, ...] = ("delivered", "rejected", "failed", "dropped", "abandoned")

_log = get_logger("exchange.webhooks")


class Delivery(msgspec.Struct, frozen=True):
    """One notification to POST to one subscriber."""

    delivery_id: str
    """UUID; the same on every attempt of this delivery (receivers de-duplicate by it)."""
    webhook_id: str
    """Subscription id, sent as ``X-Webhook-Id``."""
    event_type: str
    """E.g. ``trade.executed``, sent as ``X-Event-Type``."""
    url: str
    body: bytes
    """The exact JSON body to POST, built by the caller."""


class _Entry:
    """A submitted delivery with its bookkeeping while it waits in a lane."""

    __slots__ = ("delivery", "submitted_at", "waiter")

    def __init__(self, delivery: Delivery, submitted_at: float) -> None:
        self.delivery = delivery
        self.submitted_at = submitted_at
        self.waiter: asyncio.Future[None] | None = None  # created only when someone drains


class _Lane:
    """The FIFO of one URL and the task working through it (``None`` until started)."""

    __slots__ = ("entries", "task")

    def __init__(self) -> None:
        self.entries: deque[_Entry] = deque()
        self.task: asyncio.Task[None] | None = None


class _Metrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.deliveries = prometheus_client.Counter(
            "tradehall_webhook_deliveries",
            "Webhook deliveries settled, by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in _OUTCOMES:
            self.deliveries.labels(outcome)
        self.attempts = prometheus_client.Counter(
            "tradehall_webhook_attempts",
            "HTTP attempts made for webhook deliveries, retries included.",
            registry=registry,
        )
        self.pending = prometheus_client.Gauge(
            "tradehall_webhook_pending",
            "Webhook deliveries submitted but not yet settled.",
            registry=registry,
        )
        self.lanes = prometheus_client.Gauge(
            "tradehall_webhook_lanes",
            "Receiver URLs with deliveries queued or in flight.",
            registry=registry,
        )
        self.latency = prometheus_client.Histogram(
            "tradehall_webhook_delivery_seconds",
            "Time from submit to the final outcome of an attempted delivery (retries included).",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )


class WebhookDispatcher:
    """Delivers webhooks over per-URL FIFO lanes with bounded retries; see the module docstring.

    Call :meth:`submit` from the event loop's thread. Deliveries submitted before :meth:`start`
    wait in their lanes and go out once it is called.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        timeout: float = 5.0,
        max_retries: int = 3,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        queue_limit: int = 10_000,
        signing_secret: bytes | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        registry: prometheus_client.CollectorRegistry | None = None,
        on_settled: Callable[[Delivery, DeliveryOutcome], None] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if backoff_base < 0 or backoff_max < 0:
            raise ValueError("backoff_base and backoff_max must be >= 0")
        if queue_limit < 0:
            raise ValueError("queue_limit must be >= 0")  # 0 drops every delivery
        self._clock = clock
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._queue_limit = queue_limit
        self._secret = signing_secret
        self._rng = rng if rng is not None else random.Random()
        self._transport = transport
        self.on_settled = on_settled  # public: the service attaches its outbox hook
        self._metrics = _Metrics(
            registry if registry is not None else prometheus_client.CollectorRegistry()
        )
        self._lanes: dict[str, _Lane] = {}
        self._pending = 0
        self._client: httpx.AsyncClient | None = None
        self._in_flight: asyncio.Semaphore | None = None
        self._started = False
        self._closed = False

    @property
    def pending(self) -> int:
        """Deliveries submitted but not yet settled (queued or in flight)."""
        return self._pending

    def submit(self, deliveries: Iterable[Delivery]) -> None:
        """Queue ``deliveries`` in order; never blocks, never awaits.

        A delivery that finds ``queue_limit`` others pending settles at once as ``dropped``; after
        :meth:`close` every delivery settles at once as ``abandoned``.
        """
        now = self._clock.monotonic()
        for delivery in deliveries:
            if self._closed:
                self._settle(_Entry(delivery, now), "abandoned", queued=False)
                continue
            if self._pending >= self._queue_limit:
                _log.warning(
                    "webhook_dropped",
                    reason="queue_full",
                    queue_limit=self._queue_limit,
                    delivery_id=delivery.delivery_id,
                    webhook_id=delivery.webhook_id,
                    event_type=delivery.event_type,
                    url=delivery.url,
                )
                self._settle(_Entry(delivery, now), "dropped", queued=False)
                continue
            lane = self._lanes.get(delivery.url)
            if lane is None:
                lane = self._lanes[delivery.url] = _Lane()
                self._metrics.lanes.set(len(self._lanes))
            lane.entries.append(_Entry(delivery, now))
            self._pending += 1
            self._metrics.pending.set(self._pending)
            if self._started and lane.task is None:
                lane.task = asyncio.get_running_loop().create_task(self._run_lane(delivery.url))

    async def start(self) -> None:
        """Open the shared HTTP client and start the lanes of anything already submitted."""
        if self._closed:
            raise RuntimeError("WebhookDispatcher is closed")
        if self._started:
            return
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            transport=self._transport,
        )
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._started = True
        loop = asyncio.get_running_loop()
        for url, lane in self._lanes.items():
            if lane.task is None:
                lane.task = loop.create_task(self._run_lane(url))

    async def drain(self) -> None:
        """Wait until every delivery submitted so far has settled.

        Lanes are FIFO, so it is enough to wait for the current tail of each lane. Later
        submissions are not waited for.
        """
        if not self._started and self._pending:
            raise RuntimeError("drain() before start() would wait forever")
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[None]] = []
        for lane in self._lanes.values():
            tail = lane.entries[-1]
            if tail.waiter is None:
                tail.waiter = loop.create_future()
            waiters.append(tail.waiter)
        if waiters:
            await asyncio.gather(*waiters)

    async def close(self) -> None:
        """Stop at once: in-flight and queued deliveries settle as ``abandoned`` (no drain)."""
        if self._closed:
            return
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        lanes, self._lanes = self._lanes, {}
        self._metrics.lanes.set(0)
        abandoned = 0
        for lane in lanes.values():
            while lane.entries:
                self._settle(lane.entries.popleft(), "abandoned")
                abandoned += 1
        if abandoned:
            _log.info("webhooks_abandoned", count=abandoned)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run_lane(self, url: str) -> None:
        lane = self._lanes[url]
        while True:
            entry = lane.entries[0]
            outcome = await self._deliver(entry.delivery)
            # No await from here to the next _deliver: close() never sees a half-settled head.
            lane.entries.popleft()
            self._metrics.latency.labels(outcome).observe(
                max(0.0, self._clock.monotonic() - entry.submitted_at)
            )
            self._settle(entry, outcome)
            if not lane.entries:
                del self._lanes[url]
                self._metrics.lanes.set(len(self._lanes))
                return

    async def _deliver(self, delivery: Delivery) -> DeliveryOutcome:
        headers = self._headers(delivery)
        attempt = 0
        while True:
            attempt += 1
            error: str | None = None
            status: int | None = None
            try:
                status = await self._attempt(delivery, headers)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                _log.warning(
                    "webhook_failed",
                    reason="bad_url",
                    error=repr(exc),
                    delivery_id=delivery.delivery_id,
                    webhook_id=delivery.webhook_id,
                    url=delivery.url,
                )
                return "failed"
            except (httpx.TransportError, TimeoutError) as exc:
                error = type(exc).__name__
            except Exception as exc:  # a bug must not kill the lane; treat it like a network error
                _log.exception("webhook_attempt_error", delivery_id=delivery.delivery_id)
                error = type(exc).__name__

            if status is not None and 200 <= status < 300:
                _log.debug(
                    "webhook_delivered",
                    delivery_id=delivery.delivery_id,
                    url=delivery.url,
                    attempts=attempt,
                )
                return "delivered"
            if status is not None and status < 500:
                _log.warning(
                    "webhook_rejected",
                    status=status,
                    delivery_id=delivery.delivery_id,
                    webhook_id=delivery.webhook_id,
                    url=delivery.url,
                    attempts=attempt,
                )
                return "rejected"
            if attempt > self._max_retries:
                _log.warning(
                    "webhook_failed",
                    reason="retries_exhausted",
                    status=status,
                    error=error,
                    delivery_id=delivery.delivery_id,
                    webhook_id=delivery.webhook_id,
                    url=delivery.url,
                    attempts=attempt,
                )
                return "failed"
            await self._clock.sleep(self._backoff(attempt - 1))

    async def _attempt(self, delivery: Delivery, headers: dict[str, str]) -> int:
        """One POST; returns the status code or raises a transport error or ``TimeoutError``."""
        assert self._client is not None and self._in_flight is not None
        async with self._in_flight:
            self._metrics.attempts.inc()
            async with (
                asyncio.timeout(self._timeout),
                self._client.stream(
                    "POST", delivery.url, content=delivery.body, headers=headers
                ) as response,
            ):
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received > _MAX_RESPONSE_BYTES:
                        break
                return response.status_code

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-Delivery-Id": delivery.delivery_id,
            "X-Webhook-Id": delivery.webhook_id,
            "X-Event-Type": delivery.event_type,
        }
        if self._secret is not None:
            digest = hmac.new(self._secret, delivery.body, hashlib.sha256).hexdigest()
            headers["X-Signature"] = f"sha256={digest}"
        return headers

    def _backoff(self, retry: int) -> float:
        """Full-jitter exponential back-off before retry number ``retry`` (0-based)."""
        ceiling = min(self._backoff_max, self._backoff_base * 2.0**retry)
        return self._rng.uniform(0.0, ceiling)

    def _settle(self, entry: _Entry, outcome: DeliveryOutcome, *, queued: bool = True) -> None:
        """Record ``outcome``; ``queued`` says whether the entry was counted as pending."""
        if queued:
            self._pending -= 1
            self._metrics.pending.set(self._pending)
        self._metrics.deliveries.labels(outcome).inc()
        if entry.waiter is not None and not entry.waiter.done():
            entry.waiter.set_result(None)
        if self.on_settled is not None:
            try:
                self.on_settled(entry.delivery, outcome)
            except Exception:
                _log.exception(
                    "webhook_on_settled_error",
                    delivery_id=entry.delivery.delivery_id,
                    outcome=outcome,
                )
