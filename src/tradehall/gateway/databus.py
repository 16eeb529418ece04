"""Control bus and WebSocket data bus: ``/ws`` on the gateway's HTTP listener (spec §6).

One WebSocket connection is one dispatcher consumer (named by the ``consumer`` query parameter,
else ``ws-<n>``). Client -> server: JSON control messages, one per text frame, each acknowledged
(``id`` echoed):

.. code-block:: json

    {"op": "subscribe", "provider": "kraken", "symbol": "BTC-USD", "event_types": ["trade"], "id":1}
    {"op": "unsubscribe", "provider": "kraken", "symbol": "BTC-USD", "id": 2}
    {"op": "set_trading_mode", "enabled": true, "id": 3}
    {"op": "merged_subscribe", "symbol": "BTC-USD", "providers": ["kraken", "coinbase"], "id": 4}

``provider``/``symbol`` default to ``"*"`` (any), ``event_types`` to all market data. Replies:
``{"type": "ack", "op": ..., "id": ...}`` (with ``trading_enabled`` for ``set_trading_mode``) or
``{"type": "error", "code": "invalid_request" | "not_implemented", "message": ..., "id": ...}``.
Routing changes are applied to the routing table before the ack is sent, so they are effective
for the next event published. ``merged_subscribe`` adds the merged subscription to the
orchestrator (:mod:`~tradehall.gateway.orchestrator`; at least two providers, fixed per symbol)
and subscribes the consumer to its ``merged_book_snapshot``/``nbbo`` events (provider ``merged``).

Server -> client: the canonical events, one JSON object per text frame (``event_type`` tags them,
decimals are strings), from the consumer's queue: a client that reads slowly gets its market data
coalesced (latest-wins) and its trades bounded, and slows nobody else.

:class:`~tradehall.gateway.orders.TradingSwitch` keeps each consumer's order-entry switch (off
unless turned on); the order router refuses orders of a consumer whose switch is off.

Orders (when the service has an order router): ``{"op": "order", "client_order_id": "abc1",
"venue": "tradehall", "symbol": "BTC-USD", "side": "buy", "type": "limit", "quantity": "3",
"price": "150.25", "expires_at": "2030-01-01T00:00:00Z", "id": 5}`` is answered with
``{"type": "order_result", "id": 5, "client_order_id": ..., "status": "accepted" | "rejected" |
"refused" | "unknown", "state": ..., "venue_order_id": ..., "reason": ..., "duplicate": ...}``;
the order's ExecReports arrive on the same connection (it is the owning consumer).
``{"op": "cancel", "client_order_id": "abc1", "id": 6}`` cancels an open order of this
connection's consumer (also with the trading switch off) and is answered by ``cancel_result``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Literal

import msgspec
import structlog
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tradehall.gateway.dispatcher import AsyncDispatcher, Consumer
from tradehall.gateway.events import Side, decision_id, encode
from tradehall.gateway.fanout import WILDCARD
from tradehall.gateway.orchestrator import MERGED
from tradehall.gateway.orders import OrderOutcome, OrderRequest, TradingSwitch

__all__ = ["TradingSwitch", "databus_routes"]  # TradingSwitch lives in orders (re-exported)

_encoder = msgspec.json.Encoder()
# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.databus")
MergeFn = Callable[[str, Sequence[str]], None]  # start merging a symbol (ValueError: refused)
SubmitFn = Callable[[OrderRequest], Awaitable[OrderOutcome]]
CancelFn = Callable[[str, str], Awaitable[OrderOutcome]]  # (consumer, client_order_id)


class _Control(msgspec.Struct):
    op: str
    provider: str = WILDCARD
    symbol: str = WILDCARD
    event_types: list[str] = []
    providers: list[str] = []
    enabled: bool | None = None
    id: int | str | None = None


class _CancelMsg(msgspec.Struct, kw_only=True):
    op: str
    client_order_id: str
    id: int | str | None = None


class _OrderMsg(msgspec.Struct, kw_only=True):
    op: str
    client_order_id: str
    venue: str
    symbol: str
    side: Side
    type: Literal["limit", "market"]
    quantity: Decimal
    price: Decimal | None = None
    expires_at: str | None = None
    id: int | str | None = None


class _Session:
    def __init__(
        self,
        ws: WebSocket,
        consumer: Consumer,
        switch: TradingSwitch,
        merge: MergeFn | None,
        submit: SubmitFn | None,
        cancel_order: CancelFn | None = None,
    ) -> None:
        self.ws = ws
        self.consumer = consumer
        self.switch = switch
        self.merge = merge
        self.submit = submit
        self.cancel_order = cancel_order
        self.lock = asyncio.Lock()  # acks and events share the socket

    async def send(self, text: str) -> None:
        async with self.lock:
            await self.ws.send_text(text)

    async def reply(self, message: dict[str, object]) -> None:
        await self.send(_encoder.encode(message).decode())

    async def error(self, code: str, message: str, ident: int | str | None) -> None:
        await self.reply({"type": "error", "code": code, "message": message, "id": ident})

    async def handle(self, raw: str) -> None:
        try:
            control = msgspec.json.decode(raw, type=_Control)
        except msgspec.DecodeError as exc:
            await self.error("invalid_request", f"invalid control message: {exc}", None)
            return
        consumer = self.consumer
        if control.op == "order":
            await self.order(raw, control.id)
            return
        if control.op == "cancel":
            await self.cancel(raw, control.id)
            return
        ack: dict[str, object] = {"type": "ack", "op": control.op, "id": control.id}
        if control.op == "subscribe":
            consumer.subscribe(control.provider, control.symbol, control.event_types)
        elif control.op == "unsubscribe":
            consumer.unsubscribe(control.provider, control.symbol)
        elif control.op == "set_trading_mode":
            if control.enabled is None:
                await self.error("invalid_request", "enabled (true/false) is required", control.id)
                return
            self.switch.set(consumer.name, control.enabled)
            ack["trading_enabled"] = control.enabled
        elif control.op == "merged_subscribe":
            if self.merge is None:
                await self.error("not_implemented", "no orchestrator here", control.id)
                return
            try:
                self.merge(control.symbol, control.providers)
            except ValueError as exc:
                await self.error("invalid_request", str(exc), control.id)
                return
            consumer.subscribe(MERGED, control.symbol, control.event_types)
        else:
            await self.error(
                "invalid_request",
                "op must be one of: subscribe, unsubscribe, merged_subscribe, set_trading_mode,"
                " order, cancel",
                control.id,
            )
            return
        log.info(
            "route_changed" if control.op != "set_trading_mode" else "trading_mode_set",
            decision_id=decision_id(),
            consumer=consumer.name,
            op=control.op,
            provider=control.provider,
            symbol=control.symbol,
            event_types=control.event_types or "all",
            providers=control.providers or None,
            enabled=control.enabled,
        )
        await self.reply(ack)

    async def order(self, raw: str, ident: int | str | None) -> None:
        if self.submit is None:
            await self.error("not_implemented", "order entry is not configured", ident)
            return
        try:
            msg = msgspec.json.decode(raw, type=_OrderMsg)
        except msgspec.ValidationError as exc:
            await self.error("invalid_request", f"invalid order: {exc}", ident)
            return
        request = OrderRequest(
            client_order_id=msg.client_order_id,
            consumer=self.consumer.name,  # ExecReports come back on this connection
            venue=msg.venue,
            symbol=msg.symbol,
            side=msg.side,
            type=msg.type,
            quantity=msg.quantity,
            price=msg.price,
            expires_at=msg.expires_at,
        )
        outcome = await self.submit(request)
        reply = msgspec.to_builtins(outcome)
        await self.reply({"type": "order_result", "id": ident, **reply})

    async def cancel(self, raw: str, ident: int | str | None) -> None:
        if self.cancel_order is None:
            await self.error("not_implemented", "order entry is not configured", ident)
            return
        try:
            msg = msgspec.json.decode(raw, type=_CancelMsg)
        except msgspec.ValidationError as exc:
            await self.error("invalid_request", f"invalid cancel: {exc}", ident)
            return
        outcome = await self.cancel_order(self.consumer.name, msg.client_order_id)
        await self.reply({"type": "cancel_result", "id": ident, **msgspec.to_builtins(outcome)})

    async def pump(self) -> None:
        async for event in self.consumer:
            await self.send(encode(event).decode())


def databus_routes(
    dispatcher: AsyncDispatcher,
    switch: TradingSwitch,
    merge: MergeFn | None = None,
    submit: SubmitFn | None = None,
    cancel_order: CancelFn | None = None,
) -> list[WebSocketRoute]:
    """The ``/ws`` route for a Starlette app."""
    counter = itertools.count(1)

    async def endpoint(ws: WebSocket) -> None:
        name = ws.query_params.get("consumer") or f"ws-{next(counter)}"
        await ws.accept()
        if name in dispatcher.consumers:
            await ws.close(code=4002, reason=f"consumer {name} is already connected")
            return
        consumer = dispatcher.consumer(name)
        session = _Session(ws, consumer, switch, merge, submit, cancel_order)
        writer = asyncio.create_task(session.pump())
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    await session.error("invalid_request", "control messages are JSON text", None)
                    continue
                await session.handle(text)
        except WebSocketDisconnect:
            pass
        finally:
            consumer.close()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    return [WebSocketRoute("/ws", endpoint)]
