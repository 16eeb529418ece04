"""``POST /api/bets`` served straight from ASGI, everything else by the Starlette app.

The bet route is the hot path (thousands of requests a second on one event loop). Starlette's
middleware stack, router and ``Request``/``Response`` objects cost more CPU than the bet itself,
so :class:`FastBets` answers this one route directly: it reads the body from ``receive``, takes
the ``Authorization`` header from the raw header list, hands both to
:meth:`~tradehall.tap.service.TapService.bet_request` (per-IP limit, session, bet limit, the bet)
and sends the JSON answer with two ``send`` calls. Status codes, bodies, headers and metrics are
identical to the Starlette route's. Every other request goes to ``fallback``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from tradehall.tap.contract import ApiError
from tradehall.tap.log import LazyLogger
from tradehall.tap.service import TapService

__all__ = ["MAX_BODY", "FastBets"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 16_384  # a bet body is ~100 bytes; anything this large is refused unread
_log = LazyLogger("tap.http")
_encoder = msgspec.json.Encoder()
_JSON = (b"content-type", b"application/json")


class _Disconnected(Exception):
    """The client went away before the body arrived."""


class FastBets:
    """ASGI app: ``POST /api/bets`` served here, any other request by ``fallback``."""

    def __init__(self, fallback: ASGIApp, service: TapService) -> None:
        self.fallback = fallback
        self.service = service
        metrics = service.metrics
        self._timer = metrics.http_duration.labels("POST", "place_bet")
        self._counters: dict[int, Any] = {}
        self._requests = metrics.http_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/bets" and scope["method"] == "POST":
            await self._place(scope, receive, send)
            return
        await self.fallback(scope, receive, send)

    async def _place(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        service = self.service
        headers: dict[str, str] = {}
        try:
            client = scope.get("client")
            authorization = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                    break
            raw: bytes | ApiError
            try:
                raw = await _read_body(receive)
            except ApiError as exc:  # answered after the IP limit and the session, as before
                raw = exc
            ip = client[0] if client else "-"
            status, payload = 202, await service.bet_request(ip, authorization, raw)
        except ApiError as exc:
            status = exc.status
            payload = {"error": exc.code, "message": exc.message, **exc.extra}
            headers = exc.headers
        except _Disconnected:
            return
        except Exception:
            _log.exception("unhandled_error", endpoint="place_bet")
            status, payload = 500, {"error": "internal_error", "message": "internal error"}
        data = _encoder.encode(payload)
        raw_headers = [_JSON, (b"content-length", str(len(data)).encode())]
        for name, value in headers.items():
            raw_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": data})
        counter = self._counters.get(status)
        if counter is None:
            counter = self._counters[status] = self._requests.labels(
                "POST", "place_bet", str(status)
            )
        counter.inc()
        self._timer.observe(time.perf_counter() - started)


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _Disconnected()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > MAX_BODY:
            raise ApiError(400, "validation_error", "request body too large")
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(400, "validation_error", "request body too large")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
