"""``sync="none"`` journals write on the event loop; opening, rotating and syncing use a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradehall.exchange.journal import FileJournal, SyncPolicy


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
