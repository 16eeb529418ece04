import asyncio

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds, is_uuid


async def test_virtual_sleep_wakes_in_deadline_order() -> None:
    clock = VirtualClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("late", 3), ("early", 1))]
    await clock.advance(0.5)
    assert woke == []
    await clock.advance(1)
    assert woke == ["early"]
    await clock.advance(5)
    assert woke == ["early", "late"]
    await asyncio.gather(*tasks)


async def test_periodic_loop_fires_once_per_period() -> None:
    clock = VirtualClock()
    ticks: list[float] = []

    async def loop() -> None:
        while True:
            await clock.sleep(1)
            ticks.append(clock.monotonic())

    task = asyncio.create_task(loop())
    await clock.advance(3.5)
    task.cancel()
    assert ticks == [1.0, 2.0, 3.0]


def test_sequential_ids_are_valid_and_distinct() -> None:
    ids = SequentialIds()
    first, second = ids.new_id(), ids.new_id()
    assert first != second
    assert is_uuid(first)
    assert first < second
    assert not is_uuid("not-a-uuid")
