"""Journal, snapshots and recovery: replay reproduces the live state exactly (issue: durability)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.errors import ExchangeError
from tradehall.exchange.journal import FileJournal, JournalCorrupt
from tradehall.exchange.requests import BrokerRequest, WebhookRequest
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings
from tradehall.exchange.webhook_delivery import WebhookDispatcher

S = 10**9
T0 = 1_790_000_000 * S
BROKERS = ("b0", "b1", "b2")
SYMBOLS = ("AAA", "BBB")


def make_service(
    data_dir: Path, clock: VirtualClock, *, snapshot_every: int = 0
) -> ExchangeService:
    settings = ExchangeSettings(
        data_dir=str(data_dir), snapshot_every=snapshot_every, webhook_allow_http=True
    )
    dispatcher = WebhookDispatcher(clock=clock, queue_limit=10_000)
    return ExchangeService(settings, clock=clock, ids=SequentialIds(), dispatcher=dispatcher)


async def boot(data_dir: Path, clock: VirtualClock, **kwargs: int) -> ExchangeService:
    service = make_service(data_dir, clock, **kwargs)
    service.recover()
    await service.start()
    return service


async def crash(service: ExchangeService) -> None:
    """Stop like a killed process would leave things: journal flushed, no snapshot, no cleanup."""
    await service.durable()
    for task in service._tasks:
        task.cancel()
    await service.dispatcher.close()
    assert service.journal is not None
    await service.journal.close()


def apply_step(service: ExchangeService, clock: VirtualClock, step: tuple[int, ...]) -> None:
    kind, a, b, c, d = step
    try:
        if kind == 0:
            service.register_broker(
                BrokerRequest(BROKERS[a % 3], 100_000 * (b + 1), [(SYMBOLS[c % 2], 50 + d)])
            )
        elif kind in (1, 2):
            service.submit(
                OrderRequest(
                    "limit",
                    BROKERS[a % 3],
                    "doc",
                    "bid" if b % 2 else "ask",
                    SYMBOLS[c % 2],
                    1 + d % 20,
                    95 + (d * 7 + a) % 10,
                    clock.time_ns() + (1 + b) * S,
                )
            )
        elif kind == 3:
            service.submit(
                OrderRequest(
                    "market",
                    BROKERS[a % 3],
                    "doc",
                    "bid" if b % 2 else "ask",
                    SYMBOLS[c % 2],
                    1 + d % 30,
                )
            )
        elif kind == 4:
            ids = list(service.engine.orders)
            if ids:
                service.cancel(ids[d % len(ids)])
        elif kind == 5:
            clock.set_ns(clock.time_ns() + (1 + d % 3) * S)
            service.expire_due()
        else:
            service.upsert_webhooks(
                WebhookRequest(BROKERS[a % 3], f"http://127.0.0.1:9/{b}", ["trade.executed"])
            )
    except ExchangeError:
        pass  # rejections are part of the stream too


STEPS = st.lists(
    st.tuples(
        st.integers(0, 6),
        st.integers(0, 5),
        st.integers(0, 5),
        st.integers(0, 5),
        st.integers(0, 40),
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS, cut=st.integers(0, 60))
async def test_replay_reproduces_live_state(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, ...]], cut: int
) -> None:
    data_dir = tmp_path_factory.mktemp("journal")
    clock = VirtualClock(T0)
    live = await boot(data_dir, clock)
    for broker in BROKERS:
        live.register_broker(BrokerRequest(broker, 10**7, [(s, 10_000) for s in SYMBOLS]))
    for index, step in enumerate(steps):
        apply_step(live, clock, step)
        if index == cut:
            await live.snapshot()  # a snapshot in the middle of the stream
    live_hash = live.machine.state_hash()
    live_seq = live.machine.seq
    await crash(live)

    from_journal = await boot(data_dir, clock)
    assert from_journal.machine.state_hash() == live_hash
    assert from_journal.machine.seq == live_seq
    await from_journal.stop()  # clean stop writes a snapshot covering everything

    from_snapshot = await boot(data_dir, clock)
    assert from_snapshot.recovery.replayed == 0
    assert from_snapshot.recovery.snapshot_seq == live_seq
    assert from_snapshot.machine.state_hash() == live_hash
    await from_snapshot.stop()


async def seeded(data_dir: Path, clock: VirtualClock, orders: int = 20) -> ExchangeService:
    service = await boot(data_dir, clock)
    service.register_broker(BrokerRequest("s", 0, [("AAA", 1000)]))
    service.register_broker(BrokerRequest("b", 10**9, []))
    rng = random.Random(3)
    for _ in range(orders):
        side = rng.choice(["bid", "ask"])
        service.submit(
            OrderRequest(
                "limit",
                "s" if side == "ask" else "b",
                "d",
                side,
                "AAA",
                rng.randint(1, 9),
                rng.randint(90, 110),
                T0 + 3600 * S,
            )
        )
    return service


async def test_torn_tail_is_reported_and_truncated(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    service = await seeded(tmp_path, clock)
    expected, seq = service.machine.state_hash(), service.machine.seq
    await crash(service)
    segment = sorted(tmp_path.glob("journal-*.log"))[-1]
    intact = segment.stat().st_size
    with open(segment, "ab") as handle:
        handle.write(b"\x40\x00\x00\x00\x01\x02\x03\x04partial")  # header says 64 bytes; 7 follow
    recovered = await boot(tmp_path, clock)
    assert recovered.machine.state_hash() == expected
    assert recovered.machine.seq == seq
    assert segment.stat().st_size == intact
    await recovered.stop()


async def test_bad_checksum_on_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    service = await seeded(tmp_path, clock)
    seq = service.machine.seq
    await crash(service)
    segment = sorted(tmp_path.glob("journal-*.log"))[-1]
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # damage the last record's payload
    segment.write_bytes(bytes(data))
    recovered = await boot(tmp_path, clock)
    assert recovered.machine.seq == seq - 1  # the torn record is dropped, nothing else
    await recovered.stop()


async def test_corruption_in_the_middle_stops_startup(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    service = await seeded(tmp_path, clock)
    await crash(service)
    segment = sorted(tmp_path.glob("journal-*.log"))[-1]
    data = bytearray(segment.read_bytes())
    data[12] ^= 0xFF  # inside the first record's payload, with many records after it
    segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="corrupt at byte 0"):
        make_service(tmp_path, clock).recover()


async def test_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    service = await seeded(tmp_path, clock, orders=1)
    with pytest.raises(Exception, match="in use by another exchange process"):
        make_service(tmp_path, clock).recover()
    await service.stop()


async def test_snapshots_drop_covered_journal_segments(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    service = await boot(tmp_path, clock, snapshot_every=10)
    service.register_broker(BrokerRequest("s", 0, [("AAA", 10_000)]))
    for i in range(45):
        service.submit(OrderRequest("limit", "s", "d", "ask", "AAA", 1, 100 + i, T0 + 3600 * S))
        await service.durable()
        await asyncio.sleep(0)
    # The background snapshot tasks write in a thread: wait for them (a fixed sleep was too short
    # on a loaded machine).
    await asyncio.gather(*(task for task in service._tasks if task.get_name() == "snapshot"))
    expected = service.machine.state_hash()
    await crash(service)
    snapshots = sorted(tmp_path.glob("snapshot-*.bin"))
    segments = sorted(tmp_path.glob("journal-*.log"))
    assert len(snapshots) == 1
    assert len(segments) <= 2
    recovered = await boot(tmp_path, clock)
    assert recovered.recovery.snapshot_seq >= 40
    assert recovered.machine.state_hash() == expected
    await recovered.stop()


async def test_pending_webhook_deliveries_survive_a_crash(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    service = await boot(tmp_path, clock)
    await service.dispatcher.close()  # receiver side "down": nothing gets delivered
    service.register_broker(BrokerRequest("b", 0, [("AAA", 5)]))
    service.upsert_webhooks(WebhookRequest("b", "http://127.0.0.1:9/h", ["order.cancelled"]))
    order = service.submit(OrderRequest("limit", "b", "d", "ask", "AAA", 5, 100, T0 + 60 * S))
    service.cancel(order.order_id)
    pending = list(service.machine.outbox)
    assert len(pending) == 1
    await crash(service)

    submitted: list[str] = []
    recovered = make_service(tmp_path, clock)
    recovered.dispatcher.submit = lambda ds: submitted.extend(d.delivery_id for d in ds)  # type: ignore[method-assign]
    recovered.recover()
    await recovered.start()
    assert submitted == pending  # same X-Delivery-Id as before the crash
    assert recovered.recovery.redelivered == 1
    await recovered.stop()


async def test_settled_deliveries_are_not_sent_again(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    service = await boot(tmp_path, clock)
    service.register_broker(BrokerRequest("b", 0, [("AAA", 5)]))
    service.upsert_webhooks(WebhookRequest("b", "http://127.0.0.1:9/h", ["order.cancelled"]))
    order = service.submit(OrderRequest("limit", "b", "d", "ask", "AAA", 5, 100, T0 + 60 * S))
    service.cancel(order.order_id)
    await service.durable()
    delivery_id = next(iter(service.machine.outbox))
    service._on_settled(service.machine.outbox[delivery_id], "delivered")
    await asyncio.sleep(0)  # the settle record is journaled on the next loop turn
    assert not service.machine.outbox
    await crash(service)
    recovered = await boot(tmp_path, clock)
    assert not recovered.machine.outbox
    assert recovered.recovery.redelivered == 0
    await recovered.stop()


def test_journal_reads_back_what_it_wrote(tmp_path: Path) -> None:
    async def scenario() -> list[bytes]:
        journal = FileJournal(tmp_path, sync="none")
        assert list(journal.open()) == []
        await journal.start()
        futures = [journal.append(f"record-{i}".encode()) for i in range(100)]
        await asyncio.gather(*futures)
        await journal.close()
        reopened = FileJournal(tmp_path)
        payloads = list(reopened.open())
        await reopened.close()
        return payloads

    assert asyncio.run(scenario()) == [f"record-{i}".encode() for i in range(100)]
