"""The limit order book of one symbol: two sides of price levels in price-time priority.

Design
------
Each side keeps a ``dict`` from price to :class:`Level` plus a binary heap of level keys (the
price for asks, the negated price for bids), so the best key is ``heap[0]`` for both sides. The
best level itself is cached in :attr:`BookSide.best_level`, so the matching loop and the "does this
order cross?" test read one attribute. The heap is touched only when a level appears (push) or the
best level empties (pop); a level emptying deeper in the book leaves its key behind, skipped when
it surfaces, and the heap is rebuilt from the live levels once such stale keys outnumber them.
Best-first iteration (depth, quotes) walks the heap as a tree, so reading the top ``k`` levels
costs O(k log k) -- no sorted structure is maintained on the hot path.

A level is a FIFO ``deque`` of orders with running ``total`` quantity and live ``count``. A
resting order's ``price`` is made the level's own ``int`` object, so a million orders on a few
thousand prices do not each keep a copy of the number.

Ordering invariant (contract §3.1, §7.7): within a level, orders sit in ``(created_at, order_id)``
order. That equals arrival order because the engine gives every order a strictly increasing
``created_at``, so appending keeps the FIFO exact without comparing ids.

Removal by id (cancel, expiry) is lazy: the order leaves the level's ``total`` and ``count`` at
once, and its deque slot (an order with nothing ``remaining``) is skipped when it reaches the
head; a level whose dead slots outnumber its live ones is compacted, so memory stays proportional
to the resting orders.

Complexity: best level O(1); insert O(log L) for a new level, else O(1); fill at the head O(1);
removal O(log L) when the best level empties, else O(1) amortised; top-N depth O(N log N).
L = levels per side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from heapq import heapify, heappop, heappush

from tradehall.exchange.model import Order

__all__ = ["BookSide", "Level", "OrderBook"]

_COMPACT_MIN_DEAD = 64


class Level:
    """All resting orders at one price on one side."""

    __slots__ = ("count", "dead", "orders", "price", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[Order] = deque()
        self.total = 0
        self.count = 0
        self.dead = 0

    def head(self) -> Order:
        """The oldest live order; skips slots of orders already removed by id."""
        orders = self.orders
        while not orders[0].remaining:
            orders.popleft()
            self.dead -= 1
        return orders[0]

    def live_orders(self) -> Iterator[Order]:
        return (order for order in self.orders if order.remaining)


class BookSide:
    """One side of a book: levels in priority order (best first)."""

    __slots__ = ("_heap", "_levels", "_sign", "best_level", "is_bid")

    def __init__(self, *, is_bid: bool) -> None:
        self.is_bid = is_bid
        self._sign = -1 if is_bid else 1
        self._heap: list[int] = []  # level keys (sign * price); may hold stale and repeated keys
        self._levels: dict[int, Level] = {}
        self.best_level: Level | None = None

    def __bool__(self) -> bool:
        return bool(self._levels)

    def __len__(self) -> int:
        """Number of price levels."""
        return len(self._levels)

    def best(self) -> Level | None:
        """The best level, or ``None`` when the side is empty."""
        return self.best_level

    def level(self, price: int) -> Level | None:
        """The level at ``price``, if any order rests there."""
        return self._levels.get(price)

    def levels(self) -> Iterator[Level]:
        """Levels best-first (bids descending, asks ascending)."""
        # Walk the heap as the binary tree it is, smallest key first: a small frontier heap of
        # (key, index) holds the nodes whose parents were visited, so the top k levels cost
        # O(k log k) whatever the size. Repeated keys come out together; stale ones are skipped.
        levels, sign, heap = self._levels, self._sign, self._heap
        size = len(heap)
        frontier = [(heap[0], 0)] if heap else []
        previous = None
        while frontier:
            key, index = heappop(frontier)
            if key != previous:
                previous = key
                level = levels.get(sign * key)
                if level is not None:
                    yield level
            child = 2 * index + 1
            if child < size:
                heappush(frontier, (heap[child], child))
                if child + 1 < size:
                    heappush(frontier, (heap[child + 1], child + 1))

    def add(self, order: Order) -> None:
        """Append a resting limit order at the back of its price level."""
        price = order.price
        assert price is not None
        level = self._levels.get(price)
        if level is None:
            levels = self._levels
            level = levels[price] = Level(price)
            heap = self._heap
            heappush(heap, self._sign * price)
            if len(heap) > 2 * len(levels) + 64:
                heap[:] = [self._sign * key for key in levels]
                heapify(heap)
            best = self.best_level
            if best is None or (price > best.price if self.is_bid else price < best.price):
                self.best_level = level
        else:
            order.price = level.price  # share one int object per price
        level.orders.append(order)
        level.total += order.remaining
        level.count += 1

    def remove(self, order: Order, remaining_before: int) -> None:
        """Take an order that left the book by id (cancel/expiry) out of its level's figures.

        Call after the order became inactive; ``remaining_before`` is what it had resting.
        """
        assert order.price is not None
        level = self._levels[order.price]
        level.total -= remaining_before
        level.count -= 1
        if level.count == 0:
            self.drop_level(level)
            return
        level.dead += 1
        if level.dead >= _COMPACT_MIN_DEAD and level.dead > level.count:
            level.orders = deque(level.live_orders())
            level.dead = 0

    def drop_level(self, level: Level) -> None:
        """Forget a level that has no live order left."""
        levels = self._levels
        del levels[level.price]
        if level is self.best_level:
            heap, sign = self._heap, self._sign
            while heap and sign * heap[0] not in levels:
                heappop(heap)
            self.best_level = levels[sign * heap[0]] if heap else None


class OrderBook:
    """Bids and asks of one symbol."""

    __slots__ = ("asks", "bids", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)

    def side(self, side: str) -> BookSide:
        return self.bids if side == "bid" else self.asks

    def opposite(self, side: str) -> BookSide:
        return self.asks if side == "bid" else self.bids

    def is_crossed(self) -> bool:
        best_bid, best_ask = self.bids.best(), self.asks.best()
        return best_bid is not None and best_ask is not None and best_bid.price >= best_ask.price
