"""``ExchangeService.durable_waiter``: the journal batch's gate, for answers sent from callbacks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.errors import ServiceUnavailable
from tradehall.exchange.requests import BrokerRequest
from tradehall.exchange.service import DurableGate, ExchangeService
from tradehall.exchange.settings import ExchangeSettings


def _service(tmp_path: Path | None, sync: str = "none") -> ExchangeService:
    if tmp_path is None:
        settings = ExchangeSettings(snapshot_every=0)
    else:
        settings = ExchangeSettings(data_dir=str(tmp_path), journal_sync=sync, snapshot_every=0)
    service = ExchangeService(settings, clock=VirtualClock(), ids=SequentialIds())
    service.recover()
    return service


async def test_without_a_journal_there_is_nothing_to_wait_for() -> None:
    service = _service(None)
    await service.start()
    service.register_broker(BrokerRequest("a", 100, []))
    assert service.durable_waiter() is None
    await service.stop()


async def test_gate_is_shared_by_a_batch_and_resolves_once_it_is_written(tmp_path: Path) -> None:
    service = _service(tmp_path)
    await service.start()
    service.register_broker(BrokerRequest("a", 100, []))
    first = service.durable_waiter()
    service.register_broker(BrokerRequest("b", 100, []))
    second = service.durable_waiter()
    assert first is not None and first is second  # one batch, one gate
    assert not first.done()
    assert first.cancel() is False  # a waiter cannot cancel it under the others
    answered: list[str] = []
    first.add_done_callback(lambda gate: answered.append("ok"))
    await asyncio.wait_for(asyncio.shield(first), 5)
    await asyncio.sleep(0)  # done-callbacks run on the next loop turn
    assert answered == ["ok"]
    ExchangeService.check_durable(first)  # no failure: nothing raised
    assert service.durable_waiter() is None  # durable already
    await service.durable()
    await service.stop()


async def test_failed_batch_is_reported_by_the_gate_and_afterwards(tmp_path: Path) -> None:
    service = _service(tmp_path, sync="fsync")
    (tmp_path / "journal-0000000000000001.log").mkdir()  # the segment cannot be opened
    await service.start()
    service.register_broker(BrokerRequest("a", 100, []))
    gate = service.durable_waiter()
    assert gate is not None
    failure = await asyncio.wait_for(asyncio.shield(gate), 5)
    assert isinstance(failure, BaseException)  # the result, not an exception: never unretrieved
    with pytest.raises(ServiceUnavailable, match="could not be written"):
        ExchangeService.check_durable(gate)
    with pytest.raises(ServiceUnavailable, match="could not be written"):
        service.durable_waiter()
    with pytest.raises(ServiceUnavailable):
        await service.durable()
    with pytest.raises(ServiceUnavailable):  # halted: the next command changes nothing
        service.register_broker(BrokerRequest("b", 100, []))
    assert "b" not in service.engine.brokers
    await service.stop()


async def test_waiters_run_in_the_loop_turn_that_writes_the_batch(tmp_path: Path) -> None:
    service = _service(tmp_path)  # sync="none": the batch is written by one loop callback
    await service.start()
    service.register_broker(BrokerRequest("a", 100, []))
    await service.durable()  # the first batch opens the segment (in the thread)
    service.register_broker(BrokerRequest("b", 100, []))
    gate = service.durable_waiter()
    assert gate is not None
    seen: list[bool] = []
    gate.add_waiter(lambda done: seen.append(done.done()))
    done_callbacks: list[str] = []
    gate.add_done_callback(lambda done: done_callbacks.append("late"))
    await asyncio.sleep(0)  # one loop turn: the write, and with it the waiter
    assert seen == [True]
    assert done_callbacks == []  # a done-callback needs one more turn, the waiter does not
    ExchangeService.check_durable(gate)
    await asyncio.sleep(0)
    assert done_callbacks == ["late"]
    await service.stop()


async def test_a_failing_waiter_does_not_starve_the_others_and_late_ones_run_at_once(
    tmp_path: Path,
) -> None:
    service = _service(tmp_path)
    await service.start()
    service.register_broker(BrokerRequest("a", 100, []))
    gate = service.durable_waiter()
    assert gate is not None
    answered: list[str] = []

    def broken(done: object) -> None:
        raise RuntimeError("boom")

    gate.add_waiter(broken)
    gate.add_waiter(lambda done: answered.append("second"))
    await service.durable()
    assert answered == ["second"]
    gate.add_waiter(lambda done: answered.append("late"))  # done already: called right away
    assert answered == ["second", "late"]
    await service.stop()


async def test_waiters_of_a_failed_batch_get_the_failure(tmp_path: Path) -> None:
    service = _service(tmp_path, sync="fsync")
    (tmp_path / "journal-0000000000000001.log").mkdir()  # the segment cannot be opened
    await service.start()
    service.register_broker(BrokerRequest("a", 100, []))
    gate = service.durable_waiter()
    assert gate is not None
    outcomes: list[str] = []

    def waiter(done: DurableGate) -> None:
        try:
            ExchangeService.check_durable(done)
        except ServiceUnavailable:
            outcomes.append("503")
        else:
            outcomes.append("ok")

    gate.add_waiter(waiter)
    await asyncio.wait_for(asyncio.shield(gate), 5)
    assert outcomes == ["503"]
    with pytest.raises(ServiceUnavailable):  # halted before the waiter ran
        service.register_broker(BrokerRequest("b", 100, []))
    await service.stop()
