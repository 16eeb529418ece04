"""The Exchange's domain records: brokers, holdings, orders and trades.

Records are mutated only by the engine inside one command, so a command either changes them
consistently or (on a rejected request) not at all. Orders and trades, of which there are
millions, are ``msgspec`` structs kept out of the cycle collector; brokers and holdings are plain
``__slots__`` classes. Prices and cash
are integer cents; times are integer nanoseconds since the epoch.

Order states follow an explicit transition table (:data:`TRANSITIONS`); the engine moves an order
only through :meth:`Order.transition`, which refuses any move the table does not list::

    pending ──► partially_filled ──► filled
       │  └──────────────┬──────────────┘
       └────────┬────────┴──► cancelled   (DELETE on a limit order, or a market order's IOC rest)
                └───────────► expired     (expiry sweep, limit orders only)
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = [
    "ACTIVE_STATUSES",
    "ORDER_STATUSES",
    "TRADE_LOG_TUPLE_MAX",
    "TRANSITIONS",
    "Broker",
    "Holding",
    "IllegalTransition",
    "Order",
    "Side",
    "Trade",
    "append_trade",
]

Side = Literal["bid", "ask"]
OrderType = Literal["limit", "market"]

PENDING: Final = "pending"
PARTIALLY_FILLED: Final = "partially_filled"
FILLED: Final = "filled"
CANCELLED: Final = "cancelled"
EXPIRED: Final = "expired"

ORDER_STATUSES: Final = (PENDING, PARTIALLY_FILLED, FILLED, CANCELLED, EXPIRED)
ACTIVE_STATUSES: Final = frozenset({PENDING, PARTIALLY_FILLED})

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({PARTIALLY_FILLED, FILLED, CANCELLED, EXPIRED}),
    PARTIALLY_FILLED: frozenset({PARTIALLY_FILLED, FILLED, CANCELLED, EXPIRED}),
    FILLED: frozenset(),
    CANCELLED: frozenset(),
    EXPIRED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """An engine bug: an order was asked to move along an edge the table does not allow."""


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One execution between a buy order and a sell order, at one price, at one instant."""

    trade_id: str
    price: int
    quantity: int
    executed_at: int
    buy_order_id: str
    sell_order_id: str


class Order(msgspec.Struct, gc=False, eq=False):
    """A limit or market order and everything that has happened to it.

    Invariant (contract §7.2): ``quantity == filled + remaining + cancelled_quantity``.
    An order is active exactly while ``remaining > 0`` (only active orders have anything left),
    which is the cheap test the hot paths use. A new order has ``remaining == quantity``.

    One of these exists per order ever placed, so it is built for size and speed: a C-level
    struct outside the cycle collector (it references only strings, numbers and its own trade
    list, so it can never be part of a cycle), compared by identity, with nothing stored that can
    be derived: ``cancelled_quantity`` follows from §7.2, ``notional`` and ``average_price`` from
    the trades, ``cancelled_at`` / ``expired_at`` from ``closed_at`` and the status. The trade
    log is created at the first fill (see :data:`TRADE_LOG_TUPLE_MAX`); ``list_pos`` is its place in
    its broker's listing index. Orders are numbered by creation (``seq`` in state images) by
    their position in :attr:`Engine.orders <tradehall.exchange.engine.Engine.orders>`.
    """

    order_id: str
    type: OrderType
    broker_id: str
    document_number: str
    side: Side
    symbol: str
    quantity: int
    price: int | None
    expires_at: int | None
    created_at: int
    remaining: int
    filled: int = 0
    status: str = PENDING
    closed_at: int | None = None  # set by a limit order's cancel or by expiry
    list_pos: int = 0
    trade_log: tuple[Trade, ...] | list[Trade] | None = None  # see TRADE_LOG_TUPLE_MAX

    @property
    def trades(self) -> list[Trade]:
        """The order's trades, oldest first (a fresh list)."""
        trades = self.trade_log
        return [] if trades is None else list(trades)

    @property
    def is_active(self) -> bool:
        """True while the order may still trade (``pending`` or ``partially_filled``)."""
        return self.status in ACTIVE_STATUSES

    @property
    def cancelled_quantity(self) -> int:
        """The quantity a cancel or expiry (or a market order's unfilled rest) took off."""
        return self.quantity - self.filled - self.remaining

    @property
    def cancelled_at(self) -> int | None:
        return self.closed_at if self.status == CANCELLED else None

    @property
    def expired_at(self) -> int | None:
        return self.closed_at if self.status == EXPIRED else None

    @property
    def notional(self) -> int:
        """Σ price × quantity over the order's trades."""
        trades = self.trade_log
        return sum(t.price * t.quantity for t in trades) if trades is not None else 0

    @property
    def average_price(self) -> int | None:
        """Σ price × qty / filled, in cents, truncated toward zero; ``None`` before any fill."""
        return self.notional // self.filled if self.filled else None

    def transition(self, new_status: str) -> None:
        """Move to ``new_status`` if the transition table allows it."""
        if new_status not in TRANSITIONS[self.status]:
            raise IllegalTransition(f"order {self.order_id}: {self.status} -> {new_status}")
        self.status = new_status

    def record_fill(self, trade: Trade) -> None:
        """Apply one trade to this order's quantities, status and history.

        (The engine's matching loop applies fills inline, with the same effect.)
        """
        qty = trade.quantity
        remaining = self.remaining = self.remaining - qty
        self.filled += qty
        self.trade_log = append_trade(self.trade_log, trade)
        self.transition(PARTIALLY_FILLED if remaining else FILLED)

    def close(self, status: str, at: int) -> int:
        """End an active order as ``cancelled`` or ``expired``; return the quantity released."""
        released = self.remaining
        self.transition(status)
        self.remaining = 0
        if status == EXPIRED or self.type == "limit":
            self.closed_at = at
        return released


TRADE_LOG_TUPLE_MAX: Final = 16
"""An order's trades are kept in a tuple up to this many, then in a list.

A tuple of trades (which are untracked structs) drops out of the cycle collector after its first
collection, so the millions of orders with a few fills cost the collector nothing; an order with
many fills switches to a list, so appending never becomes quadratic."""


def append_trade(
    log: tuple[Trade, ...] | list[Trade] | None, trade: Trade
) -> tuple[Trade, ...] | list[Trade]:
    """``log`` with ``trade`` added (a list grows in place; a tuple is replaced)."""
    if log is None:
        return (trade,)
    if isinstance(log, list):
        log.append(trade)
        return log
    if len(log) < TRADE_LOG_TUPLE_MAX:
        return (*log, trade)
    return [*log, trade]


class Holding:
    """A broker's position in one symbol; ``reserved`` is locked by the broker's active asks."""

    __slots__ = ("quantity", "reserved")

    def __init__(self, quantity: int = 0) -> None:
        self.quantity = quantity
        self.reserved = 0

    @property
    def available(self) -> int:
        return self.quantity - self.reserved


class Broker:
    """A registered broker's cash (cents), reservations and positions."""

    __slots__ = ("broker_id", "cash", "created_at", "holdings", "reserved_cash", "updated_at")

    def __init__(self, broker_id: str, cash: int, created_at: int) -> None:
        self.broker_id = broker_id
        self.cash = cash
        self.reserved_cash = 0
        self.holdings: dict[str, Holding] = {}
        self.created_at = created_at
        self.updated_at = created_at

    @property
    def available_cash(self) -> int:
        return self.cash - self.reserved_cash

    def holding(self, symbol: str) -> Holding:
        """The holding for ``symbol``, created empty on first use (a buyer's new position)."""
        found = self.holdings.get(symbol)
        if found is None:
            found = self.holdings[symbol] = Holding()
        return found

    def available_quantity(self, symbol: str) -> int:
        found = self.holdings.get(symbol)
        return found.available if found is not None else 0
