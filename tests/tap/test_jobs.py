"""``--jobs api``: a further API process leaves the database jobs to the process with ``all``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradehall.core.clock import VirtualClock
from tradehall.core.config import ConfigError, resolve
from tradehall.tap.cli import SETTINGS, build
from tradehall.tap.hub import Client, Hub
from tradehall.tap.service import TapService


def _service(tmp_path: Path, jobs: str) -> tuple[TapService, Hub]:
    values = resolve(
        SETTINGS,
        {"data_dir": str(tmp_path), "price_source": "none", "jobs": jobs},
        environ={},
    )
    return build(values, VirtualClock())


@pytest.mark.parametrize("jobs", ["all", "api"])
async def test_only_the_all_process_stores_ticks_and_runs_the_database_jobs(
    tmp_path: Path, jobs: str
) -> None:
    service, hub = _service(tmp_path, jobs)
    await service.start()
    try:
        names = {task.get_name() for task in service._tasks}
        database_jobs = {"tap-resolver", "tap-ticks", "tap-integrity", "tap-backup"}
        assert {"tap-feed", "tap-monitor", "tap-grid"} <= names
        assert (database_jobs & names) == (database_jobs if jobs == "all" else set())
        watcher = Client()
        hub.add(watcher)
        service.ingest_price(6_000_000)
        assert service.price == 6_000_000  # bets are still priced
        stored = service._pending_ticks
        assert len(stored) == (1 if jobs == "all" else 0)
        assert watcher.queue.qsize() == (1 if jobs == "all" else 0)  # the price broadcast
    finally:
        await service.stop()


def test_jobs_setting_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _service(tmp_path, "resolver")
