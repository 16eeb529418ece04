"""The ``/ws/market`` WebSocket endpoint and the ``/console`` page.

One :class:`Subscriber` per connection. At each flush the hub
(:mod:`~tradehall.exchange.marketdata`) pushes the flush's already-built frames into the
subscriber's queue -- an append and an event set, never an ``await`` -- and the subscriber's own
writer task sends them. So a slow or stuck client costs the matching path nothing, and other
clients nothing at all.

Every server frame is a JSON *array* of one or more whole messages, at most ``max_frame_bytes``
(:data:`~tradehall.exchange.marketdata_state.MAX_FRAME_BYTES`, 256 KiB) of UTF-8 unless a single
message is larger (a book snapshot or coalesced diff of a very deep book): such a message goes
alone in its own frame, never split. A caught-up client is sent the hub's shared frames of each
flush themselves (one, or several for a busy flush); a client that is behind has its queued
entries joined (up to :data:`MAX_BATCH` messages and the cap) into one frame -- a copy of the
shared encodings, never a re-encoding -- and an entry that does not fit goes into the next frame.

Per-client queue rules, so memory stays bounded however slow a client is (once ``lag_frames``
entries are waiting, one of them an uncounted flush -- see below --, further messages are
queued one by one so they can be coalesced):

* ``book``: consecutive pending diffs of a symbol share a slot; while the slot holds at most
  ``book_merge_at`` diffs they go out unchanged (the shared text), beyond that they are merged into
  one diff covering ``first_sequence..sequence`` (latest level figures win).
* ``ticker``: a pending ticker is replaced by a newer one (latest wins).
* ``trades``: never dropped or merged. A client with more than ``trade_limit`` trades queued
  *behind a waiting flush (see below)* is disconnected with close code 4001
  and a reason saying so.

The slow-consumer rule judges the client, not the market's rate: the trades of one waiting flush
-- normally the next one the writer takes; however many trades one flush carries, and however many
frames the cap makes of it -- never count, nor do those of the flush being written. A flush is one
queue entry (:class:`~tradehall.exchange.marketdata_state.Frames`), whole or not at all: its
frames are never counted one by one, so splitting a busy flush changes nothing for the rule. A
client whose socket has taken each flush by the time the flush after next is built (two flush
intervals, plus what the kernel buffers hold) therefore never has anything counted, whatever the
trade rate; a client that stops reading piles up counted trades and is cut off. Memory per client
stays bounded: the flush in flight, one waiting flush (strings shared with every client of its
subscription set), at most ``trade_limit`` further trades, one book slot (at most
``book_merge_at`` diffs) and one ticker per symbol, and control replies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tradehall.core.logging import get_logger
from tradehall.exchange.marketdata import (
    CHANNELS,
    MAX_FRAME_BYTES,
    BookUpdateMsg,
    Channel,
    Frames,
    Item,
    MarketData,
    encoder,
)
from tradehall.exchange.marketdata_state import pack_frames, wire_size
from tradehall.exchange.schemas import LevelOut

__all__ = ["SLOW_CONSUMER_CODE", "Subscriber", "market_data_routes"]

log = get_logger("exchange.marketdata")
SLOW_CONSUMER_CODE = 4001
MAX_BATCH = 256
CLOSE_TIMEOUT = 5.0
_CONSOLE_DIR = Path(__file__).parent / "console"
_CONSOLE_FILES = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


class _Control(msgspec.Struct):
    op: str
    symbol: str | None = None
    channels: list[str] | None = None
    id: int | str | None = None


class _Ack(msgspec.Struct, tag_field="type"):
    symbol: str
    channels: list[str]
    id: int | str | None


class Subscribed(_Ack, tag="subscribed"):
    pass


class Unsubscribed(_Ack, tag="unsubscribed"):
    pass


class SymbolsMsg(msgspec.Struct, tag="symbols", tag_field="type"):
    symbols: list[str]
    id: int | str | None = None


class ErrorMsg(msgspec.Struct, tag="error", tag_field="type"):
    code: str
    message: str
    id: int | str | None = None


class _BookSlot:
    """Pending book diffs of one symbol for one client."""

    __slots__ = ("dead", "merge_at", "msgs", "texts")

    def __init__(self, msg: BookUpdateMsg, text: str, merge_at: int) -> None:
        self.msgs = [msg]
        self.texts = [text]
        self.merge_at = merge_at
        self.dead = False

    def add(self, msg: BookUpdateMsg, text: str) -> None:
        self.msgs.append(msg)
        self.texts.append(text)
        if len(self.msgs) > self.merge_at:
            merged = merge_book_updates(self.msgs)
            self.msgs, self.texts = [merged], [encoder.encode(merged).decode()]


def merge_book_updates(msgs: list[BookUpdateMsg]) -> BookUpdateMsg:
    """One diff equivalent to applying ``msgs`` in order (latest figures per level win)."""
    bids: dict[object, LevelOut] = {}
    asks: dict[object, LevelOut] = {}
    for msg in msgs:
        for level in msg.bids:
            bids[level.price] = level
        for level in msg.asks:
            asks[level.price] = level
    first, last = msgs[0], msgs[-1]
    return BookUpdateMsg(
        first.symbol,
        first.first_sequence,
        last.sequence,
        sorted(bids.values(), key=lambda lv: lv.price, reverse=True),
        sorted(asks.values(), key=lambda lv: lv.price),
    )


class _TickerSlot:
    __slots__ = ("dead", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.dead = False


_TEXT, _TRADE = 0, 1
# A single message (kind, text, trades in it: 0 or 1), a flush's shared frames, or a slot.
_Queued = tuple[int, str, int] | Frames | _BookSlot | _TickerSlot


def _entry_size(entry: _Queued) -> int:
    """Bytes an entry's messages add to a frame (commas between them included)."""
    if isinstance(entry, tuple):
        return wire_size(entry[1])
    if isinstance(entry, Frames):
        return entry.size
    if isinstance(entry, _BookSlot):
        return sum(wire_size(text) for text in entry.texts) + len(entry.texts) - 1
    return wire_size(entry.text)


class Subscriber:
    """One WebSocket client: its subscriptions, its bounded queue and its writer."""

    def __init__(
        self,
        websocket: WebSocket,
        hub: MarketData,
        *,
        trade_limit: int = 1000,
        book_merge_at: int = 32,
        lag_frames: int = 4,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self._ws = websocket
        self._hub = hub
        self.trade_limit = trade_limit
        self.max_frame_bytes = max_frame_bytes
        self.book_merge_at = book_merge_at
        self.lag_frames = lag_frames
        self.subscriptions: dict[str, set[Channel]] = {}
        self.signature: frozenset[tuple[str, Channel]] = frozenset()
        self._queue: deque[_Queued] = deque()
        self._books: dict[str, _BookSlot] = {}
        self._tickers: dict[str, _TickerSlot] = {}
        self._pending_trades = 0  # trades in the queue (the flush being written is not)
        # The queued flush whose trades the slow-consumer rule does not count: the oldest one
        # waiting, when there is one (see the module docstring).
        self._free: Frames | None = None
        self._wake = asyncio.Event()
        self.closing: tuple[int, str] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    # -------------------------------------------------------------- pushes (never await)
    def push_batch(self, batch: Frames, items: list[Item]) -> None:
        """A flush's shared frames (``items`` are their messages), queued whole as one entry
        when no other flush is waiting uncounted or the client is less than ``lag_frames``
        entries behind; otherwise its messages one by one, so its book and ticker messages can
        be coalesced."""
        if self.closing is not None:
            return
        free = self._free
        if free is None or len(self._queue) < self.lag_frames:
            trades = batch.trades
            if free is None:
                self._free = batch  # the next flush the writer takes: not counted, any size
            elif self._pending_trades - free.trades + trades > self.trade_limit:
                self._slow()
                return
            self._pending_trades += trades
            # Slots still queued stay in place, but newer messages must not join them: they
            # would overtake this flush.
            self._books.clear()
            self._tickers.clear()
            self._queue.append(batch)
            self._wake.set()
            return
        for item in items:
            if item.book is not None:
                self.push_book(item.book, item.text)
            elif item.channel == "trades":
                self.push_trade(item.text)
            else:
                self.push_ticker(item.symbol, item.text)

    def push_book(self, msg: BookUpdateMsg, text: str) -> None:
        if self.closing is not None:
            return
        slot = self._books.get(msg.symbol)
        if slot is None:
            slot = self._books[msg.symbol] = _BookSlot(msg, text, self.book_merge_at)
            self._queue.append(slot)
        else:
            slot.add(msg, text)
        self._wake.set()

    def push_trade(self, text: str) -> None:
        if self.closing is not None:
            return
        free = self._free
        if self._pending_trades - (0 if free is None else free.trades) >= self.trade_limit:
            self._slow()
            return
        self._pending_trades += 1
        self._queue.append((_TRADE, text, 1))
        self._wake.set()

    def push_ticker(self, symbol: str, text: str) -> None:
        if self.closing is not None:
            return
        slot = self._tickers.get(symbol)
        if slot is None:
            slot = self._tickers[symbol] = _TickerSlot(text)
            self._queue.append(slot)
        else:
            slot.text = text
        self._wake.set()

    def _slow(self) -> None:
        # The reason names the limit as documented to clients; "queued" means beyond the
        # uncounted flush.
        self._disconnect(
            SLOW_CONSUMER_CODE, f"slow consumer: more than {self.trade_limit} trade messages queued"
        )

    def push_text(self, text: str) -> None:
        self._queue.append((_TEXT, text, 0))
        self._wake.set()

    @property
    def queued(self) -> int:
        """Entries waiting for the writer (flushes, messages, book and ticker slots)."""
        return len(self._queue)

    @property
    def counted_trades(self) -> int:
        """Trades the slow-consumer rule holds against this client (at most ``trade_limit``)."""
        free = self._free
        return self._pending_trades - (0 if free is None else free.trades)

    # -------------------------------------------------------------- control messages
    def handle(self, raw: str | None) -> None:
        """Apply one control message and queue its acknowledgement (and snapshots) or error."""
        if raw is None:
            self._error("invalid_request", "control messages must be JSON text frames")
            return
        try:
            control = msgspec.json.decode(raw, type=_Control)
        except msgspec.DecodeError as exc:
            self._error("invalid_request", f"invalid control message: {exc}")
            return
        if control.op == "symbols":
            self.push_text(encoder.encode(SymbolsMsg(self._hub.symbols(), control.id)).decode())
            return
        if control.op not in ("subscribe", "unsubscribe"):
            self._error(
                "invalid_request", "op must be one of: subscribe, unsubscribe, symbols", control.id
            )
            return
        if not control.symbol:
            self._error("invalid_request", "symbol is required", control.id)
            return
        channels = CHANNELS if control.channels is None else control.channels
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown or not channels:
            self._error(
                "invalid_request",
                "channels must be a non-empty list of: book, trades, ticker",
                control.id,
            )
            return
        chosen: list[Channel] = [c for c in CHANNELS if c in channels]
        symbol = control.symbol
        if not self._hub.has_symbol(symbol):
            self._error("symbol_not_found", f"Symbol {control.symbol} not found", control.id)
            return
        if control.op == "subscribe":
            self._subscribe(symbol, chosen, control.id)
        else:
            self._unsubscribe(symbol, chosen, control.id)

    def _subscribe(self, symbol: str, channels: list[Channel], ident: int | str | None) -> None:
        hub = self._hub
        hub.flush()  # everything released so far goes out before (and is covered by) snapshots
        current = self.subscriptions.setdefault(symbol, set())
        self._drop_pending(symbol, channels)
        for channel in channels:
            current.add(channel)
            hub.subscribe(self, symbol, channel)
        self._resign()
        self.push_text(encoder.encode(Subscribed(symbol, list(channels), ident)).decode())
        # Snapshots come right after the ack; later diffs are queued behind them (FIFO).
        if "book" in channels:
            self.push_text(encoder.encode(hub.book_snapshot(symbol)).decode())
        if "trades" in channels:
            self.push_text(encoder.encode(hub.trades_snapshot(symbol)).decode())
        if "ticker" in channels:
            self.push_text(encoder.encode(hub.ticker(symbol)).decode())

    def _unsubscribe(self, symbol: str, channels: list[Channel], ident: int | str | None) -> None:
        current = self.subscriptions.get(symbol, set())
        self._drop_pending(symbol, channels)
        for channel in channels:
            current.discard(channel)
            self._hub.unsubscribe(self, symbol, channel)
        if not current:
            self.subscriptions.pop(symbol, None)
        self._resign()
        self.push_text(encoder.encode(Unsubscribed(symbol, list(channels), ident)).decode())

    def _resign(self) -> None:
        self.signature = frozenset(
            (symbol, channel) for symbol, chans in self.subscriptions.items() for channel in chans
        )

    def _drop_pending(self, symbol: str, channels: list[Channel]) -> None:
        # Diffs queued before a (re)subscription predate its snapshot: never send them.
        if "book" in channels and (book := self._books.pop(symbol, None)) is not None:
            book.dead = True
        if "ticker" in channels and (ticker := self._tickers.pop(symbol, None)) is not None:
            ticker.dead = True

    def _error(self, code: str, message: str, ident: int | str | None = None) -> None:
        self.push_text(encoder.encode(ErrorMsg(code, message, ident)).decode())

    # -------------------------------------------------------------- writer
    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                for frame in self._drain():
                    await self._ws.send_text(frame)

    def _drain(self) -> list[str]:
        """Take the next frame's worth of entries off the queue and return the frames to send.

        Entries are joined into one frame while it stays within ``max_frame_bytes`` and
        :data:`MAX_BATCH` messages; the first entry is always taken. A flush taken alone is
        returned as its shared frames (no copy, one or several); an entry larger than the cap
        alone (a big book slot, an oversized snapshot) is packed into frames of whole messages.
        """
        cap = self.max_frame_bytes
        queue = self._queue
        taken: list[str | Frames] = []  # message texts, and flushes (runs of messages)
        used = 0  # bytes of the frame's content so far (without the brackets)
        count = 0  # messages (or flush frames) so far, against MAX_BATCH
        while queue and count < MAX_BATCH:
            item = queue[0]
            if isinstance(item, (_BookSlot, _TickerSlot)) and item.dead:
                queue.popleft()
                continue
            size = _entry_size(item)
            if taken and used + 1 + size + 2 > cap:
                break  # it goes first in the next frame
            queue.popleft()
            used += size + (1 if taken else 0)
            if isinstance(item, tuple):
                self._pending_trades -= item[2]
                taken.append(item[1])
                count += 1
            elif isinstance(item, Frames):
                self._pending_trades -= item.trades
                if item is self._free:
                    self._free = None
                taken.append(item)
                count += len(item.frames)
            elif isinstance(item, _BookSlot):
                symbol = item.msgs[0].symbol
                if self._books.get(symbol) is item:
                    del self._books[symbol]
                taken.extend(item.texts)
                count += len(item.texts)
            else:
                for symbol, slot in self._tickers.items():
                    if slot is item:
                        del self._tickers[symbol]
                        break
                taken.append(item.text)
                count += 1
        if self._free is None and queue and isinstance(head := queue[0], Frames):
            self._free = head  # the oldest waiting flush is the uncounted one again
        if len(taken) == 1 and isinstance(first := taken[0], Frames):
            return first.frames  # the common case: a caught-up client gets the shared strings
        texts: list[str] = []
        for part in taken:
            if isinstance(part, str):
                texts.append(part)
            else:
                texts.extend(frame[1:-1] for frame in part.frames)
        return pack_frames(texts, cap) if texts else []

    def _disconnect(self, code: int, reason: str) -> None:
        """Drop everything queued, leave the hub, and close the connection (in the background)."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        loop = asyncio.get_running_loop()
        loop.call_soon(self.detach)  # not now: the hub may be iterating its subscriber sets
        self._queue.clear()
        self._books.clear()
        self._tickers.clear()
        self._pending_trades = 0
        self._free = None
        log.warning("marketdata_client_disconnected", code=code, reason=reason)
        if self._writer is not None:
            self._writer.cancel()
        self._closer = loop.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._ws.close(code, reason)

    def detach(self) -> None:
        for symbol, channels in self.subscriptions.items():
            for channel in channels:
                self._hub.unsubscribe(self, symbol, channel)
        self.subscriptions.clear()

    async def finish(self) -> None:
        """Called when the connection ends: stop the writer and leave the hub."""
        self.detach()
        for task in (self._writer, self._closer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def market_data_routes(hub: MarketData, *, trade_limit: int = 1000) -> list[BaseRoute]:
    """``/ws/market`` and the ``/console`` page with its two static files."""

    async def market(websocket: WebSocket) -> None:
        await websocket.accept()
        subscriber = Subscriber(
            websocket, hub, trade_limit=trade_limit, max_frame_bytes=hub.max_frame_bytes
        )
        subscriber.start()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if subscriber.closing is None:
                    subscriber.handle(message.get("text"))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            await subscriber.finish()
            if subscriber.closing is not None and subscriber.closing[0] == SLOW_CONSUMER_CODE:
                hub.metrics.slow_disconnects.inc()

    index = (_CONSOLE_DIR / "index.html").read_bytes()
    files = {name: (_CONSOLE_DIR / name).read_bytes() for name in _CONSOLE_FILES}

    async def console(request: Request) -> Response:
        return Response(index, media_type="text/html; charset=utf-8")

    async def console_file(request: Request) -> Response:
        name: str = request.path_params["name"]
        if name not in files:
            return Response(b'{"error":"not_found","message":"Not found"}', 404)
        return Response(files[name], media_type=_CONSOLE_FILES[name])

    return [
        WebSocketRoute("/ws/market", market),
        Route("/console", console, methods=["GET"]),
        Route("/console/{name}", console_file, methods=["GET"]),
    ]
