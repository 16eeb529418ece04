"""The Tap single-page app (issue 9): static files served at ``/`` of the tap server.

Everything the page needs is in ``static/`` and is served from this process: no CDN, no build
step, no npm packages. ``ethsign.js`` (Keccak-256, SHA-256/HMAC, secp256k1 and EIP-191
personal_sign on BigInt) is the project's own; ``app.js`` is the page (canvas grid, WebSocket,
bets, sign-in). The design is described in ``docs/tap-frontend.md``.

:func:`web_routes` returns the routes to append after the API's: ``/app-config.json`` (what the
page must know before signing in: the chain id in the signed text, whether the development
faucet is on, and the breaker's freshness limit and recovery period) and a catch-all mount of
the static directory with ``index.html`` at ``/``. Every response carries a strict
Content-Security-Policy (scripts, styles and sockets from this origin only) and
``Cache-Control: no-cache`` so a new release is picked up on the next load.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradehall.tap.service import TapConfig

__all__ = ["SECURITY_HEADERS", "STATIC_DIR", "web_routes"]

STATIC_DIR = Path(__file__).with_name("static")

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


class _WithHeaders:
    """ASGI wrapper adding :data:`SECURITY_HEADERS` to every HTTP response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.raw = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.raw if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def web_routes(config: TapConfig) -> list[BaseRoute]:
    """The front end's routes for a server configured by ``config``."""
    public = msgspec.json.encode(
        {
            "chain_id": config.chain_id,
            "dev_self_fund": bool(config.dev_self_fund),
            # the page tells a breaker warming up (critical, fresh prices) from a dead feed
            "breaker_degraded_ms": round(config.breaker.degraded_after_s * 1000),
            "breaker_recovery_ms": round(config.breaker.recovery_s * 1000),
        }
    )

    async def app_config(request: Request) -> Response:
        return Response(public, media_type="application/json", headers=SECURITY_HEADERS)

    static = _WithHeaders(StaticFiles(directory=STATIC_DIR, html=True))
    return [
        Route("/app-config.json", app_config, methods=["GET"]),
        Mount("/", app=static, name="web"),
    ]
