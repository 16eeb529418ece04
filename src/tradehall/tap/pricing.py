"""Grid pricing: the grid and every cell's rate at one instant, and quotes for single cells.

Pricing the whole grid (240 cells by default) takes milliseconds of float maths, so the service
computes a :class:`GridSnapshot` once a second off the event loop and requests read it. The
placement rule is always evaluated at the request's own instant; a cell missing from the snapshot
(a column that appeared since) is priced on the spot.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradehall.tap.grid import Cell, GridConfig, GridLayout, is_placeable, layout
from tradehall.tap.rates import RateModel, estimate_sigma

__all__ = ["GridPricer", "GridSnapshot"]

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

    def compute(self, now_s: int, price: int, recent: list[tuple[int, int]]) -> GridSnapshot:
        """Price the grid around ``price`` at ``now_s`` with volatility from ``recent`` ticks."""
        sigma = estimate_sigma(recent)
        grid = layout(self.config, now_s * NS, price)
        at = now_s * NS
        rates = {c.cell_id: self.model.rate(c, at, price, sigma) for c in grid.cells()}
        return GridSnapshot(now_s, price, sigma, grid, rates)

    def at(self, snap: GridSnapshot, now_ns: int) -> GridSnapshot:
        """``snap`` re-laid for ``now_ns``: columns from now, rows and rates from the snapshot."""
        current = layout(self.config, now_ns, snap.price)
        if current.current_col_start == snap.layout.current_col_start:
            return snap
        rates = dict(snap.rates)
        at = (now_ns // NS) * NS
        for cell in current.cells():
            if cell.cell_id not in rates:
                rates[cell.cell_id] = self.model.rate(cell, at, snap.price, snap.sigma)
        return GridSnapshot(now_ns // NS, snap.price, snap.sigma, current, rates)

    def quote(self, snap: GridSnapshot, cell: Cell, now_ns: int) -> tuple[bool, Decimal]:
        """Whether ``cell`` is placeable at ``now_ns``, and its rate."""
        placeable = is_placeable(self.config, cell, now_ns, snap.price)
        rate = snap.rates.get(cell.cell_id)
        if rate is None:
            rate = self.model.rate(cell, (now_ns // NS) * NS, snap.price, snap.sigma)
        return placeable, rate
