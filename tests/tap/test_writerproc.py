"""The writer process: ordered writes over the socket, errors carried back, a dead child."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tradehall.tap import ledger
from tradehall.tap.db import Database, barrier
from tradehall.tap.writerproc import WriterDied, WriterProcess

NOW = 1_790_000_000_000


def _connection_itself(conn: sqlite3.Connection) -> sqlite3.Connection:
    return conn  # a result that cannot be pickled


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[WriterProcess]:
    proc = WriterProcess(tmp_path / "tap.db", "FULL")
    await proc.start()
    yield proc
    await proc.close()


def _deposit(wallet: str, amount: int, deposit_id: str) -> functools.partial[ledger.UserRecord]:
    return functools.partial(
        ledger.deposit, wallet=wallet, amount=amount, now_ms=NOW, deposit_id=deposit_id
    )


async def test_writes_run_in_submission_order(writer: WriterProcess) -> None:
    # all handed over before the first await: the child runs them one after the other
    futures = [writer.submit(_deposit("0xw", 10, f"dep-{i}")) for i in range(50)]
    users = await asyncio.gather(*futures)
    assert [u.balance for u in users] == [10 * (i + 1) for i in range(50)]


async def test_errors_come_back_with_their_type(writer: WriterProcess) -> None:
    await writer.submit(_deposit("0xw", 10, "dep-1"))
    with pytest.raises(sqlite3.IntegrityError):  # same (DEPOSIT, ref_id): unique index
        await writer.submit(_deposit("0xw", 10, "dep-1"))
    with pytest.raises(ValueError, match="positive"):
        await writer.submit(_deposit("0xw", 0, "dep-2"))
    with pytest.raises(WriterDied, match="unpicklable"):
        await writer.submit(_connection_itself)
    # the failed writes changed nothing and the writer still serves
    user = await writer.submit(_deposit("0xw", 5, "dep-3"))
    assert user.balance == 15


async def test_a_killed_writer_fails_writes_and_closes(writer: WriterProcess) -> None:
    pid = writer.pid
    assert pid is not None
    await writer.submit(barrier)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WriterDied):
        for _ in range(1000):  # until the end of file reaches the reader task
            await writer.submit(barrier)
    await writer.close()  # nothing to ask a dead child; returns


async def test_database_close_stops_the_child(tmp_path: Path) -> None:
    db = Database(tmp_path / "tap.db", writer="process")
    await db.open()
    process = db._process
    assert process is not None and process.pid is not None
    pid = process.pid
    await db.write(_deposit("0xw", 10, "dep-1"))
    await db.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped
    check = sqlite3.connect(tmp_path / "tap.db")
    assert check.execute("SELECT balance FROM users").fetchall() == [(10,)]
    check.close()
