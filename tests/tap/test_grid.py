"""The grid layout, cell ids and the placement rule."""

from __future__ import annotations

import pytest

from tradehall.tap.grid import Cell, CellIdError, GridConfig, layout, parse_cell_id

NS = 1_000_000_000
CFG = GridConfig()


def test_layout_columns_start_at_current_and_rows_centre_on_price() -> None:
    grid = layout(CFG, 1_000_000_003 * NS, 6_000_055)
    assert grid.current_col_start == 1_000_000_000
    assert grid.col_starts[0] == 1_000_000_000
    assert grid.col_starts[-1] == 1_000_000_110
    assert len(grid.row_lowers) == 20
    assert grid.row_lowers[10] == 6_000_000  # the row holding the price
    assert all(b - a == 1_000 for a, b in zip(grid.row_lowers, grid.row_lowers[1:], strict=False))
    assert len(grid.cells()) == 12 * 20


def test_cell_id_round_trip() -> None:
    cell = Cell(1_000_000_020, 1_000_000_030, 6_000_000, 6_001_000)
    assert cell.cell_id == "1000000020_6000000_6001000"
    assert parse_cell_id(cell.cell_id, CFG) == cell


@pytest.mark.parametrize("bad", ["", "1_2", "a_b_c", "1_2_3_4", "-1_2_3", "1_2_3 "])
def test_malformed_cell_ids_are_refused(bad: str) -> None:
    with pytest.raises(CellIdError):
        parse_cell_id(bad, CFG)


def test_placeable_only_from_current_plus_two() -> None:
    grid = layout(CFG, 1_000_000_003 * NS, 6_000_055)
    row = 6_000_000
    current = Cell(1_000_000_000, 1_000_000_010, row, row + 1_000)
    next_one = Cell(1_000_000_010, 1_000_000_020, row, row + 1_000)
    plus_two = Cell(1_000_000_020, 1_000_000_030, row, row + 1_000)
    last = Cell(1_000_000_110, 1_000_000_120, row, row + 1_000)
    beyond = Cell(1_000_000_120, 1_000_000_130, row, row + 1_000)
    past = Cell(999_999_990, 1_000_000_000, row, row + 1_000)
    assert not grid.placeable(current)
    assert not grid.placeable(next_one)
    assert grid.placeable(plus_two)
    assert grid.placeable(last)
    assert not grid.placeable(beyond)
    assert not grid.placeable(past)


def test_column_becomes_unplaceable_as_time_passes() -> None:
    cell = Cell(1_000_000_020, 1_000_000_030, 6_000_000, 6_001_000)
    assert layout(CFG, 1_000_000_009 * NS, 6_000_055).placeable(cell)
    assert not layout(CFG, 1_000_000_010 * NS, 6_000_055).placeable(cell)


def test_off_lattice_and_off_grid_rows_are_refused() -> None:
    grid = layout(CFG, 1_000_000_003 * NS, 6_000_055)
    assert not grid.placeable(Cell(1_000_000_025, 1_000_000_035, 6_000_000, 6_001_000))
    assert not grid.placeable(Cell(1_000_000_020, 1_000_000_030, 6_000_500, 6_001_500))
    assert not grid.placeable(Cell(1_000_000_020, 1_000_000_030, 6_000_000, 6_002_000))
    assert not grid.placeable(Cell(1_000_000_020, 1_000_000_030, 5_000_000, 5_001_000))
    assert grid.placeable(Cell(1_000_000_020, 1_000_000_030, 5_990_000, 5_991_000))
    assert grid.placeable(Cell(1_000_000_020, 1_000_000_030, 6_009_000, 6_010_000))
    assert not grid.placeable(Cell(1_000_000_020, 1_000_000_030, 6_010_000, 6_011_000))


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        GridConfig(columns=2)
    with pytest.raises(ValueError):
        GridConfig(presets=())
