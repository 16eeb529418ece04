"""Snapshot files: the machine's state at one journal sequence number, written crash-safely.

File ``snapshot-<seq>.bin`` = ``b"THSNAP1\\n"`` + ``u64 seq`` + ``u32 crc32(payload)`` + payload.
Writing goes to a temporary file that is fsynced, renamed into place, and then the directory is
fsynced -- only after that may the journal segments the snapshot covers be deleted. Loading takes
the newest snapshot whose checksum holds (an older one is the fallback if the newest is damaged);
older snapshots are pruned after a newer one is durable.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from tradehall.core.logging import get_logger

__all__ = ["latest_snapshot", "prune_snapshots", "write_snapshot"]

_MAGIC = b"THSNAP1\n"
_HEADER = struct.Struct("<QI")
log = get_logger("exchange.snapshots")


def _path(directory: Path, seq: int) -> Path:
    return directory / f"snapshot-{seq:016d}.bin"


def write_snapshot(directory: Path, seq: int, payload: bytes) -> Path:
    """Durably write a snapshot (blocking: run it in a worker thread)."""
    final = _path(directory, seq)
    temporary = final.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(_MAGIC + _HEADER.pack(seq, zlib.crc32(payload)))
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def _snapshots(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob("snapshot-*.bin"):
        try:
            found.append((int(path.stem.split("-", 1)[1]), path))
        except ValueError:
            continue
    return sorted(found, reverse=True)


def latest_snapshot(directory: Path) -> tuple[int, bytes] | None:
    """The newest intact snapshot as (seq, payload), or ``None`` if there is none."""
    if not directory.exists():
        return None
    for seq, path in _snapshots(directory):
        data = path.read_bytes()
        head = len(_MAGIC) + _HEADER.size
        if len(data) >= head and data.startswith(_MAGIC):
            stored_seq, crc = _HEADER.unpack_from(data, len(_MAGIC))
            payload = data[head:]
            if stored_seq == seq and zlib.crc32(payload) == crc:
                return seq, payload
        log.error("snapshot_damaged_skipped", path=str(path))
    return None


def prune_snapshots(directory: Path, keep_from: int) -> int:
    """Delete snapshots older than ``keep_from`` and stray temporary files; return how many."""
    removed = 0
    for seq, path in _snapshots(directory):
        if seq < keep_from:
            path.unlink(missing_ok=True)
            removed += 1
    for path in directory.glob("snapshot-*.tmp"):
        path.unlink(missing_ok=True)
    return removed
