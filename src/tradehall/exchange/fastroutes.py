"""A lean ASGI front for the contract routes; everything else goes to the Starlette app.

Per request the Starlette stack costs more than the command itself (routing through every route's
regex, ``Request``/``Response`` objects, header re-encoding, exception middleware). For the routes
in :func:`~tradehall.exchange.endpoints.contract_endpoints` this dispatcher instead:

- matches the path by splitting it once and looking the shape up in a dict;
- reads the body straight from ``receive`` (same 1 MiB / read-timeout limits, 413 / 408);
- calls the synchronous endpoint, awaits durability for commands, and sends pre-built headers;
- counts the request on pre-bound metric children (no ``labels()`` lookup per request).

Anything it does not recognise -- another method (so 405 keeps its ``Allow`` header), ``HEAD``,
trailing slashes, docs, metrics, WebSockets, lifespan -- is handed unchanged to the fallback app,
which serves the same endpoints, so both paths give byte-identical answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from tradehall.core.logging import get_logger
from tradehall.exchange.endpoints import Endpoint, encode, error_body
from tradehall.exchange.errors import ExchangeError, PayloadTooLarge, RequestTimeout
from tradehall.exchange.metrics import CounterChild, ExchangeMetrics, HistogramChild
from tradehall.exchange.schemas import ErrorOut
from tradehall.exchange.service import ExchangeService

__all__ = ["MAX_BODY_BYTES", "FastRoute", "FastRoutes", "parse_query"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1 << 20
log = get_logger("exchange.http")
_JSON_TYPE = (b"content-type", b"application/json")
_INTERNAL_ERROR = encode(ErrorOut("internal_error", "Internal server error"))
_EMPTY: dict[str, str] = {}
_UNKNOWN = object()
_CACHED_TARGETS = 4096
_CACHED_TARGET_BYTES = 256


def parse_query(raw: bytes) -> Mapping[str, str]:
    """The query string as Starlette reads it (``parse_qsl``, blanks kept, last value wins);
    plain ``name=value`` pairs, the usual case, are split without the general decoder."""
    if not raw:
        return _EMPTY
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    query: dict[str, str] = {}
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            query[name] = value
    return query


class _Disconnected(Exception):
    """The client went away before its request body was complete."""


class FastRoute:
    """An endpoint with its metric children bound once (what :meth:`FastRoutes.match` finds)."""

    __slots__ = (
        "_requests",
        "counters",
        "durable",
        "endpoint",
        "fn",
        "latency",
        "name",
        "reads_body",
    )

    def __init__(self, endpoint: Endpoint, metrics: ExchangeMetrics) -> None:
        self.endpoint = endpoint
        self.fn = endpoint.fn
        self.reads_body = endpoint.reads_body
        self.durable = endpoint.durable
        self.name = f"{endpoint.method} {endpoint.path}"
        self.latency: HistogramChild = metrics.latency.labels(self.name)
        self.counters: dict[int, CounterChild] = {}
        self._requests = metrics.requests

    def counter(self, status: int) -> CounterChild:
        counter = self.counters.get(status)
        if counter is None:
            counter = self.counters[status] = self._requests.labels(
                self.name, self.endpoint.method, status
            )
        return counter


def _shape(method: str, path: str) -> tuple[str, str, str | None]:
    """The lookup key of a template: ``/a`` -> (m, a, None), ``/a/{p}`` -> (m, a, ""),
    ``/a/{p}/b`` -> (m, a, b)."""
    parts = path.split("/")
    if len(parts) == 2:
        return method, parts[1], None
    if len(parts) in (3, 4) and parts[2].startswith("{") and parts[2].endswith("}"):
        return method, parts[1], parts[3] if len(parts) == 4 else ""
    raise ValueError(f"unsupported route template for the fast path: {path}")


class FastRoutes:
    """ASGI app: the endpoints served directly, anything else by ``fallback``."""

    def __init__(
        self,
        fallback: ASGIApp,
        service: ExchangeService,
        endpoints: list[Endpoint],
    ) -> None:
        self.fallback = fallback
        self._service = service
        self._read_timeout = service.settings.read_timeout
        self._watchdog = _ReadWatchdog(self._read_timeout)
        self._routes = {_shape(e.method, e.path): FastRoute(e, service.metrics) for e in endpoints}
        self._targets: dict[tuple[bytes, bytes], tuple[FastRoute, str, bytes] | None] = {}

    def match(self, method: str, path: str) -> tuple[FastRoute, str] | None:
        """The route serving ``method path`` and its path parameter, or ``None``."""
        parts = path.split("/")
        count = len(parts)
        if count == 2:
            key: tuple[str, str, str | None] = (method, parts[1], None)
            arg = ""
        elif count == 3 and parts[2]:
            key, arg = (method, parts[1], ""), parts[2]
        elif count == 4 and parts[2] and parts[3]:
            key, arg = (method, parts[1], parts[3]), parts[2]
        else:
            return None
        route = self._routes.get(key)
        return None if route is None or parts[0] else (route, arg)

    def match_target(self, method: bytes, target: bytes) -> tuple[FastRoute, str, bytes] | None:
        """:meth:`match` for a request line as received: the route, its path parameter and the
        raw query string; ``None`` also for targets the server would decode first (not origin
        form, ``%`` escapes in the path, a fragment, non-ASCII). Answers are cached (bounded,
        short targets only): clients repeat the same few targets, and a hit costs one lookup."""
        key = (method, target)
        found = self._targets.get(key, _UNKNOWN)
        if found is not _UNKNOWN:
            return found  # type: ignore[return-value]
        found = None
        if target[:1] == b"/" and b"#" not in target and method.isalpha():
            path, _, query = target.partition(b"?")
            if b"%" not in path and path.isascii():
                matched = self.match(method.decode("ascii"), path.decode("ascii"))
                if matched is not None:
                    found = (matched[0], matched[1], query)
        if len(target) <= _CACHED_TARGET_BYTES:
            if len(self._targets) >= _CACHED_TARGETS:
                self._targets.clear()
            self._targets[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self.match(scope["method"], scope["path"])
            if found is not None:
                await self._serve(found[0], found[1], scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    @property
    def service(self) -> ExchangeService:
        """The service the routes run on (the lean protocol awaits its durability gate)."""
        return self._service

    def call(
        self,
        route: FastRoute,
        arg: str,
        query_string: bytes,
        content_type: str | None,
        body: bytes,
    ) -> tuple[int, bytes]:
        """Run ``route`` synchronously: its status and JSON body, errors rendered.

        A command that returns (status below 400) has run in memory; the caller makes it
        durable (:meth:`ExchangeService.durable`) before answering, then calls :meth:`record`.
        """
        try:
            return route.fn(arg, parse_query(query_string), content_type, body)
        except Exception as exc:
            return self.error_reply(route, exc)

    @staticmethod
    def error_reply(route: FastRoute, exc: Exception) -> tuple[int, bytes]:
        """The answer to a request of ``route`` that raised ``exc``: the contract's error body
        for an :class:`ExchangeError`, else a logged 500."""
        if isinstance(exc, ExchangeError):
            return exc.status, error_body(exc)
        log.error("unhandled_error", route=route.name, method=route.endpoint.method, exc_info=exc)
        return 500, _INTERNAL_ERROR

    @staticmethod
    def record(route: FastRoute, started: float, status: int) -> None:
        """Count one answered request and its latency since ``started`` (``perf_counter``)."""
        route.latency.observe(time.perf_counter() - started)
        route.counter(status).inc()

    async def _serve(
        self, route: FastRoute, arg: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        content_type: str | None = None
        body = b""
        try:
            if route.reads_body:
                content_type, body = await self._read_body(scope, receive)
        except ExchangeError as exc:
            status, payload = exc.status, error_body(exc)
        except _Disconnected:
            return
        except Exception:
            log.exception("unhandled_error", route=route.name, method=scope["method"])
            status, payload = 500, _INTERNAL_ERROR
        else:
            status, payload = self.call(route, arg, scope["query_string"], content_type, body)
            if route.durable and status < 400:
                try:
                    await self._service.durable()
                except Exception as exc:
                    status, payload = self.error_reply(route, exc)
        self.record(route, started, status)
        if status == 204:
            headers: list[tuple[bytes, bytes]] = []
        else:
            headers = [_JSON_TYPE, (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[str | None, bytes]:
        """Content-Type and body, refused over 1 MiB (413) or slower than the read timeout."""
        content_type: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > MAX_BODY_BYTES:
                    raise PayloadTooLarge(MAX_BODY_BYTES)
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
        task = asyncio.current_task()
        assert task is not None
        self._watchdog.watch(task)
        try:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            body: bytes = message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                raise PayloadTooLarge(MAX_BODY_BYTES)
            if not message.get("more_body", False):
                return content_type, body
            chunks = [body]
            size = len(body)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise PayloadTooLarge(MAX_BODY_BYTES)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return content_type, b"".join(chunks)
        except asyncio.CancelledError:
            if self._watchdog.timed_out(task):
                raise RequestTimeout(self._read_timeout) from None
            raise
        finally:
            self._watchdog.unwatch(task)


class _ReadWatchdog:
    """Deadlines for body reads without a timer per request.

    ``asyncio.timeout`` arms and disarms a loop timer for every request even though nearly every
    body is already buffered when the handler starts. Instead, readers are registered in a dict
    and one sweep, armed only while some read is in progress, runs every quarter of the timeout
    and cancels reads past their deadline; so a stalled read ends between 1 and 1.25 timeouts.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._interval = timeout / 4
        self._started: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._armed = False

    def watch(self, task: asyncio.Task[Any]) -> None:
        loop = task.get_loop()
        self._started[task] = loop.time()
        if not self._armed:
            self._armed = True
            loop.call_later(self._interval, self._sweep, loop)

    def unwatch(self, task: asyncio.Task[Any]) -> None:
        self._started.pop(task, None)
        self._expired.discard(task)

    def timed_out(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled by this watchdog (the cancellation is then absorbed)."""
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = loop.time() - self._timeout
        for task, started in list(self._started.items()):
            if started <= deadline and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._started:
            loop.call_later(self._interval, self._sweep, loop)
        else:
            self._armed = False
