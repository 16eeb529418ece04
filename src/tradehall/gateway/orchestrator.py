"""The orchestrator: merged subscriptions across providers (spec ``gateway.md`` §4).

A merged subscription is a symbol and a set of providers. The orchestrator keeps each provider's
book from its canonical book events (``BookSnapshot`` loads it, ``BookUpdate`` applies to it, a
``BookStatus`` other than ``LIVE`` invalidates it until the next snapshot) and groups those
*fragments* into **windows**: a window opens at the first fragment after the previous one closed
and closes after ``max_events`` fragments (1000) or ``max_age`` seconds (10 s, checked on every
fragment and by :meth:`Orchestrator.tick`).

At the close, a window in which every provider contributed at least one fragment and every
provider's book is valid emits a :class:`MergedBookSnapshot` (consolidated levels: total quantity
per price with the per-venue breakdown) and an :class:`NBBO`, both with the window's
``merge_id`` (``<symbol>:<n>``) and the ``merged`` provider. A **partial** window (a provider
missing or resyncing) emits nothing and is counted (``suppressed_partial``). A fragment whose
``ts_ingest`` predates the close of the last window (it was produced for a window that is
already closed) is **late**: counted and not counted into the next window -- its levels still
update that provider's book, which must stay exact.

Pure and synchronous: callers pass ``now`` (monotonic seconds) and publish what is returned.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import structlog

from tradehall.gateway.book import OrderBook
from tradehall.gateway.events import (
    NBBO,
    BookSnapshot,
    BookStatus,
    BookUpdate,
    Event,
    EventIds,
    Level,
    MergedBookSnapshot,
    MergedLevel,
)

__all__ = ["MERGED", "MergeStats", "MergedSubscription", "Orchestrator"]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.orchestrator")

MERGED = "merged"


@dataclass
class MergeStats:
    emitted: int = 0
    suppressed_partial: int = 0
    late: int = 0
    closed_by_count: int = 0
    closed_by_age: int = 0
    max_overrun: float = 0.0  # worst lateness of an age close past ``max_age`` (seconds)


@dataclass
class MergedSubscription:
    """One symbol merged across ``providers``, with its current window."""

    symbol: str
    providers: tuple[str, ...]
    max_events: int
    max_age: float
    books: dict[str, OrderBook] = field(default_factory=dict)
    valid: set[str] = field(default_factory=set)
    window: int = 0
    opened: float | None = None
    count: int = 0
    seen: set[str] = field(default_factory=set)
    closed_ns: int = 0  # ts_ingest boundary of the last close
    stats: MergeStats = field(default_factory=MergeStats)


def _consolidate(
    books: dict[str, OrderBook], providers: tuple[str, ...], bids: bool
) -> tuple[MergedLevel, ...]:
    levels: dict[Decimal, list[tuple[str, Decimal]]] = {}
    for provider in providers:
        book = books[provider]
        side: tuple[Level, ...] = book.top_bids() if bids else book.top_asks()
        for price, qty in side:
            levels.setdefault(price, []).append((provider, qty))
    ordered = sorted(levels, reverse=bids)
    return tuple(
        (price, sum((q for _, q in levels[price]), Decimal(0)), tuple(levels[price]))
        for price in ordered
    )


class Orchestrator:
    """Merged subscriptions and their windows; see the module docstring."""

    def __init__(
        self,
        *,
        max_events: int = 1000,
        max_age: float = 10.0,
        ids: EventIds | None = None,
    ) -> None:
        self.max_events = max_events
        self.max_age = max_age
        self.ids = ids or EventIds()
        self.subscriptions: dict[str, MergedSubscription] = {}

    def merge(self, symbol: str, providers: Collection[str]) -> MergedSubscription:
        """Add (or return) the merged subscription of ``symbol`` across ``providers``."""
        existing = self.subscriptions.get(symbol)
        wanted = tuple(sorted(set(providers)))
        if len(wanted) < 2:
            raise ValueError("a merged subscription needs at least two providers")
        if existing is not None:
            if existing.providers != wanted:
                raise ValueError(f"{symbol} is already merged across {existing.providers}")
            return existing
        sub = MergedSubscription(
            symbol,
            wanted,
            self.max_events,
            self.max_age,
            books={p: OrderBook() for p in wanted},
        )
        self.subscriptions[symbol] = sub
        return sub

    def seed(
        self, symbol: str, provider: str, bids: Sequence[Level], asks: Sequence[Level]
    ) -> None:
        """Load a provider's current (verified) book, e.g. when a merge starts on live books."""
        sub = self.subscriptions[symbol]
        sub.books[provider].load(bids, asks)
        sub.valid.add(provider)

    def on_event(self, event: Event, now: float) -> list[Event]:
        """Feed one canonical event; returns merged events of a window it closed (if any)."""
        sub = self.subscriptions.get(event.symbol)
        if sub is None or event.provider not in sub.books:
            return []
        provider = event.provider
        book = sub.books[provider]
        if isinstance(event, BookSnapshot):
            book.load(event.bids, event.asks)
            sub.valid.add(provider)
        elif isinstance(event, BookUpdate):
            book.apply(event.bids, event.asks)
        elif isinstance(event, BookStatus):
            if event.state != "LIVE":
                sub.valid.discard(provider)
                book.clear()
            return []
        else:
            return []
        if event.ts_ingest < sub.closed_ns:
            sub.stats.late += 1
            return []
        out = self._expire(sub, now, event.ts_ingest)
        if sub.opened is None:
            sub.opened = now
        sub.count += 1
        sub.seen.add(provider)
        if sub.count >= sub.max_events:
            sub.stats.closed_by_count += 1
            out += self._close(sub, now, event.ts_ingest + 1, "count")
        return out

    def tick(self, now: float, now_ns: int) -> list[Event]:
        """Close windows older than ``max_age`` (``now_ns``: wall time, the late boundary)."""
        out: list[Event] = []
        for sub in self.subscriptions.values():
            out += self._expire(sub, now, now_ns)
        return out

    def _expire(self, sub: MergedSubscription, now: float, boundary_ns: int) -> list[Event]:
        if sub.opened is not None and now - sub.opened >= sub.max_age:
            sub.stats.closed_by_age += 1
            overrun = now - sub.opened - sub.max_age
            sub.stats.max_overrun = max(sub.stats.max_overrun, overrun)
            return self._close(sub, now, boundary_ns, "age")
        return []

    def _close(
        self, sub: MergedSubscription, now: float, boundary_ns: int, closed_by: str
    ) -> list[Event]:
        sub.window += 1
        complete = sub.seen == set(sub.providers) and sub.valid == set(sub.providers)
        count = sub.count
        merge_id = f"{sub.symbol}:{sub.window}"
        log.info(
            "merge_window_closed",
            decision_id=merge_id,
            trace_id=merge_id,
            symbol=sub.symbol,
            closed_by=closed_by,
            fragments=count,
            outcome="emitted" if complete else "suppressed_partial",
            missing=sorted(set(sub.providers) - sub.seen),
            invalid=sorted(set(sub.providers) - sub.valid),
        )
        sub.opened, sub.count, sub.closed_ns = None, 0, boundary_ns
        sub.seen = set()
        if not complete:
            sub.stats.suppressed_partial += 1
            return []
        sub.stats.emitted += 1
        bids = _consolidate(sub.books, sub.providers, bids=True)
        asks = _consolidate(sub.books, sub.providers, bids=False)
        snapshot = MergedBookSnapshot(
            event_id=self.ids.new_id(),
            provider=MERGED,
            symbol=sub.symbol,
            seq_provider=sub.window,
            ts_ingest=boundary_ns,
            merge_id=merge_id,
            trace_id=merge_id,
            providers=sub.providers,
            bids=bids,
            asks=asks,
            window_events=count,
        )
        best_bid, best_ask = (bids[0] if bids else None), (asks[0] if asks else None)
        nbbo = NBBO(
            event_id=self.ids.new_id(),
            provider=MERGED,
            symbol=sub.symbol,
            seq_provider=sub.window,
            ts_ingest=boundary_ns,
            merge_id=merge_id,
            trace_id=merge_id,
            providers=sub.providers,
            bid=best_bid[0] if best_bid else None,
            bid_qty=best_bid[1] if best_bid else Decimal(0),
            bid_providers=tuple(p for p, _ in best_bid[2]) if best_bid else (),
            ask=best_ask[0] if best_ask else None,
            ask_qty=best_ask[1] if best_ask else Decimal(0),
            ask_providers=tuple(p for p, _ in best_ask[2]) if best_ask else (),
        )
        return [snapshot, nbbo]
