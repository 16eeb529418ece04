"""A brute-force reference exchange, written straight from the contract for property tests.

Deliberately naive so it is obviously right: every order ever accepted lives in one list, and every
derived figure is recomputed from that list on demand -- the book is "active limit orders of this
symbol and side, re-sorted by (price, created_at, order_id)", a broker's reservations are "Σ over
its active limit orders", listings are "filter, sort, slice". Nothing is cached, indexed or
updated incrementally, so the only state that can drift is cash, holdings and the orders
themselves, each moved by a few lines that mirror the contract's tables (§3.5-§3.7, §4.2, §4.3).

Section references are to ``/work/shared/spec/exchange-api.md``. Errors are the Exchange's own
exception classes (they are plain data: a code and a message), raised in the contract's check
order (§9): validation, then 404, then 409 balance/holdings, then ``no_liquidity``.

Time is whatever the injected clock reads (integer nanoseconds); ``created_at`` ties are broken by
``order_id``, which this model issues from a counter, so ties resolve in arrival order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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

__all__ = [
    "ACTIVE",
    "RefBroker",
    "RefClosed",
    "RefExchange",
    "RefFill",
    "RefOrder",
    "RefQuote",
    "RefTrade",
    "RefVwap",
]

ACTIVE = ("pending", "partially_filled")


@dataclass(frozen=True)
class RefTrade:
    trade_id: str
    price: int
    quantity: int
    executed_at: int
    buy_order_id: str
    sell_order_id: str


@dataclass
class RefOrder:
    order_id: str
    type: str
    broker_id: str
    document_number: str
    side: str
    symbol: str
    quantity: int
    price: int | None
    expires_at: int | None
    created_at: int
    filled_quantity: int = 0
    remaining_quantity: int = 0
    cancelled_quantity: int = 0
    status: str = "pending"
    cancelled_at: int | None = None
    expired_at: int | None = None
    trades: list[RefTrade] = field(default_factory=list)

    @property
    def average_price(self) -> int | None:
        """§3.8: Σ price × quantity / filled, integer division; ``None`` without fills."""
        if self.filled_quantity == 0:
            return None
        return sum(t.price * t.quantity for t in self.trades) // self.filled_quantity


@dataclass
class RefBroker:
    broker_id: str
    cash: int
    created_at: int
    updated_at: int
    holdings: dict[str, int] = field(default_factory=dict)  # symbol -> quantity owned


@dataclass(frozen=True)
class RefFill:
    """One side of a trade as its owner sees it (the ``trade.executed`` webhook, §5.4)."""

    trade_id: str
    broker_id: str
    order_id: str
    side: str
    price: int
    quantity: int
    order_status: str
    order_filled_quantity: int
    order_remaining_quantity: int


@dataclass(frozen=True)
class RefClosed:
    """``order.cancelled`` / ``order.expired`` (§5.4)."""

    event: str
    broker_id: str
    order_id: str
    status: str
    filled_quantity: int
    cancelled_quantity: int
    at: int


RefEvent = RefTrade | RefFill | RefClosed


@dataclass(frozen=True)
class RefQuote:
    quantity_requested: int
    quantity_available: int
    total: int
    levels: list[tuple[int, int]]


@dataclass(frozen=True)
class RefVwap:
    current_price: int | None
    trades_in_window: int
    last_trade_at: int | None


def _book_key(order: RefOrder) -> tuple[int, int, str]:
    """§3.1: bids price descending, asks ascending; then created_at, then order_id ascending."""
    assert order.price is not None
    price = -order.price if order.side == "bid" else order.price
    return (price, order.created_at, order.order_id)


class RefExchange:
    """The whole exchange as lists and dicts; every query recomputes from scratch."""

    def __init__(self, now: Callable[[], int], *, vwap_window_ns: int) -> None:
        self._now = now
        self.vwap_window_ns = vwap_window_ns
        self.brokers: dict[str, RefBroker] = {}
        self.orders: list[RefOrder] = []
        self.trades: list[tuple[str, RefTrade]] = []  # (symbol, trade), in execution order
        self.symbols: set[str] = set()
        self._next_id = 0

    def _new_id(self) -> str:
        self._next_id += 1
        return f"ref-{self._next_id:08d}"

    # ------------------------------------------------------------------ derived figures
    def find(self, order_id: str) -> RefOrder | None:
        for order in self.orders:
            if order.order_id == order_id:
                return order
        return None

    def resting(self, symbol: str, side: str) -> list[RefOrder]:
        """Resting orders of one side, best first (§3.1)."""
        found = [
            o
            for o in self.orders
            if o.symbol == symbol and o.side == side and o.type == "limit" and o.status in ACTIVE
        ]
        return sorted(found, key=_book_key)

    def reserved_cash(self, broker_id: str) -> int:
        """§2.2 / §7.5: Σ price × remaining over the broker's active limit bids."""
        return sum(
            o.price * o.remaining_quantity
            for o in self.orders
            if o.broker_id == broker_id
            and o.side == "bid"
            and o.type == "limit"
            and o.status in ACTIVE
            and o.price is not None
        )

    def reserved_quantity(self, broker_id: str, symbol: str) -> int:
        """§2.2 / §7.5: Σ remaining over the broker's active asks on ``symbol``."""
        return sum(
            o.remaining_quantity
            for o in self.orders
            if o.broker_id == broker_id
            and o.symbol == symbol
            and o.side == "ask"
            and o.type == "limit"
            and o.status in ACTIVE
        )

    def available_cash(self, broker_id: str) -> int:
        return self.brokers[broker_id].cash - self.reserved_cash(broker_id)

    def available_quantity(self, broker_id: str, symbol: str) -> int:
        owned = self.brokers[broker_id].holdings.get(symbol, 0)
        return owned - self.reserved_quantity(broker_id, symbol)

    # ------------------------------------------------------------------ commands
    def register_broker(self, broker_id: str, cash: int, holdings: list[tuple[str, int]]) -> None:
        """§2.1."""
        if broker_id in self.brokers:
            raise BrokerAlreadyExists(broker_id)
        now = self._now()
        self.brokers[broker_id] = RefBroker(broker_id, cash, now, now, dict(holdings))
        self.symbols.update(symbol for symbol, _ in holdings)

    def submit(
        self,
        *,
        type: str,
        broker_id: str,
        document_number: str,
        side: str,
        symbol: str,
        quantity: int,
        price: int | None,
        expires_at: int | None,
    ) -> tuple[RefOrder, list[RefEvent]]:
        """§2.4, §3.5, §3.6: validate, check funds, create, match, rest or IOC-cancel."""
        now = self._now()
        is_limit = type == "limit"
        # §2.4 validation ("later than now", strictly), then the symbol is listed (§9 suggestion).
        if is_limit and (expires_at is None or expires_at <= now):
            raise ValidationError("expires_at must be a future timestamp")
        self.symbols.add(symbol)
        if broker_id not in self.brokers:
            raise BrokerNotFound(broker_id)
        opposite_side = "ask" if side == "bid" else "bid"
        opposite = self.resting(symbol, opposite_side)
        # §2.4 balance table, then no_liquidity (§9).
        if side == "ask":
            if self.available_quantity(broker_id, symbol) < quantity:
                raise InsufficientHoldings(broker_id, symbol)
        elif is_limit:
            assert price is not None
            if self.available_cash(broker_id) < price * quantity:
                raise InsufficientBalance(broker_id)
        elif self.available_cash(broker_id) < self.quote_side(opposite, quantity).total:
            raise InsufficientBalance(broker_id)
        if not is_limit and not opposite:
            raise NoLiquidity(symbol)

        order = RefOrder(
            order_id=self._new_id(),
            type=type,
            broker_id=broker_id,
            document_number=document_number,
            side=side,
            symbol=symbol,
            quantity=quantity,
            price=price if is_limit else None,
            expires_at=expires_at if is_limit else None,
            created_at=now,
            remaining_quantity=quantity,
        )
        self.orders.append(order)
        self.brokers[broker_id].updated_at = now
        events: list[RefEvent] = []
        executed_at = now  # §3.4: read once per pass
        while order.remaining_quantity > 0:
            book = self.resting(symbol, opposite_side)  # re-sorted on every step, on purpose
            if not book:
                break
            best = book[0]
            assert best.price is not None
            if is_limit:
                assert price is not None
                compatible = price >= best.price if side == "bid" else best.price >= price
                if not compatible:
                    break
            # §3.3: limit vs limit trades at the ask; against a market order, the resting price.
            exec_price = price if (is_limit and side == "ask") else best.price
            assert exec_price is not None
            fill = min(order.remaining_quantity, best.remaining_quantity)
            buy, sell = (order, best) if side == "bid" else (best, order)
            trade = RefTrade(
                self._new_id(), exec_price, fill, executed_at, buy.order_id, sell.order_id
            )
            for party in (buy, sell):
                party.remaining_quantity -= fill
                party.filled_quantity += fill
                party.status = "filled" if party.remaining_quantity == 0 else "partially_filled"
                party.trades.append(trade)
            self._settle(buy, sell, exec_price, fill, executed_at)
            self.trades.append((symbol, trade))
            events.append(trade)
            events.extend(self._fill_event(o, trade) for o in (buy, sell))
        if order.remaining_quantity > 0 and not is_limit:
            # §3.6 step 4: IOC leftover; no cancelled_at, no webhook.
            order.cancelled_quantity = order.remaining_quantity
            order.remaining_quantity = 0
            order.status = "cancelled"
        return order, events

    def _settle(self, buy: RefOrder, sell: RefOrder, price: int, quantity: int, now: int) -> None:
        """§3.7; reservations are derived from the orders, so only cash and holdings move."""
        buyer, seller = self.brokers[buy.broker_id], self.brokers[sell.broker_id]
        buyer.cash -= price * quantity
        buyer.holdings[buy.symbol] = buyer.holdings.get(buy.symbol, 0) + quantity
        seller.cash += price * quantity
        seller.holdings[sell.symbol] = seller.holdings.get(sell.symbol, 0) - quantity
        buyer.updated_at = now
        seller.updated_at = now

    @staticmethod
    def _fill_event(order: RefOrder, trade: RefTrade) -> RefFill:
        return RefFill(
            trade.trade_id,
            order.broker_id,
            order.order_id,
            order.side,
            trade.price,
            trade.quantity,
            order.status,
            order.filled_quantity,
            order.remaining_quantity,
        )

    def cancel(self, order_id: str) -> tuple[RefOrder, list[RefEvent]]:
        """§2.6, §4.2."""
        order = self.find(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        if order.status not in ACTIVE:
            raise OrderNotCancellable(order_id, order.status)
        now = self._now()
        return order, [self._close(order, "cancelled", now, now)]

    def expire_due(self) -> list[RefEvent]:
        """§4.3: every active order with expires_at <= now, ascending expires_at."""
        now = self._now()
        due = [
            o
            for o in self.orders
            if o.status in ACTIVE and o.expires_at is not None and o.expires_at <= now
        ]
        due.sort(key=lambda o: (o.expires_at, o.created_at, o.order_id))
        events: list[RefEvent] = []
        for order in due:
            assert order.expires_at is not None
            events.append(self._close(order, "expired", order.expires_at, now))
        return events

    def _close(self, order: RefOrder, status: str, at: int, now: int) -> RefClosed:
        order.cancelled_quantity = order.remaining_quantity
        order.remaining_quantity = 0
        order.status = status
        if status == "cancelled":
            order.cancelled_at = at
        else:
            order.expired_at = at
        self.brokers[order.broker_id].updated_at = now
        return RefClosed(
            f"order.{status}",
            order.broker_id,
            order.order_id,
            status,
            order.filled_quantity,
            order.cancelled_quantity,
            at,
        )

    # ------------------------------------------------------------------ queries
    def broker(self, broker_id: str) -> RefBroker:
        found = self.brokers.get(broker_id)
        if found is None:
            raise BrokerNotFound(broker_id)
        return found

    def order(self, order_id: str) -> RefOrder:
        found = self.find(order_id)
        if found is None:
            raise OrderNotFound(order_id)
        return found

    def broker_orders(
        self, broker_id: str, status: str | None, page: int, limit: int
    ) -> tuple[list[RefOrder], int]:
        """§2.3: newest first (ties: order_id descending), filter, then offset pagination."""
        if broker_id not in self.brokers:
            raise BrokerNotFound(broker_id)
        matches = [
            o
            for o in self.orders
            if o.broker_id == broker_id and (status is None or o.status == status)
        ]
        matches.sort(key=lambda o: (o.created_at, o.order_id), reverse=True)
        start = (page - 1) * limit
        return matches[start : start + limit], len(matches)

    def _listed(self, symbol: str) -> None:
        if symbol not in self.symbols:
            raise SymbolNotFound(symbol)

    def book(self, symbol: str, side: str) -> list[tuple[int, int, int]]:
        """§2.8: (price, total_quantity, order_count) per level, best first."""
        self._listed(symbol)
        levels: list[tuple[int, int, int]] = []
        for order in self.resting(symbol, side):
            assert order.price is not None
            if levels and levels[-1][0] == order.price:
                price, total, count = levels[-1]
                levels[-1] = (price, total + order.remaining_quantity, count + 1)
            else:
                levels.append((order.price, order.remaining_quantity, 1))
        return levels

    def quote(self, symbol: str, side: str, quantity: int) -> RefQuote:
        """§2.9: walk the opposite side as a market order would."""
        self._listed(symbol)
        return self.quote_side(self.resting(symbol, "ask" if side == "bid" else "bid"), quantity)

    @staticmethod
    def quote_side(opposite: list[RefOrder], quantity: int) -> RefQuote:
        wanted, total = quantity, 0
        levels: list[tuple[int, int]] = []
        for order in opposite:  # order by order; consecutive takes at one price merge
            if wanted == 0:
                break
            assert order.price is not None
            take = min(wanted, order.remaining_quantity)
            wanted -= take
            total += take * order.price
            if levels and levels[-1][0] == order.price:
                levels[-1] = (order.price, levels[-1][1] + take)
            else:
                levels.append((order.price, take))
        return RefQuote(quantity, quantity - wanted, total, levels)

    def vwap(self, symbol: str) -> RefVwap:
        """§2.7 with the §9 defaults: inclusive window, truncated integer cents."""
        self._listed(symbol)
        history = [t for s, t in self.trades if s == symbol]
        if not history:
            return RefVwap(None, 0, None)
        cutoff = self._now() - self.vwap_window_ns
        recent = [t for t in history if t.executed_at >= cutoff]
        last = history[-1]
        if not recent:
            return RefVwap(last.price, 0, last.executed_at)
        notional = sum(t.price * t.quantity for t in recent)
        volume = sum(t.quantity for t in recent)
        return RefVwap(notional // volume, len(recent), last.executed_at)
