"""Time-ordered ids: valid UUIDv7 strings, unique, sorted by creation time."""

from __future__ import annotations

import time
import uuid

from tradehall.core.ids import is_uuid
from tradehall.tap.ids import new_id


def test_ids_are_uuid7_unique_and_time_ordered() -> None:
    first = new_id()
    time.sleep(0.002)  # the ordering is by wall-clock millisecond, so cross one
    ids = [new_id() for _ in range(5_000)]
    assert all(is_uuid(i) for i in ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert len(set(ids)) == len(ids)
    assert all(first < i for i in ids)
    assert abs((parsed.int >> 80) - time.time_ns() // 1_000_000) < 5_000
