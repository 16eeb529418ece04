"""Canonical gateway events: the only shapes consumers ever see.

Every venue adapter turns its wire format into these immutable, versioned msgspec Structs. They
share one header (:class:`Event`): ``schema_version``, ``event_id``, ``provider``, canonical
``symbol`` (``BTC-USD``), ``event_type`` (the msgspec tag, so it is also on the wire),
``seq_provider`` (the venue's ordering number or ``None``), ``ts_provider`` (venue time, epoch ns,
``None`` when the venue gives none), ``ts_ingest`` (local receive time, epoch ns) and ``trace_id``
(the inbound frame id: every event parsed from one WebSocket frame shares it).

Prices and quantities are :class:`~decimal.Decimal` taken from the venue's text, never binary
floats. Book levels are ``(price, quantity)`` pairs; in a :class:`BookUpdate` the quantity is the
new absolute size and zero deletes the level. Book events carry the assembler ``epoch`` so a
consumer can tell which synchronisation a diff belongs to.

Encode with :func:`encode` and decode with :func:`decode`; the tag makes the union self-describing.
"""

from __future__ import annotations

import itertools
import os
from decimal import Decimal
from enum import StrEnum
from typing import Any

import msgspec

__all__ = [
    "NBBO",
    "SCHEMA_VERSION",
    "AnyEvent",
    "BookSnapshot",
    "BookStatus",
    "BookUpdate",
    "Event",
    "EventIds",
    "ExecReport",
    "ExecState",
    "KlineSummary",
    "Level",
    "MergedBookSnapshot",
    "MergedLevel",
    "Side",
    "Ticker",
    "Trade",
    "decision_id",
    "decode",
    "encode",
]

SCHEMA_VERSION = 1

Level = tuple[Decimal, Decimal]
"""One book level: (price, quantity)."""


class Side(StrEnum):
    """The taker (aggressor) side of a trade, or the side of an order."""

    BUY = "buy"
    SELL = "sell"


class ExecState(StrEnum):
    """Normalised order states of an :class:`ExecReport`."""

    ACK = "ACK"
    PARTIAL = "PARTIAL"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event_type"):
    """The common header of every canonical event."""

    schema_version: int = SCHEMA_VERSION
    event_id: str
    provider: str
    symbol: str
    seq_provider: int | None = None
    ts_provider: int | None = None
    ts_ingest: int
    trace_id: str = ""

    @property
    def event_type(self) -> str:
        """The wire tag of this event type (``book_update``, ``trade`` ...)."""
        tag = type(self).__struct_config__.tag
        return str(tag)


class BookSnapshot(Event, frozen=True, kw_only=True, tag="book_snapshot"):
    """A complete, verified book: bids best-first (descending), asks best-first (ascending)."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    depth: int
    epoch: int


class BookUpdate(Event, frozen=True, kw_only=True, tag="book_update"):
    """Changed levels with absolute quantities (zero deletes), applied on top of ``epoch``."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    epoch: int
    seq_first: int | None = None


class BookStatus(Event, frozen=True, kw_only=True, tag="book_status"):
    """The assembler changed state (``SYNCING``/``LIVE``/``RESYNCING``), with the reason."""

    state: str
    epoch: int
    reason: str = ""


class Trade(Event, frozen=True, kw_only=True, tag="trade"):
    """One print: price, quantity, taker side and the venue's trade id."""

    price: Decimal
    qty: Decimal
    side: Side
    trade_id: str


class Ticker(Event, frozen=True, kw_only=True, tag="ticker"):
    """Best bid/ask (with sizes) and, where the venue sends it, the last trade price."""

    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    last: Decimal | None = None


class KlineSummary(Event, frozen=True, kw_only=True, tag="kline"):
    """OHLCV for ``[open_ns, open_ns + interval_s)``, built locally from trades."""

    interval_s: int
    open_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int


class ExecReport(Event, frozen=True, kw_only=True, tag="exec_report"):
    """An order's state change as reported by the venue (orders are issue 8; shape fixed here)."""

    client_order_id: str
    venue_order_id: str
    state: ExecState
    side: Side
    last_qty: Decimal = Decimal(0)
    cum_qty: Decimal = Decimal(0)
    price: Decimal | None = None
    reason: str = ""


MergedLevel = tuple[Decimal, Decimal, tuple[tuple[str, Decimal], ...]]
"""One consolidated level: (price, total quantity, ((provider, quantity), ...))."""


class MergedBookSnapshot(Event, frozen=True, kw_only=True, tag="merged_book_snapshot"):
    """A consolidated book across ``providers`` at the close of merge window ``merge_id``.

    The header's ``provider`` is ``"merged"``; levels carry the per-venue breakdown.
    """

    merge_id: str
    providers: tuple[str, ...]
    bids: tuple[MergedLevel, ...]
    asks: tuple[MergedLevel, ...]
    window_events: int


class NBBO(Event, frozen=True, kw_only=True, tag="nbbo"):
    """Best bid and offer across ``providers`` (with the venues quoting them) for ``merge_id``."""

    merge_id: str
    providers: tuple[str, ...]
    bid: Decimal | None
    bid_qty: Decimal
    bid_providers: tuple[str, ...]
    ask: Decimal | None
    ask_qty: Decimal
    ask_providers: tuple[str, ...]


AnyEvent = (
    BookSnapshot
    | BookUpdate
    | BookStatus
    | Trade
    | Ticker
    | KlineSummary
    | ExecReport
    | MergedBookSnapshot
    | NBBO
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    """JSON bytes of ``event`` (decimals as strings, ``event_type`` tag included)."""
    return _encoder.encode(event)


def decode(data: bytes | str) -> AnyEvent:
    """The event encoded in ``data`` (any canonical type)."""
    event: AnyEvent = _decoder.decode(data)
    return event


class EventIds:
    """Cheap unique event ids: a random per-process prefix and a counter (``3f9a1c0e-42``).

    UUIDs cost microseconds each, which matters at 100k events/s; uniqueness only needs to hold
    within and across gateway processes, which the 32-bit random prefix plus counter gives.
    """

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = prefix if prefix is not None else os.urandom(4).hex()
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"


_DECISIONS = EventIds(f"d{os.urandom(3).hex()}")


def decision_id() -> str:
    """A fresh id for one routing, merge or order decision (the ``decision_id`` of its log line)."""
    return _DECISIONS.new_id()
