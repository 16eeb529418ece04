"""Hourly online backups (ADR-001): sqlite3's backup API, the newest N kept, a success gauge."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tradehall.cli import main
from tradehall.tap import ledger
from tradehall.tap.backup import backup_once, list_backups
from tradehall.tap.db import connect

from .conftest import Harness, eventually

T0_MS = 1_795_300_000_000


def _balances(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT wallet_address, balance FROM users")]
    finally:
        conn.close()


def test_backup_is_a_consistent_copy_including_the_wal(tmp_path: Path) -> None:
    conn = connect(tmp_path / "tap.db")  # the project's PRAGMAs: WAL mode
    ledger.deposit(conn, "0xaa", 1_000, 1, "dep-1")
    ledger.deposit(conn, "0xbb", 250, 2, "dep-2")
    wal = tmp_path / "tap.db-wal"
    assert wal.exists() and wal.stat().st_size > 0  # committed rows still only in the WAL
    result = backup_once(tmp_path / "tap.db", tmp_path / "backups", T0_MS, keep=3)
    assert result.path.name == "tap_20261121T222640000Z.db" and result.removed == []
    assert _balances(result.path) == [("0xaa", 1_000), ("0xbb", 250)]
    assert result.size_bytes == result.path.stat().st_size > 0
    backup = sqlite3.connect(result.path)
    assert backup.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    backup.close()
    conn.close()


def test_only_the_newest_backups_are_kept(tmp_path: Path) -> None:
    conn = connect(tmp_path / "tap.db")
    names = []
    for hour in range(4):
        ledger.deposit(conn, "0xaa", 100, hour, f"dep-{hour}")
        result = backup_once(tmp_path / "tap.db", tmp_path / "b", T0_MS + hour * 3_600_000, 2)
        names.append(result.path.name)
    conn.close()
    assert [p.name for p in list_backups(tmp_path / "b")] == names[2:]
    assert _balances(list_backups(tmp_path / "b")[-1]) == [("0xaa", 400)]
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="keep"):
        backup_once(tmp_path / "tap.db", tmp_path / "b", T0_MS, 0)


async def test_server_backs_up_every_interval_and_sets_the_gauge(
    tap_with: Callable[..., Any], tmp_path: Path
) -> None:
    async with tap_with(backup_interval_s=60.0, backup_keep=2) as tap:
        harness: Harness = tap
        _, account = await harness.login()
        await harness.fund(account, 700)
        directory = tmp_path / "backups"
        before = len(list_backups(directory))  # the warm-up ticks may have crossed one already
        await harness.tick(60)
        await eventually(lambda: len(list_backups(directory)) == min(2, before + 1))
        newest = list_backups(directory)[-1]
        assert _balances(newest) == [(account.address.lower(), 700)]
        metrics = (await harness.http.get("/metrics")).text
        match = re.search(r"^last_successful_backup_timestamp (\S+)$", metrics, re.M)
        assert match is not None and float(match.group(1)) > 0
        await harness.tick(120)
        await eventually(lambda: len(list_backups(directory)) == 2)  # keep=2


def test_cli_backup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conn = connect(data_dir / "tap.db")
    ledger.deposit(conn, "0xaa", 1_000, 1, "dep-1")
    conn.close()
    out = tmp_path / "copies"
    args = ["tap", "--data-dir", str(data_dir), "--backup-dir", str(out), "backup"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["path"]).parent == out and _balances(Path(result["path"])) == [
        ("0xaa", 1_000)
    ]
    # a wrong data directory: a clear failure, and no empty database made there
    wrong = ["tap", "--data-dir", str(tmp_path / "nope"), "--backup-dir", str(out), "backup"]
    assert main(wrong) == 1
    failure = json.loads(capsys.readouterr().out)
    assert failure["error"] == "backup_failed" and "no database" in failure["message"]
    assert not (tmp_path / "nope").exists() and len(list_backups(out)) == 1
