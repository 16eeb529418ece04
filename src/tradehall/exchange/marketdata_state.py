"""Market-data messages and state: the wire structs, server frames and their size cap
(:data:`MAX_FRAME_BYTES`, :func:`pack_frames`), what capture records per command
(:data:`Update`), the per-symbol counters and the published books.

Split from :mod:`~tradehall.exchange.marketdata` (the hub: capture, release, flush and
subscriptions), which re-exports the message types.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from decimal import Decimal
from heapq import heapify, heappop, heappush
from typing import Literal, NamedTuple

import msgspec

from tradehall.core.timefmt import format_ns
from tradehall.exchange.book import OrderBook
from tradehall.exchange.events import TradeExecuted
from tradehall.exchange.schemas import LevelOut, money

__all__ = [
    "MAX_FRAME_BYTES",
    "NO_TRADES",
    "RECENT_TRADES",
    "BookSnapshotMsg",
    "BookUpdateMsg",
    "Channel",
    "Frames",
    "Item",
    "LevelChange",
    "PublishedBook",
    "RawTrade",
    "SymbolState",
    "TickerMsg",
    "TradeMsg",
    "TradesSnapshotMsg",
    "Update",
    "book_msg",
    "level_changes",
    "pack_frames",
    "raw_trade",
    "trade_msg",
    "wire_size",
]

Channel = Literal["book", "trades", "ticker"]
RECENT_TRADES = 50
MAX_FRAME_BYTES = 256 * 1024
"""The largest server frame (its UTF-8 payload), unless one message alone is larger.

Clients commonly refuse bigger frames: the ``websockets`` library closes with 1009 above 1 MiB by
default, and browsers and other clients have similar limits. A quarter of that leaves room for
clients with smaller limits and keeps each socket write short; a busy flush (thousands of trades)
simply goes out as several frames."""


# ---------------------------------------------------------------------------------- messages
class BookUpdateMsg(msgspec.Struct, tag="book", tag_field="type"):
    """Changed levels with absolute figures (``total_quantity == 0`` deletes the level).

    ``first_sequence == sequence`` for a single update; a coalesced update (slow client) covers
    ``first_sequence..sequence``.
    """

    symbol: str
    first_sequence: int
    sequence: int
    bids: list[LevelOut]
    asks: list[LevelOut]


class BookSnapshotMsg(msgspec.Struct, tag="book_snapshot", tag_field="type"):
    symbol: str
    sequence: int
    bids: list[LevelOut]
    asks: list[LevelOut]


class TradeMsg(msgspec.Struct, tag="trade", tag_field="type"):
    symbol: str
    sequence: int
    trade_id: str
    price: Decimal
    quantity: int
    taker_side: str
    executed_at: str


class TradesSnapshotMsg(msgspec.Struct, tag="trades_snapshot", tag_field="type"):
    """The most recent trades (oldest first) at subscribe time; ``sequence`` is the last one's."""

    symbol: str
    sequence: int
    trades: list[TradeMsg]


class TickerMsg(msgspec.Struct, tag="ticker", tag_field="type"):
    symbol: str
    book_sequence: int
    best_bid: Decimal | None
    best_bid_quantity: int | None
    best_ask: Decimal | None
    best_ask_quantity: int | None
    last_price: Decimal | None
    last_quantity: int | None


# ---------------------------------------------------------------------------------- frames
def wire_size(text: str) -> int:
    """Bytes of ``text`` in a frame (UTF-8). O(1) for ASCII text, which every message is in
    practice (CPython flags ASCII strings), so sizing costs nothing on the fan-out path."""
    return len(text) if text.isascii() else len(text.encode())


def pack_frames(texts: Sequence[str], cap: int = MAX_FRAME_BYTES) -> list[str]:
    """Encoded messages (or runs of them) as frames: JSON arrays of at most ``cap`` bytes each,
    in order, packed greedily. Nothing is split or dropped: an element larger than the cap on
    its own goes alone in its own (oversized) frame."""
    if sum(map(len, texts)) + len(texts) + 1 <= cap:  # characters <= bytes: may fit whole
        frame = "[" + ",".join(texts) + "]"
        if wire_size(frame) <= cap:
            return [frame]
    frames: list[str] = []
    start = 0
    size = 0  # bytes of the frame being packed: brackets, texts[start:i] and their commas
    for i, text in enumerate(texts):
        n = wire_size(text)
        if i > start and size + 1 + n > cap:
            frames.append("[" + ",".join(texts[start:i]) + "]")
            start = i
        size = 2 + n if i == start else size + 1 + n
    frames.append("[" + ",".join(texts[start:]) + "]")
    return frames


class Frames:
    """One flush's messages for one subscription set, packed into frames of at most the cap.

    Built once per flush and shared, object and strings, by every client with that set: a
    client's queue holds the object itself, so a caught-up client is sent these very strings.
    """

    __slots__ = ("frames", "size", "trades")

    def __init__(self, frames: list[str], trades: int) -> None:
        self.frames = frames
        self.trades = trades  # trade messages in them, for the slow-consumer rule
        # Bytes of the messages joined by commas, without brackets: what they add to a frame.
        self.size = sum(wire_size(frame) - 2 for frame in frames) + len(frames) - 1


# ---------------------------------------------------------------------------------- state
LevelChange = tuple[bool, int, int, int]  # (is_bid, price, total_quantity, order_count)
RawTrade = tuple[int, str, int, int, str, int]
"""A trade as captured: (sequence, trade_id, price, quantity, taker_side, executed_at)."""


class _PublishedSide:
    """One side of a published book: price -> (total_quantity, order_count), and its best level.

    Like the engine's book sides (:mod:`~tradehall.exchange.book`), levels live in a dict with a
    binary heap of their keys (the price for asks, the negated price for bids) beside it; a level
    that empties leaves its key behind, skipped when it surfaces, and the heap is rebuilt once
    stale keys outnumber live ones. So a release costs a dict write (plus a heap push for a new
    level), and only a snapshot, taken when a client subscribes, sorts the levels.
    """

    __slots__ = ("best", "heap", "levels", "sign")

    def __init__(self, *, is_bid: bool) -> None:
        self.sign = -1 if is_bid else 1
        self.levels: dict[int, tuple[int, int]] = {}
        self.heap: list[int] = []
        self.best: tuple[int, int] | None = None  # (price, total_quantity)

    def set(self, price: int, total: int, count: int) -> None:
        """Apply one absolute level figure (``total == 0`` deletes the level)."""
        levels = self.levels
        best = self.best
        if total:
            new = price not in levels
            levels[price] = (total, count)
            if new:
                heap = self.heap
                heappush(heap, self.sign * price)
                if len(heap) > 2 * len(levels) + 64:
                    heap[:] = [self.sign * key for key in levels]
                    heapify(heap)
            if best is None or (price <= best[0] if self.sign > 0 else price >= best[0]):
                self.best = (price, total)
        elif levels.pop(price, None) is not None and best is not None and price == best[0]:
            heap, sign = self.heap, self.sign
            while heap and sign * heap[0] not in levels:
                heappop(heap)
            self.best = (sign * heap[0], levels[sign * heap[0]][0]) if heap else None

    def sorted_levels(self) -> list[tuple[int, tuple[int, int]]]:
        """(price, (total, count)) best first."""
        return sorted(self.levels.items(), reverse=self.sign < 0)


class PublishedBook:
    """The L2 book of one symbol as of the last *released* update, with each side's best level
    at hand (the ticker check after every release reads two attributes)."""

    __slots__ = ("asks", "bids", "sequence")

    def __init__(self) -> None:
        self.sequence = 0
        self.bids = _PublishedSide(is_bid=True)
        self.asks = _PublishedSide(is_bid=False)

    def apply(self, changes: Iterable[LevelChange]) -> None:
        bids, asks = self.bids, self.asks
        for is_bid, price, total, count in changes:
            (bids if is_bid else asks).set(price, total, count)

    def levels(self, is_bid: bool) -> list[LevelOut]:
        side = self.bids if is_bid else self.asks
        return [LevelOut(money(price), t, c) for price, (t, c) in side.sorted_levels()]

    def best(self, is_bid: bool) -> tuple[int, int] | None:
        """The best level's (price, total quantity), if the side has any."""
        return self.bids.best if is_bid else self.asks.best


class SymbolState:
    """Per-symbol capture counters (command path) and published state (release path)."""

    __slots__ = (
        "book",
        "book_seq",
        "engine",
        "last_trade",
        "live",
        "recent",
        "ticker_key",
        "trade_seq",
    )

    def __init__(self) -> None:
        self.book_seq = 0  # last sequence assigned at capture (may be ahead of ``book.sequence``)
        self.trade_seq = 0
        # The engine's live book of the symbol, read at capture, and the engine it belongs to:
        # recovery replaces the engine, so the book is looked up again when that changes.
        self.live: OrderBook | None = None
        self.engine: object = None
        self.book = PublishedBook()
        self.recent: deque[RawTrade] = deque(maxlen=RECENT_TRADES)  # released
        self.last_trade: tuple[int, int] | None = None  # (price, quantity), released
        self.ticker_key: tuple[object, ...] | None = None


class Item(NamedTuple):
    """One encoded message waiting for the next flush."""

    symbol: str
    channel: Channel
    text: str
    book: BookUpdateMsg | None


Update = tuple[str, int, list[LevelChange], Sequence[RawTrade]]
"""One symbol's share of one command, as captured: ``(symbol, sequence, changes, trades)``.

``sequence`` is its book sequence (0 when it changed no level), ``changes`` the touched levels'
absolute figures (bids best first, then asks best first), ``trades`` its trades in order. Figures
and sequence numbers only, in a plain tuple (one is made per command): messages are built and
encoded from it at flush time, and only for channels someone is subscribed to; the figures are
final at capture, so the bytes are the same whenever that is.
"""
NO_TRADES: tuple[RawTrade, ...] = ()
"""The (shared, immutable) trades of an update that has none."""


def _best_first(change: tuple[bool, int]) -> tuple[bool, int]:
    is_bid, price = change
    return (not is_bid, -price if is_bid else price)


def level_changes(book: OrderBook, levels: set[tuple[bool, int]]) -> list[LevelChange]:
    """The touched levels' absolute figures from the live book, best first on each side (bids
    first), like snapshots; a level that emptied reads ``(0, 0)``."""
    changes: list[LevelChange] = []
    for is_bid, price in sorted(levels, key=_best_first) if len(levels) > 1 else levels:
        level = (book.bids if is_bid else book.asks).level(price)
        if level is None:
            changes.append((is_bid, price, 0, 0))
        else:
            changes.append((is_bid, price, level.total, level.count))
    return changes


def raw_trade(sequence: int, trade: TradeExecuted) -> RawTrade:
    """A trade event as capture keeps it, with its trade sequence number."""
    return (
        sequence,
        trade.trade_id,
        trade.price,
        trade.quantity,
        trade.taker_side,
        trade.executed_at,
    )


def book_msg(update: Update) -> BookUpdateMsg:
    """The ``book`` message of an update that changed levels."""
    symbol, sequence, changes, _ = update
    bids: list[LevelOut] = []
    asks: list[LevelOut] = []
    for is_bid, price, total, count in changes:
        (bids if is_bid else asks).append(LevelOut(money(price), total, count))
    return BookUpdateMsg(symbol, sequence, sequence, bids, asks)


def trade_msg(symbol: str, trade: RawTrade) -> TradeMsg:
    """The ``trade`` message of a captured trade."""
    sequence, trade_id, price, quantity, taker_side, executed_at = trade
    return TradeMsg(
        symbol, sequence, trade_id, money(price), quantity, taker_side, format_ns(executed_at)
    )
