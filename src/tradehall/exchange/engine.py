"""The matching engine: pure, synchronous and deterministic; no I/O, no HTTP, no threads.

Every state change is one method call that either completes or raises an
:class:`~tradehall.exchange.errors.ExchangeError` before touching anything, which makes each call an
atomic unit (contract §3.9). Callers serialise calls (one asyncio task at a time), so there is no
locking here. Given the same clock readings and ids, the same calls produce the same state -- the
property the journal relies on for replay.

Time: the engine reads its :class:`~tradehall.core.clock.Clock` once per command and hands out
strictly increasing nanosecond stamps, so ``created_at`` never collides and arrival order equals
``(created_at, order_id)`` order. ``executed_at`` for every trade of a pass is that command's stamp.

Events: each command returns the :mod:`~tradehall.exchange.events` it produced, in order; they are
for delivery after the command, never during it.

Performance: :meth:`Engine.submit`, :meth:`Engine.cancel` and the matching loop are the hot path
(``bench/exchange/engine_bench.py``). They call few functions and allocate little: orders and
trades are structs outside the cycle collector, fills and settlement are applied inline, and
every index touched costs O(1) or O(log n) per change (:mod:`~tradehall.exchange.book`,
:mod:`~tradehall.exchange.indexes`), so no command's cost grows with the history.

Two builds, one set of structures: :meth:`Engine.submit`, :meth:`Engine.cancel` and
:meth:`Engine.expire_due` are the pure-Python reference implementation (also reachable as
``_submit_python``, ``_cancel_python``, ``_expire_due_python``); an engine built with the native
core shadows them, on the instance, with the methods of the optional C extension
:mod:`tradehall.exchange._native` (sources in
``exchange/native/``, built by ``make`` / ``python scripts/build_native.py``). The C core is a 1:1
translation of those methods that works on the very same Python objects -- the msgspec
:class:`~tradehall.exchange.model.Order` / ``Trade`` / event structs, ``Broker`` and ``Holding``,
the :class:`~tradehall.exchange.book.BookSide` levels, heaps and deques, and the
:mod:`~tradehall.exchange.indexes` -- reading and writing their fields by slot offset. So every
other method (queries, :meth:`Engine.export_state`, :meth:`Engine.from_state`, market data, the
journal) is shared, the two builds may even be mixed on one engine, and for the same calls, clock
readings and ids they produce byte-identical state and the same events, errors included
(``tests/exchange/test_engine_native.py`` checks this differentially). The counters
``_last_ns``, ``_seq`` and ``trade_count`` are slots of the engine, which both paths read and
write (the C core by offset, reaching the engine through a weak reference, so the engine, which
holds the core's methods, forms no reference cycle): one source of truth.
``native=None`` (the default) uses the C core when it is built and ``TRADEHALL_ENGINE`` is not
``python``; :attr:`Engine.build` says which one an engine uses.
"""

from __future__ import annotations

import os
from sys import intern
from types import ModuleType

import msgspec

from tradehall.core.clock import Clock
from tradehall.core.ids import IdSource
from tradehall.exchange.book import BookSide, OrderBook
from tradehall.exchange.errors import (
    BrokerAlreadyExists,
    BrokerNotFound,
    InsufficientBalance,
    InsufficientHoldings,
    NoLiquidity,
    OrderNotCancellable,
    OrderNotFound,
    SymbolNotFound,
    ValidationError,
)
from tradehall.exchange.events import EngineEvent, OrderClosed, OrderFilled, TradeExecuted
from tradehall.exchange.indexes import BrokerOrders, ExpiryIndex, TradeWindow, VwapFigures
from tradehall.exchange.model import (
    CANCELLED,
    EXPIRED,
    FILLED,
    PARTIALLY_FILLED,
    Broker,
    Holding,
    Order,
    Trade,
    append_trade,
)
from tradehall.exchange.state import (
    BrokerState,
    EngineState,
    MarketState,
    order_from_state,
    order_state,
)

__all__ = ["Engine", "OrderRequest", "Quote"]


class OrderRequest(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A field-validated order submission (see :mod:`~tradehall.exchange.requests`)."""

    type: str
    broker_id: str
    document_number: str
    side: str
    symbol: str
    quantity: int
    price: int | None = None
    expires_at: int | None = None


class Quote(msgspec.Struct, frozen=True, gc=False):
    """A dry-run sweep of one side of the book."""

    quantity_requested: int
    quantity_available: int
    total: int
    levels: list[tuple[int, int]]  # (price, quantity taken), in walk order


class _Market:
    """Everything the engine keeps per listed symbol."""

    __slots__ = ("book", "window")

    def __init__(self, symbol: str, window_ns: int) -> None:
        self.book = OrderBook(symbol)
        self.window = TradeWindow(window_ns)


class Engine:
    """All books, brokers and orders of one exchange."""

    # The per-command counters are slots, so the C core updates them by offset rather than
    # through the instance dict (several dict writes per command). ``__dict__`` stays for every
    # other attribute -- a native engine's methods shadow the class's there -- and
    # ``__weakref__`` for the core's reference back to its engine.
    __slots__ = ("__dict__", "__weakref__", "_last_ns", "_seq", "trade_count")

    def __init__(
        self,
        clock: Clock,
        ids: IdSource,
        *,
        vwap_window_ns: int = 300 * 10**9,
        native: bool | None = None,
    ) -> None:
        """An empty exchange reading ``clock`` and minting ids from ``ids``.

        ``native``: ``None`` uses the C core when :mod:`tradehall.exchange._native` is built and
        the environment variable ``TRADEHALL_ENGINE`` is not ``python``; ``True`` requires it
        (:class:`ImportError` if it is not built); ``False`` runs the pure-Python methods.
        A native engine's ``submit`` / ``cancel`` / ``expire_due`` refer to it weakly: keep the
        engine itself, not only those bound methods (they raise :class:`ReferenceError` once
        the engine is gone).
        """
        self._clock = clock
        self._ids = ids
        self._read_clock = clock.time_ns  # bound once: read on every command
        self._new_id = ids.new_id
        self._vwap_window_ns = vwap_window_ns
        self._last_ns = 0
        self._seq = 0
        self._markets: dict[str, _Market] = {}
        self.brokers: dict[str, Broker] = {}
        self.orders: dict[str, Order] = {}
        self._broker_orders: dict[str, BrokerOrders] = {}
        self._expiry = ExpiryIndex()
        self.trade_count = 0
        module = _native_module(native)
        self._build = "python" if module is None else "native"
        if module is not None:
            # The C core's methods shadow the pure ones on this instance. The core refers back
            # to the engine weakly, so an engine is no reference cycle in either build.
            core = module.Core(self)
            vars(self).update(submit=core.submit, cancel=core.cancel, expire_due=core.expire_due)

    @property
    def build(self) -> str:
        """Which implementation runs the hot commands: ``"native"`` (C) or ``"python"``."""
        return self._build

    # ------------------------------------------------------------------ time
    def _stamp(self) -> tuple[int, int]:
        """The clock reading and a candidate stamp: the reading, nudged to stay increasing.

        Rules that compare with "now" (a future ``expires_at``, what is due to expire) use the
        reading itself, so a nudge -- or a wall clock stepping back -- never expires an order early
        or refuses a deadline that is still ahead. Only a command that changes state keeps its
        stamp (:meth:`_keep`), so rejected commands and empty sweeps leave no trace.
        """
        now = self._read_clock()
        return now, (now if now > self._last_ns else self._last_ns + 1)

    def _keep(self, stamp: int) -> None:
        self._last_ns = stamp

    def now(self) -> int:
        """The next engine timestamp, kept (for state changes made outside the engine)."""
        _, stamp = self._stamp()
        self._keep(stamp)
        return stamp

    # ------------------------------------------------------------------ commands
    def register_broker(self, broker_id: str, cash: int, holdings: list[tuple[str, int]]) -> Broker:
        """Create a broker with starting cash and positions; its symbols become listed."""
        if broker_id in self.brokers:
            raise BrokerAlreadyExists(broker_id)
        broker = Broker(broker_id, cash, self.now())
        for symbol, quantity in holdings:
            broker.holdings[symbol] = Holding(quantity)
            self._market(symbol)
        self.brokers[broker_id] = broker
        self._broker_orders[broker_id] = BrokerOrders(packed=self._build == "native")
        return broker

    def submit(self, request: OrderRequest) -> tuple[Order, list[EngineEvent]]:
        """Validate, reserve, match and rest or finish one order (contract §3.5, §3.6).

        Returns the order and the events it produced; a refused order raises an
        :class:`~tradehall.exchange.errors.ExchangeError` and changes nothing.
        """
        reading = self._read_clock()
        last = self._last_ns
        now = reading if reading > last else last + 1
        is_limit = request.type == "limit"
        expires_at = request.expires_at
        if is_limit and (expires_at is None or expires_at <= reading):
            raise ValidationError("expires_at must be a future timestamp")
        market = self._markets.get(request.symbol)
        if market is None:  # listed once the fields are valid (contract §9)
            market = self._market(request.symbol)
        broker = self.brokers.get(request.broker_id)
        if broker is None:
            raise BrokerNotFound(request.broker_id)
        book = market.book
        symbol = book.symbol  # the listed string: orders share it rather than keep a copy
        is_bid = request.side == "bid"
        own, opposite = (book.bids, book.asks) if is_bid else (book.asks, book.bids)
        quantity, price = request.quantity, request.price
        # Balance and holdings are checked before no_liquidity (contract §9).
        if not is_bid:
            holding = broker.holdings.get(symbol)
            if holding is None or holding.quantity - holding.reserved < quantity:
                raise InsufficientHoldings(broker.broker_id, request.symbol)
        elif price is not None:
            if broker.cash - broker.reserved_cash < price * quantity:
                raise InsufficientBalance(broker.broker_id)
        elif broker.cash - broker.reserved_cash < _sweep(opposite, quantity).total:
            raise InsufficientBalance(broker.broker_id)
        best = opposite.best_level
        if best is None and not is_limit:
            raise NoLiquidity(request.symbol)

        self._last_ns = now
        self._seq += 1  # == len(self.orders) once the order is in
        broker_id = broker.broker_id
        order = Order(
            self._new_id(),
            "limit" if is_limit else "market",
            broker_id,
            intern(request.document_number),  # one copy per end client, not per order
            "bid" if is_bid else "ask",
            symbol,
            quantity,
            price,
            expires_at,
            now,
            quantity,
        )
        if is_limit:
            if is_bid:
                broker.reserved_cash += quantity * price  # type: ignore[operator]
            else:
                holding.reserved += quantity  # type: ignore[union-attr]
        self.orders[order.order_id] = order
        broker.updated_at = now

        events: list[EngineEvent] = []
        if best is not None and (
            price is None or (price >= best.price if is_bid else price <= best.price)
        ):
            self._match(order, market, opposite, now, events)
        if order.remaining:
            if is_limit:
                own.add(order)
                self._expiry.add(order)
            else:
                order.close(CANCELLED, now)  # immediate-or-cancel leftover; no event
        self._broker_orders[broker_id].add(order)
        return order, events

    def cancel(self, order_id: str) -> tuple[Order, list[EngineEvent]]:
        """Cancel the open part of an active order and release its reservation (§4.2)."""
        order = self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        if not order.remaining:  # filled, cancelled or expired: nothing open
            raise OrderNotCancellable(order_id, order.status)
        reading, last = self._read_clock(), self._last_ns
        now = self._last_ns = reading if reading > last else last + 1
        return order, [self._close(order, CANCELLED, now, now)]

    def expire_due(self) -> list[EngineEvent]:
        """Expire every resting order whose deadline has passed, earliest first (§4.3)."""
        reading, now = self._stamp()
        due = self._expiry.pop_due(reading)
        if due:
            self._keep(now)
        events: list[EngineEvent] = []
        for order in due:
            assert order.expires_at is not None
            events.append(self._close(order, EXPIRED, order.expires_at, now, swept=True))
        return events

    # The pure-Python reference under fixed names: what the class methods above are even on an
    # engine whose instance uses the native core (which calls ``_submit_python`` for a request
    # that is not an exact OrderRequest struct).
    _submit_python = submit
    _cancel_python = cancel
    _expire_due_python = expire_due

    def broker(self, broker_id: str) -> Broker:
        broker = self.brokers.get(broker_id)
        if broker is None:
            raise BrokerNotFound(broker_id)
        return broker

    def order(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        return order

    def broker_orders(
        self, broker_id: str, status: str | None, page: int, limit: int
    ) -> tuple[list[Order], int]:
        """One page of a broker's orders, newest first, and the filter's total."""
        index = self._broker_orders.get(broker_id)
        if index is None:
            raise BrokerNotFound(broker_id)
        return index.page(status, page, limit)

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._markets

    @property
    def symbols(self) -> list[str]:
        return sorted(self._markets)

    def book(self, symbol: str) -> OrderBook:
        return self._listed(symbol).book

    def vwap(self, symbol: str) -> VwapFigures:
        return self._listed(symbol).window.figures(self._read_clock())

    def quote(self, symbol: str, side: str, quantity: int) -> Quote:
        """Walk the opposite side as a market order of ``quantity`` would (§2.9)."""
        book = self._listed(symbol).book
        return _sweep(book.opposite(side), quantity)

    def next_deadline(self) -> int | None:
        """The earliest ``expires_at`` among resting orders, if any."""
        return self._expiry.earliest()

    @property
    def resting_orders(self) -> int:
        return len(self._expiry)

    # ------------------------------------------------------------------ state images
    def export_state(self) -> EngineState:
        """An image of everything the engine knows (see :mod:`~tradehall.exchange.state`)."""
        markets = [
            MarketState(symbol, m.window.entries(), m.window.last_price, m.window.last_trade_at)
            for symbol, m in self._markets.items()
        ]
        brokers = [
            BrokerState(
                b.broker_id,
                b.cash,
                b.reserved_cash,
                b.created_at,
                b.updated_at,
                [(s, h.quantity, h.reserved) for s, h in b.holdings.items()],
            )
            for b in self.brokers.values()
        ]
        first = self._seq - len(self.orders) + 1  # orders are kept in creation order
        orders = [order_state(o, seq) for seq, o in enumerate(self.orders.values(), first)]
        return EngineState(self._last_ns, self._seq, self.trade_count, markets, brokers, orders)

    @classmethod
    def from_state(
        cls,
        state: EngineState,
        clock: Clock,
        ids: IdSource,
        *,
        vwap_window_ns: int,
        native: bool | None = None,
    ) -> Engine:
        """Rebuild an engine from an image; derived indexes are rebuilt in creation order.

        ``native`` chooses the build as in :class:`Engine`; both rebuild the same structures.
        """
        engine = cls(clock, ids, vwap_window_ns=vwap_window_ns, native=native)
        engine._last_ns, engine._seq, engine.trade_count = (
            state.last_ns,
            state.seq,
            state.trade_count,
        )
        for ms in state.markets:
            engine._market(ms.symbol).window.restore(ms.window, ms.last_price, ms.last_trade_at)
        for bs in state.brokers:
            broker = Broker(bs.broker_id, bs.cash, bs.created_at)
            broker.reserved_cash, broker.updated_at = bs.reserved_cash, bs.updated_at
            for symbol, quantity, reserved in bs.holdings:
                holding = broker.holdings[symbol] = Holding(quantity)
                holding.reserved = reserved
            engine.brokers[bs.broker_id] = broker
            engine._broker_orders[bs.broker_id] = BrokerOrders(packed=engine.build == "native")
        ordered = sorted(state.orders, key=lambda o: o.seq)
        if [o.seq for o in ordered] != list(range(state.seq - len(ordered) + 1, state.seq + 1)):
            raise ValueError("engine state: order seq numbers must run without gaps to state.seq")
        for os_ in ordered:
            order = order_from_state(os_)
            # Share the engine's strings rather than keep each order's decoded copies.
            order.broker_id = engine.brokers[order.broker_id].broker_id
            order.symbol = engine._market(order.symbol).book.symbol
            order.document_number = intern(order.document_number)
            engine.orders[order.order_id] = order
            engine._broker_orders[order.broker_id].add(order)
            if order.remaining and order.type == "limit":
                engine._market(order.symbol).book.side(order.side).add(order)
                engine._expiry.add(order)
        return engine

    # ------------------------------------------------------------------ internals
    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            market = self._markets[symbol] = _Market(symbol, self._vwap_window_ns)
        return market

    def _listed(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            raise SymbolNotFound(symbol)
        return market

    def _match(
        self,
        order: Order,
        market: _Market,
        opposite: BookSide,
        now: int,
        events: list[EngineEvent],
    ) -> None:
        """Trade ``order`` against ``opposite`` best-first while it crosses and has quantity.

        One pass does everything a trade implies -- both orders' fills, the listing index, the
        book and expiry index, settlement, the VWAP window and the three events -- inline, as
        this loop is the engine's hot path. The taker's settlement and the VWAP window are
        updated once per pass with the pass's totals.
        """
        limit = order.price
        is_bid = order.side == "bid"
        at_own_price = limit is not None and not is_bid  # limit vs limit trades at the ask (§3.3)
        symbol, side = order.symbol, order.side
        brokers, listing, expiry = self.brokers, self._broker_orders, self._expiry
        taker = brokers[order.broker_id]
        new_id = self._new_id
        append = events.append
        window: list[tuple[int, int, int]] = []  # this pass's VWAP entries
        taken_notional = taken_quantity = price = 0  # the taker settles once, after the loop
        holding: Holding | None
        while True:
            level = opposite.best_level
            if level is None:
                break
            level_price = level.price
            if limit is not None and (limit < level_price if is_bid else level_price < limit):
                break
            queue = level.orders
            resting = queue[0]
            while not resting.remaining:  # the slot of an order cancelled by id: skip it
                queue.popleft()
                level.dead -= 1
                resting = queue[0]
            wanted, offered = order.remaining, resting.remaining
            quantity = wanted if wanted < offered else offered
            price = limit if at_own_price else level_price  # type: ignore[assignment]
            notional = price * quantity
            buy, sell = (order, resting) if is_bid else (resting, order)
            trade_id = new_id()
            trade = Trade(trade_id, price, quantity, now, buy.order_id, sell.order_id)

            # Both fills, inline. Both orders are active, so pending/partially_filled ->
            # partially_filled/filled are edges the transition table lists.
            left = order.remaining = wanted - quantity
            order.filled += quantity
            log = order.trade_log
            if log is None:
                order.trade_log = (trade,)
            elif isinstance(log, list):
                log.append(trade)
            else:
                order.trade_log = append_trade(log, trade)
            order.status = PARTIALLY_FILLED if left else FILLED
            left = resting.remaining = offered - quantity
            resting.filled += quantity
            log = resting.trade_log
            if log is None:
                resting.trade_log = (trade,)
            elif isinstance(log, list):
                log.append(trade)
            else:
                resting.trade_log = append_trade(log, trade)
            was = resting.status
            resting.status = PARTIALLY_FILLED if left else FILLED
            if resting.status != was:
                listing[resting.broker_id].moved(resting, was)
            level.total -= quantity
            if not left:
                queue.popleft()
                level.count -= 1
                if not level.count:
                    opposite.drop_level(level)
                expiry.discard(resting)

            # Settlement of the resting side (always a limit order): cash and shares move, and
            # its reservation is released -- a bid's at its own price, so any price improvement
            # returns to available cash.
            maker = brokers[resting.broker_id]
            if is_bid:
                maker.cash += notional
                sold = maker.holdings[symbol]
                sold.quantity -= quantity
                sold.reserved -= quantity
            else:
                maker.cash -= notional
                maker.reserved_cash -= resting.price * quantity  # type: ignore[operator]
                holding = maker.holdings.get(symbol)
                if holding is None:
                    holding = maker.holdings[symbol] = Holding()
                holding.quantity += quantity
            maker.updated_at = now
            taken_notional += notional
            taken_quantity += quantity
            window.append((now, notional, quantity))

            append(TradeExecuted(symbol, trade_id, price, quantity, side, now))
            append(
                OrderFilled(
                    trade_id,
                    buy.broker_id,
                    buy.order_id,
                    symbol,
                    "bid",
                    price,
                    quantity,
                    buy.status,
                    buy.filled,
                    buy.remaining,
                    now,
                )
            )
            append(
                OrderFilled(
                    trade_id,
                    sell.broker_id,
                    sell.order_id,
                    symbol,
                    "ask",
                    price,
                    quantity,
                    sell.status,
                    sell.filled,
                    sell.remaining,
                    now,
                )
            )
            if not order.remaining:
                break
        if not window:
            return
        # The taker's side of every trade of the pass, at once (sums commute, also when the
        # taker traded with its own resting orders).
        if is_bid:
            taker.cash -= taken_notional
            if order.type == "limit":
                taker.reserved_cash -= limit * taken_quantity  # type: ignore[operator]
            holding = taker.holdings.get(symbol)
            if holding is None:
                holding = taker.holdings[symbol] = Holding()
            holding.quantity += taken_quantity
        else:
            taker.cash += taken_notional
            sold = taker.holdings[symbol]
            sold.quantity -= taken_quantity
            if order.type == "limit":
                sold.reserved -= taken_quantity
        taker.updated_at = now
        market.window.add_pass(now, window, taken_notional, taken_quantity, price)
        self.trade_count += len(window)

    def _close(
        self, order: Order, status: str, at: int, now: int, *, swept: bool = False
    ) -> OrderClosed:
        """End a resting order (cancel, or expiry when ``swept``: the index already let it go)."""
        remaining, old_status = order.remaining, order.status
        order.close(status, at)
        self._broker_orders[order.broker_id].moved(order, old_status)
        book = self._markets[order.symbol].book
        is_bid = order.side == "bid"
        (book.bids if is_bid else book.asks).remove(order, remaining)
        if not swept:
            self._expiry.discard(order)
        broker = self.brokers[order.broker_id]
        assert order.price is not None
        if is_bid:
            broker.reserved_cash -= order.price * remaining
        else:
            broker.holdings[order.symbol].reserved -= remaining
        broker.updated_at = now
        return OrderClosed(
            "order.cancelled" if status == CANCELLED else "order.expired",
            order.broker_id,
            order.order_id,
            order.symbol,
            order.side,
            order.price,
            order.quantity,
            order.filled,
            order.cancelled_quantity,
            order.status,
            at,
        )


def _sweep(side: BookSide, quantity: int) -> Quote:
    remaining, total = quantity, 0
    levels: list[tuple[int, int]] = []
    for level in side.levels():
        if not remaining:
            break
        take = min(remaining, level.total)
        levels.append((level.price, take))
        total += level.price * take
        remaining -= take
    return Quote(quantity, quantity - remaining, total, levels)


_NATIVE_HINT = (
    "the native engine core (tradehall.exchange._native) is not built; run `make` or "
    "`python scripts/build_native.py`, or pass native=False / set TRADEHALL_ENGINE=python"
)


_native_loaded: list[ModuleType | None] = []  # the import's outcome, tried once per process
_native_failure: list[str] = []  # why that import failed, for the error of ``native=True``


def _native_module(native: bool | None) -> ModuleType | None:
    """The C core's module, or ``None`` for the pure-Python build (see :class:`Engine`)."""
    if native is False or (native is None and os.environ.get("TRADEHALL_ENGINE") == "python"):
        return None
    if not _native_loaded:
        try:
            from tradehall.exchange import _native
        except ImportError as exc:  # not built, or built against other structures
            _native_loaded.append(None)
            _native_failure.append(str(exc))
        else:
            _native_loaded.append(_native)
    module = _native_loaded[0]
    if module is None and native:
        reason = f" ({_native_failure[0]})" if _native_failure else ""
        raise ImportError(_NATIVE_HINT + reason)
    return module
