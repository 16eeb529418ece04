"""SC-001/SC-011 load harness: real adapters -> dispatcher -> three consumers, recorded.

:class:`LoadRecorder` sits on both ends of a :class:`~tradehall.gateway.service.GatewayService`:
its :meth:`~LoadRecorder.on_event` is the service's event callback (everything the adapters
emit, in emission order) and :meth:`~LoadRecorder.attach` adds the three consumers of the
issue's load shape:

* ``everything``: one wildcard subscription to all market data;
* ``by-provider``: one subscription per provider (book and trade events);
* ``by-symbol``: one subscription per (provider, symbol): 150 for 3 venues x 50 symbols.

Each consumer records, per stream, the ids of what it received (or only counts) and the
ingest -> consumer latency of every event (``time_ns`` at hand-over minus ``ts_ingest``).
:meth:`~LoadRecorder.verify` then checks, per consumer and stream, that deliveries are in the
emitted order, that trades arrived exactly (nothing lost, nothing coalesced) and that every other
missing event is accounted for by latest-wins coalescing. Used by
``tests/gateway/test_gw_load.py`` (correctness) and ``bench/gateway/e2e_bench.py`` (figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from tradehall.gateway.dispatcher import AsyncDispatcher, Consumer
from tradehall.gateway.events import Event

__all__ = ["CONSUMERS", "LoadRecorder", "Received", "stream_of"]

CONSUMERS = ("everything", "by-provider", "by-symbol")
Stream = tuple[str, str, str]


def stream_of(event: Event) -> Stream:
    """(provider, symbol, kind); snapshots and diffs of a book are one stream (they coalesce)."""
    kind = event.event_type
    if kind in ("book_snapshot", "book_update"):
        kind = "book"
    return event.provider, event.symbol, kind


@dataclass
class Received:
    """What one consumer got."""

    count: int = 0
    ids: dict[Stream, list[str]] = field(default_factory=lambda: defaultdict(list))
    latencies_ns: list[int] = field(default_factory=list)


class LoadRecorder:
    """See the module docstring; ``keep_ids=False`` only counts (long benchmark runs)."""

    def __init__(
        self,
        providers: Sequence[str],
        symbols: Sequence[str],
        *,
        capacity: int = 100_000,
        keep_ids: bool = True,
    ) -> None:
        self.providers = tuple(providers)
        self.symbols = tuple(symbols)
        self.capacity = capacity
        self.keep_ids = keep_ids
        self.emitted: dict[Stream, list[str]] = defaultdict(list)
        self.emitted_count = 0
        self.received = {name: Received() for name in CONSUMERS}
        self.consumers: dict[str, Consumer] = {}
        self.measuring = True
        self._tasks: list[asyncio.Task[None]] = []

    def on_event(self, event: Event) -> None:
        """The service's ``on_event`` callback: every adapter event, in emission order."""
        self.emitted_count += 1
        if self.keep_ids:
            self.emitted[stream_of(event)].append(event.event_id)

    def attach(self, dispatcher: AsyncDispatcher) -> None:
        """Create and start the three consumers."""
        everything, by_provider, by_symbol = (
            dispatcher.consumer(name, capacity=self.capacity) for name in CONSUMERS
        )
        everything.subscribe()
        for provider in self.providers:
            by_provider.subscribe(
                provider=provider, event_types=("book_snapshot", "book_update", "trade")
            )
            for symbol in self.symbols:
                by_symbol.subscribe(provider=provider, symbol=symbol)
        self.consumers = {c.name: c for c in (everything, by_provider, by_symbol)}
        self._tasks = [
            asyncio.create_task(self._read(c, self.received[c.name]))
            for c in self.consumers.values()
        ]

    async def _read(self, consumer: Consumer, got: Received) -> None:
        keep = self.keep_ids
        async for event in consumer:
            got.count += 1
            if self.measuring:
                got.latencies_ns.append(time.time_ns() - event.ts_ingest)
            if keep:
                got.ids[stream_of(event)].append(event.event_id)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def pending(self) -> int:
        """Events still queued for the consumers."""
        return sum(len(c.queue) for c in self.consumers.values())

    def verify(self) -> list[str]:
        """Problems found (empty: every delivery in order, trades exact, the rest coalesced)."""
        problems: list[str] = []
        for name, consumer in self.consumers.items():
            got = self.received[name]
            missing = 0
            for stream, ids in got.ids.items():
                emitted = self.emitted.get(stream, [])
                position = {eid: i for i, eid in enumerate(emitted)}
                order = [position.get(eid, -1) for eid in ids]
                if -1 in order:
                    problems.append(f"{name} {stream}: an event that was never emitted")
                elif order != sorted(order) or len(set(order)) != len(order):
                    problems.append(f"{name} {stream}: out of order or repeated")
                if stream[2] == "trade" and ids != emitted:
                    problems.append(f"{name} {stream}: {len(emitted) - len(ids)} trades missing")
            for stream, emitted in self.emitted.items():
                if self._wants(name, stream):
                    missing += len(emitted) - len(got.ids.get(stream, []))
            stats = consumer.queue.stats
            if missing != stats.coalesced or stats.overflow:
                problems.append(
                    f"{name}: {missing} events missing, {stats.coalesced} coalesced, "
                    f"{stats.overflow} overflowed"
                )
        return problems

    def _wants(self, name: str, stream: Stream) -> bool:
        provider, symbol, kind = stream
        if provider not in self.providers or symbol not in self.symbols:
            return False
        return name != "by-provider" or kind in ("book", "trade")
