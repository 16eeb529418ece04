"""A deterministic synthetic market: random-walk mid, a layered book and trades.

The fake venues render this one venue-neutral model into their own wire formats, and the
property tests drive it directly, so "the venue's true book" is always :attr:`MarketSim.book`.
Each :meth:`MarketSim.step` mutates the book a little (resize, add inside/behind the spread,
cancel, or a trade that eats the best level, which moves the mid) and returns the changed levels
with absolute quantities (zero = deleted) plus any trades. The book never crosses and each side is
kept between ``min_levels`` and ``max_levels`` by refilling or dropping far levels.

Pure and seeded (:class:`random.Random`): the same seed gives the same market.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal

from tradehall.gateway.book import OrderBook
from tradehall.gateway.events import Level, Side

__all__ = ["MarketSim", "SimTrade", "Tick"]


@dataclass(frozen=True, slots=True)
class SimTrade:
    trade_id: int
    price: Decimal
    qty: Decimal
    taker: Side


@dataclass(slots=True)
class Tick:
    """What one step changed: absolute levels (zero deletes) and the trades printed."""

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    trades: list[SimTrade] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.bids) + len(self.asks)

    def bid_levels(self) -> list[Level]:
        return list(self.bids.items())

    def ask_levels(self) -> list[Level]:
        return list(self.asks.items())


class MarketSim:
    """One instrument's synthetic market; see the module docstring."""

    def __init__(
        self,
        *,
        seed: int = 1,
        mid: Decimal = Decimal("68000"),
        price_places: int = 2,
        qty_places: int = 8,
        tick_ticks: int = 10,
        min_levels: int = 20,
        max_levels: int = 40,
    ) -> None:
        self.rng = random.Random(seed)
        self.price_places = price_places
        self.qty_places = qty_places
        self.tick = Decimal(tick_ticks).scaleb(-price_places)
        self.min_levels = min_levels
        self.max_levels = max_levels
        self.book = OrderBook()
        self.next_trade_id = 1
        self.last_price: Decimal | None = None
        base = (mid / self.tick).to_integral_value() * self.tick
        for i in range(1, (min_levels + max_levels) // 2 + 1):
            self.book.bids[base - self.tick * i] = self._qty()
            self.book.asks[base + self.tick * (i - 1) + self.tick] = self._qty()

    def _qty(self) -> Decimal:
        scale = 10**self.qty_places
        return Decimal(self.rng.randint(scale // 1000 or 1, 5 * scale)).scaleb(-self.qty_places)

    def _set(self, tick: Tick, is_bid: bool, price: Decimal, qty: Decimal) -> None:
        side = self.book.bids if is_bid else self.book.asks
        if qty == 0:
            side.pop(price, None)
        else:
            side[price] = qty
        (tick.bids if is_bid else tick.asks)[price] = qty

    def step(self) -> Tick:
        """Advance the market by one event; returns what changed."""
        tick = Tick()
        rng = self.rng
        roll = rng.random()
        is_bid = rng.random() < 0.5
        side = self.book.bids if is_bid else self.book.asks
        if roll < 0.45 and side:
            # resize a level, mostly near the top
            index = min(int(rng.expovariate(0.3)), len(side) - 1)
            price = side.keys()[-1 - index] if is_bid else side.keys()[index]
            self._set(tick, is_bid, price, self._qty())
        elif roll < 0.65:
            self._add_level(tick, is_bid)
        elif roll < 0.80 and len(side) > self.min_levels:
            index = rng.randrange(len(side))
            self._set(tick, is_bid, side.keys()[index], Decimal(0))
        else:
            self._trade(tick, Side.SELL if is_bid else Side.BUY)
        self._keep_depth(tick)
        return tick

    def _add_level(self, tick: Tick, is_bid: bool) -> None:
        best_bid, best_ask = self.book.best_bid(), self.book.best_ask()
        if best_bid is None or best_ask is None:
            return
        offset = self.tick * self.rng.randint(-2, 15)
        price = best_bid[0] - offset if is_bid else best_ask[0] + offset
        if price <= 0 or (is_bid and price >= best_ask[0]) or (not is_bid and price <= best_bid[0]):
            return
        self._set(tick, is_bid, price, self._qty())

    def _trade(self, tick: Tick, taker: Side) -> None:
        resting_is_bid = taker is Side.SELL
        best = self.book.best_bid() if resting_is_bid else self.book.best_ask()
        if best is None:
            return
        price, qty = best
        take = qty if self.rng.random() < 0.4 else min(qty, self._qty())
        self._set(tick, resting_is_bid, price, qty - take)
        tick.trades.append(SimTrade(self.next_trade_id, price, take, taker))
        self.next_trade_id += 1
        self.last_price = price

    def _keep_depth(self, tick: Tick) -> None:
        for is_bid in (True, False):
            side = self.book.bids if is_bid else self.book.asks
            while len(side) < self.min_levels:
                worst = side.keys()[0] if is_bid else side.keys()[-1]
                step = self.tick * self.rng.randint(1, 3)
                price = worst - step if is_bid else worst + step
                if price <= 0:
                    break
                self._set(tick, is_bid, price, self._qty())
            while len(side) > self.max_levels:
                worst = side.keys()[0] if is_bid else side.keys()[-1]
                self._set(tick, is_bid, worst, Decimal(0))

    def add_deep_levels(self, count: int) -> Tick:
        """Pile ``count`` extra levels per side far from the top (makes a huge snapshot)."""
        tick = Tick()
        self.max_levels += count
        for is_bid in (True, False):
            side = self.book.bids if is_bid else self.book.asks
            worst = side.keys()[0] if is_bid else side.keys()[-1]
            for i in range(1, count + 1):
                price = worst - self.tick * i if is_bid else worst + self.tick * i
                if price > 0:
                    self._set(tick, is_bid, price, self._qty())
        return tick
