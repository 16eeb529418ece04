"""The HTTP and WebSocket API (Starlette + msgspec) over a :class:`TapService`.

Routes live under ``/api`` plus ``/ws``, ``/healthz``, ``/version`` and ``/metrics``; ``/`` is left
for the front end. Every error is ``{error, message}`` (plus fields such as ``retry_after`` or
``bet_id``) with the status the issue fixes. Each API request counts against a per-IP limit and is
recorded in ``http_requests_total`` / ``http_request_duration_seconds`` under its route name.

WebSocket: a client may authenticate with ``?token=<session_id>`` or a first message
``{"type":"auth","token":...}``; everyone receives ``price`` and ``system:status``, an
authenticated client also its own ``bet:*`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import platform
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tradehall import __version__
from tradehall.core.metrics import CONTENT_TYPE_LATEST, render
from tradehall.tap import ledger
from tradehall.tap.auth import LoginRequest
from tradehall.tap.breaker import Override
from tradehall.tap.fastpath import FastBets
from tradehall.tap.hub import Client, Hub, envelope
from tradehall.tap.log import LazyLogger
from tradehall.tap.restore import RestoreError, restore_since
from tradehall.tap.service import ApiError, TapService, bet_json, cold_store
from tradehall.tap.stores import StoreUnavailable, utc_day
from tradehall.tap.web import web_routes

__all__ = ["create_app"]

_log = LazyLogger("tap.http")
_encoder = msgspec.json.Encoder()
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


class DepositBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    wallet: str
    amount: int


class FundBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    amount: int


class OverrideBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mode: str


class RestoreBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    week: str


class _WsMessage(msgspec.Struct):
    type: str
    token: str | None = None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(body), status, headers, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    return json_response(
        {"error": exc.code, "message": exc.message, **exc.extra}, exc.status, exc.headers
    )


def user_json(user: ledger.UserRecord) -> dict[str, Any]:
    return {"id": user.id, "wallet": user.wallet, "balance": user.balance}


async def decode(request: Request, kind: type[T]) -> T:
    raw = await request.body()
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, "validation_error", str(exc)) from None


def create_app(service: TapService, hub: Hub, *, manage_service: bool = True) -> FastBets:
    """The ASGI app; with ``manage_service`` its lifespan starts and stops ``service``.

    ``POST /api/bets`` is served by :class:`~tradehall.tap.fastpath.FastBets` (the hot path);
    every other route by Starlette.
    """
    metrics = service.metrics
    config = service.config
    hub.override_handlers.append(service.on_override)  # circuit:override from any process

    def endpoint(name: str, fn: Handler, *, limited: bool = True) -> Handler:
        counters: dict[tuple[str, int], Any] = {}
        timers: dict[str, Any] = {}

        async def handler(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if limited:
                    await service.check_ip(request.client.host if request.client else "-")
                response = await fn(request)
            except ApiError as exc:
                response = error_response(exc)
            except Exception:
                _log.exception("unhandled_error", endpoint=name)
                response = json_response(
                    {"error": "internal_error", "message": "internal error"}, 500
                )
            method, status = request.method, response.status_code
            counter = counters.get((method, status))
            if counter is None:
                counter = metrics.http_requests.labels(method, name, str(status))
                counters[(method, status)] = counter
            counter.inc()
            timer = timers.get(method)
            if timer is None:
                timer = timers[method] = metrics.http_duration.labels(method, name)
            timer.observe(time.perf_counter() - started)
            return response

        return handler

    async def session_of(request: Request) -> Any:
        return await service.authenticate(request.headers.get("authorization"))

    def require_admin(request: Request) -> None:
        token = config.admin_token
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not token or not secrets_equal(given, token):
            raise ApiError(403, "forbidden", "admin token required")

    async def login(request: Request) -> Response:
        session, user = await service.login(await decode(request, LoginRequest))
        return json_response(
            {
                "session_id": session.id,
                "user": user_json(user),
                "expires_at": session.expires_at_ns // 1_000_000_000,
            }
        )

    async def logout(request: Request) -> Response:
        session = await session_of(request)
        await service.sessions.revoke(session.id)
        return json_response({"status": "logged_out"})

    async def me(request: Request) -> Response:
        return json_response(user_json(await service.me(await session_of(request))))

    async def grid(request: Request) -> Response:
        return json_response(service.grid_json())

    async def list_bets(request: Request) -> Response:
        session = await session_of(request)
        try:
            given = request.query_params.get("from")
            start = None if given is None else int(given)
            end = int(request.query_params.get("to", str(2**62)))
            limit = min(500, max(1, int(request.query_params.get("limit", "100"))))
        except ValueError:
            raise ApiError(400, "validation_error", "from, to and limit are integers") from None
        bets = await service.history.bets(session.user_id, start, end, limit)
        return json_response({"bets": [bet_json(b) for b in bets]})

    async def get_bet(request: Request) -> Response:
        session = await session_of(request)
        bet = await service.history.bet(session.user_id, request.path_params["bet_id"])
        return json_response(bet_json(bet))

    async def get_ledger(request: Request) -> Response:
        session = await session_of(request)
        rows = await service.db.read(lambda c: ledger.list_ledger(c, session.user_id, 100))
        return json_response({"entries": [msgspec.structs.asdict(r) for r in rows]})

    async def admin_deposit(request: Request) -> Response:
        require_admin(request)
        body = await decode(request, DepositBody)
        return json_response(user_json(await service.deposit(body.wallet, body.amount)))

    async def admin_withdraw(request: Request) -> Response:
        require_admin(request)
        body = await decode(request, DepositBody)
        return json_response(user_json(await service.withdraw(body.wallet, body.amount)))

    async def admin_breaker(request: Request) -> Response:
        require_admin(request)
        body = await decode(request, OverrideBody)
        try:
            mode = Override(body.mode)
        except ValueError:
            raise ApiError(400, "validation_error", "mode is auto, open or close") from None
        service.request_override(mode)
        return json_response(service.status_json())

    async def admin_restore(request: Request) -> Response:
        """FR-17: fetch, verify and attach archived weeks from ``week`` on (restore.py)."""
        require_admin(request)
        body = await decode(request, RestoreBody)
        try:
            result = await restore_since(
                service.db, cold_store(config), service.partitions, body.week
            )
        except RestoreError as exc:
            status = {"validation_error": 400, "not_found": 404}.get(exc.code, 502)
            raise ApiError(status, exc.code, exc.message) from None
        horizon = await service.history.horizon_ms()
        _log.info("archive_restored", week=body.week, restored=result.restored)
        return json_response({**result.to_json(), "archived_before": horizon})

    async def dev_fund(request: Request) -> Response:
        if not config.dev_self_fund:
            raise ApiError(404, "not_found", "self-funding is disabled")
        session = await session_of(request)
        body = await decode(request, FundBody)
        if not 0 < body.amount <= 1_000_000:
            raise ApiError(400, "invalid_amount", "amount must be 1..1000000 cents")
        return json_response(user_json(await service.deposit(session.wallet, body.amount)))

    async def healthz(request: Request) -> Response:
        ok, body = await service.health()
        return json_response(body, 200 if ok else 503)

    async def version(request: Request) -> Response:
        return json_response(
            {
                "version": __version__,
                "build_time": os.environ.get("TRADEHALL_BUILD_TIME", "unknown"),
                "git_commit": os.environ.get("TRADEHALL_GIT_COMMIT", "unknown"),
                "runtime": f"python {platform.python_version()}",
            }
        )

    async def metrics_endpoint(request: Request) -> Response:
        service.evaluate_gauges()
        metrics.ws_clients.set(hub.count)
        with contextlib.suppress(StoreUnavailable):  # Redis down: /healthz says so
            today = utc_day(service.clock.time_ns())
            metrics.nonce_claims_today.set(await service.nonces.count(today))
        return Response(render(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def ws_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        client = Client()
        hub.add(client)
        token = websocket.query_params.get("token")
        try:
            if token:
                await bind(client, token, websocket)
            client.offer(envelope("system:status", service.status_json()))
            reader = asyncio.ensure_future(ws_reader(client, websocket))
            try:
                while True:
                    payload = await client.queue.get()
                    if payload is None:
                        break
                    await websocket.send_text(payload.decode())
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            hub.remove(client)
            with contextlib.suppress(Exception):
                await websocket.close()

    async def bind(client: Client, token: str, websocket: WebSocket) -> None:
        try:
            session = await service.session_for(token)
        except ApiError as exc:
            client.offer(envelope("auth:error", {"error": exc.code, "message": exc.message}))
            return
        hub.bind_user(client, session.user_id)
        client.offer(envelope("auth:ok", {"user_id": session.user_id}))

    async def ws_reader(client: Client, websocket: WebSocket) -> None:
        try:
            while True:
                raw = await websocket.receive_text()
                try:
                    msg = msgspec.json.decode(raw, type=_WsMessage)
                except (msgspec.ValidationError, msgspec.DecodeError):
                    client.offer(envelope("error", {"message": "bad message"}))
                    continue
                if msg.type == "auth" and msg.token:
                    await bind(client, msg.token, websocket)
                elif msg.type == "ping":
                    client.offer(envelope("pong", {}))
        except (WebSocketDisconnect, RuntimeError):
            client.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_service:
            await service.start()
        try:
            yield
        finally:
            if manage_service:
                await service.stop()

    routes = [
        Route("/api/auth/login", endpoint("login", login), methods=["POST"]),
        Route("/api/auth/logout", endpoint("logout", logout), methods=["POST"]),
        Route("/api/me", endpoint("me", me), methods=["GET"]),
        Route("/api/grid", endpoint("grid", grid), methods=["GET"]),
        Route("/api/bets", endpoint("list_bets", list_bets), methods=["GET"]),
        Route("/api/bets/{bet_id}", endpoint("get_bet", get_bet), methods=["GET"]),
        Route("/api/ledger", endpoint("ledger", get_ledger), methods=["GET"]),
        Route("/api/admin/deposit", endpoint("deposit", admin_deposit), methods=["POST"]),
        Route("/api/admin/withdraw", endpoint("withdraw", admin_withdraw), methods=["POST"]),
        Route("/api/admin/breaker", endpoint("breaker", admin_breaker), methods=["POST"]),
        Route("/api/admin/restore", endpoint("restore", admin_restore), methods=["POST"]),
        Route("/api/dev/fund", endpoint("dev_fund", dev_fund), methods=["POST"]),
        Route("/healthz", endpoint("healthz", healthz, limited=False), methods=["GET"]),
        Route("/api/healthz", endpoint("healthz", healthz, limited=False), methods=["GET"]),
        Route("/version", endpoint("version", version, limited=False), methods=["GET"]),
        Route("/metrics", endpoint("metrics", metrics_endpoint, limited=False), methods=["GET"]),
        WebSocketRoute("/ws", ws_endpoint),
        *web_routes(config),  # the single-page app at / (issue 9)
    ]
    return FastBets(Starlette(routes=routes, lifespan=lifespan), service)


def secrets_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
