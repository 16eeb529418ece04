"""Per-stream ordering of canonical events by provider sequence (spec ``gateway.md`` §5).

A *stream* is ``(provider, symbol, kind)``; ``kind`` is the event type, except that
``book_snapshot`` and ``book_update`` share the kind ``book`` (a snapshot names the sequence the
following diffs continue from). Pure and synchronous: callers pass ``now`` (monotonic seconds)
and get back the events to release, in order.

Two ways to order a stream, chosen per event by :class:`Reorderer.dense`:

* **dense** -- the provider's sequence has no holes on this stream, so the next event is known:
  a ``BookUpdate`` with ``seq_first`` follows when ``seq_first <= last + 1`` (Binance ``U``/``u``,
  Tradehall ``first_sequence``), a trade when ``seq == last + 1`` (venues whose trade ids are
  consecutive per symbol). An event that is next is released at once (no added latency); one
  that skips ahead is **buffered** until the hole fills, or until the oldest buffered event has
  waited ``lateness`` (≈ 150 ms; checked by :meth:`Reorderer.flush`, run every ≈ 50 ms), or the
  stream holds ``max_buffer`` (200) events -- then the buffer is released in sequence order and the
  hole is counted as a gap. The first events of a dense stream wait out the lateness window too
  (where the stream starts is unknown), unless a ``BookSnapshot`` names it; that costs one window
  per stream, once.
* **monotonic** -- anything else (Ticker ``u``, Coinbase's per-connection sequence, venues with no
  sequence at all, where ``ts_ingest`` stands in): released at once if not older than the last
  release; nothing can be known about holes, so nothing waits.

Either way an event older than what the stream already released is a **straggler**: dropped and
counted, never delivered out of order. A ``BookSnapshot`` restarts its stream at its sequence and
epoch: buffered diffs of an older epoch are dropped (``superseded``), as are diffs of an older
epoch arriving later.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Collection
from dataclasses import dataclass

from tradehall.gateway.events import BookSnapshot, BookUpdate, Event, Trade

__all__ = ["DENSE_TRADE_PROVIDERS", "ReorderStats", "Reorderer", "StreamKey", "stream_key"]

StreamKey = tuple[str, str, str]
DENSE_TRADE_PROVIDERS = frozenset({"binance", "kraken", "tradehall"})


def stream_key(event: Event) -> StreamKey:
    """``(provider, symbol, kind)``; book snapshots and updates share the kind ``book``."""
    kind = event.event_type
    if kind in ("book_snapshot", "book_update"):
        kind = "book"
    return (event.provider, event.symbol, kind)


@dataclass
class ReorderStats:
    released: int = 0
    reordered: int = 0  # released after waiting in a buffer
    late: int = 0  # stragglers dropped
    superseded: int = 0  # diffs of an older book epoch dropped
    gaps: int = 0  # holes given up on (lateness or overflow)
    overflows: int = 0


class _Stream:
    __slots__ = ("epoch", "heap", "last")

    def __init__(self) -> None:
        self.last: int | None = None
        self.epoch: int | None = None
        # (sort key, tie-break, arrival, event)
        self.heap: list[tuple[int, int, float, Event]] = []


def _first(event: Event, seq: int) -> int:
    if isinstance(event, BookUpdate) and event.seq_first is not None:
        return event.seq_first
    return seq


class Reorderer:
    """Orders events per stream; see the module docstring."""

    def __init__(
        self,
        *,
        lateness: float = 0.150,
        max_buffer: int = 200,
        dense_trade_providers: Collection[str] = DENSE_TRADE_PROVIDERS,
        dense: Callable[[Event], bool] | None = None,
    ) -> None:
        self.lateness = lateness
        self.max_buffer = max_buffer
        self.dense_trade_providers = frozenset(dense_trade_providers)
        self.dense = dense or self._default_dense
        self.stats = ReorderStats()
        self._streams: dict[StreamKey, _Stream] = {}
        self._waiting: dict[StreamKey, float] = {}  # stream -> arrival of its oldest buffered
        self._tie = itertools.count()

    def _default_dense(self, event: Event) -> bool:
        if event.seq_provider is None:
            return False
        if isinstance(event, BookUpdate):
            return event.seq_first is not None
        return isinstance(event, Trade) and event.provider in self.dense_trade_providers

    @property
    def buffered(self) -> int:
        return sum(len(self._streams[key].heap) for key in self._waiting)

    def push(self, event: Event, now: float) -> list[Event]:
        """Accept one event; returns what can be released now, in order (often just it)."""
        key = stream_key(event)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
        out: list[Event] = []
        if isinstance(event, BookSnapshot):
            self.stats.superseded += len(stream.heap)
            stream.heap.clear()
            self._waiting.pop(key, None)
            stream.epoch = event.epoch
            stream.last = event.seq_provider
            self._release(event, out)
            return out
        if (
            isinstance(event, BookUpdate)
            and stream.epoch is not None
            and event.epoch < stream.epoch
        ):
            self.stats.superseded += 1
            return out
        seq = event.seq_provider
        if not self.dense(event):
            order = seq if seq is not None else event.ts_ingest
            if stream.last is not None and order < stream.last:
                self.stats.late += 1
                return out
            stream.last = order
            self._release(event, out)
            return out
        assert seq is not None
        last = stream.last
        if last is not None and seq <= last:
            self.stats.late += 1
            return out
        if last is not None and _first(event, seq) <= last + 1:
            stream.last = seq
            self._release(event, out)
            if stream.heap:
                self._drain(key, stream, out, None)
            return out
        heapq.heappush(stream.heap, (seq, next(self._tie), now, event))
        self._waiting.setdefault(key, now)
        if len(stream.heap) >= self.max_buffer:
            self.stats.overflows += 1
            self._drain(key, stream, out, max(seq for seq, _, _, _ in stream.heap))
        return out

    def flush(self, now: float) -> list[Event]:
        """Give up on holes older than ``lateness``: release those streams' buffers in order."""
        out: list[Event] = []
        expired = [key for key, since in self._waiting.items() if now - since >= self.lateness]
        for key in expired:
            stream = self._streams[key]
            # Everything missing below an event that has waited the whole window has had its
            # chance (it was sent before that event, so it would have arrived by now).
            cutoff = max(seq for seq, _, at, _ in stream.heap if now - at >= self.lateness)
            self._drain(key, stream, out, cutoff)
        return out

    def _drain(self, key: StreamKey, stream: _Stream, out: list[Event], cutoff: int | None) -> None:
        """Release buffered events in order: contiguous ones, and any hole up to ``cutoff``."""
        heap = stream.heap
        while heap:
            seq, _, _, event = heap[0]
            last = stream.last
            if last is not None and seq <= last:
                heapq.heappop(heap)
                self.stats.late += 1
                continue
            if last is None or _first(event, seq) > last + 1:
                if cutoff is None or seq > cutoff:
                    break
                if last is not None:
                    self.stats.gaps += 1
            heapq.heappop(heap)
            stream.last = seq
            self.stats.reordered += 1
            self._release(event, out)
        if heap:
            self._waiting[key] = min(arrival for _, _, arrival, _ in heap)
        else:
            self._waiting.pop(key, None)

    def _release(self, event: Event, out: list[Event]) -> None:
        self.stats.released += 1
        out.append(event)
