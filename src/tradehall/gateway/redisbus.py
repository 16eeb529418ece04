"""External data bus over Redis pub/sub: several processes consume one gateway (spec §6).

:class:`RedisPublisher` is one more dispatcher consumer (``redis`` by default, subscribed to all
market data): it takes what its queue holds and publishes each event's canonical JSON on the
channel ``<prefix>:<provider>:<symbol>:<event_type>``, a batch per Redis round trip (pipeline). It
inherits the dispatcher's guarantees: per-stream order, and if Redis is slow, its queue coalesces
(latest-wins for tickers and books, bounded trades) while nobody else is slowed.

:class:`RedisSubscriber` is the other processes' side: ``psubscribe`` patterns built from
``provider``/``symbol``/``event_type`` (``*`` = any) and an async iterator of decoded canonical
events. Redis pub/sub is at-most-once (a subscriber that is not connected misses events); for
books, a subscriber starts from the next ``book_snapshot`` it sees.

ExecReports are not published here: they belong to one consumer and travel in-process or over
its ``/ws`` session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
import structlog

from tradehall.gateway.dispatcher import AsyncDispatcher, Consumer
from tradehall.gateway.events import AnyEvent, Event, decode, encode

__all__ = ["RedisPublisher", "RedisSubscriber", "channel_for"]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.redis")
DEFAULT_PREFIX = "tradehall:gw"


def channel_for(event: Event, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}:{event.provider}:{event.symbol}:{event.event_type}"


class RedisPublisher:
    """Forwards market data from the dispatcher to Redis channels."""

    def __init__(
        self,
        dispatcher: AsyncDispatcher,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        name: str = "redis",
        capacity: int = 10_000,
        batch: int = 500,
    ) -> None:
        self.dispatcher = dispatcher
        self.url = url
        self.prefix = prefix
        self.name = name
        self.capacity = capacity
        self.batch = batch
        self.published = 0
        self.errors = 0
        self._client: aioredis.Redis | None = None
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._client = aioredis.from_url(self.url)
        consumer = self.dispatcher.consumer(self.name, capacity=self.capacity)
        consumer.subscribe()
        self._consumer = consumer
        self._task = asyncio.create_task(self._pump(consumer, self._client), name="redis-publisher")

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _pump(self, consumer: Consumer, client: aioredis.Redis) -> None:
        clock = self.dispatcher.clock
        async for first in consumer:
            events = [first]
            while len(events) < self.batch:
                more = consumer.queue.pop(clock.monotonic())
                if more is None:
                    break
                events.append(more)
            pipe = client.pipeline(transaction=False)
            for event in events:
                pipe.publish(channel_for(event, self.prefix), encode(event))
            try:
                await pipe.execute()
                self.published += len(events)
            except (aioredis.RedisError, OSError) as exc:
                # At-most-once bus: the batch is lost, counted and logged; the next one retries.
                self.errors += 1
                log.warning("redis_publish_failed", error=str(exc)[:200], events=len(events))


class RedisSubscriber:
    """Another process's view of the gateway: decoded canonical events from Redis."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._client = aioredis.from_url(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)

    async def subscribe(
        self, provider: str = "*", symbol: str = "*", event_type: str = "*"
    ) -> None:
        await self._pubsub.psubscribe(f"{self.prefix}:{provider}:{symbol}:{event_type}")

    async def events(self) -> AsyncIterator[AnyEvent]:
        async for message in self._pubsub.listen():
            if message.get("type") == "pmessage":
                yield decode(message["data"])

    async def close(self) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._client.aclose()
