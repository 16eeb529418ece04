"""The Exchange's HTTP adapter: the contract endpoints behind a lean ASGI front, over Starlette.

The contract routes (:mod:`~tradehall.exchange.endpoints`) are served by
:class:`~tradehall.exchange.fastroutes.FastRoutes`, which handles the requests it recognises
directly and hands everything else to the Starlette app built here. (Under ``tradehall
exchange`` most contract requests never reach the ASGI app: :mod:`~tradehall.exchange.lean_http`
answers them from the HTTP parser's callbacks through the same ``FastRoutes`` methods.) That app
serves the same endpoints too (``HEAD``, and the single source of 404/405 answers with their
``Allow`` header) plus operations routes (metrics, OpenAPI, docs, admin) and market data
(WebSocket, console).
Errors are ``ExchangeError`` instances mapped to ``{"error", "message"}`` bodies; anything else is
a 500 that is logged and changes nothing further.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tradehall.core.logging import get_logger
from tradehall.core.metrics import CONTENT_TYPE_LATEST, render
from tradehall.exchange import schemas as out
from tradehall.exchange.endpoints import Endpoint, contract_endpoints, encode, error_body
from tradehall.exchange.errors import (
    ExchangeError,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    RouteNotFound,
)
from tradehall.exchange.fastroutes import MAX_BODY_BYTES, FastRoutes
from tradehall.exchange.marketdata import MarketData
from tradehall.exchange.marketdata_ws import market_data_routes
from tradehall.exchange.metrics import CounterChild
from tradehall.exchange.openapi import docs_page, openapi_document
from tradehall.exchange.service import ExchangeService

__all__ = ["create_app"]

log = get_logger("exchange.http")
_JSON = "application/json"

Handler = Callable[[Request], Awaitable[Response]]


def _json(body: Any, status: int = 200) -> Response:
    return Response(encode(body), status, media_type=_JSON)


def _error(exc: ExchangeError) -> Response:
    return Response(error_body(exc), exc.status, media_type=_JSON)


async def _read_body(request: Request, deadline_seconds: float) -> bytes:
    """The request body, refused if larger than 1 MiB or slower than ``deadline_seconds``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(MAX_BODY_BYTES)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise PayloadTooLarge(MAX_BODY_BYTES)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(deadline_seconds) from None
    return b"".join(chunks)


def _by_method(handlers: dict[str, Handler]) -> Handler:
    if len(handlers) == 1:
        return next(iter(handlers.values()))
    get = handlers.get("GET")

    async def dispatch(request: Request) -> Response:
        handler = handlers.get(request.method)
        if handler is None and request.method == "HEAD" and get is not None:
            handler = get  # Starlette answers HEAD with the GET handler, body dropped
        assert handler is not None  # the Route only admits its own methods
        return await handler(request)

    return dispatch


def _adapt(service: ExchangeService, spec: Endpoint) -> Handler:
    """A Starlette handler running ``spec`` (the slow path: HEAD, tests of the fallback)."""
    param = spec.path[spec.path.find("{") + 1 : spec.path.find("}")] if "{" in spec.path else ""
    read_timeout = service.settings.read_timeout

    async def handler(request: Request) -> Response:
        content_type, body = None, b""
        if spec.reads_body:
            body = await _read_body(request, read_timeout)
            content_type = request.headers.get("content-type")
        arg = request.path_params[param] if param else ""
        status, payload = spec.fn(arg, request.query_params, content_type, body)
        if spec.durable:
            await service.durable()
        if status == 204:
            return Response(status_code=204)
        return Response(payload, status, media_type=_JSON)

    return handler


def create_app(service: ExchangeService, *, manage_service: bool = True) -> FastRoutes:
    """An ASGI app serving ``service``; with ``manage_service`` it starts/stops it on lifespan."""
    metrics = service.metrics
    market = MarketData(service)  # /ws/market, /console (docs/exchange-market-data.md)
    endpoints = contract_endpoints(service, market)

    def endpoint(route: str, handler: Handler) -> Handler:
        requests_total = metrics.requests
        latency = metrics.latency.labels(route)
        counters: dict[
            tuple[str, int], CounterChild
        ] = {}  # labels() locks and allocates: once each

        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except ExchangeError as exc:
                response = _error(exc)
            except Exception:
                log.exception("unhandled_error", route=route, method=request.method)
                response = _json(out.ErrorOut("internal_error", "Internal server error"), 500)
            latency.observe(time.perf_counter() - started)
            key = (request.method, response.status_code)
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = requests_total.labels(route, *key)
            counter.inc()
            return response

        return wrapped

    # ------------------------------------------------------------------ operations
    async def admin_state(request: Request) -> Response:
        machine, recovery = service.machine, service.recovery
        return _json(
            {
                "state_hash": machine.state_hash(),
                "journal_seq": machine.seq,
                "brokers": len(machine.engine.brokers),
                "orders": len(machine.engine.orders),
                "resting_orders": machine.engine.resting_orders,
                "trades": machine.engine.trade_count,
                "pending_webhook_deliveries": len(machine.outbox),
                "recovery": {
                    "snapshot_seq": recovery.snapshot_seq,
                    "replayed_commands": recovery.replayed,
                    "seconds": round(recovery.seconds, 6),
                    "state_hash": recovery.state_hash,
                    "redelivered_webhooks": recovery.redelivered,
                },
            }
        )

    async def metrics_endpoint(request: Request) -> Response:
        return Response(render(service.registry), media_type=CONTENT_TYPE_LATEST)

    openapi_bytes = encode(openapi_document())
    docs_html = docs_page(openapi_document())

    async def openapi(request: Request) -> Response:
        return Response(openapi_bytes, media_type=_JSON)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_html)

    async def home(request: Request) -> Response:
        # A person who opens the bare address gets the live console rather than a 404.
        return RedirectResponse("/console", status_code=307)

    table: list[tuple[str, str, Handler]] = [
        (spec.path, spec.method, _adapt(service, spec)) for spec in endpoints
    ] + [
        ("/metrics", "GET", metrics_endpoint),
        ("/admin/state", "GET", admin_state),
        ("/openapi.json", "GET", openapi),
        ("/docs", "GET", docs),
        ("/", "GET", home),
    ]
    # One Route per path carrying all its methods, so a 405 lists every allowed one in Allow.
    by_path: dict[str, dict[str, Handler]] = {}
    for path, method, handler in table:
        by_path.setdefault(path, {})[method] = endpoint(f"{method} {path}", handler)
    routes = [
        Route(path, _by_method(handlers), methods=list(handlers))
        for path, handlers in by_path.items()
    ] + market_data_routes(market)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            response = _error(MethodNotAllowed(request.method, request.url.path))
            if exc.headers and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        return _error(RouteNotFound(request.method, request.url.path))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_service:
            service.recover()
            await service.start()
        market.start()
        try:
            yield
        finally:
            market.stop()
            if manage_service:
                await service.stop()

    app = Starlette(
        routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan
    )
    app.router.redirect_slashes = False
    return FastRoutes(app, service, endpoints)
