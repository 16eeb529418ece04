"""Order APIs of Binance, Kraken and Coinbase as :class:`~tradehall.gateway.orders.OrderVenue`.

Each client signs its requests for real (:mod:`tradehall.gateway.signing`) and maps the venue's
answers onto the router's three outcomes:

* success -> ``(venue order id, state)``;
* the venue refused (bad parameters, funds, authentication, duplicate id) ->
  :class:`~tradehall.gateway.orders.VenueRejectedError`: nothing exists at the venue;
* anything else (timeouts, transport errors, HTTP 5xx, Binance ``-1006``/``-1007``, Kraken
  ``EService:*``) -> :class:`~tradehall.gateway.orders.UnknownOutcomeError`: the order may exist,
  so the router looks it up by client id (:meth:`lookup`) instead of sending it again.

Lookups by client order id: Binance ``GET /api/v3/order?origClientOrderId=``; Kraken
``OpenOrders`` then ``ClosedOrders`` filtered by ``cl_ord_id``; Coinbase lists the product's
orders (``orders/historical/batch``, paged) and matches ``client_order_id``. Follow-up queries
use the venue order id. Quantities travel as plain decimal text, never floats.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from tradehall.gateway.events import ExecState, Side
from tradehall.gateway.orders import OrderRequest, UnknownOutcomeError, VenueRejectedError
from tradehall.gateway.signing import (
    binance_signature,
    coinbase_signature,
    decimal_text,
    form,
    kraken_signature,
)
from tradehall.gateway.symbols import BINANCE, COINBASE, KRAKEN, SymbolMap

__all__ = ["BinanceOrders", "CoinbaseOrders", "KrakenOrders", "kraken_rest_pair"]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _partial(state: ExecState, filled: Decimal) -> ExecState:
    return ExecState.PARTIAL if state is ExecState.ACK and filled > 0 else state


async def _send(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        resp = await http.request(method, url, **kwargs)
    except httpx.TransportError as exc:  # timeouts included: the order may exist
        raise UnknownOutcomeError(type(exc).__name__) from exc
    if resp.status_code >= 500:
        raise UnknownOutcomeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
    return resp


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError as exc:
        raise UnknownOutcomeError(f"HTTP {resp.status_code}: not JSON") from exc


# -- Binance ---------------------------------------------------------------------------------------

_BINANCE_STATES = {
    "NEW": ExecState.ACK,
    "PENDING_NEW": ExecState.ACK,
    "PENDING_CANCEL": ExecState.ACK,
    "PARTIALLY_FILLED": ExecState.PARTIAL,
    "FILLED": ExecState.FILLED,
    "CANCELED": ExecState.CANCELLED,
    "REJECTED": ExecState.REJECTED,
    "EXPIRED": ExecState.EXPIRED,
    "EXPIRED_IN_MATCH": ExecState.EXPIRED,
}
_BINANCE_UNKNOWN = {-1006, -1007}  # "execution status unknown"


class BinanceOrders:
    """Binance spot ``/api/v3/order`` (HMAC-SHA256 ``SIGNED`` requests)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        api_secret: str,
        symbols: SymbolMap = BINANCE,
        recv_window: int = 5000,
        clock_ms: Callable[[], int] = _ms,
    ) -> None:
        self.http = http
        self.api_key = api_key
        self.api_secret = api_secret
        self.symbols = symbols
        self.recv_window = recv_window
        self.clock_ms = clock_ms

    async def _signed(self, method: str, params: dict[str, str]) -> tuple[int, Any]:
        total = form({**params, "recvWindow": self.recv_window, "timestamp": self.clock_ms()})
        signed = f"{total}&signature={binance_signature(self.api_secret, total)}"
        headers = {"X-MBX-APIKEY": self.api_key}
        if method == "POST":
            resp = await _send(
                self.http, method, "/api/v3/order", content=signed, headers=headers | FORM
            )
        else:
            resp = await _send(self.http, method, f"/api/v3/order?{signed}", headers=headers)
        body = _json(resp)
        if isinstance(body, dict) and body.get("code") in _BINANCE_UNKNOWN:
            raise UnknownOutcomeError(f"{body['code']}: {body.get('msg', '')}")
        return resp.status_code, body

    async def place(self, request: OrderRequest) -> tuple[str, ExecState]:
        params = {
            "symbol": self.symbols.to_venue(request.symbol),
            "side": "BUY" if request.side is Side.BUY else "SELL",
            "type": request.type.upper(),
            "quantity": decimal_text(request.quantity),
            "newClientOrderId": request.client_order_id,
            "newOrderRespType": "RESULT",
        }
        if request.type == "limit":
            if request.price is None:
                raise VenueRejectedError("a limit order needs a price")
            params |= {"timeInForce": "GTC", "price": decimal_text(request.price)}
        status, body = await self._signed("POST", params)
        if status != 200:
            raise VenueRejectedError(f"{body.get('code')}: {body.get('msg', '')}")
        state = _BINANCE_STATES.get(body["status"], ExecState.ACK)
        return str(body["orderId"]), state

    async def lookup(self, request: OrderRequest) -> tuple[str, ExecState] | None:
        symbol = self.symbols.to_venue(request.symbol)
        params = {"symbol": symbol, "origClientOrderId": request.client_order_id}
        status, body = await self._signed("GET", params)
        if status == 400 and body.get("code") == -2013:
            return None
        if status != 200:
            raise UnknownOutcomeError(f"{body.get('code')}: {body.get('msg', '')}")
        return str(body["orderId"]), _BINANCE_STATES.get(body["status"], ExecState.ACK)

    async def status(self, request: OrderRequest, venue_order_id: str) -> tuple[ExecState, Decimal]:
        params = {"symbol": self.symbols.to_venue(request.symbol), "orderId": venue_order_id}
        status, body = await self._signed("GET", params)
        if status != 200:
            raise UnknownOutcomeError(f"{body.get('code')}: {body.get('msg', '')}")
        return _BINANCE_STATES.get(body["status"], ExecState.ACK), Decimal(body["executedQty"])

    async def cancel(self, request: OrderRequest, venue_order_id: str) -> None:
        params = {"symbol": self.symbols.to_venue(request.symbol), "orderId": venue_order_id}
        status, body = await self._signed("DELETE", params)
        if status != 200:
            raise VenueRejectedError(f"{body.get('code')}: {body.get('msg', '')}")


# -- Kraken ----------------------------------------------------------------------------------------

_KRAKEN_BASES = {"BTC": "XBT", "DOGE": "XDG"}  # Kraken's own asset codes in REST pair names


def kraken_rest_pair(ws_symbol: str) -> str:
    """REST pair name of a v2 symbol: ``BTC/USD`` -> ``XBTUSD`` (Kraken's altname)."""
    base, quote = ws_symbol.split("/")
    return f"{_KRAKEN_BASES.get(base, base)}{quote}"


_KRAKEN_STATES = {
    "pending": ExecState.ACK,
    "open": ExecState.ACK,
    "closed": ExecState.FILLED,
    "canceled": ExecState.CANCELLED,
    "expired": ExecState.EXPIRED,
}


class KrakenOrders:
    """Kraken spot REST ``/0/private/*`` (``API-Key`` + HMAC-SHA512 ``API-Sign``, nonce)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        api_secret: str,
        symbols: SymbolMap = KRAKEN,
    ) -> None:
        self.http = http
        self.api_key = api_key
        self.api_secret = api_secret
        self.symbols = symbols
        self._nonce = 0

    def _next_nonce(self) -> int:
        self._nonce = max(self._nonce + 1, time.time_ns() // 1000)
        return self._nonce

    async def _private(self, method: str, params: dict[str, str]) -> Any:
        nonce = str(self._next_nonce())
        body = form({"nonce": nonce, **params})
        path = f"/0/private/{method}"
        sign = kraken_signature(self.api_secret, path, nonce, body)
        headers = {"API-Key": self.api_key, "API-Sign": sign} | FORM
        resp = await _send(self.http, "POST", path, content=body, headers=headers)
        data = _json(resp)
        errors = [e for e in data.get("error", []) if not e.startswith("W")]  # W...: warnings
        if any(e.startswith(("EService:", "EGeneral:Internal")) for e in errors):
            raise UnknownOutcomeError(", ".join(errors))
        if errors:
            raise VenueRejectedError(", ".join(errors))
        return data.get("result")

    @staticmethod
    def _state(info: dict[str, Any]) -> tuple[ExecState, Decimal]:
        filled = Decimal(info.get("vol_exec", "0"))
        return _partial(_KRAKEN_STATES.get(info["status"], ExecState.ACK), filled), filled

    async def place(self, request: OrderRequest) -> tuple[str, ExecState]:
        params = {
            "ordertype": request.type,
            "type": request.side.value.lower(),
            "volume": decimal_text(request.quantity),
            "pair": kraken_rest_pair(self.symbols.to_venue(request.symbol)),
            "cl_ord_id": request.client_order_id,
        }
        if request.type == "limit":
            if request.price is None:
                raise VenueRejectedError("a limit order needs a price")
            params["price"] = decimal_text(request.price)
        result = await self._private("AddOrder", params)
        return str(result["txid"][0]), ExecState.ACK

    async def lookup(self, request: OrderRequest) -> tuple[str, ExecState] | None:
        cid = {"cl_ord_id": request.client_order_id}
        try:
            found = (await self._private("OpenOrders", cid))["open"]
            found = found or (await self._private("ClosedOrders", cid))["closed"]
        except VenueRejectedError as exc:
            raise UnknownOutcomeError(str(exc)) from exc
        for txid, info in found.items():
            return str(txid), self._state(info)[0]
        return None

    async def status(self, request: OrderRequest, venue_order_id: str) -> tuple[ExecState, Decimal]:
        try:
            result = await self._private("QueryOrders", {"txid": venue_order_id})
        except VenueRejectedError as exc:
            raise UnknownOutcomeError(str(exc)) from exc
        return self._state(result[venue_order_id])

    async def cancel(self, request: OrderRequest, venue_order_id: str) -> None:
        result = await self._private("CancelOrder", {"txid": venue_order_id})
        if not result.get("count"):
            raise VenueRejectedError("EOrder:Order not open")


# -- Coinbase --------------------------------------------------------------------------------------

_COINBASE_STATES = {
    "PENDING": ExecState.ACK,
    "QUEUED": ExecState.ACK,
    "OPEN": ExecState.ACK,
    "CANCEL_QUEUED": ExecState.ACK,
    "FILLED": ExecState.FILLED,
    "CANCELLED": ExecState.CANCELLED,
    "EXPIRED": ExecState.EXPIRED,
    "FAILED": ExecState.REJECTED,
}
_ORDERS = "/api/v3/brokerage/orders"


class CoinbaseOrders:
    """Coinbase Advanced Trade orders, legacy API key (``CB-ACCESS-*`` HMAC headers)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        api_secret: str,
        symbols: SymbolMap = COINBASE,
    ) -> None:
        self.http = http
        self.api_key = api_key
        self.api_secret = api_secret
        self.symbols = symbols

    async def _call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = json.dumps(payload, separators=(",", ":")) if payload is not None else ""
        ts = str(int(time.time()))
        headers = {
            "CB-ACCESS-KEY": self.api_key,
            "CB-ACCESS-TIMESTAMP": ts,
            "CB-ACCESS-SIGN": coinbase_signature(self.api_secret, ts, method, path, body),
            "Content-Type": "application/json",
        }
        return await _send(self.http, method, path, content=body, headers=headers, params=params)

    @staticmethod
    def _state(order: dict[str, Any]) -> tuple[ExecState, Decimal]:
        filled = Decimal(order.get("filled_size") or "0")
        return _partial(_COINBASE_STATES.get(order["status"], ExecState.ACK), filled), filled

    async def place(self, request: OrderRequest) -> tuple[str, ExecState]:
        size = decimal_text(request.quantity)
        config: dict[str, Any]
        if request.type == "market":
            config = {"market_market_ioc": {"base_size": size}}
        elif request.price is None:
            raise VenueRejectedError("a limit order needs a price")
        elif request.expires_at:
            config = {
                "limit_limit_gtd": {
                    "base_size": size,
                    "limit_price": decimal_text(request.price),
                    "end_time": request.expires_at,
                    "post_only": False,
                }
            }
        else:
            config = {
                "limit_limit_gtc": {
                    "base_size": size,
                    "limit_price": decimal_text(request.price),
                    "post_only": False,
                }
            }
        payload = {
            "client_order_id": request.client_order_id,
            "product_id": self.symbols.to_venue(request.symbol),
            "side": request.side.value.upper(),
            "order_configuration": config,
        }
        resp = await self._call("POST", _ORDERS, payload)
        if resp.status_code != 200:
            raise VenueRejectedError(f"HTTP {resp.status_code}: {resp.text[:200].strip()}")
        data = _json(resp)
        if not data.get("success"):
            err = data.get("error_response") or {}
            raise VenueRejectedError(f"{err.get('error', 'rejected')}: {err.get('message', '')}")
        return str(data["success_response"]["order_id"]), ExecState.ACK

    async def lookup(self, request: OrderRequest) -> tuple[str, ExecState] | None:
        params = {"product_ids": self.symbols.to_venue(request.symbol), "limit": "100"}
        while True:
            resp = await self._call("GET", f"{_ORDERS}/historical/batch", params=params)
            if resp.status_code != 200:
                raise UnknownOutcomeError(f"HTTP {resp.status_code}")
            data = _json(resp)
            for order in data.get("orders", []):
                if order.get("client_order_id") == request.client_order_id:
                    return str(order["order_id"]), self._state(order)[0]
            if not data.get("has_next"):
                return None
            params["cursor"] = data["cursor"]

    async def status(self, request: OrderRequest, venue_order_id: str) -> tuple[ExecState, Decimal]:
        resp = await self._call("GET", f"{_ORDERS}/historical/{venue_order_id}")
        if resp.status_code != 200:
            raise UnknownOutcomeError(f"HTTP {resp.status_code}")
        return self._state(_json(resp)["order"])

    async def cancel(self, request: OrderRequest, venue_order_id: str) -> None:
        resp = await self._call("POST", f"{_ORDERS}/batch_cancel", {"order_ids": [venue_order_id]})
        if resp.status_code != 200:
            raise VenueRejectedError(f"HTTP {resp.status_code}")
        result = _json(resp)["results"][0]
        if not result.get("success"):
            raise VenueRejectedError(str(result.get("failure_reason", "cancel failed")))
