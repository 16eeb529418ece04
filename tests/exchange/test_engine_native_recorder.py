"""The machine's :class:`Recorder` as clock and id source of the native engine core.

The C core serves an exact ``Recorder`` (what :class:`ExchangeMachine` gives its engine) without
calling its methods: it takes the underlying reading or id itself and appends it to the lists the
recorder is recording into, and hands over to the recorder's own methods while it replays. These
check that this is invisible: a journal recorded through the native engine holds exactly the
readings and ids, in the same order, as one recorded through the pure engine; ids minted by
Python code inside the same command (webhook delivery ids) interleave correctly; journals of
either build replay on either; a replay that asks for more or fewer readings or ids fails as it
does in Python; and changes to the recorder made after the engine was built are followed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from tradehall.core.clock import Clock, SystemClock, VirtualClock
from tradehall.core.ids import IdSource, RandomIds, SequentialIds
from tradehall.exchange.commands import (
    CancelOrder,
    Command,
    ExpireDue,
    Record,
    RegisterBroker,
    SubmitOrder,
    UpsertWebhooks,
)
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.machine import ExchangeMachine, Recorder, ReplayDivergence

T0 = 1_790_000_000 * 10**9
LATER = 4_102_444_800 * 10**9  # 2100: ahead of the wall clock too
BUILDS = ("python", "native")


def machine(
    build: str, monkeypatch: pytest.MonkeyPatch, clock: Clock, ids: IdSource
) -> ExchangeMachine:
    """A machine whose engine is the named build (machines build their own engine)."""
    if build == "python":
        monkeypatch.setenv("TRADEHALL_ENGINE", "python")
    else:
        monkeypatch.delenv("TRADEHALL_ENGINE", raising=False)
    made = ExchangeMachine(clock, ids, vwap_window_ns=10**9)
    assert made.engine.build == build
    return made


def limit(broker: str, side: str, quantity: int, price: int) -> SubmitOrder:
    return SubmitOrder(OrderRequest("limit", broker, "D", side, "AAA", quantity, price, LATER))


def commands() -> list[Command]:
    """Rests, trades (ids minted per trade), webhook deliveries (ids minted in Python in the
    same command as the engine's), rejections (no reading kept), cancels and an expiry sweep."""
    return [
        RegisterBroker("b0", 10**9, [("AAA", 1000)]),
        RegisterBroker("b1", 10**9, [("AAA", 1000)]),
        UpsertWebhooks("b0", "http://hooks.test/b0", ["trade.executed", "order.cancelled"]),
        limit("b0", "ask", 5, 100),
        limit("b0", "ask", 5, 101),
        limit("b1", "bid", 7, 101),  # two trades, a delivery for each fill of b0
        SubmitOrder(OrderRequest("limit", "b1", "D", "bid", "AAA", 3, 99, T0 - 1)),  # past
        SubmitOrder(OrderRequest("market", "b1", "D", "bid", "AAA", 50, None, None)),
        limit("b0", "ask", 4, 105),
        CancelOrder("00000000-0000-4000-8000-000000000099"),  # unknown
        limit("b1", "bid", 2, 98),
        ExpireDue(),
    ]


def run_live(build: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Record], Any]:
    """The records and final snapshot of :func:`commands` on a virtual clock and counter ids."""
    clock = VirtualClock(T0)
    live = machine(build, monkeypatch, clock, SequentialIds())
    records = []
    for step, command in enumerate(commands()):
        clock.set_ns(T0 + step * 10**6)
        records.append(live.execute(command).record)
        if isinstance(command, CancelOrder):  # cancel the first resting order that is left
            open_ids = [o.order_id for o in live.engine.orders.values() if o.remaining]
            records.append(live.execute(CancelOrder(open_ids[0])).record)
    return records, live.snapshot()


def test_both_builds_record_the_same_readings_and_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    python_records, python_state = run_live("python", monkeypatch)
    native_records, native_state = run_live("native", monkeypatch)
    assert native_records == python_records
    assert native_state == python_state
    # the scenario does what it claims: trades, deliveries, rejections and a cancel
    rejected = [r.rejected for r in native_records if r.rejected]
    assert rejected == ["validation_error", "order_not_found"]
    crossing = native_records[5]
    assert len(crossing.clock) == 1
    assert len(crossing.ids) == 1 + 2 + 2  # the order, two trades, two deliveries to b0
    # b0's fills: two by the crossing order, one by the market order; then the cancel of its ask
    assert [d.event_type for d in native_state.outbox] == [
        "trade.executed",
        "trade.executed",
        "trade.executed",
        "order.cancelled",
    ]
    assert native_state.engine.trade_count == 3


@pytest.mark.parametrize(("live", "replayed"), [(a, b) for a in BUILDS for b in BUILDS])
def test_journals_replay_on_either_build(
    live: str, replayed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, state = run_live(live, monkeypatch)
    copy = machine(replayed, monkeypatch, VirtualClock(0), SequentialIds(500))
    for record in records:
        copy.replay(record)
    assert copy.snapshot() == state


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: Record(r.seq, r.command, r.clock, r.ids[:-1]), "asked for more ids"),
        (lambda r: Record(r.seq, r.command, r.clock, [*r.ids, "spare"]), "fewer clock readings"),
        (lambda r: Record(r.seq, r.command, [], r.ids), "read the clock more often"),
    ],
)
def test_a_replay_that_takes_more_or_fewer_fails_the_same_way(
    build: str,
    change: Callable[[Record], Record],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records, _ = run_live("python", monkeypatch)
    copy = machine(build, monkeypatch, VirtualClock(0), SequentialIds())
    for record in records[:5]:
        copy.replay(record)
    crossing = records[5]
    with pytest.raises(ReplayDivergence, match=message):
        copy.replay(change(crossing))


@pytest.mark.parametrize("build", BUILDS)
def test_the_wall_clock_and_random_ids_are_recorded_as_taken(
    build: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sources the server runs with (the core's own fast paths under the recorder)."""
    live = machine(build, monkeypatch, SystemClock(), RandomIds())
    records = [live.execute(command).record for command in commands()[:6]]
    crossing = records[5]
    order = live.engine.orders[crossing.ids[0]]
    assert order.created_at == crossing.clock[0]
    assert [d.delivery_id for d in live.outbox.values()] == crossing.ids[3:]
    assert len(set(crossing.ids)) == 5
    readings = [t for r in records for t in r.clock]
    assert readings == sorted(readings)
    copy = machine(build, monkeypatch, VirtualClock(0), SequentialIds())
    for record in records:
        copy.replay(record)
    assert copy.snapshot() == live.snapshot()


@pytest.mark.parametrize("build", BUILDS)
def test_commands_outside_a_recording_pass_through(
    build: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine used directly (no execute): nothing is recorded, ids stay in sequence."""
    clock = VirtualClock(T0)
    live = machine(build, monkeypatch, clock, SequentialIds())
    live.execute(RegisterBroker("b0", 10**9, [("AAA", 100)]))
    times: list[int] = []
    ids: list[str] = []
    live.recorder.start(times, ids)
    live.recorder.stop()
    order, _ = live.engine.submit(limit("b0", "ask", 1, 100).request)
    assert (times, ids) == ([], [])
    assert order.order_id == "00000000-0000-4000-8000-000000000001"
    assert live.recorder.new_id() == "00000000-0000-4000-8000-000000000002"
    record = live.execute(limit("b0", "ask", 1, 101)).record
    assert record.ids == ["00000000-0000-4000-8000-000000000003"]
    assert record.clock == [T0]


@pytest.mark.parametrize("build", BUILDS)
def test_a_recorder_changed_after_the_engine_was_built_is_followed(
    build: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core reads the recorder's state on every call, never a copy taken at set-up."""
    clock = VirtualClock(T0)
    live = machine(build, monkeypatch, clock, SequentialIds())
    live.execute(RegisterBroker("b0", 10**9, [("AAA", 100)]))
    other_clock, other_ids = VirtualClock(T0 + 5), SequentialIds(7, prefix=1)
    recorder = live.recorder
    recorder._read_clock, recorder._mint = other_clock.time_ns, other_ids.new_id
    record = live.execute(limit("b0", "ask", 1, 100)).record
    assert record.clock == [T0 + 5]
    assert record.ids == ["00000001-0000-4000-8000-000000000007"]
    with recorder.recording() as (times, ids):
        live.engine.cancel(record.ids[0])
    assert times == [T0 + 5] and ids == []


def test_the_native_engine_does_not_call_the_recorder_methods_unless_replaying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The point of the fast path: no Python frame of the recorder per reading or id when live;
    the recorder's own methods (and their replay checks) while replaying."""
    live = machine("native", monkeypatch, VirtualClock(T0), SequentialIds())
    recorder_code = {Recorder.time_ns.__code__, Recorder.new_id.__code__}

    def recorder_calls(action: Callable[[], object]) -> int:
        calls = 0

        def profile(frame: FrameType, event: str, arg: object) -> None:
            nonlocal calls
            if event == "call" and frame.f_code in recorder_code:
                calls += 1

        sys.setprofile(profile)
        try:
            action()
        finally:
            sys.setprofile(None)
        return calls

    records = [live.execute(command).record for command in commands()[:2]]
    resting = limit("b0", "ask", 5, 100)
    assert recorder_calls(lambda: records.append(live.execute(resting).record)) == 0
    crossing = limit("b1", "bid", 2, 100)
    assert recorder_calls(lambda: records.append(live.execute(crossing).record)) == 0
    assert [len(r.ids) for r in records[2:]] == [1, 2]  # the order; the order and its trade
    copy = machine("native", monkeypatch, VirtualClock(0), SequentialIds())
    for record in records[:3]:
        copy.replay(record)
    assert recorder_calls(lambda: copy.replay(records[3])) == 3  # one reading, two ids
    assert copy.snapshot() == live.snapshot()
