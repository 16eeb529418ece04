"""Wire-compatible fakes of the venues' private order REST APIs, on a :class:`FakeOrderDesk`.

Every request is authenticated the venue's way (the verification here is written independently
of :mod:`tradehall.gateway.signing`) and a failure gets the venue's error shape:

* **Binance** ``POST``/``GET``/``DELETE /api/v3/order``: ``X-MBX-APIKEY`` (unknown: 401
  ``-2015``), ``signature`` over query string + body (wrong: 400 ``-1022``), ``timestamp``
  within ``recvWindow`` (400 ``-1021``). A ``newClientOrderId`` equal to an open order's is
  refused (400 ``-2010 "Duplicate order sent."``); unknown orders are 400 ``-2013``/``-2011``;
  the "status unknown" fault is 503 ``-1007``.
* **Kraken** ``POST /0/private/{AddOrder,QueryOrders,OpenOrders,ClosedOrders,CancelOrder}``: HTTP
  200 with ``{"error": [...], "result": ...}``; ``API-Key`` (``EAPI:Invalid key``), ``API-Sign``
  (``EAPI:Invalid signature``), a nonce that must increase (``EAPI:Invalid nonce``);
  ``cl_ord_id`` unique among open orders; status unknown = ``EService:Unavailable``.
* **Coinbase** Advanced Trade ``POST /api/v3/brokerage/orders``, ``GET
  .../orders/historical/{id}``, ``GET .../orders/historical/batch``, ``POST
  .../orders/batch_cancel``: ``CB-ACCESS-KEY``/``-SIGN``/``-TIMESTAMP`` (401 otherwise). A
  repeated ``client_order_id`` creates nothing and returns the existing order (as documented);
  refusals are HTTP 200 with ``success: false`` and an ``error_response``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tradehall.gateway.fakes.orderdesk import FakeOrder, FakeOrderDesk, OrderFault

__all__ = ["binance_app", "coinbase_app", "kraken_app", "kraken_txid", "order_desk"]

Handler = Callable[[Request], Awaitable[Response]]


def _dec(text: str | None) -> Decimal | None:
    try:
        return Decimal(text) if text not in (None, "") else None
    except InvalidOperation:
        return None


def _f8(value: Decimal) -> str:
    return f"{value:.8f}"


# -- Binance ---------------------------------------------------------------------------------------

_BINANCE_STATUS = {
    "open": "NEW",
    "filled": "FILLED",
    "cancelled": "CANCELED",
    "expired": "EXPIRED",
}


def _binance_error(status: int, code: int, msg: str) -> Response:
    return JSONResponse({"code": code, "msg": msg}, status_code=status)


def _binance_order(o: FakeOrder) -> dict[str, Any]:
    status = _BINANCE_STATUS[o.status]
    if status == "NEW" and o.filled:
        status = "PARTIALLY_FILLED"
    return {
        "symbol": o.symbol,
        "orderId": int(o.order_id),
        "orderListId": -1,
        "clientOrderId": o.client_id,
        "transactTime": o.created_ms,
        "price": _f8(o.price or Decimal(0)),
        "origQty": _f8(o.qty),
        "executedQty": _f8(o.filled),
        "cummulativeQuoteQty": _f8(o.filled * (o.price or Decimal(0))),
        "status": status,
        "timeInForce": "GTC",
        "type": o.type.upper(),
        "side": o.side.upper(),
        "workingTime": o.created_ms,
        "selfTradePreventionMode": "NONE",
    }


def binance_app(desk: FakeOrderDesk) -> Starlette:
    """Binance spot ``/api/v3/order`` (see the module docstring)."""

    async def authenticate(request: Request) -> tuple[dict[str, str], Response | None]:
        query = request.url.query
        body = (await request.body()).decode()
        params = dict(parse_qsl(query)) | dict(parse_qsl(body))
        if request.headers.get("X-MBX-APIKEY") != desk.api_key:
            desk.auth_failures += 1
            return params, _binance_error(
                401, -2015, "Invalid API-key, IP, or permissions for action."
            )
        signature = params.pop("signature", "")
        unsigned = "&".join(p for p in query.split("&") if not p.startswith("signature="))
        unsigned += "&".join(p for p in body.split("&") if not p.startswith("signature="))
        expected = hmac.new(desk.api_secret.encode(), unsigned.encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
            desk.auth_failures += 1
            return params, _binance_error(400, -1022, "Signature for this request is not valid.")
        now = time.time_ns() // 1_000_000
        try:
            ts, window = int(params.get("timestamp", "")), int(params.get("recvWindow", "5000"))
        except ValueError:
            return params, _binance_error(400, -1102, "Mandatory parameter 'timestamp' missing")
        if ts > now + 1000 or now - ts > min(window, 60_000):
            return params, _binance_error(
                400, -1021, "Timestamp for this request is outside of the recvWindow."
            )
        return params, None

    def find(params: dict[str, str]) -> FakeOrder | None:
        if "orderId" in params:
            order = desk.orders.get(params["orderId"])
        else:
            order = desk.by_client_id(params.get("origClientOrderId", ""))
        return order if order is not None and order.symbol == params.get("symbol") else None

    async def order(request: Request) -> Response:
        params, error = await authenticate(request)
        if error is not None:
            return error
        if request.method == "GET":
            found = find(params)
            if found is None:
                return _binance_error(400, -2013, "Order does not exist.")
            return JSONResponse(_binance_order(found))
        if request.method == "DELETE":
            found = find(params)
            if found is None or not desk.cancel(found):
                return _binance_error(400, -2011, "Unknown order sent.")
            return JSONResponse(_binance_order(found))
        desk.placed += 1
        kind, qty = params.get("type", "").lower(), _dec(params.get("quantity"))
        price = _dec(params.get("price"))
        if kind not in ("limit", "market") or qty is None or (kind == "limit" and price is None):
            return _binance_error(400, -1102, "Mandatory parameter was not sent or malformed.")
        cid = params.get("newClientOrderId") or f"x-{desk.placed}"
        if desk.open_by_client_id(cid) is not None:
            return _binance_error(400, -2010, "Duplicate order sent.")
        if desk.take(OrderFault.REJECT):
            msg = "Account has insufficient balance for requested action."
            return _binance_error(400, -2010, msg)
        created = desk.new_order(
            client_id=cid,
            symbol=params.get("symbol", ""),
            side=params.get("side", "").lower(),
            type=kind,
            qty=qty,
            price=price,
        )
        if desk.take(OrderFault.UNKNOWN):
            return _binance_error(
                503,
                -1007,
                "Timeout waiting for response from backend server. "
                "Send status unknown; execution status unknown.",
            )
        if desk.take(OrderFault.TIMEOUT):
            await desk.hold_answer()
        return JSONResponse(_binance_order(created))

    return Starlette(routes=[Route("/api/v3/order", order, methods=["GET", "POST", "DELETE"])])


# -- Kraken ----------------------------------------------------------------------------------------


def _kraken_info(o: FakeOrder) -> dict[str, Any]:
    status = {"open": "open", "filled": "closed", "cancelled": "canceled", "expired": "expired"}
    price = o.price or Decimal(0)
    return {
        "refid": None,
        "userref": 0,
        "cl_ord_id": o.client_id,
        "status": status[o.status],
        "opentm": o.created_ms / 1000,
        "starttm": 0,
        "expiretm": 0,
        "descr": {
            "pair": o.symbol,
            "type": o.side,
            "ordertype": o.type,
            "price": str(price),
            "price2": "0",
            "leverage": "none",
            "order": f"{o.side} {_f8(o.qty)} {o.symbol} @ {o.type} {price}",
            "close": "",
        },
        "vol": _f8(o.qty),
        "vol_exec": _f8(o.filled),
        "cost": _f8(o.filled * price),
        "fee": "0.00000",
        "price": str(price if o.filled else Decimal(0)),
        "misc": "",
        "oflags": "fciq",
    }


def kraken_txid(n: int) -> str:
    """Kraken-looking order ids (``O00000-00000-0000001``)."""
    text = f"{n:017d}"
    return f"O{text[:5]}-{text[5:10]}-{text[10:]}"


def kraken_app(desk: FakeOrderDesk) -> Starlette:
    """Kraken spot REST private order endpoints (see the module docstring)."""
    last_nonce = [0]

    def error(*messages: str) -> Response:
        return JSONResponse({"error": list(messages)})

    def ok(result: Any) -> Response:
        return JSONResponse({"error": [], "result": result})

    async def private(request: Request) -> Response:
        body = (await request.body()).decode()
        params = dict(parse_qsl(body))
        if request.headers.get("API-Key") != desk.api_key:
            desk.auth_failures += 1
            return error("EAPI:Invalid key")
        nonce = params.get("nonce", "")
        try:
            key = base64.b64decode(desk.api_secret)
            sent = base64.b64decode(request.headers.get("API-Sign", ""), validate=True)
        except (binascii.Error, ValueError):
            sent = b""
        message = request.url.path.encode() + hashlib.sha256((nonce + body).encode()).digest()
        if not hmac.compare_digest(hmac.new(key, message, hashlib.sha512).digest(), sent):
            desk.auth_failures += 1
            return error("EAPI:Invalid signature")
        if not nonce.isdigit() or int(nonce) <= last_nonce[0]:
            return error("EAPI:Invalid nonce")
        last_nonce[0] = int(nonce)
        method = request.path_params["method"]
        handler = handlers.get(method)
        if handler is None:
            return error("EGeneral:Unknown method")
        return await handler(params)

    async def add_order(params: dict[str, str]) -> Response:
        desk.placed += 1
        kind, qty = params.get("ordertype", ""), _dec(params.get("volume"))
        price = _dec(params.get("price"))
        side = params.get("type", "")
        if kind not in ("limit", "market") or side not in ("buy", "sell") or qty is None:
            return error("EGeneral:Invalid arguments")
        if kind == "limit" and price is None:
            return error("EGeneral:Invalid arguments:price")
        cid = params.get("cl_ord_id", "")
        if cid and desk.open_by_client_id(cid) is not None:
            return error("EOrder:Duplicate order")
        if desk.take(OrderFault.REJECT):
            return error("EOrder:Insufficient funds")
        order = desk.new_order(
            client_id=cid, symbol=params.get("pair", ""), side=side, type=kind, qty=qty, price=price
        )
        if desk.take(OrderFault.UNKNOWN):
            return error("EService:Unavailable")
        if desk.take(OrderFault.TIMEOUT):
            await desk.hold_answer()
        descr = _kraken_info(order)["descr"]["order"]
        return ok({"descr": {"order": descr}, "txid": [order.order_id]})

    async def query_orders(params: dict[str, str]) -> Response:
        found = {t: desk.orders[t] for t in params.get("txid", "").split(",") if t in desk.orders}
        if not found:
            return error("EOrder:Unknown order")
        return ok({t: _kraken_info(o) for t, o in found.items()})

    def _filtered(params: dict[str, str], open_: bool) -> dict[str, Any]:
        cid = params.get("cl_ord_id")
        return {
            o.order_id: _kraken_info(o)
            for o in desk.orders.values()
            if o.is_open == open_ and (cid is None or o.client_id == cid)
        }

    async def open_orders(params: dict[str, str]) -> Response:
        return ok({"open": _filtered(params, True)})

    async def closed_orders(params: dict[str, str]) -> Response:
        closed = _filtered(params, False)
        return ok({"closed": closed, "count": len(closed)})

    async def cancel_order(params: dict[str, str]) -> Response:
        order = desk.orders.get(params.get("txid", ""))
        if order is None:
            return error("EOrder:Unknown order")
        return ok({"count": 1 if desk.cancel(order) else 0})

    handlers: dict[str, Callable[[dict[str, str]], Awaitable[Response]]] = {
        "AddOrder": add_order,
        "QueryOrders": query_orders,
        "OpenOrders": open_orders,
        "ClosedOrders": closed_orders,
        "CancelOrder": cancel_order,
    }
    return Starlette(routes=[Route("/0/private/{method}", private, methods=["POST"])])


# -- Coinbase --------------------------------------------------------------------------------------

_COINBASE_STATUS = {
    "open": "OPEN",
    "filled": "FILLED",
    "cancelled": "CANCELLED",
    "expired": "EXPIRED",
}


def _coinbase_order(o: FakeOrder) -> dict[str, Any]:
    return {
        "order_id": o.order_id,
        "product_id": o.symbol,
        "side": o.side.upper(),
        "client_order_id": o.client_id,
        "status": _COINBASE_STATUS[o.status],
        "order_type": o.type.upper(),
        "filled_size": _f8(o.filled),
        "average_filled_price": str(o.price or Decimal(0)) if o.filled else "0",
        "completion_percentage": str(int(o.filled * 100 / o.qty)) if o.qty else "0",
        "created_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(o.created_ms / 1000)),
    }


def coinbase_app(desk: FakeOrderDesk) -> Starlette:
    """Coinbase Advanced Trade order endpoints with legacy HMAC keys (see the module docstring)."""

    def authenticated(handler: Callable[[Request, bytes], Awaitable[Response]]) -> Handler:
        async def wrapper(request: Request) -> Response:
            body = await request.body()
            ts = request.headers.get("CB-ACCESS-TIMESTAMP", "")
            message = f"{ts}{request.method}{request.url.path}".encode() + body
            expected = hmac.new(desk.api_secret.encode(), message, hashlib.sha256).hexdigest()
            sent = request.headers.get("CB-ACCESS-SIGN", "")
            fresh = ts.isdigit() and abs(int(ts) - time.time()) <= 30
            known = request.headers.get("CB-ACCESS-KEY") == desk.api_key
            if not (known and fresh and hmac.compare_digest(sent, expected)):
                desk.auth_failures += 1
                return Response("Unauthorized\n", status_code=401, media_type="text/plain")
            return await handler(request, body)

        return wrapper

    async def create(request: Request, body: bytes) -> Response:
        desk.placed += 1
        try:
            data = json.loads(body)
            cid, product = str(data["client_order_id"]), str(data["product_id"])
            side = str(data["side"]).lower()
            ((name, config),) = data["order_configuration"].items()
        except (ValueError, KeyError, TypeError, AttributeError):
            return JSONResponse({"error": "INVALID_ARGUMENT", "message": "bad order"}, 400)
        kind = "market" if name.startswith("market") else "limit"
        qty, price = _dec(config.get("base_size")), _dec(config.get("limit_price"))
        if qty is None or side not in ("buy", "sell") or (kind == "limit" and price is None):
            return JSONResponse({"error": "INVALID_ARGUMENT", "message": "bad order"}, 400)
        existing = desk.by_client_id(cid)
        if existing is None:
            if desk.take(OrderFault.REJECT):
                return JSONResponse(
                    {
                        "success": False,
                        "failure_reason": "UNKNOWN_FAILURE_REASON",
                        "order_id": "",
                        "error_response": {
                            "error": "INSUFFICIENT_FUND",
                            "message": "Insufficient balance in source account",
                            "error_details": "",
                            "preview_failure_reason": "PREVIEW_INSUFFICIENT_FUND",
                        },
                    }
                )
            existing = desk.new_order(
                client_id=cid, symbol=product, side=side, type=kind, qty=qty, price=price
            )
            if desk.take(OrderFault.UNKNOWN):
                return JSONResponse({"error": "INTERNAL", "message": "internal error"}, 503)
            if desk.take(OrderFault.TIMEOUT):
                await desk.hold_answer()
        return JSONResponse(
            {
                "success": True,
                "success_response": {
                    "order_id": existing.order_id,
                    "product_id": existing.symbol,
                    "side": existing.side.upper(),
                    "client_order_id": existing.client_id,
                },
                "order_configuration": {name: config},
            }
        )

    async def get_order(request: Request, body: bytes) -> Response:
        order = desk.orders.get(request.path_params["order_id"])
        if order is None:
            return JSONResponse({"error": "NOT_FOUND", "message": "order not found"}, 404)
        return JSONResponse({"order": _coinbase_order(order)})

    async def list_orders(request: Request, body: bytes) -> Response:
        products = set(request.query_params.getlist("product_ids"))
        rows = [o for o in desk.orders.values() if not products or o.symbol in products]
        rows.reverse()  # newest first
        start = int(request.query_params.get("cursor") or 0)
        limit = int(request.query_params.get("limit") or 100)
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return JSONResponse(
            {
                "orders": [_coinbase_order(o) for o in page],
                "has_next": more,
                "cursor": str(start + limit) if more else "",
            }
        )

    async def batch_cancel(request: Request, body: bytes) -> Response:
        ids = json.loads(body).get("order_ids", [])
        results = []
        for oid in ids:
            order = desk.orders.get(oid)
            done = order is not None and desk.cancel(order)
            results.append(
                {
                    "success": done,
                    "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON"
                    if done
                    else "UNKNOWN_CANCEL_ORDER",
                    "order_id": oid,
                }
            )
        return JSONResponse({"results": results})

    base = "/api/v3/brokerage/orders"
    return Starlette(
        routes=[
            Route(base, authenticated(create), methods=["POST"]),
            Route(f"{base}/historical/batch", authenticated(list_orders), methods=["GET"]),
            Route(f"{base}/historical/{{order_id}}", authenticated(get_order), methods=["GET"]),
            Route(f"{base}/batch_cancel", authenticated(batch_cancel), methods=["POST"]),
        ]
    )


_APPS: dict[str, tuple[Callable[[FakeOrderDesk], Starlette], Callable[[int], str]]] = {
    "binance": (binance_app, str),
    "kraken": (kraken_app, kraken_txid),
    "coinbase": (coinbase_app, lambda n: f"{n:08x}-0000-4000-8000-000000000000"),
}


def order_desk(venue: str, *, api_key: str, api_secret: str, hang: float = 2.0) -> FakeOrderDesk:
    """A :class:`FakeOrderDesk` speaking ``venue``'s order API (binance, kraken, coinbase)."""
    app, ids = _APPS[venue]
    return FakeOrderDesk(
        venue, app, api_key=api_key, api_secret=api_secret, hang=hang, id_format=ids
    )
