"""Shared by the tap bench scripts: CPU time of live processes, read from Linux ``/proc``."""

from __future__ import annotations

import os
from pathlib import Path


def process_cpu() -> dict[int, tuple[int, float]]:
    """Every live process: pid -> (parent pid, user + system CPU seconds so far)."""
    ticks = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return table


def children_cpu(parent: int, table: dict[int, tuple[int, float]] | None = None) -> float:
    """CPU seconds of the live direct children of ``parent``."""
    rows = process_cpu() if table is None else table
    return sum((cpu for ppid, cpu in rows.values() if ppid == parent), 0.0)
