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

:class:`TradingSwitch` keeps each consumer's order-entry switch (off unless turned on); the order
router (issue 8) refuses orders of a consumer whose switch is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence

import msgspec
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tradehall.gateway.dispatcher import AsyncDispatcher, Consumer
from tradehall.gateway.events import encode
from tradehall.gateway.fanout import WILDCARD
from tradehall.gateway.orchestrator import MERGED

__all__ = ["TradingSwitch", "databus_routes"]

_encoder = msgspec.json.Encoder()
MergeFn = Callable[[str, Sequence[str]], None]  # start merging a symbol (ValueError: refused)


class _Control(msgspec.Struct, forbid_unknown_fields=True):
    op: str
    provider: str = WILDCARD
    symbol: str = WILDCARD
    event_types: list[str] = []
    providers: list[str] = []
    enabled: bool | None = None
    id: int | str | None = None


class TradingSwitch:
    """Per-consumer order-entry switch; every consumer starts disabled."""

    def __init__(self) -> None:
        self._enabled: dict[str, bool] = {}

    def set(self, consumer: str, enabled: bool) -> None:
        self._enabled[consumer] = enabled

    def enabled(self, consumer: str) -> bool:
        return self._enabled.get(consumer, False)


class _Session:
    def __init__(
        self,
        ws: WebSocket,
        consumer: Consumer,
        switch: TradingSwitch,
        merge: MergeFn | None,
    ) -> None:
        self.ws = ws
        self.consumer = consumer
        self.switch = switch
        self.merge = merge
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
                "op must be one of: subscribe, unsubscribe, merged_subscribe, set_trading_mode",
                control.id,
            )
            return
        await self.reply(ack)

    async def pump(self) -> None:
        async for event in self.consumer:
            await self.send(encode(event).decode())


def databus_routes(
    dispatcher: AsyncDispatcher, switch: TradingSwitch, merge: MergeFn | None = None
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
        session = _Session(ws, consumer, switch, merge)
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
