"""The dispatcher: per-stream ordering, then fan-out to consumers (spec ``gateway.md`` §5).

:class:`Dispatcher` is the pure, synchronous core: :meth:`~Dispatcher.ingest` puts an event
through the :class:`~tradehall.gateway.reorder.Reorderer` and hands what it releases to the
:class:`~tradehall.gateway.fanout.Fanout` (routing table, per-consumer queues with coalescing,
token buckets); :meth:`~Dispatcher.tick` gives up on holes older than the lateness window. Time is
passed in, so tests drive it with a :class:`~tradehall.core.clock.VirtualClock`. ExecReports skip
the reorderer (their order is the order the router hands them over, per owner) and go to the
lossless lane of their owner.

:class:`AsyncDispatcher` is the asyncio adapter: ``publish`` is synchronous and never waits (it is
the adapters' sink, so a slow consumer cannot slow a venue or anyone else); a flusher task calls
``tick`` every ``flush_interval`` (≈ 50 ms) on the injected clock. In-process consumers are async
iterators (:meth:`AsyncDispatcher.consumer`) that pull from their own queue: a consumer that does
not pull only grows its own (bounded, coalescing) queue.

    async with dispatcher.consumer("strategy-1") as feed:
        feed.subscribe(symbol="BTC-USD", event_types=["ticker", "trade"])
        async for event in feed:
            ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from types import TracebackType

from tradehall.core.clock import Clock, SystemClock
from tradehall.core.tasks import cancel_and_wait
from tradehall.gateway.events import Event, ExecReport
from tradehall.gateway.fanout import WILDCARD, ConsumerQueue, DeadLetters, Fanout
from tradehall.gateway.reorder import Reorderer

__all__ = ["AsyncDispatcher", "Consumer", "Dispatcher"]


class Dispatcher:
    """Reorderer + fan-out; pure and synchronous."""

    def __init__(
        self,
        *,
        lateness: float = 0.150,
        max_buffer: int = 200,
        dead_letter_limit: int = 10_000,
        reorderer: Reorderer | None = None,
    ) -> None:
        self.reorderer = reorderer or Reorderer(lateness=lateness, max_buffer=max_buffer)
        self.fanout = Fanout(DeadLetters(dead_letter_limit))
        self.ingested = 0

    @property
    def dead_letters(self) -> DeadLetters:
        return self.fanout.dead_letters

    def ingest(self, event: Event, now: float, owner: str | None = None) -> set[str]:
        """Accept one event; returns the consumers that got something queued."""
        self.ingested += 1
        if isinstance(event, ExecReport):
            return set(self.fanout.publish(event, owner))
        touched: set[str] = set()
        for released in self.reorderer.push(event, now):
            touched.update(self.fanout.publish(released))
        return touched

    def tick(self, now: float) -> set[str]:
        """Release streams whose holes outlived the lateness window."""
        touched: set[str] = set()
        for released in self.reorderer.flush(now):
            touched.update(self.fanout.publish(released))
        return touched


class Consumer:
    """An in-process consumer: an async iterator over its queue (see the module docstring)."""

    def __init__(self, owner: AsyncDispatcher, name: str, queue: ConsumerQueue) -> None:
        self._owner = owner
        self.name = name
        self.queue = queue
        self._wake = asyncio.Event()
        self._closed = False

    def subscribe(
        self, provider: str = WILDCARD, symbol: str = WILDCARD, event_types: Collection[str] = ()
    ) -> None:
        self._owner.core.fanout.subscribe(self.name, provider, symbol, event_types)

    def unsubscribe(self, provider: str = WILDCARD, symbol: str = WILDCARD) -> None:
        self._owner.core.fanout.unsubscribe(self.name, provider, symbol)

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._owner.remove(self.name)
            self._wake.set()

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Event:
        clock = self._owner.clock
        while not self._closed:
            event = self.queue.pop(clock.monotonic())
            if event is not None:
                observe = self._owner.on_deliver
                if observe is not None:
                    observe(self.name, event)
                return event
            self._wake.clear()
            if len(self.queue) and self.queue.bucket.rate:
                # Out of tokens: wait for one, or for an ExecReport (never throttled).
                sleeper = asyncio.ensure_future(clock.sleep(self.queue.bucket.wait()))
                waker = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    waker.cancel()
            else:
                await self._wake.wait()
        raise StopAsyncIteration

    async def get(self) -> Event:
        """The next event (wrap in ``asyncio.timeout`` to bound the wait)."""
        return await self.__anext__()

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncDispatcher:
    """The dispatcher on an event loop: non-blocking publish, periodic flush, async consumers."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        flush_interval: float = 0.050,
        lateness: float = 0.150,
        max_buffer: int = 200,
        dead_letter_limit: int = 10_000,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.flush_interval = flush_interval
        self.core = Dispatcher(
            lateness=lateness, max_buffer=max_buffer, dead_letter_limit=dead_letter_limit
        )
        self.consumers: dict[str, Consumer] = {}
        # called with (consumer, event) as each event is handed over (latency metrics)
        self.on_deliver: Callable[[str, Event], None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flusher())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for consumer in list(self.consumers.values()):
            consumer.close()

    def consumer(
        self,
        name: str,
        *,
        capacity: int = 1000,
        rate: float | None = None,
        burst: float | None = None,
    ) -> Consumer:
        queue = self.core.fanout.add_consumer(
            name, capacity=capacity, rate=rate, burst=burst, now=self.clock.monotonic()
        )
        consumer = Consumer(self, name, queue)
        self.consumers[name] = consumer
        return consumer

    def remove(self, name: str) -> None:
        self.core.fanout.remove_consumer(name)
        self.consumers.pop(name, None)

    def publish(self, event: Event, owner: str | None = None) -> None:
        """The sink for adapters (and the order router, with ``owner``); never waits."""
        self._wake(self.core.ingest(event, self.clock.monotonic(), owner))

    def _wake(self, names: set[str]) -> None:
        for name in names:
            consumer = self.consumers.get(name)
            if consumer is not None:
                consumer.wake()

    async def _flusher(self) -> None:
        while True:
            await self.clock.sleep(self.flush_interval)
            self._wake(self.core.tick(self.clock.monotonic()))
