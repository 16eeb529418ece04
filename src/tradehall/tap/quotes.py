"""The grid kept priced: the latest snapshot, its refresh job, ``GET /api/grid`` and quotes.

The grid job re-prices every cell once a second (:mod:`tradehall.tap.pricing` does the maths)
and leaves the result on the :class:`~tradehall.tap.service.TapService` (``_snapshot``), which
requests read. The functions take the service because the price, the volatility window and
the snapshot live on it; the job calls ``service.refresh_snapshot`` so a replaced method is
the one that runs.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradehall.tap.contract import stale_error
from tradehall.tap.grid import Cell
from tradehall.tap.pricing import GridSnapshot

if TYPE_CHECKING:
    from tradehall.tap.service import TapService

__all__ = ["grid_json", "grid_loop", "grid_snapshot", "quote", "refresh_snapshot"]

NS = 1_000_000_000


def grid_snapshot(service: TapService) -> GridSnapshot:
    """The latest grid and rates; computed here only if none is at most 1 s old.

    The grid loop refreshes the snapshot every second off the event loop
    (:func:`refresh_snapshot`), so requests normally just read it.
    """
    now_s = service.clock.time_ns() // NS
    snap = service._snapshot
    if snap is not None and snap.at_s >= now_s - 1:
        return snap
    if service.price is None:
        raise stale_error()
    service._snapshot = service.pricer.compute(now_s, service.price, list(service._recent))
    return service._snapshot


async def refresh_snapshot(service: TapService) -> None:
    """Re-price the grid on the loop a column at a time, yielding between columns.

    Not in a thread: the pricing is pure-Python float maths holding the GIL, so a thread
    made the loop wait for it in 5 ms switch intervals (21-37 ms stalls under load). One
    slice is a few hundred microseconds (docs/tap-operations.md, bench/tap/grid_bench.py).
    """
    if service.price is None:
        return
    now_s = service.clock.time_ns() // NS
    build = service.pricer.begin(now_s, service.price, list(service._recent))
    done = build.step()
    while not done:
        await asyncio.sleep(0)  # requests run between slices
        done = build.step()
    snap = build.result()
    current = service._snapshot
    if current is None or snap.at_s >= current.at_s:
        service._snapshot = snap


async def grid_loop(service: TapService) -> None:
    """Refresh the snapshot at every whole second; ``_grid_idle`` is clear while it runs."""
    while True:
        service._grid_idle.clear()
        try:
            await service.refresh_snapshot()
        finally:
            service._grid_idle.set()
        # to the next whole second, not 1 s after this refresh ended: a fixed 1 s drifts by
        # the refresh's own wall time until a second is skipped and a request finds no
        # snapshot from the last second, pricing the whole grid inline (grid_snapshot)
        await service.clock.sleep(1.0 - (service.clock.time_ns() % NS) / NS)


def grid_json(service: TapService) -> dict[str, Any]:
    """The grid at this instant (``GET /api/grid``)."""
    return service.pricer.at(service.grid_snapshot(), service.clock.time_ns()).to_json()


def quote(service: TapService, cell: Cell) -> tuple[bool, Decimal]:
    """Whether ``cell`` is placeable now, and its rate."""
    return service.pricer.quote(service.grid_snapshot(), cell, service.clock.time_ns())
