"""The OpenAPI 3.1 document of the Exchange, generated from the msgspec Structs, and a docs page.

Response schemas come straight from :mod:`~tradehall.exchange.schemas`; request schemas from the
documentation Structs below (validation itself lives in :mod:`~tradehall.exchange.requests`, which
needs the contract's exact messages and check order, so it cannot be a plain decoder).
The docs page is rendered on the server from the same document: no script, no CDN, works offline.
"""

from __future__ import annotations

import html
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal

import msgspec

from tradehall import __version__
from tradehall.exchange import schemas as out

__all__ = ["docs_page", "openapi_document"]

_Money = Annotated[Decimal, msgspec.Meta(extra_json_schema={"type": "number"})]


class HoldingIn(msgspec.Struct):
    symbol: Annotated[str, msgspec.Meta(pattern="^[A-Z]{1,10}$")]
    quantity: Annotated[int, msgspec.Meta(gt=0)]


class BrokerIn(msgspec.Struct):
    broker_id: Annotated[str, msgspec.Meta(pattern="^[a-zA-Z0-9_-]{1,64}$")]
    initial_cash: _Money
    initial_holdings: list[HoldingIn] = []


class OrderIn(msgspec.Struct):
    type: Literal["limit", "market"]
    broker_id: Annotated[str, msgspec.Meta(pattern="^[a-zA-Z0-9_-]{1,64}$")]
    document_number: Annotated[str, msgspec.Meta(pattern="^[a-zA-Z0-9]{1,32}$")]
    side: Literal["bid", "ask"]
    symbol: Annotated[str, msgspec.Meta(pattern="^[A-Z]{1,10}$")]
    quantity: Annotated[int, msgspec.Meta(gt=0)]
    price: _Money | None = None
    expires_at: Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})] | None = (
        None
    )


class WebhookIn(msgspec.Struct):
    broker_id: str
    url: Annotated[str, msgspec.Meta(max_length=2048)]
    events: list[Literal["trade.executed", "order.expired", "order.cancelled"]]


_Op = tuple[str, str, str, type | None, dict[int, Any], list[tuple[str, str, bool]]]

# (method, path, summary, request body, responses, [(query/path param, description, required)])
_OPERATIONS: list[_Op] = [
    ("post", "/brokers", "Register a broker", BrokerIn, {201: out.BrokerOut}, []),
    ("get", "/brokers/{broker_id}/balance", "Broker balance", None, {200: out.BalanceOut}, []),
    (
        "get",
        "/brokers/{broker_id}/orders",
        "A broker's orders, newest first",
        None,
        {200: out.OrderListOut},
        [("status", "status filter", False), ("page", ">= 1", False), ("limit", "1..100", False)],
    ),
    (
        "post",
        "/orders",
        "Submit a limit or market order",
        OrderIn,
        {201: out.LimitOrderOut | out.MarketOrderOut},
        [],
    ),
    (
        "get",
        "/orders/{order_id}",
        "An order with its trades",
        None,
        {200: out.LimitOrderOut | out.MarketOrderOut},
        [],
    ),
    ("delete", "/orders/{order_id}", "Cancel an active order", None, {200: out.LimitOrderOut}, []),
    ("get", "/stocks/{symbol}/price", "VWAP over the window", None, {200: out.PriceOut}, []),
    (
        "get",
        "/stocks/{symbol}/book",
        "L2 book",
        None,
        {200: out.BookOut},
        [("depth", "levels per side, 1..50", False)],
    ),
    (
        "get",
        "/stocks/{symbol}/quote",
        "Dry-run a market order",
        None,
        {200: out.QuoteOut},
        [("side", "bid or ask", True), ("quantity", "> 0", True)],
    ),
    (
        "post",
        "/webhooks",
        "Subscribe (upsert)",
        WebhookIn,
        {201: out.WebhookListOut, 200: out.WebhookListOut},
        [],
    ),
    (
        "get",
        "/webhooks",
        "A broker's subscriptions",
        None,
        {200: out.WebhookListOut},
        [("broker_id", "broker", True)],
    ),
    ("delete", "/webhooks/{webhook_id}", "Unsubscribe", None, {204: None}, []),
    ("get", "/healthz", "Liveness", None, {200: out.HealthOut}, []),
]


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once)."""
    types: list[Any] = [out.ErrorOut]
    for _, _, _, body, responses, _ in _OPERATIONS:
        if body is not None:
            types.append(body)
        types.extend(t for t in responses.values() if t is not None)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    refs = iter(schemas)
    error_ref = next(refs)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, responses, params in _OPERATIONS:
        op: dict[str, Any] = {"summary": summary, "responses": {}}
        if body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": next(refs)}},
            }
        for status, rtype in responses.items():
            entry: dict[str, Any] = {"description": "OK" if status < 300 else "Error"}
            if rtype is not None:
                entry["content"] = {"application/json": {"schema": next(refs)}}
            op["responses"][str(status)] = entry
        op["responses"]["default"] = {
            "description": "Error",
            "content": {"application/json": {"schema": error_ref}},
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_names(path)
        ]
        parameters += [
            {
                "name": n,
                "in": "query",
                "required": r,
                "description": d,
                "schema": {"type": "string"},
            }
            for n, d, r in params
        ]
        if parameters:
            op["parameters"] = parameters
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tradehall Exchange",
            "version": __version__,
            "description": "Price-time-priority mini exchange. Money is JSON numbers with exactly "
            "two decimals; timestamps are RFC 3339 UTC.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def docs_page(document: dict[str, Any]) -> str:
    """A plain HTML page listing every operation, its parameters and response schemas."""
    rows: list[str] = []
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            params = ", ".join(
                f"{p['name']} ({p['in']}{', required' if p.get('required') else ''})"
                for p in op.get("parameters", [])
            )
            statuses = ", ".join(k for k in op["responses"] if k != "default")
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{html.escape(params)}</td>"
                f"<td>{statuses}</td></tr>"
            )
    schemas = "".join(
        f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>"
        f"<pre>{html.escape(msgspec.json.format(msgspec.json.encode(schema)).decode())}</pre>"
        for name, schema in document["components"]["schemas"].items()
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>Tradehall Exchange API</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}"
        "table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
        "pre{background:#f6f6f6;padding:.6rem;overflow:auto}</style></head><body>"
        f"<h1>Tradehall Exchange API <small>{__version__}</small></h1>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1). "
        'Errors are <code>{"error": code, "message": text}</code>.</p>'
        "<table><tr><th>Method</th><th>Path</th><th>What</th><th>Parameters</th><th>Status</th></tr>"
        + "".join(rows)
        + "</table><h2>Schemas</h2>"
        + schemas
        + "</body></html>"
    )
