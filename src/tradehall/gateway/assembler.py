"""The venue-independent book assembler: one state machine per (venue, symbol).

States: ``SYNCING`` (first sync), ``LIVE`` (book verified, diffs flow downstream) and
``RESYNCING`` (a fault was detected; a fresh snapshot is on its way). Every (re)sync starts a new
``epoch``; a snapshot requested for an older epoch is discarded when it arrives, so a slow REST
answer can never overwrite a newer synchronisation.

Two sequencing styles cover the venues:

- ``UPDATE_ID`` (Binance): diffs carry ``[first_id, last_id]``. While not live they are buffered
  (bounded: overflow restarts the sync, never a silent drop); the snapshot is out-of-band (REST)
  with ``last_id``. Binance's official procedure: a snapshot older than the first buffered diff is
  refetched; buffered diffs with ``last_id <= snapshot id`` are dropped; then for every diff
  ``last_id <= book id`` is ignored, ``first_id > book id + 1`` is a gap, otherwise it applies.
- ``IN_BAND`` (Kraken, Coinbase): the snapshot arrives on the same stream after a (re)subscribe,
  so diffs received while not live belong to the dead subscription and are dropped. Integrity
  comes from a checksum (Kraken) or is signalled by the adapter (Coinbase envelope gaps).
- ``IN_BAND_SEQUENCED`` (Tradehall): in-band snapshot carrying its sequence ``last_id``, diffs
  carrying ``[first_id, last_id]``; while not live diffs are dropped as for ``IN_BAND``, once live
  the ``UPDATE_ID`` continuity rule applies (covered: ignored; ``first_id > id + 1``: gap).

After every applied message the book is checked: optional truncation to the subscribed depth,
optional checksum (a callable over the book), and a crossed-book test. :meth:`check` adds the
time-based rules: staleness while live, a sync that takes too long, and periodic refresh.

The assembler is pure and synchronous: callers pass ``now`` (monotonic seconds) and act on the
returned :class:`Outcome` -- a :class:`Resync` tells the adapter to fetch or resubscribe *this
symbol* for the given epoch. Nothing here does I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tradehall.gateway.book import OrderBook
from tradehall.gateway.events import Level

__all__ = [
    "Action",
    "BookAssembler",
    "BookState",
    "Diff",
    "Outcome",
    "Resync",
    "Sequencing",
    "Snapshot",
]


class BookState(StrEnum):
    SYNCING = "SYNCING"
    LIVE = "LIVE"
    RESYNCING = "RESYNCING"


class Sequencing(StrEnum):
    UPDATE_ID = "update_id"
    IN_BAND = "in_band"
    IN_BAND_SEQUENCED = "in_band_sequenced"  # in-band snapshot with an id, diffs with ids


class Action(StrEnum):
    """What a message did to the book."""

    APPLIED = "applied"  # a diff changed the live book: emit a BookUpdate
    LIVE = "live"  # a snapshot (plus buffered diffs) made the book live: emit a BookSnapshot
    BUFFERED = "buffered"  # kept until the snapshot arrives
    HELD = "held"  # snapshot kept until the first diff shows whether it is current
    IGNORED = "ignored"  # stale diff or snapshot of an old epoch; nothing to do
    RESYNC = "resync"  # fault: fetch/resubscribe per ``Outcome.resync``


@dataclass(frozen=True, slots=True)
class Diff:
    """Changed levels (absolute quantities, zero deletes) with the venue's integrity fields."""

    bids: Sequence[Level]
    asks: Sequence[Level]
    first_id: int | None = None
    last_id: int | None = None
    checksum: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A full book; ``last_id`` for UPDATE_ID venues, ``checksum`` where the venue sends one."""

    bids: Sequence[Level]
    asks: Sequence[Level]
    last_id: int | None = None
    checksum: int | None = None


@dataclass(frozen=True, slots=True)
class Resync:
    """Request to the adapter: get a fresh snapshot of this symbol for ``epoch``."""

    epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    resync: Resync | None = None


_APPLIED = Outcome(Action.APPLIED)
_BUFFERED = Outcome(Action.BUFFERED)
_HELD = Outcome(Action.HELD)
_IGNORED = Outcome(Action.IGNORED)
_LIVE = Outcome(Action.LIVE)


@dataclass
class AssemblerStats:
    """Counters the adapter exports as metrics."""

    resyncs: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    ignored: int = 0
    checksum_ok: int = 0
    checksum_failed: int = 0


class BookAssembler:
    """Book synchronisation for one (venue, symbol); see the module docstring."""

    def __init__(
        self,
        sequencing: Sequencing,
        *,
        max_buffer: int = 1000,
        stale_after: float = 10.0,
        sync_timeout: float = 5.0,
        quiet_grace: float = 1.0,
        refresh_every: float | None = None,
        depth: int | None = None,
        checksum: Callable[[OrderBook], int] | None = None,
    ) -> None:
        self.sequencing = sequencing
        self.max_buffer = max_buffer
        self.stale_after = stale_after
        self.sync_timeout = sync_timeout
        self.quiet_grace = quiet_grace
        self.refresh_every = refresh_every
        self.depth = depth
        self._checksum = checksum
        self.book = OrderBook()
        self.state = BookState.SYNCING
        self.epoch = 0
        self.update_id: int | None = None
        self.stats = AssemblerStats()
        self._buffer: deque[Diff] = deque()
        self._held: Snapshot | None = None
        self._held_at = 0.0
        self._state_since = 0.0
        self._last_message = 0.0
        self._live_since = 0.0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, now: float) -> Resync:
        """Begin the first sync (epoch 1); the adapter fetches/subscribes for the returned epoch."""
        self.epoch += 1
        self._enter(BookState.SYNCING, now)
        return Resync(self.epoch, "initial")

    def resync(self, reason: str, now: float) -> Resync:
        """Drop the book and start a new epoch (gap, checksum, crossed, stale, reconnect...)."""
        self.epoch += 1
        self.stats.resyncs[reason] = self.stats.resyncs.get(reason, 0) + 1
        self._enter(BookState.RESYNCING, now)
        return Resync(self.epoch, reason)

    def _enter(self, state: BookState, now: float) -> None:
        self.state = state
        self._state_since = now
        self._last_message = now
        self._buffer.clear()
        self._held = None
        self.book.clear()
        self.update_id = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # -- messages --------------------------------------------------------------------------------

    def on_diff(self, diff: Diff, now: float) -> Outcome:
        """Feed one diff message; returns what happened (and a resync request on faults)."""
        self._last_message = now
        if self.state is not BookState.LIVE:
            if self.sequencing is not Sequencing.UPDATE_ID:
                self.stats.ignored += 1
                return _IGNORED
            if len(self._buffer) >= self.max_buffer:
                return Outcome(Action.RESYNC, self.resync("buffer_overflow", now))
            self._buffer.append(diff)
            held = self._held
            if held is not None:  # the first diff after the snapshot: now it can be judged
                self._held = None
                return self._splice(held, now)
            return _BUFFERED
        if self.sequencing is not Sequencing.IN_BAND:
            verdict = self._continuity(diff)
            if verdict is not None:
                if verdict == "stale":
                    self.stats.ignored += 1
                    return _IGNORED
                return Outcome(Action.RESYNC, self.resync(verdict, now))
        self.book.apply(diff.bids, diff.asks)
        if diff.last_id is not None:
            self.update_id = diff.last_id
        fault = self._verify(diff.checksum)
        if fault is not None:
            return Outcome(Action.RESYNC, self.resync(fault, now))
        self.stats.applied += 1
        return _APPLIED

    def on_snapshot(self, snapshot: Snapshot, epoch: int | None, now: float) -> Outcome:
        """Feed a snapshot fetched for ``epoch`` (``None``: in-band, belongs to the current one)."""
        if epoch is not None and epoch != self.epoch:
            self.stats.ignored += 1
            return _IGNORED
        self._last_message = now
        if self.sequencing is Sequencing.UPDATE_ID:
            return self._splice(snapshot, now)
        self.book.load(snapshot.bids, snapshot.asks)
        self.update_id = snapshot.last_id
        fault = self._verify(snapshot.checksum)
        if fault is not None:
            return Outcome(Action.RESYNC, self.resync(fault, now))
        self._go_live(now)
        return _LIVE

    def _splice(self, snapshot: Snapshot, now: float) -> Outcome:
        last_id = snapshot.last_id
        if last_id is None:
            raise ValueError("UPDATE_ID snapshots need last_id")
        buffer = self._buffer
        if not buffer:
            # Official step 2 needs the first buffered event to judge the snapshot: hold it
            # until a diff arrives (or, in a quiet market, see ``check``).
            self._held, self._held_at = snapshot, now
            return _HELD
        if buffer[0].first_id is not None and last_id < buffer[0].first_id:
            # Official rule: the snapshot is older than the stream; fetch it again (same epoch,
            # buffered diffs kept).
            self.stats.resyncs["stale_snapshot"] = self.stats.resyncs.get("stale_snapshot", 0) + 1
            return Outcome(Action.RESYNC, Resync(self.epoch, "stale_snapshot"))
        while buffer and (buffer[0].last_id or 0) <= last_id:
            buffer.popleft()
        return self._accept(snapshot, now)

    def _accept(self, snapshot: Snapshot, now: float) -> Outcome:
        """Load ``snapshot``, replay what is buffered after it, verify, go live."""
        assert snapshot.last_id is not None
        buffer = self._buffer
        self.book.load(snapshot.bids, snapshot.asks)
        self.update_id = snapshot.last_id
        pending = list(buffer)
        buffer.clear()
        for diff in pending:
            verdict = self._continuity(diff)
            if verdict == "stale":
                continue
            if verdict is not None:
                return Outcome(Action.RESYNC, self.resync(verdict, now))
            self.book.apply(diff.bids, diff.asks)
            self.update_id = diff.last_id
        fault = self._verify(None)
        if fault is not None:
            return Outcome(Action.RESYNC, self.resync(fault, now))
        self._go_live(now)
        return _LIVE

    def _continuity(self, diff: Diff) -> str | None:
        """``None`` if the diff follows the book, ``"stale"`` if already covered, else ``"gap"``."""
        first, last, current = diff.first_id, diff.last_id, self.update_id
        if first is None or last is None or current is None:
            return "gap"
        if last <= current:
            return "stale"
        if first > current + 1:
            return "gap"
        return None

    def _verify(self, checksum: int | None) -> str | None:
        if self.depth is not None:
            self.book.truncate(self.depth)
        if self._checksum is not None and checksum is not None:
            if self._checksum(self.book) != checksum:
                self.stats.checksum_failed += 1
                return "checksum"
            self.stats.checksum_ok += 1
        if self.book.is_crossed():
            return "crossed"
        return None

    def _go_live(self, now: float) -> None:
        self.state = BookState.LIVE
        self._state_since = now
        self._live_since = now

    # -- time ------------------------------------------------------------------------------------

    def check(self, now: float) -> Resync | None:
        """Time rules: staleness while live, a sync that takes too long, periodic refresh.

        A snapshot held for ``quiet_grace`` with no diff at all (a quiet market) is accepted:
        nothing changed since the stream opened, and the next diff still proves continuity.
        Callers notice that promotion as a switch to ``LIVE``.
        """
        held = self._held
        if held is not None and not self._buffer and now - self._held_at >= self.quiet_grace:
            self._held = None
            outcome = self._accept(held, now)
            return outcome.resync
        if self.state is BookState.LIVE:
            if now - self._last_message > self.stale_after:
                return self.resync("stale", now)
            if self.refresh_every is not None and now - self._live_since >= self.refresh_every:
                return self.resync("refresh", now)
        elif now - self._state_since > self.sync_timeout:
            return self.resync("sync_timeout", now)
        return None
