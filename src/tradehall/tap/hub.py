"""WebSocket fan-out and the pub/sub bus in front of it.

Every message is a ``{type, data}`` envelope (C-29) encoded once and shared by all recipients.
Channels: ``broadcast`` (``price``, ``system:status``) and ``user:{id}`` (``bet:confirmed``,
``bet:failed``, ``bet:resolved``) go to WebSocket clients; ``circuit:override`` (Part B §5,
C-47: a bare ``close``, ``open`` or ``auto``) goes to the handlers in
:attr:`Hub.override_handlers`, so an operator command reaches every API process on the bus.
A :class:`Bus` carries messages between processes: the in-process :class:`MemoryBus` hands them
straight to the local :class:`Hub`; the Redis bus (:mod:`tradehall.tap.redis_stores`) publishes
them so every API process's hub receives them (``circuit:override`` under its own unprefixed
name, so ``redis-cli PUBLISH circuit:override close`` works as Part B writes it).

Each connected client has a bounded queue; a client that cannot keep up (queue full) is dropped
rather than allowed to grow memory (Part B §5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

__all__ = [
    "BROADCAST",
    "CIRCUIT_OVERRIDE",
    "Bus",
    "Client",
    "Hub",
    "MemoryBus",
    "envelope",
    "user_channel",
]

BROADCAST = "broadcast"
CIRCUIT_OVERRIDE = "circuit:override"
_encoder = msgspec.json.Encoder()


def user_channel(user_id: str) -> str:
    return f"user:{user_id}"


def envelope(kind: str, data: Any) -> bytes:
    return _encoder.encode({"type": kind, "data": data})


class Client:
    """One WebSocket connection's outbox."""

    def __init__(self, maxsize: int = 1_024) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize)
        self.user_id: str | None = None
        self.dropped = False

    def offer(self, payload: bytes) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped = True
            self._drain_and_close()

    def close(self) -> None:
        self._drain_and_close()

    def _drain_and_close(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Hub:
    """The clients connected to this process."""

    def __init__(self) -> None:
        self._clients: set[Client] = set()
        self._by_user: dict[str, set[Client]] = {}
        self.override_handlers: list[Callable[[bytes], None]] = []

    @property
    def count(self) -> int:
        return len(self._clients)

    def add(self, client: Client) -> None:
        self._clients.add(client)

    def bind_user(self, client: Client, user_id: str) -> None:
        client.user_id = user_id
        self._by_user.setdefault(user_id, set()).add(client)

    def remove(self, client: Client) -> None:
        self._clients.discard(client)
        if client.user_id is not None:
            peers = self._by_user.get(client.user_id)
            if peers is not None:
                peers.discard(client)
                if not peers:
                    del self._by_user[client.user_id]

    def dispatch(self, channel: str, payload: bytes) -> None:
        if channel == CIRCUIT_OVERRIDE:
            for handler in list(self.override_handlers):
                handler(payload)
            return
        if channel == BROADCAST:
            targets: set[Client] = self._clients
        elif channel.startswith("user:"):
            targets = self._by_user.get(channel[5:], set())
        else:
            return
        for client in list(targets):
            client.offer(payload)


class Bus(Protocol):
    def publish(self, channel: str, payload: bytes) -> None:
        """Send without waiting (delivery is best effort, after the commit)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class MemoryBus:
    """Single-process pub/sub: publishing is local dispatch."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def publish(self, channel: str, payload: bytes) -> None:
        self._hub.dispatch(channel, payload)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
