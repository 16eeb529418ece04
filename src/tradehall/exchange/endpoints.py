"""The contract's endpoints as plain synchronous functions from request parts to response bytes.

Both HTTP fronts share them: the lean ASGI dispatcher (:mod:`~tradehall.exchange.fastroutes`) for
the requests it recognises, and the Starlette app (:mod:`~tradehall.exchange.app`) for the rest
(``HEAD``, and anything routed there in tests). Each function validates (``requests``), runs at most
one synchronous service call and renders (``schemas``) with no ``await`` in between, so a response
always shows the state its own command produced. Commands are flagged ``durable``: the front awaits
:meth:`ExchangeService.durable` after rendering and before sending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from tradehall.exchange import requests as rq
from tradehall.exchange import schemas as out
from tradehall.exchange.errors import ExchangeError, SymbolNotFound, ValidationError
from tradehall.exchange.marketdata import MarketData
from tradehall.exchange.service import ExchangeService

__all__ = ["Endpoint", "EndpointFn", "Reply", "contract_endpoints", "encode", "error_body"]

encode = msgspec.json.Encoder(decimal_format="number").encode

Reply = tuple[int, bytes]
# (machine, its seq, bids, asks, spread, the encoded answer up to its snapshot_at value)
BookLevels = tuple[object, int, list[out.LevelOut], list[out.LevelOut], Decimal | None, bytes]
_NO_STAMP = b'""}'  # how the answer ends when encoded with an empty snapshot_at
# (path parameter or "", query, Content-Type header or None, body or b"") -> (status, JSON bytes)
EndpointFn = Callable[[str, Mapping[str, str], str | None, bytes], Reply]


class Endpoint(NamedTuple):
    """One contract route: method, path template (at most one ``{param}``) and its function."""

    method: str
    path: str
    fn: EndpointFn
    reads_body: bool = False
    durable: bool = False


def error_body(exc: ExchangeError) -> bytes:
    """The contract's ``{"error", "message"}`` body for ``exc``."""
    return encode(out.ErrorOut(exc.code, exc.message))


def contract_endpoints(service: ExchangeService, market: MarketData) -> list[Endpoint]:
    """Every contract route served by ``service`` (``market`` supplies book sequence numbers)."""
    settings = service.settings

    def listed(symbol: str) -> str:
        if not service.engine.has_symbol(symbol):
            raise SymbolNotFound(symbol)
        return symbol

    # ------------------------------------------------------------------ brokers
    def create_broker(_: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        broker = service.register_broker(rq.parse_broker(rq.decode_body(ctype, body)))
        return 201, encode(out.render_broker(broker))

    # broker_id -> (machine, its seq, encoded balance): valid while the seq is unchanged, as
    # for the book below (every command moves it; only commands change a broker).
    balance_cache: dict[str, tuple[object, int, bytes]] = {}

    def balance(broker_id: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        machine = service.machine
        cached = balance_cache.get(broker_id)
        if cached is not None and cached[0] is machine and cached[1] == machine.seq:
            return 200, cached[2]
        encoded = encode(out.render_balance(service.engine.broker(broker_id)))
        if len(balance_cache) >= 1024:
            balance_cache.clear()
        balance_cache[broker_id] = (machine, machine.seq, encoded)
        return 200, encoded

    def broker_orders(
        broker_id: str, query: Mapping[str, str], ctype: str | None, body: bytes
    ) -> Reply:
        status = rq.status_filter(query.get("status"))
        page = rq.query_int(query.get("page"), 1, 1, None, "page must be an integer >= 1")
        limit = rq.query_int(
            query.get("limit"), 20, 1, 100, "limit must be an integer between 1 and 100"
        )
        orders, total = service.engine.broker_orders(broker_id, status, page, limit)
        summaries = [out.render_summary(o) for o in orders]
        return 200, encode(out.OrderListOut(summaries, total, page, limit))

    # ------------------------------------------------------------------ orders
    def submit_order(_: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        order = service.submit(rq.parse_order_body(ctype, body))
        return 201, encode(out.render_order(order))

    def get_order(order_id: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        return 200, encode(out.render_order(service.engine.order(order_id)))

    def cancel_order(
        order_id: str, query: Mapping[str, str], ctype: str | None, body: bytes
    ) -> Reply:
        return 200, encode(out.render_order(service.cancel(order_id)))

    # ------------------------------------------------------------------ market data
    def price(symbol: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        figures = service.engine.vwap(listed(symbol))
        return 200, encode(out.render_price(symbol, figures, settings.vwap_window_label))

    # (symbol, depth) -> (machine, its seq, bids, asks, spread): the machine's seq moves with
    # every command, and only commands change a book, so an entry is valid while both match.
    book_cache: dict[tuple[str, int], BookLevels] = {}

    def book_levels(symbol: str, depth: int) -> BookLevels:
        machine = service.machine
        cached = book_cache.get((symbol, depth))
        if cached is not None and cached[0] is machine and cached[1] == machine.seq:
            return cached
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
        # snapshot_at is the last field and the only one that changes between commands: the
        # rest is encoded once per book state and the time spliced in (bytes as msgspec's).
        encoded = encode(out.BookOut(symbol, bids, asks, spread, ""))
        assert encoded.endswith(_NO_STAMP)
        head = encoded[: -len(_NO_STAMP)]
        if len(book_cache) >= 1024:
            book_cache.clear()
        entry = book_cache[(symbol, depth)] = (machine, machine.seq, bids, asks, spread, head)
        return entry

    def book(symbol: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        depth = rq.query_int(
            query.get("depth"), 10, 1, 50, "depth must be an integer between 1 and 50"
        )
        _, _, bids, asks, spread, head = book_levels(listed(symbol), depth)
        snapshot_at = out.stamp(service.clock.time_ns())
        if query.get("with_sequence") in ("1", "true"):  # to splice with WS diffs
            result = out.BookOut(symbol, bids, asks, spread, snapshot_at)
            sequenced: dict[str, Any] = msgspec.structs.asdict(result)
            sequenced["sequence"] = market.book_sequence(symbol)
            return 200, encode(sequenced)
        return 200, head + encode(snapshot_at) + b"}"

    def quote(symbol: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        side = query.get("side")
        if side is None:
            raise ValidationError("side query parameter is required")
        if side not in ("bid", "ask"):
            raise ValidationError(f"Invalid side: '{side}'. Must be one of: bid, ask")
        raw_quantity = query.get("quantity")
        if raw_quantity is None:
            raise ValidationError("quantity query parameter is required")
        quantity = rq.query_int(raw_quantity, 0, 1, None, "quantity must be a positive integer")
        result = service.engine.quote(listed(symbol), side, quantity)
        return 200, encode(out.render_quote(symbol, side, result, service.clock.time_ns()))

    # ------------------------------------------------------------------ webhooks
    def upsert_webhooks(_: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        parsed = rq.parse_webhook(
            rq.decode_body(ctype, body), allow_http=settings.webhook_allow_http
        )
        subs, created = service.upsert_webhooks(parsed)
        listing = out.WebhookListOut([out.render_webhook(s) for s in subs])
        return (201 if created else 200), encode(listing)

    def list_webhooks(_: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        broker_id = query.get("broker_id")
        if not broker_id:
            raise ValidationError("broker_id query parameter is required")
        subs = service.webhooks_of(broker_id)
        return 200, encode(out.WebhookListOut([out.render_webhook(s) for s in subs]))

    def delete_webhook(
        webhook_id: str, query: Mapping[str, str], ctype: str | None, body: bytes
    ) -> Reply:
        service.delete_webhook(webhook_id)
        return 204, b""

    health = encode(out.HealthOut("ok"))

    def healthz(_: str, query: Mapping[str, str], ctype: str | None, body: bytes) -> Reply:
        return 200, health

    return [
        Endpoint("POST", "/brokers", create_broker, reads_body=True, durable=True),
        Endpoint("GET", "/brokers/{broker_id}/balance", balance),
        Endpoint("GET", "/brokers/{broker_id}/orders", broker_orders),
        Endpoint("POST", "/orders", submit_order, reads_body=True, durable=True),
        Endpoint("GET", "/orders/{order_id}", get_order),
        Endpoint("DELETE", "/orders/{order_id}", cancel_order, durable=True),
        Endpoint("GET", "/stocks/{symbol}/price", price),
        Endpoint("GET", "/stocks/{symbol}/book", book),
        Endpoint("GET", "/stocks/{symbol}/quote", quote),
        Endpoint("POST", "/webhooks", upsert_webhooks, reads_body=True, durable=True),
        Endpoint("GET", "/webhooks", list_webhooks),
        Endpoint("DELETE", "/webhooks/{webhook_id}", delete_webhook, durable=True),
        Endpoint("GET", "/healthz", healthz),
    ]
