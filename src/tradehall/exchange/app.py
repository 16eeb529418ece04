"""The Exchange's HTTP adapter: Starlette routes over the ``ExchangeService``.

Handlers are thin: decode and validate (``requests``), run one synchronous service call, render
(``schemas``) -- with no ``await`` between the command and the rendering, so a response always
shows the state its own command produced. Errors are ``ExchangeError``
instances mapped to ``{"error", "message"}`` bodies; anything else is a 500 that is logged and
changes nothing further. Unknown routes and methods answer 404/405 in the same error shape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tradehall.core.logging import get_logger
from tradehall.core.metrics import CONTENT_TYPE_LATEST, render
from tradehall.core.timefmt import format_ns
from tradehall.exchange import requests as rq
from tradehall.exchange import schemas as out
from tradehall.exchange.errors import (
    ExchangeError,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    RouteNotFound,
    SymbolNotFound,
    ValidationError,
)
from tradehall.exchange.marketdata import MarketData
from tradehall.exchange.marketdata_ws import market_data_routes
from tradehall.exchange.openapi import docs_page, openapi_document
from tradehall.exchange.service import ExchangeService

__all__ = ["create_app"]

log = get_logger("exchange.http")
_encoder = msgspec.json.Encoder(decimal_format="number")
_JSON = "application/json"

Handler = Callable[[Request], Awaitable[Response]]


def _json(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status, media_type=_JSON)


def _error(exc: ExchangeError) -> Response:
    return _json(out.ErrorOut(exc.code, exc.message), exc.status)


MAX_BODY_BYTES = 1 << 20


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


def _symbol(request: Request, service: ExchangeService) -> str:
    symbol: str = request.path_params["symbol"]
    if not service.engine.has_symbol(symbol):
        raise SymbolNotFound(symbol)
    return symbol


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


def create_app(service: ExchangeService, *, manage_service: bool = True) -> Starlette:
    """An ASGI app serving ``service``; with ``manage_service`` it starts/stops it on lifespan."""
    settings = service.settings
    metrics = service.metrics
    market = MarketData(service)  # /ws/market, /console (docs/exchange-market-data.md)

    def endpoint(route: str, handler: Handler) -> Handler:
        requests_total = metrics.requests
        latency = metrics.latency.labels(route)
        counters: dict[tuple[str, int], Counter] = {}  # labels() locks and allocates: once each

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

    # ------------------------------------------------------------------ brokers
    async def create_broker(request: Request) -> Response:
        body = rq.decode_body(
            request.headers.get("content-type"), await _read_body(request, settings.read_timeout)
        )
        broker = service.register_broker(rq.parse_broker(body))
        response = _json(out.render_broker(broker), 201)  # rendered before any other command
        await service.durable()
        return response

    async def balance(request: Request) -> Response:
        return _json(out.render_balance(service.engine.broker(request.path_params["broker_id"])))

    async def broker_orders(request: Request) -> Response:
        query = request.query_params
        status = rq.status_filter(query.get("status"))
        page = rq.query_int(query.get("page"), 1, 1, None, "page must be an integer >= 1")
        limit = rq.query_int(
            query.get("limit"), 20, 1, 100, "limit must be an integer between 1 and 100"
        )
        orders, total = service.engine.broker_orders(
            request.path_params["broker_id"], status, page, limit
        )
        return _json(out.OrderListOut([out.render_summary(o) for o in orders], total, page, limit))

    # ------------------------------------------------------------------ orders
    async def submit_order(request: Request) -> Response:
        body = rq.decode_body(
            request.headers.get("content-type"), await _read_body(request, settings.read_timeout)
        )
        order = service.submit(rq.parse_order(body))
        response = _json(out.render_order(order), 201)
        await service.durable()
        return response

    async def get_order(request: Request) -> Response:
        return _json(out.render_order(service.engine.order(request.path_params["order_id"])))

    async def cancel_order(request: Request) -> Response:
        response = _json(out.render_order(service.cancel(request.path_params["order_id"])))
        await service.durable()
        return response

    # ------------------------------------------------------------------ market data
    async def price(request: Request) -> Response:
        symbol = _symbol(request, service)
        figures = service.engine.vwap(symbol)
        return _json(out.render_price(symbol, figures, settings.vwap_window_label))

    async def book(request: Request) -> Response:
        depth = rq.query_int(
            request.query_params.get("depth"),
            10,
            1,
            50,
            "depth must be an integer between 1 and 50",
        )
        symbol = _symbol(request, service)
        order_book = service.engine.book(symbol)
        bids: list[out.LevelOut] = []
        asks: list[out.LevelOut] = []
        for levels, side in ((bids, order_book.bids), (asks, order_book.asks)):
            for level in side.levels():
                if len(levels) == depth:
                    break
                levels.append(out.LevelOut(out.money(level.price), level.total, level.count))
        best_bid, best_ask = order_book.bids.best(), order_book.asks.best()
        spread = out.money(best_ask.price - best_bid.price) if best_bid and best_ask else None
        body = out.BookOut(symbol, bids, asks, spread, format_ns(service.clock.time_ns()))
        if request.query_params.get("with_sequence") in ("1", "true"):  # to splice with WS diffs
            return _json({**msgspec.structs.asdict(body), "sequence": market.book_sequence(symbol)})
        return _json(body)

    async def quote(request: Request) -> Response:
        query = request.query_params
        side = query.get("side")
        if side is None:
            raise ValidationError("side query parameter is required")
        if side not in ("bid", "ask"):
            raise ValidationError(f"Invalid side: '{side}'. Must be one of: bid, ask")
        raw_quantity = query.get("quantity")
        if raw_quantity is None:
            raise ValidationError("quantity query parameter is required")
        quantity = rq.query_int(raw_quantity, 0, 1, None, "quantity must be a positive integer")
        symbol = _symbol(request, service)
        result = service.engine.quote(symbol, side, quantity)
        return _json(out.render_quote(symbol, side, result, service.clock.time_ns()))

    # ------------------------------------------------------------------ webhooks
    async def upsert_webhooks(request: Request) -> Response:
        body = rq.decode_body(
            request.headers.get("content-type"), await _read_body(request, settings.read_timeout)
        )
        parsed = rq.parse_webhook(body, allow_http=settings.webhook_allow_http)
        subs, created = service.upsert_webhooks(parsed)
        status = 201 if created else 200
        response = _json(out.WebhookListOut([out.render_webhook(s) for s in subs]), status)
        await service.durable()
        return response

    async def list_webhooks(request: Request) -> Response:
        broker_id = request.query_params.get("broker_id")
        if not broker_id:
            raise ValidationError("broker_id query parameter is required")
        subs = service.webhooks_of(broker_id)
        return _json(out.WebhookListOut([out.render_webhook(s) for s in subs]))

    async def delete_webhook(request: Request) -> Response:
        service.delete_webhook(request.path_params["webhook_id"])
        await service.durable()
        return Response(status_code=204)

    # ------------------------------------------------------------------ operations
    async def healthz(request: Request) -> Response:
        return _json(out.HealthOut("ok"))

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

    openapi_bytes = _encoder.encode(openapi_document())
    docs_html = docs_page(openapi_document())

    async def openapi(request: Request) -> Response:
        return Response(openapi_bytes, media_type=_JSON)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_html)

    table: list[tuple[str, str, Handler]] = [
        ("/brokers", "POST", create_broker),
        ("/brokers/{broker_id}/balance", "GET", balance),
        ("/brokers/{broker_id}/orders", "GET", broker_orders),
        ("/orders", "POST", submit_order),
        ("/orders/{order_id}", "GET", get_order),
        ("/orders/{order_id}", "DELETE", cancel_order),
        ("/stocks/{symbol}/price", "GET", price),
        ("/stocks/{symbol}/book", "GET", book),
        ("/stocks/{symbol}/quote", "GET", quote),
        ("/webhooks", "POST", upsert_webhooks),
        ("/webhooks", "GET", list_webhooks),
        ("/webhooks/{webhook_id}", "DELETE", delete_webhook),
        ("/healthz", "GET", healthz),
        ("/metrics", "GET", metrics_endpoint),
        ("/admin/state", "GET", admin_state),
        ("/openapi.json", "GET", openapi),
        ("/docs", "GET", docs),
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
    return app
