"""``sync="none"`` journals write on the event loop; opening, rotating and syncing use a thread."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tradehall.exchange.journal import FileJournal, JournalError, SyncPolicy


async def run(tmp_path: Path, sync: SyncPolicy) -> tuple[int, list[bytes]]:
    journal = FileJournal(tmp_path, sync=sync)
    assert list(journal.open()) == []
    hops = 0
    submit = journal._thread.submit

    def counting(fn: Callable[..., Any], /, *args: Any) -> Any:
        nonlocal hops
        hops += 1
        return submit(fn, *args)

    journal._thread.submit = counting  # type: ignore[method-assign]
    await journal.start()
    for batch in range(5):  # five batches: each waits for the previous one to be written
        await asyncio.gather(*(journal.append(f"{batch}-{i}".encode()) for i in range(3)))
    await journal.close()
    reopened = FileJournal(tmp_path)
    payloads = list(reopened.open())
    await reopened.close()
    return hops, payloads


def test_none_writes_inline_after_opening_the_segment(tmp_path: Path) -> None:
    hops, payloads = asyncio.run(run(tmp_path, "none"))
    assert payloads == [f"{b}-{i}".encode() for b in range(5) for i in range(3)]
    assert hops == 1  # only the first batch, which opens the segment


def test_fsync_writes_every_batch_in_the_thread(tmp_path: Path) -> None:
    hops, payloads = asyncio.run(run(tmp_path, "fsync"))
    assert payloads == [f"{b}-{i}".encode() for b in range(5) for i in range(3)]
    assert hops == 5


def _segments(directory: Path) -> list[list[bytes]]:
    reader = FileJournal(directory)
    found = []
    try:
        for _, path in reader.segments():
            found.append(list(reader._read_segment(path, last=False)))
    finally:
        asyncio.run(reader.close())
    return found


def test_none_keeps_order_behind_a_rotation_in_the_thread(tmp_path: Path) -> None:
    async def scenario() -> None:
        journal = FileJournal(tmp_path, sync="none")
        assert list(journal.open()) == []
        await journal.start()
        await journal.append(b"1")  # opens the segment (thread)
        held = threading.Event()
        release = threading.Event()
        real_fsync = os.fsync

        def slow_fsync(fd: int) -> None:  # the rotation's sync, held in the thread
            held.set()
            assert release.wait(10)
            real_fsync(fd)

        os.fsync = slow_fsync  # type: ignore[assignment]
        try:
            second = journal.append(b"2")
            rotated = journal.rotate(3)  # closes the batch holding "2"
            third = journal.append(b"3")  # a new batch, queued behind the rotation
            assert await asyncio.to_thread(held.wait, 10)
            for _ in range(5):
                await asyncio.sleep(0)
            assert not third.done()  # not written inline ahead of the rotation
            release.set()
            await asyncio.wait_for(asyncio.gather(second, rotated, third), 5)
        finally:
            os.fsync = real_fsync  # type: ignore[assignment]
        fourth = journal.append(b"4")  # inline again once nothing is queued
        await fourth
        assert journal.batches_written == 4 and journal.records_written == 4
        await journal.close()

    asyncio.run(scenario())
    assert _segments(tmp_path) == [[b"1", b"2"], [b"3", b"4"]]


def test_none_inline_write_failure_fails_the_batch_and_refuses_more(tmp_path: Path) -> None:
    async def scenario() -> None:
        journal = FileJournal(tmp_path, sync="none")
        assert list(journal.open()) == []
        await journal.start()
        await journal.append(b"ok")
        real_write = os.write

        def full(fd: int, data: Any) -> int:
            raise OSError(28, "No space left on device")

        os.write = full  # type: ignore[assignment]
        try:
            failed = journal.append(b"lost")
            with pytest.raises(JournalError, match="No space left"):
                await failed
        finally:
            os.write = real_write  # type: ignore[assignment]
        with pytest.raises(JournalError, match="unusable"):
            journal.append(b"refused")
        await asyncio.wait_for(journal.close(), 5)  # the writer stopped; close does not hang
        assert journal.records_written == 1

    asyncio.run(scenario())
    assert _segments(tmp_path) == [[b"ok"]]


async def _settled_order(tmp_path: Path, sync: SyncPolicy) -> list[str]:
    journal = FileJournal(tmp_path, sync=sync)
    list(journal.open())
    await journal.start()
    events: list[str] = []
    with pytest.raises(JournalError, match="needs an append"):
        journal.when_settled(lambda failure: None)
    future = journal.append(b"1", lambda: events.append("durable 1"))
    journal.when_settled(lambda failure: events.append(f"settled {failure!r}"))
    journal.append(b"2", lambda: events.append("durable 2"))  # the same batch
    await future
    await journal.close()
    return events


@pytest.mark.parametrize("sync", ["none", "fsync"])
def test_when_settled_runs_after_the_batch_callbacks(tmp_path: Path, sync: SyncPolicy) -> None:
    events = asyncio.run(_settled_order(tmp_path, sync))
    assert events == ["durable 1", "durable 2", "settled None"]


def test_when_settled_reports_a_failed_write(tmp_path: Path) -> None:
    async def scenario() -> list[BaseException | None]:
        journal = FileJournal(tmp_path, sync="none")
        list(journal.open())
        (tmp_path / "journal-0000000000000001.log").mkdir()  # the segment cannot be opened
        await journal.start()
        seen: list[BaseException | None] = []
        durable: list[str] = []
        future = journal.append(b"1", lambda: durable.append("1"))
        journal.when_settled(seen.append)
        with pytest.raises(JournalError):
            await future
        await journal.close()
        assert durable == []  # a failed batch runs no on_durable callback
        return seen

    seen = asyncio.run(scenario())
    assert len(seen) == 1 and isinstance(seen[0], JournalError)
