"""Secondary indexes the engine keeps beside the books, each built so no hot path scans history.

- :class:`ExpiryIndex`: resting limit orders by ``(expires_at, order_id)``. Orders enter when they
  rest and leave the moment they leave the book (fill, cancel, expiry), so the sweep pops only what
  is due: O(log n) per change, O(k log n) per sweep of k due orders.
- :class:`BrokerOrders`: one broker's orders, newest-first pages with an optional status filter, in
  O(log n + page) per query: every order in creation order, plus one sorted list per status.
- :class:`TradeWindow`: the VWAP window of one symbol: running sums over a deque of recent trades,
  evicted from the left as time passes, so each trade is added and removed exactly once.
"""

from __future__ import annotations

from collections import deque
from operator import attrgetter

from sortedcontainers import SortedKeyList, SortedList

from tradehall.exchange.model import ORDER_STATUSES, Order

__all__ = ["BrokerOrders", "ExpiryIndex", "TradeWindow", "VwapFigures"]


class ExpiryIndex:
    """Resting orders ordered by deadline; ties broken by order id."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: SortedList = SortedList()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, order: Order) -> None:
        self._keys.add((order.expires_at, order.order_id))

    def discard(self, order: Order) -> None:
        self._keys.discard((order.expires_at, order.order_id))

    def earliest(self) -> int | None:
        return self._keys[0][0] if self._keys else None

    def pop_due(self, now: int) -> list[str]:
        """Remove and return the ids of orders with ``expires_at <= now``, earliest first."""
        keys = self._keys
        due: list[str] = []
        while keys and keys[0][0] <= now:
            due.append(keys.pop(0)[1])
        return due


_by_seq = attrgetter("seq")


class BrokerOrders:
    """A broker's orders for listing: newest first, filterable by status, paginated."""

    __slots__ = ("_all", "_by_status")

    def __init__(self) -> None:
        self._all: list[Order] = []
        self._by_status: dict[str, SortedKeyList] = {}

    def add(self, order: Order) -> None:
        """Index a new order under its current status (creation order == ``seq`` order)."""
        self._all.append(order)
        self._status_list(order.status).add(order)

    def moved(self, order: Order, old_status: str) -> None:
        """Re-file an order whose status changed from ``old_status``."""
        if order.status != old_status:
            self._by_status[old_status].remove(order)
            self._status_list(order.status).add(order)

    def page(self, status: str | None, page: int, limit: int) -> tuple[list[Order], int]:
        """One page, newest first, and the total number of matching orders."""
        source: list[Order] | SortedKeyList
        source = self._all if status is None else self._by_status.get(status, ())
        total = len(source)
        end = total - (page - 1) * limit
        if end <= 0:
            return [], total
        start = max(0, end - limit)
        items = list(source[start:end])
        items.reverse()
        return items, total

    def _status_list(self, status: str) -> SortedKeyList:
        found = self._by_status.get(status)
        if found is None:
            assert status in ORDER_STATUSES
            found = self._by_status[status] = SortedKeyList(key=_by_seq)
        return found


class VwapFigures:
    """What ``GET /stocks/{symbol}/price`` reports."""

    __slots__ = ("current_price", "last_trade_at", "trades_in_window")

    def __init__(
        self, current_price: int | None, trades_in_window: int, last_trade_at: int | None
    ) -> None:
        self.current_price = current_price
        self.trades_in_window = trades_in_window
        self.last_trade_at = last_trade_at


class TradeWindow:
    """Volume-weighted average price over the trailing ``window_ns`` (inclusive lower bound)."""

    __slots__ = ("_notional", "_quantity", "_trades", "last_price", "last_trade_at", "window_ns")

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._trades: deque[tuple[int, int, int]] = deque()  # (executed_at, notional, quantity)
        self._notional = 0
        self._quantity = 0
        self.last_price: int | None = None
        self.last_trade_at: int | None = None

    def add(self, executed_at: int, price: int, quantity: int) -> None:
        notional = price * quantity
        self._trades.append((executed_at, notional, quantity))
        self._notional += notional
        self._quantity += quantity
        self.last_price = price
        self.last_trade_at = executed_at
        # Exact eviction happens at query time against the clock. Here only trades older than
        # two windows go: executed_at may be nudged past the clock by a few ns, and evicting
        # against it could drop a trade that sits exactly on the inclusive window edge.
        self._evict(executed_at - self.window_ns)

    def entries(self) -> list[tuple[int, int, int]]:
        """The trades still in the window, oldest first, as (executed_at, notional, quantity)."""
        return list(self._trades)

    def restore(
        self, entries: list[tuple[int, int, int]], last_price: int | None, last_at: int | None
    ) -> None:
        """Refill an empty window from :meth:`entries` output."""
        self._trades.extend(entries)
        self._notional = sum(e[1] for e in entries)
        self._quantity = sum(e[2] for e in entries)
        self.last_price, self.last_trade_at = last_price, last_at

    def figures(self, now: int) -> VwapFigures:
        self._evict(now)
        if self._trades:
            return VwapFigures(
                self._notional // self._quantity, len(self._trades), self.last_trade_at
            )
        return VwapFigures(self.last_price, 0, self.last_trade_at)

    def _evict(self, now: int) -> None:
        cutoff = now - self.window_ns
        trades = self._trades
        while trades and trades[0][0] < cutoff:
            _, notional, quantity = trades.popleft()
            self._notional -= notional
            self._quantity -= quantity
