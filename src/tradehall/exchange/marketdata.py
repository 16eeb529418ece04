"""Market data: book diffs, trades and tickers, captured after each command and fanned out.

Capture (synchronous, :meth:`MarketData.capture`, installed as ``ExchangeService.on_executed``):
right after a command executes -- before any other command can run -- the price levels it touched
(the resting price of a new limit order, the resting prices its fills consumed, the price of a
cancelled or expired order) are read from the live book as absolute aggregates
``(total_quantity, order_count)``; each touched symbol gets the next book sequence number and every
trade the next trade sequence number of its symbol. Capture keeps only these figures (plain
tuples, no message objects): it runs on every command, subscribers or not. Nothing is sent yet:
the captured update rides with the command and is released by the service only after the command
is durable, in journal order (:meth:`MarketData._release`). Without a journal there is nothing to
wait for: the service asks capture to release at once (``now``), in the same call.

Release applies the book diffs to a *published* copy of every book (:class:`PublishedBook`), so a
subscriber's snapshot is always exactly the state its sequence number names and never shows
anything a crash could take back. Tickers (best bid/ask, last price) are derived from that copy and
emitted only when they change.

Fan-out (:meth:`MarketData.flush`): the updates released since the last flush become messages,
each built and encoded to JSON once and only if its (symbol, channel) has a subscriber; for each
distinct subscription set they are joined into frames of at most ``max_frame_bytes``
(:data:`~tradehall.exchange.marketdata_state.MAX_FRAME_BYTES`, 256 KiB: one frame unless the
flush is busy, then several, whole messages in order; a single larger message goes alone) --
built once, the same :class:`~tradehall.exchange.marketdata_state.Frames` for every client with
that set -- and appended to each client's queue (:mod:`~tradehall.exchange.marketdata_ws`). A socket
write costs tens of microseconds of the event loop, so the flush interval grows with the number of
connected clients (``max(min_interval, clients * per_client)``: 5 ms for up to 10 clients, 50 ms for
100): the fan-out then costs about the same share of the loop however many clients there are and
whatever the order rate. The command path itself only appends to a list.

Sequences start at 0 for every symbol when the process starts (they are not journaled); a client
reconnecting after a restart gets a fresh snapshot anyway.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from tradehall.core.logging import get_logger
from tradehall.exchange.events import EngineEvent, OrderClosed, OrderFilled, TradeExecuted
from tradehall.exchange.machine import Executed
from tradehall.exchange.marketdata_state import (
    MAX_FRAME_BYTES,
    NO_TRADES,
    BookSnapshotMsg,
    BookUpdateMsg,
    Channel,
    Frames,
    Item,
    LevelChange,
    PublishedBook,
    RawTrade,
    SymbolState,
    TickerMsg,
    TradeMsg,
    TradesSnapshotMsg,
    Update,
    book_msg,
    level_changes,
    pack_frames,
    raw_trade,
    trade_msg,
)
from tradehall.exchange.model import Order
from tradehall.exchange.schemas import money

if TYPE_CHECKING:
    from tradehall.exchange.book import OrderBook
    from tradehall.exchange.marketdata_ws import Subscriber
    from tradehall.exchange.service import ExchangeService

__all__ = [
    "CHANNELS",
    "MAX_FRAME_BYTES",
    "BookSnapshotMsg",
    "BookUpdateMsg",
    "Channel",
    "Frames",
    "Item",
    "MarketData",
    "PublishedBook",
    "TickerMsg",
    "TradeMsg",
    "TradesSnapshotMsg",
]

CHANNELS: tuple[Channel, ...] = ("book", "trades", "ticker")
log = get_logger("exchange.marketdata")
encoder = msgspec.json.Encoder(decimal_format="number")


# ---------------------------------------------------------------------------------- the hub
class _Metrics:
    """Market-data metrics on the service's registry (unregistered if the names are taken, e.g.
    when a second app is built over the same service in tests)."""

    def __init__(self, registry: CollectorRegistry, clients: Callable[[], int]) -> None:
        try:
            self._build(registry, clients)
        except ValueError:
            self._build(None, clients)

    def _build(self, registry: CollectorRegistry | None, clients: Callable[[], int]) -> None:
        self.clients = Gauge(
            "exchange_marketdata_clients",
            "WebSocket connections with at least one subscription",
            registry=registry,
        )
        self.clients.set_function(lambda: float(clients()))
        self.frames = Counter(
            "exchange_marketdata_frames",
            "Flush frames handed to client queues (a busy flush is several)",
            registry=registry,
        )
        self.messages = Counter(
            "exchange_marketdata_messages", "Messages in those frames", registry=registry
        )
        self.slow_disconnects = Counter(
            "exchange_marketdata_slow_consumer_disconnects",
            "Clients disconnected for falling too far behind on trades",
            registry=registry,
        )


class MarketData:
    """Capture on the command path, publish in journal order, fan out to subscribers."""

    def __init__(
        self,
        service: ExchangeService,
        *,
        min_interval: float = 0.005,
        per_client: float = 0.0005,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be at least 1, got {max_frame_bytes}")
        self._service = service
        self.min_interval = min_interval
        self.per_client = per_client
        self.max_frame_bytes = max_frame_bytes
        self._symbols: dict[str, SymbolState] = {}
        self._subs: dict[tuple[str, Channel], set[Subscriber]] = {}
        self._members: dict[Subscriber, int] = {}  # subscriber -> number of subscriptions
        self._pending: list[Update] = []  # released, not yet flushed
        self._tick_tickers: dict[str, None] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self.started = False
        self.metrics = _Metrics(service.registry, lambda: len(self._members))

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Copy the (recovered) books as published state and hook into the command path."""
        engine = self._service.engine
        for symbol in engine.symbols:
            book = engine.book(symbol)
            published = self._symbol(symbol).book
            published.apply((True, lv.price, lv.total, lv.count) for lv in book.bids.levels())
            published.apply((False, lv.price, lv.total, lv.count) for lv in book.asks.levels())
        self._service.on_executed = self.capture
        self.started = True

    def stop(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._service.on_executed == self.capture:
            self._service.on_executed = None
        self.started = False

    def symbols(self) -> list[str]:
        return self._service.engine.symbols

    def has_symbol(self, symbol: str) -> bool:
        return self._service.engine.has_symbol(symbol)

    def book_sequence(self, symbol: str) -> int:
        """The sequence of the live (in-memory) book, for ``GET /stocks/{symbol}/book``."""
        state = self._symbols.get(symbol)
        return 0 if state is None else state.book_seq

    # -------------------------------------------------------------- command path
    def capture(self, executed: Executed, now: bool = False) -> Callable[[], None] | None:
        """Capture this command's market-data figures now; return their release.

        With ``now`` (nothing waits for the command to be durable: no journal) the figures are
        released right away as well and ``None`` is returned: the same steps in the same order,
        without a closure per command.
        """
        if executed.error is not None:
            return None
        try:
            updates = self._capture(executed)
        except Exception:  # a market-data bug must never fail a command that already ran
            log.exception("marketdata_capture_failed")
            return None
        if not updates:
            return None
        if now:
            try:
                self._fan_out(updates)
            except Exception:  # as in _release
                log.exception("marketdata_release_failed")
            return None
        return functools.partial(self._release, updates)

    def _capture(self, executed: Executed) -> list[Update]:
        order = executed.result
        if not isinstance(order, Order):  # an expiry sweep, or a command without market data
            return self._capture_sweep(executed.events) if executed.events else []
        symbol = order.symbol
        state = self._symbols.get(symbol) or self._symbol(symbol)
        engine = self._service.machine.engine
        live = state.live
        if live is None or state.engine is not engine:
            live = state.live = engine.book(symbol)
            state.engine = engine
        events = executed.events
        # Nearly every command touches one level and trades nothing: those take the short way.
        if not events:  # an order that rests without trading
            price = order.price
            if not order.remaining or price is None:
                return []
            is_bid = order.side == "bid"
        elif len(events) == 1 and not order.remaining and isinstance(ev := events[0], OrderClosed):
            is_bid, price = ev.side == "bid", ev.price  # a cancel: its level lost the order
        else:
            return self._capture_order(order, events, state, live)
        level = (live.bids if is_bid else live.asks).level(price)
        state.book_seq = sequence = state.book_seq + 1
        if level is None:  # the last order at that price left
            return [(symbol, sequence, [(is_bid, price, 0, 0)], NO_TRADES)]
        return [(symbol, sequence, [(is_bid, price, level.total, level.count)], NO_TRADES)]

    def _capture_order(
        self, order: Order, events: list[EngineEvent], state: SymbolState, live: OrderBook
    ) -> list[Update]:
        """The update of a submit or cancel: the order's own level if it rests, the levels its
        fills took from, or the level it was cancelled from; and its trades."""
        levels: set[tuple[bool, int]] = set()
        if order.remaining and order.price is not None:
            levels.add((order.side == "bid", order.price))
        raw: list[RawTrade] = []
        orders = self._service.machine.engine.orders
        taker = order.order_id
        for event in events:
            if isinstance(event, TradeExecuted):
                state.trade_seq = sequence = state.trade_seq + 1
                raw.append(raw_trade(sequence, event))
            elif isinstance(event, OrderFilled):
                if event.order_id != taker:  # the resting side: its level lost quantity
                    price = orders[event.order_id].price
                    assert price is not None
                    levels.add((event.side == "bid", price))
            elif isinstance(event, OrderClosed):
                levels.add((event.side == "bid", event.price))
        if not levels:
            return [(order.symbol, 0, [], raw)] if raw else []
        changes = level_changes(live, levels)
        state.book_seq = sequence = state.book_seq + 1
        return [(order.symbol, sequence, changes, raw)]

    def _capture_sweep(self, events: list[EngineEvent]) -> list[Update]:
        """An expiry sweep: closed orders of any symbols (no trades, but kept general)."""
        engine = self._service.machine.engine
        touched: dict[str, set[tuple[bool, int]]] = {}
        trades: dict[str, list[TradeExecuted]] = {}
        for event in events:
            if isinstance(event, TradeExecuted):
                trades.setdefault(event.symbol, []).append(event)
            elif isinstance(event, OrderFilled):
                price = engine.orders[event.order_id].price
                assert price is not None
                touched.setdefault(event.symbol, set()).add((event.side == "bid", price))
            elif isinstance(event, OrderClosed):
                touched.setdefault(event.symbol, set()).add((event.side == "bid", event.price))
        updates: list[Update] = []
        for symbol in dict.fromkeys([*touched, *trades]):
            state = self._symbol(symbol)
            changes: list[LevelChange] = []
            sequence = 0
            levels = touched.get(symbol)
            if levels:
                changes = level_changes(engine.book(symbol), levels)
                state.book_seq = sequence = state.book_seq + 1
            raw: list[RawTrade] = []
            for trade in trades.get(symbol, ()):
                state.trade_seq += 1
                raw.append(raw_trade(state.trade_seq, trade))
            updates.append((symbol, sequence, changes, raw))
        return updates

    # -------------------------------------------------------------- release path
    def _release(self, updates: list[Update]) -> None:
        try:
            self._fan_out(updates)
        except Exception:  # runs inside the command's publish step: never let it fail that
            log.exception("marketdata_release_failed")

    def _fan_out(self, updates: list[Update]) -> None:
        pending = self._pending
        symbols = self._symbols
        for update in updates:
            symbol, sequence, changes, trades = update
            state = symbols.get(symbol) or self._symbol(symbol)
            book = state.book
            if sequence:
                bids, asks = book.bids, book.asks
                for is_bid, price, total, count in changes:
                    (bids if is_bid else asks).set(price, total, count)
                book.sequence = sequence
            if trades:
                state.recent.extend(trades)
                last = trades[-1]
                state.last_trade = (last[2], last[3])
            pending.append(update)
            key = (book.bids.best, book.asks.best, state.last_trade)
            if key != state.ticker_key:
                state.ticker_key = key
                self._tick_tickers[symbol] = None  # rendered at flush time: latest wins
        if self._flush_handle is None and (pending or self._tick_tickers):
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.flush_interval, self.flush)

    @property
    def flush_interval(self) -> float:
        return max(self.min_interval, len(self._members) * self.per_client)

    def flush(self) -> None:
        """Hand everything released since the last flush to the subscribers: per distinct
        subscription set, its messages packed into frames of at most ``max_frame_bytes`` (one
        frame unless the flush is busy), built once and shared by every client with that set.

        Messages are built and encoded here, once each, and only for (symbol, channel) pairs
        someone is subscribed to: with no subscriber the released updates are just dropped."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        pending, self._pending = self._pending, []
        tickers, self._tick_tickers = self._tick_tickers, {}
        subs = self._subs
        if not subs:
            return
        tick: list[Item] = []
        for update in pending:
            symbol, sequence, _, raws = update
            if sequence and (symbol, "book") in subs:
                book = book_msg(update)
                tick.append(Item(symbol, "book", encoder.encode(book).decode(), book))
            if raws and (symbol, "trades") in subs:
                for raw in raws:
                    text = encoder.encode(trade_msg(symbol, raw)).decode()
                    tick.append(Item(symbol, "trades", text, None))
        for symbol in tickers:
            if (symbol, "ticker") in subs:
                ticker = self.ticker(symbol)
                tick.append(Item(symbol, "ticker", encoder.encode(ticker).decode(), None))
        if not tick:
            return
        groups: dict[frozenset[tuple[str, Channel]], list[Subscriber]] = {}
        seen: set[Subscriber] = set()
        for key in {(item.symbol, item.channel) for item in tick}:
            for sub in subs.get(key, ()):
                if sub not in seen:
                    seen.add(sub)
                    groups.setdefault(sub.signature, []).append(sub)
        for signature, members in groups.items():
            items = [item for item in tick if (item.symbol, item.channel) in signature]
            if not items:
                continue
            trades = sum(1 for item in items if item.channel == "trades")
            batch = Frames(pack_frames([item.text for item in items], self.max_frame_bytes), trades)
            for sub in members:
                sub.push_batch(batch, items)
            self.metrics.frames.inc(len(members) * len(batch.frames))
            self.metrics.messages.inc(len(members) * len(items))

    # -------------------------------------------------------------- subscriptions
    def subscribe(self, subscriber: Subscriber, symbol: str, channel: Channel) -> None:
        """Add a subscription; call :meth:`flush` first so snapshots follow what was sent."""
        subs = self._subs.setdefault((symbol, channel), set())
        if subscriber not in subs:
            subs.add(subscriber)
            self._members[subscriber] = self._members.get(subscriber, 0) + 1

    def unsubscribe(self, subscriber: Subscriber, symbol: str, channel: Channel) -> None:
        subs = self._subs.get((symbol, channel))
        if subs is not None and subscriber in subs:
            subs.remove(subscriber)
            if not subs:
                del self._subs[(symbol, channel)]
            left = self._members[subscriber] - 1
            if left:
                self._members[subscriber] = left
            else:
                del self._members[subscriber]

    @property
    def clients(self) -> int:
        """Connections with at least one subscription."""
        return len(self._members)

    def subscriber_count(self, symbol: str, channel: Channel) -> int:
        return len(self._subs.get((symbol, channel), ()))

    def book_snapshot(self, symbol: str) -> BookSnapshotMsg:
        """The published book (full depth) with the sequence of the last update applied to it."""
        book = self._symbol(symbol).book
        return BookSnapshotMsg(symbol, book.sequence, book.levels(True), book.levels(False))

    def trades_snapshot(self, symbol: str) -> TradesSnapshotMsg:
        recent = [trade_msg(symbol, trade) for trade in self._symbol(symbol).recent]
        return TradesSnapshotMsg(symbol, recent[-1].sequence if recent else 0, recent)

    def ticker(self, symbol: str) -> TickerMsg:
        state = self._symbol(symbol)
        bid, ask = state.book.best(True), state.book.best(False)
        last = state.last_trade
        return TickerMsg(
            symbol,
            state.book.sequence,
            money(bid[0]) if bid else None,
            bid[1] if bid else None,
            money(ask[0]) if ask else None,
            ask[1] if ask else None,
            money(last[0]) if last else None,
            last[1] if last else None,
        )

    def _symbol(self, symbol: str) -> SymbolState:
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = SymbolState()
        return state
