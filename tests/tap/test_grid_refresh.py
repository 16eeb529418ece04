"""The grid loop refreshes on whole seconds, however long a refresh takes."""

from __future__ import annotations

from .conftest import PRICE, Harness

NS = 1_000_000_000


async def test_slow_refreshes_still_give_a_snapshot_every_second(tap: Harness) -> None:
    service, clock = tap.service, tap.clock
    real = service.refresh_snapshot
    seen: list[int] = []

    async def slow_refresh() -> None:
        await real()
        assert service._snapshot is not None
        seen.append(service._snapshot.at_s)
        clock.set_ns(clock.time_ns() + 400_000_000)  # as if the refresh took 0.4 s of wall time

    service.refresh_snapshot = slow_refresh  # type: ignore[method-assign]
    for _ in range(10):
        service.ingest_price(PRICE)
        await clock.advance(1.0 - (clock.time_ns() % NS) / NS)  # to the next whole second
        await service.quiesce()
    # a fixed 1 s sleep after each refresh would wake 0.4 s into the next second, and then
    # 0.8 s in, and then skip one
    assert len(seen) == 10
    assert seen == list(range(seen[0], seen[0] + 10))
