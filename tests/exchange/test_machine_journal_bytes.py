"""The journal bytes and live outcomes of :class:`ExchangeMachine` are pinned.

Written before a rework of ``ExchangeMachine.execute`` and ``encode_record`` for speed: a seeded
stream of every command kind (orders that rest, trade, expire or are rejected, cancels, webhook
upserts and deletes, settled deliveries) runs live on a virtual clock and counter ids through both
engine builds, and the encoded records must come out byte for byte as they did then (existing
journals replay only if they do), as must what each command reported (events, deliveries, error)
and the outbox. The journal of the stream must also replay to the same state.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import msgspec
import pytest

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.commands import (
    CancelOrder,
    Command,
    DeleteWebhook,
    DeliverySettled,
    ExpireDue,
    RegisterBroker,
    SubmitOrder,
    UpsertWebhooks,
    decode_record,
    encode_record,
)
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.machine import ExchangeMachine, Executed

DATA = Path(__file__).parent / "data"
T0 = 1_790_000_000 * 10**9
FAR = 4_102_444_800 * 10**9  # 2100
BUILDS = ("python", "native")
BROKERS = ("b0", "b1", "b2")
EVENTS = ["trade.executed", "order.expired", "order.cancelled"]

# sha256 of the stream's records, one encoded record per line, and of what the commands reported
JOURNAL_SHA256 = "72b74a8e5950db921f5726fba654e48c09dab80ff97fef58e070a4463d751897"
OUTCOMES_SHA256 = "e4054f2da25a20175e6d3bd3d7622e60bcc38b9b7548ddc4958300c31399a9b1"
# a few records in full: rejections, a webhook upsert, a cancel and a crossing order with
# deliveries (ids minted by the engine and by the machine), settled deliveries
PINNED_RECORDS: dict[int, bytes] = {
    3: b'[4,["broker","b0",1,[]],[],[],"broker_already_exists"]',
    7: b'[8,["cancel","00000000-0000-4000-8000-0000000fffff"],[],[],"order_not_found"]',
    10: b'[11,["hooks","b2","http://hooks.test/b2/2",["order.expired","order.cancelled"]],'
    b"[1790000000110000000],"
    b'["00000000-0000-4000-8000-000000000007","00000000-0000-4000-8000-000000000008"],null]',
    11: b'[12,["cancel","00000000-0000-4000-8000-000000000006"],[1790000000140000000],'
    b'["00000000-0000-4000-8000-000000000009"],null]',
    15: b'[16,["order",["limit","b2","D","bid","S",9,10006,4102444800000000000]],'
    b'[1790000000220000000],["00000000-0000-4000-8000-00000000000c",'
    b'"00000000-0000-4000-8000-00000000000d","00000000-0000-4000-8000-00000000000e"],null]',
    37: b'[38,["settled",["00000000-0000-4000-8000-00000000001f",'
    b'"00000000-0000-4000-8000-000000000026","00000000-0000-4000-8000-000000000016",'
    b'"00000000-0000-4000-8000-000000000025"]],[],[],null]',
    38: b'[39,["order",["limit","b1","D","bid","S",9,9997,1790000000100000000]],'
    b'[1790000000620000000],[],"validation_error"]',
}

_encoder = msgspec.json.Encoder()


def machine(build: str, monkeypatch: pytest.MonkeyPatch) -> tuple[ExchangeMachine, VirtualClock]:
    if build == "python":
        monkeypatch.setenv("TRADEHALL_ENGINE", "python")
    else:
        monkeypatch.delenv("TRADEHALL_ENGINE", raising=False)
    clock = VirtualClock(T0)
    made = ExchangeMachine(clock, SequentialIds(), vwap_window_ns=10**9)
    if made.engine.build != build:
        pytest.skip(f"the {build} engine build is not available")
    return made, clock


def next_command(rng: random.Random, live: ExchangeMachine) -> Command:
    """One command of the seeded stream, drawn against the machine's current state."""
    roll = rng.random()
    broker = rng.choice(BROKERS)
    side = rng.choice(("bid", "ask"))
    if roll < 0.45:  # limit orders around 100.00, some expiring soon, some crossing
        price = rng.randint(9_990, 10_010)
        expires = T0 + rng.randint(1, 400) * 10**7 if rng.random() < 0.3 else FAR
        request = OrderRequest("limit", broker, "D", side, "S", rng.randint(1, 9), price, expires)
        return SubmitOrder(request)
    if roll < 0.55:
        quantity = rng.randint(1, 30)
        return SubmitOrder(OrderRequest("market", broker, "D", side, "S", quantity, None, None))
    if roll < 0.57:  # rejected: unknown broker, then a limit order without expiry
        if rng.random() < 0.5:
            return SubmitOrder(OrderRequest("limit", "nobody", "D", side, "S", 1, 10_000, FAR))
        return SubmitOrder(OrderRequest("limit", broker, "D", side, "S", 1, 10_000, None))
    if roll < 0.75:
        open_ids = sorted(o.order_id for o in live.engine.orders.values() if o.remaining)
        if open_ids and rng.random() < 0.9:
            return CancelOrder(rng.choice(open_ids))
        return CancelOrder("00000000-0000-4000-8000-0000000fffff")
    if roll < 0.82:
        return ExpireDue()
    if roll < 0.88:
        events = rng.sample(EVENTS, rng.randint(1, 3))
        owner = broker if rng.random() < 0.9 else "nobody"
        return UpsertWebhooks(owner, f"http://hooks.test/{broker}/{rng.randint(0, 2)}", events)
    if roll < 0.91:
        hooks = sorted(live.subscriptions.export_state(), key=lambda s: s.webhook_id)
        if hooks and rng.random() < 0.8:
            return DeleteWebhook(rng.choice(hooks).webhook_id)
        return DeleteWebhook("00000000-0000-4000-8000-0000000eeeee")
    pending = sorted(live.outbox)
    return DeliverySettled(rng.sample(pending, len(pending) // 2))


def outcome(executed: Executed) -> bytes:
    """What a command reported besides its record, as bytes."""
    result = executed.result
    summary = [
        type(result).__name__,
        getattr(result, "order_id", None),
        getattr(result, "remaining", None),
        getattr(result, "status", None),
    ]
    error = None if executed.error is None else executed.error.code
    return _encoder.encode([summary, executed.events, executed.deliveries, error])


def run_stream(
    build: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[bytes], list[bytes], ExchangeMachine]:
    live, clock = machine(build, monkeypatch)
    rng = random.Random(20261121)
    journal: list[bytes] = []
    outcomes: list[bytes] = []
    setup: list[Command] = [RegisterBroker(b, 10**9, [("S", 10**6)]) for b in BROKERS]
    setup.append(RegisterBroker("b0", 1, []))  # rejected: registered already
    for command in setup:
        executed = live.execute(command)
        journal.append(encode_record(executed.record))
        outcomes.append(outcome(executed))
    for _ in range(400):
        clock.set_ns(clock.time_ns() + rng.randint(0, 3) * 10**7)
        executed = live.execute(next_command(rng, live))
        journal.append(encode_record(executed.record))
        outcomes.append(outcome(executed))
    return journal, outcomes, live


def digest(lines: list[bytes]) -> str:
    return hashlib.sha256(b"\n".join(lines)).hexdigest()


@pytest.mark.parametrize("build", BUILDS)
def test_the_stream_journals_the_pinned_bytes(build: str, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, outcomes, live = run_stream(build, monkeypatch)
    for index, pinned in PINNED_RECORDS.items():
        assert journal[index] == pinned
    assert digest(journal) == JOURNAL_SHA256
    assert digest(outcomes) == OUTCOMES_SHA256
    # the stream does what it claims: trades, deliveries, rejections of several kinds
    records = [decode_record(line) for line in journal]
    kinds = {type(r.command).__name__ for r in records}
    assert kinds == {
        "RegisterBroker",
        "SubmitOrder",
        "CancelOrder",
        "ExpireDue",
        "UpsertWebhooks",
        "DeleteWebhook",
        "DeliverySettled",
    }
    rejections = {r.rejected for r in records if r.rejected}
    assert {"order_not_found", "webhook_not_found", "validation_error"} <= rejections
    assert live.engine.trade_count > 20
    assert live.outbox


@pytest.mark.parametrize("build", BUILDS)
def test_the_stream_replays_to_the_same_state(build: str, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, _, live = run_stream(build, monkeypatch)
    copy, _ = machine(build, monkeypatch)
    for line in journal:
        copy.replay(decode_record(line))
    assert copy.snapshot() == live.snapshot()
    assert copy.seq == live.seq == len(journal)


def test_recorded_journal_lines_encode_back_unchanged() -> None:
    lines = (DATA / "journal-v1.jsonl").read_bytes().splitlines()
    assert len(lines) > 100
    for line in lines:
        assert encode_record(decode_record(line)) == line
