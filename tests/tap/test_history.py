"""FR-17 and the disk guards over HTTP: archived weeks stay queryable from local read-only
partitions, older ones answer 410 ``archived``; 70 % warns and archives early, 85 % stops bets,
95 % purges the oldest local partitions."""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradehall.tap import archive
from tradehall.tap.partitions import id_time_ms

from .conftest import Harness, eventually

DAY_MS = 86_400_000
Usage = collections.namedtuple("Usage", "total used free")


async def settled_bet(tap: Harness) -> tuple[str, str, dict[str, Any]]:
    """A bet placed and resolved through the API: (token, bet_id, the bet as first returned)."""
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    cell = tap.placeable_cells()[0]
    placed = (await tap.bet(token, cell["cell_id"])).json()
    await tap.tick(cell["col_end"] + 3 - tap.now_s)
    await tap.service.quiesce()
    auth = {"Authorization": f"Bearer {token}"}
    bet = (await tap.http.get(f"/api/bets/{placed['bet_id']}", headers=auth)).json()
    assert bet["status"] in ("won", "lost")
    return token, placed["bet_id"], bet


async def until_archived(tap: Harness) -> None:
    """Wait (real time: the archive is file I/O) for a complete archive and its partition."""
    for _ in range(1_000):
        if await tap.service.db.read(archive.last_archive_time) is not None:
            await eventually(lambda: len(tap.service.partitions.labels()) == 4)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no archive ran")


async def test_archived_weeks_are_read_locally_then_answer_archived(
    tap_with: Callable[..., Any], tmp_path: Path
) -> None:
    async with tap_with(local_weeks=1, archive_dir=tmp_path / "cold") as tap:
        token, bet_id, bet = await settled_bet(tap)
        auth = {"Authorization": f"Bearer {token}"}
        other, _ = await tap.login()
        # a midnight (week labels are dates) after the resolution and after this id's own time
        # (ids carry real time, the service runs on a virtual clock)
        first_cut = (max(tap.now_s * 1000, time.time_ns() // 1_000_000) // DAY_MS + 2) * DAY_MS
        service = tap.service
        await archive.run_archive(
            service.db,
            tmp_path / "cold",
            tap.clock,
            cutoff_ns=first_cut * 1_000_000,
            partitions=service.partitions,
        )
        hot = await service.db.read(
            lambda c: c.execute("SELECT COUNT(*) FROM bets WHERE id = ?", (bet_id,)).fetchone()
        )
        assert hot == (0,)  # settled before the cut: rotated out of the hot database
        assert len(service.partitions.labels()) == 1
        listed = await tap.http.get("/api/bets?from=0", headers=auth)
        assert listed.status_code == 200 and [b["bet_id"] for b in listed.json()["bets"]] == [
            bet_id
        ]
        one = await tap.http.get(f"/api/bets/{bet_id}", headers=auth)
        assert one.status_code == 200 and one.json() == bet
        stranger = await tap.http.get(
            f"/api/bets/{bet_id}", headers={"Authorization": f"Bearer {other}"}
        )
        assert stranger.status_code == 404

        # one more week: with one local week kept, the first week is only in the cold store
        await archive.run_archive(
            service.db,
            tmp_path / "cold",
            tap.clock,
            cutoff_ns=(first_cut + 7 * DAY_MS) * 1_000_000,
            partitions=service.partitions,
        )
        assert len(service.partitions.labels()) == 1
        assert len(list((tmp_path / "cold").glob("*.zst"))) == 2
        old = await tap.http.get("/api/bets?from=0", headers=auth)
        assert old.status_code == 410
        assert old.json() == {
            "error": "archived",
            "message": "this period is archived; it is not queryable online",
            "archived_before": first_cut,
        }
        recent = await tap.http.get("/api/bets", headers=auth)  # default: from the horizon
        assert recent.status_code == 200 and recent.json()["bets"] == []
        gone = await tap.http.get(f"/api/bets/{bet_id}", headers=auth)
        assert gone.status_code == 410 and gone.json()["archived_before"] == first_cut
        assert (await tap.http.get("/api/bets/not-an-id", headers=auth)).status_code == 404
        # the archived week is intact in the cold store and the hot ledger has zero drift
        assert await service.integrity_check() == []


def test_id_time_is_read_from_version_7_ids() -> None:
    from tradehall.tap.ids import new_id

    before = time.time_ns() // 1_000_000
    created = id_time_ms(new_id())
    assert created is not None and before <= created <= time.time_ns() // 1_000_000
    assert id_time_ms("bet-1") is None
    assert id_time_ms("0192f000-0000-4000-8000-000000000000") is None  # version 4


async def test_disk_guards_warn_and_archive_early_stop_bets_and_purge_partitions(
    tap_with: Callable[..., Any], tmp_path: Path
) -> None:
    async with tap_with(archive_dir=tmp_path / "cold") as tap:
        service = tap.service
        token, account = await tap.login()
        await tap.fund(account, 1_000)
        service.partitions.directory.mkdir(parents=True)
        for week in ("2026-08-02", "2026-08-09", "2026-08-16"):
            sqlite3.connect(service.partitions.path(week)).close()

        service.disk_usage = lambda _: Usage(100, 72, 28)
        await tap.tick(10)  # the monitor looks at the disk every 10 s
        health = await tap.http.get("/healthz")
        assert health.status_code == 200 and health.json()["checks"]["disk"]["status"] == "warning"
        assert (await tap.bet(token, tap.placeable_cells()[0]["cell_id"])).status_code == 202
        await until_archived(tap)  # the early archive runs in the background
        labels = service.partitions.labels()
        assert len(labels) == 4  # the early archive added this week's snapshot

        # 95 %: usage falls by 2 points per purged week; purging stops below 95 %
        def usage(_: Path) -> Usage:
            used = 90 + 2 * len(service.partitions.labels())
            return Usage(100, used, 100 - used)

        service.disk_usage = usage
        await tap.tick(10)
        assert service.partitions.labels() == labels[2:]  # two oldest purged: 98 -> 96 -> 94
        resp = await tap.bet(token, tap.placeable_cells()[1]["cell_id"])
        assert resp.status_code == 503 and resp.json()["error"] == "DISK_CRITICAL"
        assert (await tap.http.get("/healthz")).json()["checks"]["disk"]["status"] == "critical"
        assert len(list((tmp_path / "cold").glob("*.zst"))) == 1  # archives are untouched

        service.disk_usage = lambda _: Usage(100, 50, 50)
        await tap.tick(10)
        assert (await tap.http.get("/healthz")).json()["checks"]["disk"]["status"] == "ok"
        assert (await tap.bet(token, tap.placeable_cells()[1]["cell_id"])).status_code == 202
