"""The betting grid: future time columns x price rows, and the placement rule.

Time is split into columns of ``column_seconds`` aligned on the Unix epoch; price into rows of
``row_cents`` aligned on zero. A cell is one column x one row, identified by
``{col_start_unix}_{lower_cents}_{upper_cents}`` (Part A §4). Bounds are inclusive on both ends
(Part B §1), so neighbouring rows share their boundary price.

The grid shown to a client holds ``columns`` columns starting with the current one and ``rows``
rows centred on the live price. A cell is placeable only when its column starts at least
``placeable_offset`` columns after the current one (C-6: current + 2), it lies on the grid's
lattice, and it is inside the grid shown for the live price.

Everything here is pure: callers pass the time and the price.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

__all__ = [
    "Cell",
    "CellIdError",
    "GridConfig",
    "GridLayout",
    "is_placeable",
    "layout",
    "parse_cell_id",
]

NS = 1_000_000_000


@dataclass(frozen=True)
class GridConfig:
    """Grid geometry and the amounts a bet may take (all money in cents)."""

    column_seconds: int = 10
    row_cents: int = 1_000
    columns: int = 12
    rows: int = 20
    placeable_offset: int = 2
    presets: tuple[int, ...] = (100, 500, 1_000, 2_500, 10_000)

    def __post_init__(self) -> None:
        if self.column_seconds < 1 or self.row_cents < 1 or self.rows < 1:
            raise ValueError("column_seconds, row_cents and rows must be >= 1")
        if self.columns <= self.placeable_offset:
            raise ValueError("columns must exceed placeable_offset")
        if not self.presets or min(self.presets) < 1:
            raise ValueError("presets must be positive amounts in cents")


class Cell(msgspec.Struct, frozen=True):
    """A cell: the window [col_start, col_end) in Unix seconds and the band [lower, upper]."""

    col_start: int
    col_end: int
    lower: int
    upper: int

    @property
    def cell_id(self) -> str:
        return f"{self.col_start}_{self.lower}_{self.upper}"

    def contains(self, price_cents: int) -> bool:
        return self.lower <= price_cents <= self.upper


class CellIdError(ValueError):
    """A cell id that is not ``{col_start}_{lower}_{upper}`` with integers."""


def parse_cell_id(cell_id: str, config: GridConfig) -> Cell:
    """Parse a cell id; the column length comes from the configuration."""
    parts = cell_id.split("_")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 15 for p in parts):
        raise CellIdError(f"malformed cell id {cell_id!r}")
    col_start, lower, upper = (int(p) for p in parts)
    return Cell(col_start, col_start + config.column_seconds, lower, upper)


@dataclass(frozen=True)
class GridLayout:
    """The grid around one price at one instant."""

    config: GridConfig
    current_col_start: int
    col_starts: tuple[int, ...]
    row_lowers: tuple[int, ...]

    @property
    def first_placeable_col_start(self) -> int:
        return self.current_col_start + self.config.placeable_offset * self.config.column_seconds

    def cells(self) -> list[Cell]:
        """Every cell, column by column, rows from the lowest band up."""
        cs, rc = self.config.column_seconds, self.config.row_cents
        return [
            Cell(start, start + cs, lower, lower + rc)
            for start in self.col_starts
            for lower in self.row_lowers
        ]

    def placeable(self, cell: Cell) -> bool:
        """The placement rule: on the lattice, inside this grid, at least current + offset."""
        cfg = self.config
        return (
            cell.col_start % cfg.column_seconds == 0
            and cell.col_end - cell.col_start == cfg.column_seconds
            and cell.lower % cfg.row_cents == 0
            and cell.upper - cell.lower == cfg.row_cents
            and self.first_placeable_col_start <= cell.col_start <= self.col_starts[-1]
            and self.row_lowers[0] <= cell.lower <= self.row_lowers[-1]
        )


def layout(config: GridConfig, now_ns: int, price_cents: int) -> GridLayout:
    """The grid at ``now_ns`` with rows centred on ``price_cents``."""
    now_s = now_ns // NS
    current = now_s - now_s % config.column_seconds
    col_starts = tuple(current + i * config.column_seconds for i in range(config.columns))
    centre_row = price_cents // config.row_cents
    first_row = centre_row - config.rows // 2
    row_lowers = tuple((first_row + j) * config.row_cents for j in range(config.rows))
    return GridLayout(config, current, col_starts, row_lowers)


def is_placeable(config: GridConfig, cell: Cell, now_ns: int, price_cents: int) -> bool:
    """``layout(config, now_ns, price_cents).placeable(cell)`` without building the layout."""
    cs, rc = config.column_seconds, config.row_cents
    now_s = now_ns // NS
    current = now_s - now_s % cs
    first_row = (price_cents // rc - config.rows // 2) * rc
    return (
        cell.col_start % cs == 0
        and cell.col_end - cell.col_start == cs
        and cell.lower % rc == 0
        and cell.upper - cell.lower == rc
        and current + config.placeable_offset * cs <= cell.col_start
        and cell.col_start <= current + (config.columns - 1) * cs
        and first_row <= cell.lower <= first_row + (config.rows - 1) * rc
    )
