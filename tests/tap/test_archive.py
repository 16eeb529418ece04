"""Archival (snapshot, zstd, verified copy, carry-forward rotation) and the CLI jobs."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zstandard

from tradehall.cli import main
from tradehall.core.clock import VirtualClock
from tradehall.tap import archive, coldstore, ledger
from tradehall.tap.db import Database, connect
from tradehall.tap.ledger import BetRequest

DAY_MS = 86_400_000
NS_PER_MS = 1_000_000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "data" / "tap.db")
    await database.open()
    yield database
    await database.close()


def bet(user_id: str, n: int) -> BetRequest:
    return BetRequest(
        f"bet-{n}", user_id, f"{n}_0_1000", f"nonce-{n}", 100, "2", n, n + 10, 0, 1000
    )


async def populate(db: Database, old_ms: int, new_ms: int) -> str:
    user = await db.write(lambda c: ledger.deposit(c, "0xaa", 1_000, old_ms, "dep-1"))
    await db.write(lambda c: ledger.place_batch(c, [bet(user.id, 1), bet(user.id, 2)], old_ms))
    await db.write(
        lambda c: ledger.apply_resolution(
            c,
            "bet-1",
            status="won",
            credit=200,
            credit_type="PAYOUT",
            resolution_price=500,
            resolution_tick_ts=1,
            ticks_examined=1,
            now_ms=old_ms + 1,
        )
    )
    await db.write(lambda c: ledger.place_batch(c, [bet(user.id, 3)], new_ms))
    return user.id


async def test_archive_rotates_with_carry_forward(db: Database, tmp_path: Path) -> None:
    clock = VirtualClock()
    now_ms = clock.time_ns() // NS_PER_MS
    cutoff_ms = now_ms - DAY_MS
    user_id = await populate(db, cutoff_ms - DAY_MS, now_ms)
    balance_before = (await db.read(lambda c: ledger.get_user(c, user_id))).balance  # type: ignore[union-attr]
    store = tmp_path / "cold"
    result = await archive.run_archive(db, store, clock, cutoff_ns=cutoff_ms * NS_PER_MS)

    # the cold copy is verified: size and sha256 match, and it decompresses to the full database
    data = result.path.read_bytes()
    assert result.path.parent == store and len(data) == result.size_bytes
    assert hashlib.sha256(data).hexdigest() == result.sha256
    restored = tmp_path / "restored.db"
    restored.write_bytes(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30))
    old = sqlite3.connect(restored)
    assert old.execute("SELECT COUNT(*) FROM transaction_ledger").fetchone()[0] == 5
    assert old.execute("SELECT COUNT(*) FROM bets").fetchone()[0] == 3
    old.close()

    # the hot database keeps balances, open bets, and sums (zero drift)
    assert result.rotated_ledger_rows == 4 and result.removed_bets == 1
    entries = await db.read(lambda c: ledger.list_ledger(c, user_id))
    assert sorted(e.ref_type for e in entries) == ["BET", "OPENING_BALANCE"]
    opening = next(e for e in entries if e.ref_type == "OPENING_BALANCE")
    assert opening.amount == 1_000 - 200 + 200 and opening.balance_after == 1_000
    assert (await db.read(lambda c: ledger.get_user(c, user_id))).balance == balance_before  # type: ignore[union-attr]
    assert await db.read(ledger.integrity_check) == []
    remaining = await db.read(lambda c: c.execute("SELECT id FROM bets ORDER BY id").fetchall())
    assert [r[0] for r in remaining] == ["bet-2", "bet-3"]  # bet-2 is still open
    assert await db.read(archive.last_archive_time) == result.archived_at_ms
    assert not list((db.path.parent / "archive-staging").glob("*.zst"))


async def test_failed_verification_leaves_database_untouched(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    now_ms = clock.time_ns() // NS_PER_MS
    await populate(db, now_ms - 2 * DAY_MS, now_ms)

    def corrupt_copy(src: Path, dst: Path) -> None:
        dst.write_bytes(src.read_bytes()[:-1] + b"\0")

    monkeypatch.setattr(coldstore.shutil, "copyfile", corrupt_copy)
    with pytest.raises(OSError, match="mismatch"):
        await archive.run_archive(db, tmp_path / "cold", clock, cutoff_ns=(now_ms - DAY_MS) * 10**6)
    assert not list((tmp_path / "cold").glob("*.zst"))
    types = await db.read(
        lambda c: [r[0] for r in c.execute("SELECT ref_type FROM transaction_ledger")]
    )
    assert "OPENING_BALANCE" not in types and len(types) == 5
    assert await db.read(archive.last_archive_time) is None


def test_week_start_is_sunday_midnight_utc() -> None:
    # 2026-11-21 is a Saturday
    start = archive.week_start(1_795_300_000 * 10**9)
    assert start.strftime("%A %Y-%m-%d %H:%M:%S") == "Sunday 2026-11-15 00:00:00"


def test_cli_integrity_check_and_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conn = connect(data_dir / "tap.db")
    user = ledger.deposit(conn, "0xaa", 1_000, 1, "dep-1")
    ledger.place_batch(conn, [bet(user.id, 1)], 2)
    assert main(["tap", "--data-dir", str(data_dir), "integrity-check"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"users": 1, "drift_users": 0, "mismatches": []}
    conn.execute("UPDATE users SET balance = balance + 7")
    assert main(["tap", "--data-dir", str(data_dir), "integrity-check"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["drift_users"] == 1 and report["mismatches"][0]["drift"] == 7
    conn.execute("UPDATE users SET balance = balance - 7")
    conn.close()
    cold = tmp_path / "cold"
    assert main(["tap", "--data-dir", str(data_dir), "--archive-dir", str(cold), "archive"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["path"]).exists() and Path(result["path"]).parent == cold
    assert main(["tap", "--data-dir", str(data_dir), "integrity-check"]) == 0


def test_cli_rejects_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tap", "--flush-interval", "soon", "integrity-check"]) == 2
    assert "flush_interval" in capsys.readouterr().err
