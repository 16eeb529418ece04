"""Secondary indexes the engine keeps beside the books, each built so no hot path scans history.

- :class:`ExpiryIndex`: resting limit orders bucketed by ``expires_at``, with a heap of the
  deadlines. Adding is O(log d) for a new deadline (d = distinct deadlines), else O(1); an order
  that leaves the book early (fill, cancel) is only counted out and skipped when its bucket comes
  due, so removal is O(1); a sweep costs O(k + log d) for the k orders in the due buckets.
- :class:`BrokerOrders`: one broker's orders in creation order, newest-first pages with an
  optional status filter. Status counts are kept per block of 256 orders and per superblock of
  65 536, so a status change is O(1) and a filtered page skips whole (super)blocks: at most a few
  hundred steps plus the page, whatever the history. A status change updates four counts. For
  the native engine core each row of counts is an ``array('q')``, which it writes in place (no
  int object per update, where a list of Python ints makes a new one for every count past 256);
  for the pure build a row is a list, which the interpreter indexes faster than an array.
- :class:`TradeWindow`: the VWAP window of one symbol: running sums over a deque of recent trades,
  evicted from the left as time passes, so each trade is added and removed exactly once.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, MutableSequence
from heapq import heapify, heappop, heappush

from tradehall.exchange.model import ORDER_STATUSES, Order

__all__ = ["BrokerOrders", "ExpiryIndex", "TradeWindow", "VwapFigures"]


class _Bucket:
    """The resting orders sharing one deadline, in creation order, and how many are live."""

    __slots__ = ("live", "orders")

    def __init__(self, first: Order, second: Order) -> None:
        self.orders = [first, second]
        self.live = 2


class ExpiryIndex:
    """Resting orders by deadline; within one deadline, in creation order.

    The bucket of a deadline is the single :class:`Order` resting with it, or a :class:`_Bucket`
    once a second one shares it (orders rest in creation order, so appending keeps it sorted). An
    order leaving the book early is counted out of its bucket; its entry stays until the bucket
    is swept or compacted (once dead entries outnumber live ones). A bucket with no live order is
    deleted; its heap key is skipped when it reaches the top, and the heap is rebuilt once stale
    keys outnumber live ones.
    """

    __slots__ = ("_buckets", "_heap", "_live")

    def __init__(self) -> None:
        self._buckets: dict[int, Order | _Bucket] = {}
        self._heap: list[int] = []
        self._live = 0

    def __len__(self) -> int:
        """Number of resting orders indexed."""
        return self._live

    def add(self, order: Order) -> None:
        """Index an order that just started resting (a limit order: ``expires_at`` is set)."""
        deadline = order.expires_at
        assert deadline is not None
        buckets = self._buckets
        bucket = buckets.get(deadline)
        if bucket is None:
            buckets[deadline] = order
            heap = self._heap
            heappush(heap, deadline)
            if len(heap) > 64 and len(heap) > 2 * len(buckets):
                self._heap = list(buckets)
                heapify(self._heap)
        elif isinstance(bucket, _Bucket):
            orders = bucket.orders
            order.expires_at = orders[0].expires_at  # share one int object per deadline
            orders.append(order)
            bucket.live += 1
        else:
            order.expires_at = bucket.expires_at
            buckets[deadline] = _Bucket(bucket, order)
        self._live += 1

    def discard(self, order: Order) -> None:
        """Count out an order that left the book before its deadline (filled or cancelled)."""
        self._live -= 1
        deadline = order.expires_at
        assert deadline is not None
        bucket = self._buckets[deadline]
        if isinstance(bucket, _Bucket):
            live = bucket.live = bucket.live - 1
            if not live:
                del self._buckets[deadline]
            elif len(bucket.orders) > 2 * live + 64:
                bucket.orders = [o for o in bucket.orders if o.remaining]
        else:
            assert bucket is order
            del self._buckets[deadline]

    def earliest(self) -> int | None:
        """The earliest deadline of a resting order, if any."""
        heap, buckets = self._heap, self._buckets
        while heap and heap[0] not in buckets:
            heappop(heap)
        return heap[0] if heap else None

    def pop_due(self, now: int) -> list[Order]:
        """Remove and return the resting orders with ``expires_at <= now``.

        Earliest deadline first, creation order within a deadline (contract §4.3). The caller
        closes every returned order; they are already counted out here.
        """
        heap, buckets = self._heap, self._buckets
        due: list[Order] = []
        while heap and heap[0] <= now:
            bucket = buckets.pop(heappop(heap), None)
            if bucket is None:
                continue
            if isinstance(bucket, _Bucket):
                due.extend(order for order in bucket.orders if order.remaining)
            else:
                due.append(bucket)
        self._live -= len(due)
        return due


_BLOCK_SHIFT = 8  # 256 orders per block
_SUPER_SHIFT = 16  # 65 536 orders per superblock
_STATUS_INDEX = {status: i for i, status in enumerate(ORDER_STATUSES)}
_NO_COUNTS = (0,) * len(ORDER_STATUSES)


def _list_counts() -> MutableSequence[int]:
    """A row of per-status counts, all zero, for the pure build."""
    return list(_NO_COUNTS)


def _packed_counts() -> MutableSequence[int]:
    """The same as machine integers, for the native core (which writes them in place)."""
    return array("q", _NO_COUNTS)


class BrokerOrders:
    """A broker's orders for listing: newest first, filterable by status, paginated."""

    __slots__ = ("_all", "_blocks", "_new_row", "_supers")

    def __init__(self, *, packed: bool = False) -> None:
        """``packed``: count rows as ``array('q')``, for an engine running the native core."""
        self._all: list[Order] = []
        self._blocks: list[MutableSequence[int]] = []  # per block: orders in each status
        self._supers: list[MutableSequence[int]] = []  # the same per superblock
        # the row factory, also called by the native core when it opens a block
        self._new_row: Callable[[], MutableSequence[int]] = (
            _packed_counts if packed else _list_counts
        )

    def add(self, order: Order) -> None:
        """Index a new order under its current status (creation order == ``seq`` order)."""
        everything = self._all
        pos = order.list_pos = len(everything)
        everything.append(order)
        if not pos & ((1 << _BLOCK_SHIFT) - 1):
            self._blocks.append(self._new_row())
            if not pos & ((1 << _SUPER_SHIFT) - 1):
                self._supers.append(self._new_row())
        index = _STATUS_INDEX[order.status]
        self._blocks[pos >> _BLOCK_SHIFT][index] += 1
        self._supers[pos >> _SUPER_SHIFT][index] += 1

    def moved(self, order: Order, old_status: str) -> None:
        """Re-count an order whose status changed from ``old_status`` (no-op if it did not)."""
        status = order.status
        if status != old_status:
            old, new, pos = _STATUS_INDEX[old_status], _STATUS_INDEX[status], order.list_pos
            counts = self._blocks[pos >> _BLOCK_SHIFT]
            counts[old] -= 1
            counts[new] += 1
            counts = self._supers[pos >> _SUPER_SHIFT]
            counts[old] -= 1
            counts[new] += 1

    def page(self, status: str | None, page: int, limit: int) -> tuple[list[Order], int]:
        """One page, newest first, and the total number of matching orders."""
        everything = self._all
        if status is None:
            total = len(everything)
            end = total - (page - 1) * limit
            if end <= 0:
                return [], total
            newest = everything[max(0, end - limit) : end]
            newest.reverse()
            return newest, total
        index = _STATUS_INDEX.get(status)
        if index is None:
            return [], 0
        total = sum(counts[index] for counts in self._supers)
        skip = (page - 1) * limit
        if skip >= total:
            return [], total
        return self._filtered(status, index, skip, limit), total

    def _filtered(self, status: str, index: int, skip: int, limit: int) -> list[Order]:
        """Up to ``limit`` orders in ``status``, newest first, after skipping ``skip`` of them."""
        everything, blocks, supers = self._all, self._blocks, self._supers
        per_super = _SUPER_SHIFT - _BLOCK_SHIFT
        found: list[Order] = []
        for sup in reversed(range(len(supers))):
            if skip >= supers[sup][index]:
                skip -= supers[sup][index]
                continue
            for block in reversed(
                range(sup << per_super, min(len(blocks), (sup + 1) << per_super))
            ):
                if skip >= blocks[block][index]:
                    skip -= blocks[block][index]
                    continue
                end = min(len(everything), (block + 1) << _BLOCK_SHIFT)
                for pos in reversed(range(block << _BLOCK_SHIFT, end)):
                    order = everything[pos]
                    if order.status != status:
                        continue
                    if skip:
                        skip -= 1
                        continue
                    found.append(order)
                    if len(found) == limit:
                        return found
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

    def add_pass(
        self,
        executed_at: int,
        entries: list[tuple[int, int, int]],
        notional: int,
        quantity: int,
        last_price: int,
    ) -> None:
        """Add the trades of one matching pass: ``entries`` as (executed_at, notional, quantity),
        with their sums and the last trade's price."""
        self._trades.extend(entries)
        self._notional += notional
        self._quantity += quantity
        self.last_price = last_price
        self.last_trade_at = executed_at
        self._evict(executed_at - self.window_ns)  # see add()

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
