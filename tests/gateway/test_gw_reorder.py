"""Per-stream ordering (pure): SC-002 zero out-of-order deliveries within the lateness window."""

from __future__ import annotations

import random

from dispatch_helpers import lv, snapshot, ticker, trade, update
from hypothesis import given, settings
from hypothesis import strategies as st

from tradehall.gateway.events import Event
from tradehall.gateway.reorder import Reorderer

LATENESS = 0.150
FLUSH = 0.050


def _seqs(events: list[Event]) -> list[int | None]:
    return [e.seq_provider for e in events]


def _started(seq: int = 1) -> Reorderer:
    """A reorderer whose BTC-USD binance trade stream has released ``seq``."""
    r = Reorderer(lateness=LATENESS)
    assert r.push(trade(seq), -1.0) == []  # a new stream's start is unknown: it waits once
    assert _seqs(r.flush(-1.0 + LATENESS)) == [seq]
    return r


def test_a_new_stream_waits_once_then_in_order_events_are_released_at_once() -> None:
    r = Reorderer(lateness=LATENESS)
    assert r.push(trade(2), 0.0) == []
    assert r.push(trade(3), 0.05) == []
    assert _seqs(r.push(trade(1), 0.1)) == []  # still not known to be the start
    assert r.flush(0.149) == []
    assert _seqs(r.flush(0.15)) == [1, 2, 3]
    for seq in range(4, 9):
        assert _seqs(r.push(trade(seq), now=0.2)) == [seq]
    assert r.buffered == 0 and r.stats.released == 8 and r.stats.gaps == 0


def test_a_hole_holds_later_events_until_it_fills() -> None:
    r = _started()
    assert r.push(trade(3), 0.01) == []
    assert r.push(trade(4), 0.02) == []
    assert r.buffered == 2
    assert r.flush(0.1) == []  # the hole is only 90 ms old
    assert _seqs(r.push(trade(2), 0.12)) == [2, 3, 4]
    assert r.buffered == 0 and r.stats.reordered == 3 and r.stats.gaps == 0


def test_a_hole_older_than_the_lateness_is_given_up_and_its_straggler_dropped() -> None:
    r = _started()
    r.push(trade(3), 0.010)
    r.push(trade(4), 0.100)
    assert r.flush(0.159) == []
    assert _seqs(r.flush(0.160)) == [3, 4]  # 150 ms after the oldest buffered arrival
    assert r.stats.gaps == 1
    assert r.push(trade(2), 0.2) == []  # too late: never delivered out of order
    assert r.stats.late == 1
    assert _seqs(r.push(trade(5), 0.21)) == [5]


def test_the_buffer_is_bounded() -> None:
    r = _started()
    released: list[Event] = []
    for seq in range(3, 203):
        released += r.push(trade(seq), 0.0)
    assert _seqs(released) == list(range(3, 203))  # the 200th buffered forces the release
    assert r.stats.overflows == 1 and r.buffered == 0


def test_streams_are_independent() -> None:
    r = _started()
    r.push(trade(1, symbol="ETH-USD"), -1.0)
    assert _seqs(r.flush(-1.0 + LATENESS)) == [1]
    assert r.push(trade(3, symbol="BTC-USD"), 0.2) == []
    assert _seqs(r.push(trade(2, symbol="ETH-USD"), 0.2)) == [2]  # not held by BTC's hole


def test_monotonic_streams_never_wait_and_drop_older_events() -> None:
    r = Reorderer()
    assert _seqs(r.push(ticker(10), 0.0)) == [10]
    assert _seqs(r.push(ticker(15), 0.0)) == [15]  # no density: a jump is not a hole
    assert r.push(ticker(12), 0.0) == []
    assert r.stats.late == 1
    # no sequence at all: ordered by ts_ingest (arrival), nothing waits
    assert len(r.push(ticker(None, provider="kraken"), 0.0)) == 1
    # coinbase trades are not dense by default
    assert len(r.push(trade(5, provider="coinbase"), 0.0)) == 1
    assert len(r.push(trade(9, provider="coinbase"), 0.0)) == 1


def test_book_diffs_follow_their_snapshot_and_epochs() -> None:
    r = Reorderer()
    assert len(r.push(snapshot(100), 0.0)) == 1
    assert r.push(update(90, 100), 0.0) == []  # covered by the snapshot
    assert _seqs(r.push(update(95, 103), 0.0)) == [103]  # Binance overlap: U <= id+1 <= u
    assert r.push(update(110, 112), 0.0) == []  # hole 104..109
    assert _seqs(r.push(update(104, 109), 0.0)) == [109, 112]
    assert r.push(update(120, 121), 0.0) == []
    # a resync: the new epoch's snapshot supersedes the buffered diff of the old one
    assert _seqs(r.push(snapshot(500, (lv("1", "1"),), epoch=2), 0.0)) == [500]
    assert r.stats.superseded == 1 and r.buffered == 0
    assert r.push(update(113, 113, epoch=1), 0.0) == []
    assert _seqs(r.push(update(501, 501, epoch=2), 0.0)) == [501]
    assert r.stats.superseded == 2


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    spacing=st.sampled_from([0.0005, 0.002, 0.02]),
)
def test_sc002_zero_out_of_order_within_the_lateness_window(
    seed: int, n: int, spacing: float
) -> None:
    """Every event delayed by a random amount below the lateness arrives in order, none lost."""
    rng = random.Random(seed)
    sent = [(i * spacing + rng.uniform(0, LATENESS * 0.999), i + 1) for i in range(n)]
    arrivals = sorted(sent)
    r = Reorderer(lateness=LATENESS, max_buffer=10_000)
    out: list[Event] = []
    next_flush = FLUSH
    for at, seq in arrivals:
        while next_flush <= at:
            out += r.flush(next_flush)
            next_flush += FLUSH
        out += r.push(trade(seq), at)
    out += r.flush(next_flush + LATENESS)
    assert _seqs(out) == list(range(1, n + 1))
    assert r.stats.late == r.stats.gaps == 0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), late_share=st.floats(0.0, 0.3))
def test_stragglers_beyond_the_window_are_dropped_never_delivered_out_of_order(
    seed: int, n: int, late_share: float
) -> None:
    rng = random.Random(seed)
    sent = []
    on_time: set[int] = set()
    for i in range(n):
        if rng.random() < late_share:
            delay = rng.uniform(LATENESS * 1.01, LATENESS * 4)
        else:
            delay = rng.uniform(0, LATENESS * 0.999)
            on_time.add(i + 1)
        sent.append((i * 0.003 + delay, i + 1))
    r = Reorderer(lateness=LATENESS, max_buffer=10_000)
    out: list[Event] = []
    next_flush = FLUSH
    for at, seq in sorted(sent):
        while next_flush <= at:
            out += r.flush(next_flush)
            next_flush += FLUSH
        out += r.push(trade(seq), at)
    out += r.flush(next_flush + LATENESS)
    seqs = [s for s in _seqs(out) if s is not None]
    assert seqs == sorted(set(seqs))  # strictly increasing: zero out-of-order deliveries
    assert on_time <= set(seqs)  # everything within the window is delivered
    assert len(seqs) + r.stats.late == n  # the rest is counted as late
