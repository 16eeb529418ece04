"""WakeFlusher and cancel_and_wait: wakes coalesce, stop flushes what is queued, tasks end."""

from __future__ import annotations

import asyncio

import pytest

from tradehall.core.tasks import WakeFlusher, cancel_and_wait


async def test_wakes_during_a_flush_coalesce_into_one_more_flush() -> None:
    queued: list[int] = []
    batches: list[list[int]] = []
    gate = asyncio.Event()
    first, second = asyncio.Event(), asyncio.Event()

    async def flush() -> None:
        batch, queued[:] = list(queued), []
        if batch:
            batches.append(batch)
            (second if first.is_set() else first).set()
            await gate.wait()

    flusher = WakeFlusher(flush, name="t")
    flusher.start()
    queued.append(1)
    flusher.wake()
    await first.wait()
    for n in (2, 3, 4):  # arrive while the first flush is blocked
        queued.append(n)
        flusher.wake()
    gate.set()
    await second.wait()
    for _ in range(5):  # give a wrongly queued third flush the chance to run
        await asyncio.sleep(0)
    assert batches == [[1], [2, 3, 4]]
    await flusher.stop()


async def test_stop_flushes_what_was_queued_and_ends_the_task() -> None:
    written: list[str] = []
    pending: list[str] = []

    async def flush() -> None:
        written.extend(pending)
        pending.clear()

    flusher = WakeFlusher(flush, name="t")
    flusher.start()
    assert flusher.running
    pending.append("late")  # queued without a wake: only stop() can write it
    await flusher.stop()
    assert written == ["late"]
    assert not flusher.running


async def test_cancel_and_wait_absorbs_the_cancellation_and_accepts_none() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await started.wait()
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(None)


async def test_cancel_and_wait_lets_a_real_error_through() -> None:
    async def boom() -> None:
        raise RuntimeError("worker failed")

    task = asyncio.create_task(boom())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="worker failed"):
        await cancel_and_wait(task)
