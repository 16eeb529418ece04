"""FR-17 restore: archived weeks fetched from the cold store, verified, attached read-only, after
which history that answered 410 ``archived`` answers again."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tradehall.core.clock import VirtualClock
from tradehall.tap import archive, ledger
from tradehall.tap.coldstore import S3Store
from tradehall.tap.db import Database
from tradehall.tap.operator import restore_week
from tradehall.tap.restore import RestoreError, WeekFiles, restore_since

from .conftest import ADMIN, Harness
from .test_coldstore import AK, SK, fake_s3
from .test_history import DAY_MS, settled_bet

ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


def _first_cut(tap: Harness) -> int:
    """A midnight after the harness's resolutions and after real-time ids (see test_history)."""
    return (max(tap.now_s * 1000, time.time_ns() // 1_000_000) // DAY_MS + 2) * DAY_MS


async def _archive_weeks(tap: Harness, cold: Path, first_cut: int, weeks: int) -> list[str]:
    labels = []
    for n in range(weeks):
        result = await archive.run_archive(
            tap.service.db,
            cold,
            tap.clock,
            cutoff_ns=(first_cut + 7 * DAY_MS * n) * 1_000_000,
            partitions=tap.service.partitions,
        )
        labels.append(result.week)
    return labels


async def test_restore_brings_archived_history_back(
    tap_with: Callable[..., Any], tmp_path: Path
) -> None:
    cold = tmp_path / "cold"
    async with tap_with(local_weeks=1, archive_dir=cold) as tap:
        token, bet_id, bet = await settled_bet(tap)
        auth = {"Authorization": f"Bearer {token}"}
        first_cut = _first_cut(tap)
        labels = await _archive_weeks(tap, cold, first_cut, 3)  # weeks 1 and 2 leave the disk
        assert tap.service.partitions.labels() == labels[2:]
        assert (await tap.http.get("/api/bets?from=0", headers=auth)).status_code == 410
        assert (await tap.http.get(f"/api/bets/{bet_id}", headers=auth)).status_code == 410

        resp = await tap.http.post(
            "/api/admin/restore", json={"week": labels[0]}, headers=ADMIN_AUTH
        )
        assert resp.status_code == 200, resp.text
        # the later missing week comes back too: "archived" is one boundary
        assert resp.json() == {
            "restored": labels[:2],
            "already_available": labels[2:],
            "archived_before": 0,
        }
        restored = tmp_path / "restore" / f"tap_{labels[0]}.db"
        assert stat.S_IMODE(restored.stat().st_mode) == 0o444  # attached read-only
        assert not list((tmp_path / "restore").glob(".*"))  # no downloads or temporaries left
        listed = await tap.http.get("/api/bets?from=0", headers=auth)
        assert listed.status_code == 200
        assert [b["bet_id"] for b in listed.json()["bets"]] == [bet_id]
        one = await tap.http.get(f"/api/bets/{bet_id}", headers=auth)
        assert one.status_code == 200 and one.json() == bet

        again = await tap.http.post(
            "/api/admin/restore", json={"week": labels[1]}, headers=ADMIN_AUTH
        )
        assert again.json()["restored"] == [] and again.json()["already_available"] == labels[1:]
        assert await tap.service.integrity_check() == []


async def test_restore_refuses_bad_requests_and_corrupt_archives(
    tap_with: Callable[..., Any], tmp_path: Path
) -> None:
    cold = tmp_path / "cold"
    async with tap_with(local_weeks=1, archive_dir=cold) as tap:
        token, _, _ = await settled_bet(tap)
        labels = await _archive_weeks(tap, cold, _first_cut(tap), 2)
        post = tap.http.post
        nobody = await post("/api/admin/restore", json={"week": labels[0]})
        assert nobody.status_code == 403
        bad = await post("/api/admin/restore", json={"week": "last week"}, headers=ADMIN_AUTH)
        assert bad.status_code == 400 and bad.json()["error"] == "validation_error"
        unknown = await post("/api/admin/restore", json={"week": "2001-01-07"}, headers=ADMIN_AUTH)
        assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"

        stored = cold / f"tap_{labels[0]}.db.zst"
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0xFF  # bit rot in the cold store
        stored.write_bytes(bytes(data))
        rotten = await post("/api/admin/restore", json={"week": labels[0]}, headers=ADMIN_AUTH)
        assert rotten.status_code == 502 and rotten.json()["error"] == "restore_failed"
        assert "sha256" in rotten.json()["message"]
        assert list((tmp_path / "restore").iterdir()) == []  # nothing attached, nothing left
        auth = {"Authorization": f"Bearer {token}"}
        assert (await tap.http.get("/api/bets?from=0", headers=auth)).status_code == 410


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = Database(tmp_path / "tap.db")
    await database.open()
    await database.write(lambda c: ledger.deposit(c, "0xaa", 1_000, 1, "dep-1"))
    yield database
    await database.close()


async def test_restore_from_s3_verifies_the_download(db: Database, tmp_path: Path) -> None:
    weeks = WeekFiles.in_data_dir(tmp_path, keep=0)  # nothing kept locally
    clock = VirtualClock()
    async with fake_s3() as (endpoint, s3):
        store = S3Store(endpoint, "bucket", AK, SK, prefix="tap/")
        result = await archive.run_archive(
            db, store, clock, cutoff_ns=clock.time_ns(), partitions=weeks
        )
        assert weeks.labels() == []
        restored = await restore_since(db, store, weeks, result.week)
        assert restored.restored == [result.week] and weeks.labels() == [result.week]
        # the restored week is the archived database: its ledger holds the deposit
        [types] = weeks.each(
            lambda c: [r[0] for r in c.execute("SELECT ref_type FROM transaction_ledger")]
        )
        assert types == ["DEPOSIT"]
        weeks.restored.path(result.week).chmod(0o644)
        weeks.restored.path(result.week).unlink()
        key = f"bucket/tap/tap_{result.week}.db.zst"
        data, meta = s3.objects[key]
        s3.objects[key] = (data[:-1] + b"\0", meta)  # the object rotted after the upload
        with pytest.raises(RestoreError, match="sha256"):
            await restore_since(db, store, weeks, result.week)
        assert weeks.labels() == []
        with pytest.raises(RestoreError, match="403"):
            await restore_since(
                db, S3Store(endpoint, "bucket", AK, "wrong", "tap/"), weeks, result.week
            )


async def test_cli_restore_and_disk_purge_of_restored_weeks(
    db: Database, tmp_path: Path, capsys: Any
) -> None:
    from tradehall.tap.contract import TapConfig

    config = TapConfig(data_dir=tmp_path, archive_dir=tmp_path / "cold", local_weeks=0)
    weeks = WeekFiles.in_data_dir(tmp_path, keep=0)
    clock = VirtualClock()
    result = await archive.run_archive(
        db, tmp_path / "cold", clock, cutoff_ns=clock.time_ns(), partitions=weeks
    )
    assert await restore_week(config, result.week) == 0
    assert json.loads(capsys.readouterr().out)["restored"] == [result.week]
    assert weeks.labels() == [result.week]
    assert await restore_week(config, "2001-01-07") == 1
    assert json.loads(capsys.readouterr().out)["error"] == "not_found"
    # the 95 % disk guard frees restored weeks first: they can be fetched again
    assert weeks.purge_oldest() == result.week and weeks.labels() == []


async def test_concurrent_restores_fetch_each_week_once(db: Database, tmp_path: Path) -> None:
    import asyncio

    weeks = WeekFiles.in_data_dir(tmp_path, keep=0)
    clock = VirtualClock()
    cold = tmp_path / "cold"
    result = await archive.run_archive(db, cold, clock, cutoff_ns=clock.time_ns(), partitions=weeks)
    first, second = await asyncio.gather(
        restore_since(db, cold, weeks, result.week), restore_since(db, cold, weeks, result.week)
    )
    assert sorted([first.restored, second.restored]) == [[], [result.week]]
    assert sorted([first.already, second.already]) == [[], [result.week]]
    assert [p.name for p in (tmp_path / "restore").iterdir()] == [f"tap_{result.week}.db"]
