"""Grid pricing: the grid and every cell's rate at one instant, and quotes for single cells.

Pricing the whole grid (240 cells by default) takes a few milliseconds of float maths, too long
to hold the event loop and no better in a thread (the GIL: the loop then waits for the thread in
5 ms switch intervals). So the service computes a :class:`GridSnapshot` once a second *on* the
loop in slices: :meth:`GridPricer.begin` returns a :class:`GridBuild` whose :meth:`GridBuild.step`
prices one column (20 cells, a few hundred microseconds) and the refresh yields to the loop
between steps. Every slice uses the same instant, price and volatility, so the result is the one
:meth:`GridPricer.compute` gives in one go. The placement rule is always evaluated at the
request's own instant; a cell missing from the snapshot (a column that appeared since) is priced
on the spot.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradehall.tap.grid import Cell, GridConfig, GridLayout, is_placeable, layout
from tradehall.tap.rates import RateModel, estimate_sigma

__all__ = ["GridBuild", "GridPricer", "GridSnapshot"]

NS = 1_000_000_000


@dataclass(frozen=True)
class GridSnapshot:
    at_s: int
    price: int
    sigma: float
    layout: GridLayout
    rates: dict[str, Decimal]

    def to_json(self) -> dict[str, Any]:
        cfg = self.layout.config
        return {
            "timestamp": self.at_s,
            "price": self.price,
            "column_seconds": cfg.column_seconds,
            "row_cents": cfg.row_cents,
            "presets": list(cfg.presets),
            "columns": list(self.layout.col_starts),
            "rows": list(self.layout.row_lowers),
            "first_placeable": self.layout.first_placeable_col_start,
            "cells": [
                {
                    "cell_id": c.cell_id,
                    "col_start": c.col_start,
                    "col_end": c.col_end,
                    "lower": c.lower,
                    "upper": c.upper,
                    "rate": str(self.rates[c.cell_id]),
                    "placeable": self.layout.placeable(c),
                }
                for c in self.layout.cells()
            ],
        }


class GridPricer:
    def __init__(self, config: GridConfig, model: RateModel) -> None:
        self.config = config
        self.model = model
        # the last re-laid snapshot: after a column boundary every grid request in that second
        # would otherwise price the new column again (20 cells, a few hundred microseconds)
        self._last_at: tuple[GridSnapshot, int, GridSnapshot] | None = None

    def compute(self, now_s: int, price: int, recent: list[tuple[int, int]]) -> GridSnapshot:
        """Price the grid around ``price`` at ``now_s`` with volatility from ``recent`` ticks."""
        build = self.begin(now_s, price, recent)
        while not build.step():
            pass
        return build.result()

    def begin(self, now_s: int, price: int, recent: list[tuple[int, int]]) -> GridBuild:
        """:meth:`compute` in slices: call ``step()`` until it returns True, then ``result()``."""
        return GridBuild(self, now_s, price, recent)

    def at(self, snap: GridSnapshot, now_ns: int) -> GridSnapshot:
        """``snap`` re-laid for ``now_ns``: columns from now, rows and rates from the snapshot."""
        current = layout(self.config, now_ns, snap.price)
        if current.current_col_start == snap.layout.current_col_start:
            return snap
        now_s = now_ns // NS
        last = self._last_at
        if last is not None and last[0] is snap and last[1] == now_s:
            return last[2]
        rates = dict(snap.rates)
        at = now_s * NS
        for cell in current.cells():
            if cell.cell_id not in rates:
                rates[cell.cell_id] = self.model.rate(cell, at, snap.price, snap.sigma)
        moved = GridSnapshot(now_s, snap.price, snap.sigma, current, rates)
        self._last_at = (snap, now_s, moved)
        return moved

    def quote(self, snap: GridSnapshot, cell: Cell, now_ns: int) -> tuple[bool, Decimal]:
        """Whether ``cell`` is placeable at ``now_ns``, and its rate."""
        placeable = is_placeable(self.config, cell, now_ns, snap.price)
        rate = snap.rates.get(cell.cell_id)
        if rate is None:
            rate = self.model.rate(cell, (now_ns // NS) * NS, snap.price, snap.sigma)
        return placeable, rate


class GridBuild:
    """One grid pricing done a slice at a time, so the event loop can run between slices.

    The first :meth:`step` estimates the volatility and lays out the grid; each later one prices
    one column. Inputs are fixed at construction, so the slices add up to what
    :meth:`GridPricer.compute` gives.
    """

    def __init__(
        self, pricer: GridPricer, now_s: int, price: int, recent: list[tuple[int, int]]
    ) -> None:
        self._pricer = pricer
        self._now_s = now_s
        self._price = price
        self._recent: list[tuple[int, int]] | None = recent
        self._sigma = 0.0
        self._layout: GridLayout | None = None
        self._cells: list[Cell] = []
        self._next = 0  # index in _cells of the next column's first cell
        self._rates: dict[str, Decimal] = {}

    @property
    def done(self) -> bool:
        """Whether every cell is priced."""
        return self._layout is not None and self._next >= len(self._cells)

    def step(self) -> bool:
        """Do the next slice; True once the whole grid is priced."""
        if self._layout is None:
            assert self._recent is not None
            self._sigma = estimate_sigma(self._recent)
            self._recent = None  # the copy of the ticks is not needed any more
            self._layout = layout(self._pricer.config, self._now_s * NS, self._price)
            self._cells = self._layout.cells()
            return self.done
        rows = len(self._layout.row_lowers)
        at, price, sigma, rate = self._now_s * NS, self._price, self._sigma, self._pricer.model.rate
        rates = self._rates
        for cell in self._cells[self._next : self._next + rows]:
            rates[cell.cell_id] = rate(cell, at, price, sigma)
        self._next += rows
        return self.done

    def result(self) -> GridSnapshot:
        """The snapshot; only once :meth:`step` has returned True."""
        if self._layout is None or not self.done:
            raise RuntimeError("grid build not finished")
        return GridSnapshot(self._now_s, self._price, self._sigma, self._layout, self._rates)
