"""Journals and snapshots written by an earlier engine still recover to the same state.

``data/journal-v1.jsonl`` (one encoded record per line) and ``data/snapshot-v1.json`` (the
machine's snapshot after the last record) were written by the engine before its performance
rework (sortedcontainers books and indexes, one Python object per order field), from a seeded
stream of limit and market orders, cancels, expiry sweeps and a webhook subscription. The current
engine must replay the journal to exactly that snapshot, and load the snapshot as it was.
"""

from __future__ import annotations

from pathlib import Path

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.commands import decode_record
from tradehall.exchange.machine import ExchangeMachine

DATA = Path(__file__).parent / "data"
T0 = 1_790_000_000 * 10**9
V1_STATE_HASH = "51c537cea10a99b5029a537ad0e2eaab088b60003b3250fd9e835fc214082fcb"


def fresh(snapshot: bytes | None = None) -> ExchangeMachine:
    image = None if snapshot is None else ExchangeMachine.decode_snapshot(snapshot)
    return ExchangeMachine(VirtualClock(T0), SequentialIds(), vwap_window_ns=10**9, snapshot=image)


def test_v1_journal_replays_to_the_v1_snapshot_byte_for_byte() -> None:
    machine = fresh()
    for line in (DATA / "journal-v1.jsonl").read_bytes().splitlines():
        machine.replay(decode_record(line))
    assert machine.engine.trade_count > 100 and machine.outbox  # the stream did real work
    assert machine.state_hash() == V1_STATE_HASH
    snapshot = (DATA / "snapshot-v1.json").read_bytes()
    assert ExchangeMachine.encode_snapshot(machine.snapshot()) == snapshot


def test_v1_snapshot_loads_and_writes_back_unchanged() -> None:
    snapshot = (DATA / "snapshot-v1.json").read_bytes()
    machine = fresh(snapshot)
    assert machine.state_hash() == V1_STATE_HASH
    assert ExchangeMachine.encode_snapshot(machine.snapshot()) == snapshot
