"""The Exchange as a running service: the state machine, its journal, and the work around it.

Command path (all synchronous up to the journal append, so each command is one atomic unit):

1. the machine executes the command and returns its journal record, result and events;
2. the record is appended to the journal (group commit); the caller renders its response at once
   and then awaits :meth:`ExchangeService.durable` before sending it -- nothing is acknowledged
   before it is on disk;
3. once the record is durable, in journal order, its webhook deliveries go to the dispatcher and
   its market-data messages to subscribers. So no receiver ever sees an event that a crash could
   take back, and nothing is sent from inside a matching pass.

Without a journal (``data_dir=":memory:"``) step 2 is skipped and step 3 runs immediately.

Recovery (:meth:`ExchangeService.recover`): load the newest snapshot, replay the journal after it,
then hand the outbox -- deliveries not known to be settled -- to the dispatcher again. Snapshots are
taken every ``snapshot_every`` records and at shutdown; journal segments they cover are dropped
only after the snapshot file and its directory are synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from tradehall.core.clock import Clock, SystemClock
from tradehall.core.ids import IdSource, RandomIds
from tradehall.core.logging import get_logger
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
from tradehall.exchange.engine import Engine, OrderRequest
from tradehall.exchange.errors import ExchangeError, ServiceUnavailable
from tradehall.exchange.journal import FileJournal, Journal
from tradehall.exchange.machine import ExchangeMachine, Executed
from tradehall.exchange.metrics import ExchangeMetrics
from tradehall.exchange.model import Broker, Order
from tradehall.exchange.requests import BrokerRequest, WebhookRequest
from tradehall.exchange.settings import ExchangeSettings
from tradehall.exchange.snapshots import latest_snapshot, prune_snapshots, write_snapshot
from tradehall.exchange.subscriptions import Subscription
from tradehall.exchange.webhook_delivery import Delivery, DeliveryOutcome, WebhookDispatcher

__all__ = ["DurableGate", "ExchangeService", "RecoveryReport"]

# Runs synchronously right after each command; may return work to run once it is durable. Its
# second argument says that nothing waits for durability (no journal): the hook may then do that
# work itself at once and return ``None`` (what is returned is still run, right away).
ExecutedHook = Callable[[Executed, bool], Callable[[], None] | None]
log = get_logger("exchange")
_SETTLED_OUTCOMES = frozenset({"delivered", "rejected", "failed"})
REDELIVER_INTERVAL = 5.0  # seconds between attempts to re-queue deliveries dropped by overload


class DurableGate(asyncio.Future[BaseException | None]):
    """Shared by every command of one journal batch; resolves once the batch is written.

    Its result is ``None`` (durable) or the write failure, never an exception, so nothing is
    left unretrieved. It refuses ``cancel()``: a waiter cancelled at shutdown cannot cancel it
    under the other waiters of its batch. That is what ``asyncio.shield`` would guarantee, at
    the price of a future and two callbacks per request; here the cancelled task stops as soon
    as its batch settles (the journal flushes every batch on close).

    It is resolved synchronously by the journal (:meth:`Journal.when_settled`) in the loop turn
    that wrote the batch; :meth:`add_waiter` callbacks run right then, whereas done-callbacks
    (and awaiting tasks) run one loop turn later.
    """

    __slots__ = ("_waiters",)

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._waiters: list[Callable[[DurableGate], None]] = []

    def cancel(self, msg: object = None) -> bool:
        return False

    def add_waiter(self, callback: Callable[[DurableGate], None]) -> None:
        """Call ``callback(gate)`` synchronously as soon as the gate resolves (at once if it
        has); exceptions it raises are logged. Cheaper than a done-callback: no loop turn."""
        if self.done():
            callback(self)
        else:
            self._waiters.append(callback)

    def _resolve(self, failure: BaseException | None) -> None:
        self.set_result(failure)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            try:
                waiter(self)
            except Exception:  # one broken waiter must not leave the rest unanswered
                log.exception("durable_waiter_failed")


class RecoveryReport:
    """What startup recovery did, for the log and ``/admin/state``."""

    def __init__(self) -> None:
        self.snapshot_seq = 0
        self.replayed = 0
        self.seconds = 0.0
        self.state_hash = ""
        self.redelivered = 0


class ExchangeService:
    """State machine, journal, webhook dispatcher, metrics and background loops, wired together."""

    def __init__(
        self,
        settings: ExchangeSettings,
        *,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        registry: CollectorRegistry | None = None,
        dispatcher: WebhookDispatcher | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.ids = ids or RandomIds()
        self._vwap_ns = round(settings.vwap_window * 1e9)
        self.machine = ExchangeMachine(self.clock, self.ids, vwap_window_ns=self._vwap_ns)
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.metrics = ExchangeMetrics(self.registry, lambda: self.machine.engine)
        self.dispatcher = dispatcher or WebhookDispatcher(
            clock=self.clock,
            timeout=settings.webhook_timeout,
            max_retries=settings.webhook_max_retries,
            queue_limit=settings.webhook_queue_limit,
            signing_secret=settings.webhook_signing_secret,
            registry=self.registry,
        )
        # Injected dispatchers (tests) report to the outbox too.
        self.dispatcher.on_settled = self._on_settled
        self.journal = journal
        self.recovery = RecoveryReport()
        self.on_executed: ExecutedHook | None = None  # market data (marketdata.py)
        self._tasks: list[asyncio.Task[object]] = []
        self._batch: asyncio.Future[None] | None = None  # the journal's latest batch
        self._gate: DurableGate | None = None  # resolves with it
        self._settled: list[str] = []
        self._dropped: dict[str, Delivery] = {}  # dropped by a full queue, in drop order
        self._snapshot_seq = 0
        self._snapshotting = False
        self._halted: str | None = None

    @property
    def engine(self) -> Engine:
        """The current engine (recovery replaces the machine, so never cache this)."""
        return self.machine.engine

    @property
    def data_dir(self) -> Path | None:
        return None if self.settings.data_dir == ":memory:" else Path(self.settings.data_dir)

    # ------------------------------------------------------------------ commands
    def register_broker(self, request: BrokerRequest) -> Broker:
        result = self._run(
            RegisterBroker(request.broker_id, request.initial_cash, request.initial_holdings)
        )
        assert isinstance(result, Broker)
        return result

    def submit(self, request: OrderRequest) -> Order:
        try:
            result = self._run(SubmitOrder(request))
        except ExchangeError:
            self.metrics.orders_rejected.inc()
            raise
        assert isinstance(result, Order)
        self.metrics.observe(result)
        return result

    def cancel(self, order_id: str) -> Order:
        result = self._run(CancelOrder(order_id))
        assert isinstance(result, Order)
        return result

    def expire_due(self) -> int:
        """Run one expiry sweep now if anything is due; return how many orders expired."""
        deadline = self.machine.engine.next_deadline()
        if deadline is None or deadline > self.clock.time_ns():
            return 0  # an empty sweep changes nothing, so it is not journaled
        before = self.machine.engine.resting_orders
        self._run(ExpireDue())
        expired = before - self.machine.engine.resting_orders
        self.metrics.orders_expired.inc(expired)
        return expired

    def upsert_webhooks(self, request: WebhookRequest) -> tuple[list[Subscription], bool]:
        result = self._run(UpsertWebhooks(request.broker_id, request.url, request.events))
        assert isinstance(result, tuple)
        return result

    def webhooks_of(self, broker_id: str) -> list[Subscription]:
        self.machine.engine.broker(broker_id)
        return self.machine.subscriptions.for_broker(broker_id)

    def delete_webhook(self, webhook_id: str) -> None:
        self._run(DeleteWebhook(webhook_id))

    async def durable(self) -> None:
        """Wait until every command run so far is on stable storage (no-op without a journal).

        Batches are written in order, so waiting for the latest one covers all before it.
        Raises :class:`ServiceUnavailable` if the journal failed to write it.
        """
        gate = self.durable_waiter()
        if gate is not None:
            await gate
            self.check_durable(gate)

    def durable_waiter(self) -> DurableGate | None:
        """:meth:`durable` without a coroutine, for callers that answer from a callback.

        ``None`` if every command run so far is durable already (or there is no journal);
        otherwise the gate (a future) of the latest journal batch, shared by all its commands:
        add a waiter (:meth:`DurableGate.add_waiter`, or a done-callback) and pass the gate to
        :meth:`check_durable` there. It never fails and refuses ``cancel()``. Raises
        :class:`ServiceUnavailable` if that batch failed already.
        """
        gate = self._gate
        if gate is None:
            return None
        if gate.done():
            self.check_durable(gate)
            return None
        return gate

    @staticmethod
    def check_durable(gate: asyncio.Future[BaseException | None]) -> None:
        """Raise :class:`ServiceUnavailable` if the batch ``gate`` (from
        :meth:`durable_waiter`, done) failed to be written."""
        if gate.result() is not None:
            raise ServiceUnavailable("The journal could not be written; the command is not durable")

    def _run(self, command: Command) -> object:
        if self._halted is not None:
            raise ServiceUnavailable(self._halted)
        executed = self.machine.execute(command)
        hook = self.on_executed
        if self.journal is None:  # nothing to wait for: publish now, without a closure
            after = None if hook is None else hook(executed, True)
            if executed.error is not None:
                raise executed.error
            if executed.deliveries:
                self.dispatcher.submit(executed.deliveries)
            if after is not None:
                after()
            return executed.result
        self._journal(executed, None if hook is None else hook(executed, False))
        if executed.error is not None:
            raise executed.error
        if self._snapshot_due():
            self._start_snapshot()
        return executed.result

    def _journal(self, executed: Executed, after: Callable[[], None] | None = None) -> None:
        assert self.journal is not None
        publish = self._publisher(executed, after)
        try:
            batch = self.journal.append(encode_record(executed.record), publish)
        except Exception as exc:
            # The command already changed memory but cannot be made durable: stop accepting
            # anything rather than acknowledge state a restart would not have.
            self._halt(f"journal unavailable: {exc!r}")
            raise ServiceUnavailable("The journal could not be written") from exc
        if batch is not self._batch:  # the first command of a new batch: one gate per batch
            self._batch = batch
            self._gate = gate = DurableGate(loop=batch.get_loop())
            # Settled by the journal as it writes the batch, not by a done-callback on its
            # future: that would answer one loop turn later (and cost a handle per batch).
            self.journal.when_settled(functools.partial(self._settle, gate))

    def _settle(self, gate: DurableGate, failure: BaseException | None) -> None:
        if failure is not None:  # refuse the next command before it changes memory
            self._halt(f"journal write failed: {failure!r}")
        gate._resolve(failure)

    def _publisher(
        self, executed: Executed, after: Callable[[], None] | None = None
    ) -> Callable[[], None] | None:
        if executed.error is not None or not (executed.deliveries or after):
            return None

        def publish() -> None:
            if executed.deliveries:
                self.dispatcher.submit(executed.deliveries)
            if after is not None:
                after()

        return publish

    def _on_settled(self, delivery: Delivery, outcome: DeliveryOutcome) -> None:
        # Abandoned (shutdown) deliveries stay in the outbox for the next start; dropped ones
        # (queue full) stay there too and are re-queued by the redelivery loop once there is room.
        if outcome == "dropped":
            self._dropped[delivery.delivery_id] = delivery
            return
        if outcome not in _SETTLED_OUTCOMES:
            return
        if not self._settled:
            asyncio.get_running_loop().call_soon(self._flush_settled)
        self._settled.append(delivery.delivery_id)

    def _flush_settled(self) -> None:
        ids, self._settled = self._settled, []
        if ids and self._halted is None:
            with contextlib.suppress(ServiceUnavailable):
                self._run(DeliverySettled(ids))

    def redeliver_dropped(self) -> int:
        """Re-queue dropped deliveries while the dispatcher has room (half its limit)."""
        room = self.settings.webhook_queue_limit // 2 - self.dispatcher.pending
        batch: list[Delivery] = []
        for delivery_id in list(self._dropped):
            if len(batch) >= room:
                break
            delivery = self._dropped.pop(delivery_id)
            if delivery_id in self.machine.outbox:  # not settled in the meantime
                batch.append(delivery)
        if batch:
            self.dispatcher.submit(batch)
        return len(batch)

    async def _redeliver_loop(self) -> None:
        while True:
            await self.clock.sleep(REDELIVER_INTERVAL)
            if self._dropped:
                self.redeliver_dropped()

    def _halt(self, reason: str) -> None:
        if self._halted is None:
            self._halted = reason
            log.critical("exchange_halted", reason=reason)

    # ------------------------------------------------------------------ recovery
    def recover(self) -> RecoveryReport:
        """Rebuild state from the data directory (snapshot + journal); open the journal."""
        report = self.recovery
        directory = self.data_dir
        if directory is None:
            return report
        started = time.perf_counter()
        directory.mkdir(parents=True, exist_ok=True)
        found = latest_snapshot(directory)
        if found is not None:
            seq, payload = found
            snapshot = ExchangeMachine.decode_snapshot(payload)
            self.machine = ExchangeMachine(
                self.clock, self.ids, vwap_window_ns=self._vwap_ns, snapshot=snapshot
            )
            report.snapshot_seq = self._snapshot_seq = seq
        journal = self.journal
        if journal is None:
            journal = self.journal = FileJournal(directory, sync=self.settings.journal_sync)
        if isinstance(journal, FileJournal):
            for payload in journal.open(after_seq=report.snapshot_seq):
                record = decode_record(payload)
                if record.seq <= self.machine.seq:
                    continue
                self.machine.replay(record)
                report.replayed += 1
        report.seconds = time.perf_counter() - started
        report.state_hash = self.machine.state_hash()
        log.info(
            "recovered",
            data_dir=str(directory),
            snapshot_seq=report.snapshot_seq,
            replayed_commands=report.replayed,
            seconds=round(report.seconds, 3),
            last_seq=self.machine.seq,
            state_hash=report.state_hash,
        )
        return report

    # ------------------------------------------------------------------ snapshots
    def _snapshot_due(self) -> bool:
        every = self.settings.snapshot_every
        return (
            every > 0 and not self._snapshotting and self.machine.seq - self._snapshot_seq >= every
        )

    def _start_snapshot(self) -> None:
        self._snapshotting = True
        self._tasks.append(asyncio.get_running_loop().create_task(self.snapshot(), name="snapshot"))

    async def snapshot(self) -> int:
        """Write a snapshot of the current state, then drop the journal it covers."""
        directory, journal = self.data_dir, self.journal
        if directory is None or journal is None:
            return 0
        self._snapshotting = True
        try:
            seq = self.machine.seq
            payload = ExchangeMachine.encode_snapshot(self.machine.snapshot())  # consistent cut
            rotated = journal.rotate(seq + 1)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, write_snapshot, directory, seq, payload)
            await rotated
            dropped = await journal.drop_before(seq + 1)
            prune_snapshots(directory, keep_from=seq)
            self._snapshot_seq = seq
            log.info("snapshot_written", seq=seq, bytes=len(payload), segments_dropped=dropped)
            return seq
        except Exception:
            log.exception("snapshot_failed")
            raise
        finally:
            self._snapshotting = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.journal is not None:
            await self.journal.start()
        await self.dispatcher.start()
        if self.machine.outbox:
            pending = list(self.machine.outbox.values())
            self.recovery.redelivered = len(pending)
            self.dispatcher.submit(pending)
        self._tasks.append(asyncio.create_task(self._expiry_loop(), name="expiry-sweep"))
        self._tasks.append(asyncio.create_task(self._redeliver_loop(), name="webhook-redelivery"))

    async def stop(self) -> None:
        """Stop the sweep, flush the journal, snapshot, and abandon in-flight deliveries."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.dispatcher.close()
        if self.journal is not None:
            if self._halted is None and self.machine.seq > self._snapshot_seq:
                with contextlib.suppress(Exception):
                    await self.snapshot()
            await self.journal.close()

    async def _expiry_loop(self) -> None:
        interval = self.settings.expiration_interval
        while True:
            await self.clock.sleep(interval)
            try:
                expired = self.expire_due()
            except ExchangeError:
                continue  # halted: nothing more may change
            except Exception:  # a bug here must not stop future sweeps
                log.exception("expiry_sweep_failed")
                continue
            if expired:
                log.debug("orders_expired", count=expired)
