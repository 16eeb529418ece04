"""Fan-out: routing table, per-consumer bounded queues with coalescing, token buckets, fair share.

Pure and synchronous (callers pass ``now``, monotonic seconds); the asyncio side lives in
:mod:`~tradehall.gateway.dispatcher`.

**Routing.** A consumer subscribes to ``(provider | "*", symbol | "*", event types)``. The table
maps ``(provider, symbol)`` keys, wildcards included, to subscriptions, so a lookup is four dict
probes whatever the number of consumers. An :class:`ExecReport` is never routed by subscription:
it goes to the consumer that owns the order (``owner``), and only to it.

**Per-consumer queue** (:class:`ConsumerQueue`), three lanes:

* *lossless*: ExecReports, FIFO, never dropped, never coalesced, never throttled, delivered first;
* *FIFO entries*: trades (and any other non-coalescible type) go in as they come; the queue is
  bounded by ``capacity`` entries: a trade that finds it full is **not** coalesced but dropped,
  counted (``overflow``) and put in the bounded, inspectable :class:`DeadLetters`;
* *coalescing slots*: Ticker, KlineSummary, BookStatus, merged events and book events keep at most
  one pending entry per stream, placed in the FIFO where its first pending event arrived; later
  events of that stream update the slot in place (latest wins). Book events merge rather than
  replace, so a lagging consumer's book stays correct: diff + diff = one diff (absolute levels,
  later wins, ``seq_first`` of the first), snapshot + diff = a snapshot with the diff applied,
  anything + snapshot = the snapshot. Events of another epoch cannot merge: the newer one takes a
  fresh slot and the stale pending one is discarded (adapters always send a new epoch's snapshot
  first).

A consumer that keeps up never sees coalescing: its slot is taken before the next event arrives.

**Token bucket** per consumer (``rate`` events/s, ``burst``): market data waits for tokens (and
coalesces meanwhile); the time spent without tokens is accumulated as ``throttled``.

**Fair share** (:meth:`Fanout.deliver`): a dispatcher round with a budget of deliveries serves the
consumers round-robin, one event each per turn, skipping those with nothing pending, no tokens or
no credit (the room their consumer has said it has). Every consumer that can take events gets an
equal share of a scarce budget, and one that cannot take any costs the others nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from tradehall.gateway.events import (
    NBBO,
    BookSnapshot,
    BookStatus,
    BookUpdate,
    Event,
    ExecReport,
    KlineSummary,
    Level,
    MergedBookSnapshot,
    Ticker,
)
from tradehall.gateway.reorder import StreamKey, stream_key

__all__ = [
    "ConsumerQueue",
    "ConsumerStats",
    "DeadLetter",
    "DeadLetters",
    "Fanout",
    "Subscription",
    "TokenBucket",
    "merge_book",
]

WILDCARD = "*"
COALESCED = (Ticker, KlineSummary, BookStatus, BookSnapshot, BookUpdate, MergedBookSnapshot, NBBO)


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``rate`` ``None`` means unlimited."""

    __slots__ = ("_empty_since", "_tokens", "_updated", "burst", "rate", "throttled")

    def __init__(self, rate: float | None, burst: float | None = None, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else (rate or 0.0)
        self._tokens = self.burst
        self._updated = now
        self._empty_since: float | None = None
        self.throttled = 0.0  # seconds spent wanting a token and having none

    def take(self, now: float) -> bool:
        if self.rate is None:
            return True
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = now
        if self._tokens >= 1.0 - 1e-9:  # float time: 0.1 s x 10/s must make a whole token
            self._tokens = max(0.0, self._tokens - 1.0)
            if self._empty_since is not None:
                self.throttled += now - self._empty_since
                self._empty_since = None
            return True
        if self._empty_since is None:
            self._empty_since = now
        return False

    def wait(self) -> float:
        """Seconds until the next token (as of the last :meth:`take`)."""
        if self.rate is None:
            return 0.0
        return max(0.0, (1.0 - self._tokens) / self.rate)


@dataclass(frozen=True)
class DeadLetter:
    consumer: str
    reason: str
    event: Event


class DeadLetters:
    """Bounded, inspectable store of undeliverable events (oldest evicted first, counted)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._items: deque[DeadLetter] = deque(maxlen=limit)
        self.total = 0

    def add(self, consumer: str, reason: str, event: Event) -> None:
        self.total += 1
        self._items.append(DeadLetter(consumer, reason, event))

    def __len__(self) -> int:
        return len(self._items)

    @property
    def limit(self) -> int:
        """How many dead letters are kept (older ones are evicted, still counted in ``total``)."""
        return self._items.maxlen or 0

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(list(self._items))


def _merge_levels(old: Iterable[Level], new: Iterable[Level]) -> dict[Decimal, Decimal]:
    merged = dict(old)
    merged.update(new)
    return merged


def merge_book(pending: Event, new: Event) -> Event | None:
    """One book event equivalent to ``pending`` then ``new``, or ``None`` if they cannot merge."""
    if isinstance(new, BookSnapshot) or not isinstance(new, BookUpdate):
        return new
    if isinstance(pending, BookUpdate) and pending.epoch == new.epoch:
        bids = _merge_levels(pending.bids, new.bids)
        asks = _merge_levels(pending.asks, new.asks)
        return msgspec.structs.replace(
            new,
            bids=tuple(bids.items()),
            asks=tuple(asks.items()),
            seq_first=pending.seq_first if pending.seq_first is not None else new.seq_first,
        )
    if isinstance(pending, BookSnapshot) and pending.epoch == new.epoch:
        bids = {p: q for p, q in _merge_levels(pending.bids, new.bids).items() if q}
        asks = {p: q for p, q in _merge_levels(pending.asks, new.asks).items() if q}
        return msgspec.structs.replace(
            pending,
            bids=tuple(sorted(bids.items(), reverse=True)),
            asks=tuple(sorted(asks.items())),
            depth=max(len(bids), len(asks)),
            seq_provider=new.seq_provider,
            ts_provider=new.ts_provider,
            ts_ingest=new.ts_ingest,
            trace_id=new.trace_id,
        )
    return None


class _Slot:
    __slots__ = ("event", "key", "live")

    def __init__(self, key: StreamKey, event: Event) -> None:
        self.key = key
        self.event = event
        self.live = True


@dataclass
class ConsumerStats:
    enqueued: int = 0
    delivered: int = 0
    coalesced: int = 0
    overflow: int = 0
    exec_delivered: int = 0


class ConsumerQueue:
    """The three lanes of one consumer; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        capacity: int = 1000,
        bucket: TokenBucket | None = None,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.bucket = bucket or TokenBucket(None)
        self.dead_letters = dead_letters if dead_letters is not None else DeadLetters()
        self.stats = ConsumerStats()
        self._exec: deque[ExecReport] = deque()
        self._fifo: deque[Event | _Slot] = deque()
        self._slots: dict[StreamKey, _Slot] = {}
        self._plain = 0  # non-slot entries in the FIFO

    def __len__(self) -> int:
        return len(self._exec) + self._plain + len(self._slots)

    @property
    def has_exec(self) -> bool:
        return bool(self._exec)

    def push(self, event: Event) -> None:
        self.stats.enqueued += 1
        if isinstance(event, ExecReport):
            self._exec.append(event)
            return
        if isinstance(event, COALESCED):
            key = stream_key(event)
            slot = self._slots.get(key)
            if slot is not None:
                merged = merge_book(slot.event, event) if key[2] == "book" else event
                if merged is not None:
                    slot.event = merged
                    self.stats.coalesced += 1
                    return
                # a diff of a newer epoch cannot join the pending book: it needs its own place
                slot.live = False
                del self._slots[key]
                self.stats.coalesced += 1  # the old epoch's pending book is superseded
            slot = _Slot(key, event)
            self._slots[key] = slot
            self._fifo.append(slot)
            return
        if self._plain >= self.capacity:
            self.stats.overflow += 1
            self.dead_letters.add(self.name, "overflow", event)
            return
        self._plain += 1
        self._fifo.append(event)

    def pop(self, now: float) -> Event | None:
        """The next event for this consumer, or ``None`` (empty, or out of tokens)."""
        if self._exec:
            self.stats.delivered += 1
            self.stats.exec_delivered += 1
            return self._exec.popleft()
        fifo = self._fifo
        while fifo and isinstance(fifo[0], _Slot) and not fifo[0].live:
            fifo.popleft()
        if not fifo or not self.bucket.take(now):
            return None
        entry = fifo.popleft()
        self.stats.delivered += 1
        if isinstance(entry, _Slot):
            del self._slots[entry.key]
            return entry.event
        self._plain -= 1
        return entry


@dataclass(frozen=True)
class Subscription:
    consumer: str
    provider: str = WILDCARD
    symbol: str = WILDCARD
    event_types: frozenset[str] = field(default_factory=frozenset)  # empty: all market data

    def wants(self, event: Event) -> bool:
        return not self.event_types or event.event_type in self.event_types


class Fanout:
    """Routing table plus consumer queues and the fair delivery round."""

    def __init__(self, dead_letters: DeadLetters | None = None) -> None:
        self.dead_letters = dead_letters if dead_letters is not None else DeadLetters()
        self.queues: dict[str, ConsumerQueue] = {}
        self._routes: dict[tuple[str, str], list[Subscription]] = {}
        self._rr: deque[str] = deque()
        self.unroutable_exec = 0

    # -- consumers and routes --------------------------------------------------------------------

    def add_consumer(
        self,
        name: str,
        *,
        capacity: int = 1000,
        rate: float | None = None,
        burst: float | None = None,
        now: float = 0.0,
    ) -> ConsumerQueue:
        if name in self.queues:
            raise ValueError(f"consumer {name!r} exists")
        queue = ConsumerQueue(
            name,
            capacity=capacity,
            bucket=TokenBucket(rate, burst, now),
            dead_letters=self.dead_letters,
        )
        self.queues[name] = queue
        self._rr.append(name)
        return queue

    def remove_consumer(self, name: str) -> None:
        self.queues.pop(name, None)
        if name in self._rr:
            self._rr.remove(name)
        for key in list(self._routes):
            self._routes[key] = [s for s in self._routes[key] if s.consumer != name]
            if not self._routes[key]:
                del self._routes[key]

    def subscribe(
        self,
        consumer: str,
        provider: str = WILDCARD,
        symbol: str = WILDCARD,
        event_types: Collection[str] = (),
    ) -> Subscription:
        if consumer not in self.queues:
            raise KeyError(consumer)
        sub = Subscription(consumer, provider, symbol, frozenset(event_types))
        subs = self._routes.setdefault((provider, symbol), [])
        if sub not in subs:
            subs.append(sub)
        return sub

    def unsubscribe(self, consumer: str, provider: str = WILDCARD, symbol: str = WILDCARD) -> int:
        subs = self._routes.get((provider, symbol), [])
        kept = [s for s in subs if s.consumer != consumer]
        removed = len(subs) - len(kept)
        if kept:
            self._routes[(provider, symbol)] = kept
        else:
            self._routes.pop((provider, symbol), None)
        return removed

    def route(self, event: Event) -> set[str]:
        """Names of the consumers subscribed to ``event`` (market data only)."""
        found: set[str] = set()
        routes = self._routes
        p, s = event.provider, event.symbol
        for key in ((p, s), (p, WILDCARD), (WILDCARD, s), (WILDCARD, WILDCARD)):
            subs = routes.get(key)
            if subs:
                for sub in subs:
                    if sub.wants(event):
                        found.add(sub.consumer)
        return found

    # -- events ----------------------------------------------------------------------------------

    def publish(self, event: Event, owner: str | None = None) -> Collection[str]:
        """Queue ``event`` for its consumers; returns their names. ExecReports go to ``owner``."""
        if isinstance(event, ExecReport):
            queue = self.queues.get(owner) if owner is not None else None
            if queue is None:
                self.unroutable_exec += 1
                self.dead_letters.add(owner or "", "no_owner", event)
                return ()
            queue.push(event)
            return (queue.name,)
        names = self.route(event)
        for name in names:
            self.queues[name].push(event)
        return names

    def deliver(
        self, budget: int, now: float, credit: dict[str, int] | None = None
    ) -> list[tuple[str, Event]]:
        """One fair round: up to ``budget`` deliveries, one per consumer per turn.

        ``credit`` (consumer -> room) caps what each consumer is handed (``None``: no cap) and is
        decremented in place. ExecReports count against the budget like anything else but are
        never held back by tokens.
        """
        out: list[tuple[str, Event]] = []
        active = [n for n in self._rr if len(self.queues[n])]
        while active and len(out) < budget:
            still: list[str] = []
            for name in active:
                if len(out) >= budget:
                    break
                if credit is not None and credit.get(name, 0) <= 0:
                    continue
                event = self.queues[name].pop(now)
                if event is None:
                    continue
                out.append((name, event))
                if credit is not None:
                    credit[name] -= 1
                still.append(name)
            active = still
        if self._rr:
            self._rr.rotate(-1)  # the next round starts with the next consumer
        return out
