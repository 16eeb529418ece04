"""The Exchange as a deterministic state machine over journaled commands.

:class:`ExchangeMachine` owns the engine, the webhook subscriptions and the webhook outbox, and
changes them only through :meth:`~ExchangeMachine.execute` (live) or
:meth:`~ExchangeMachine.replay` (recovery). Both run the same :meth:`_apply`; the difference is the
:class:`Recorder` standing in as the engine's clock and id source: live it records every reading
and id a command takes, in replay it hands the recorded ones back, and it fails loudly if a replayed
command asks for more or fewer than it took live (a determinism bug, never silently tolerated).

The outbox holds every webhook delivery a command produced until a ``DeliverySettled`` command
retires it, so deliveries pending at a crash are sent again after restart (at least once; receivers
de-duplicate by ``X-Delivery-Id``, which is the same across restarts because ids are journaled).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from tradehall.core.clock import Clock
from tradehall.core.ids import IdSource
from tradehall.exchange.commands import (
    CancelOrder,
    Command,
    DeleteWebhook,
    ExpireDue,
    Record,
    RegisterBroker,
    SubmitOrder,
    UpsertWebhooks,
)
from tradehall.exchange.engine import Engine
from tradehall.exchange.errors import ExchangeError
from tradehall.exchange.events import EngineEvent
from tradehall.exchange.state import EngineState, SubscriptionState, state_hash
from tradehall.exchange.subscriptions import SubscriptionRegistry, deliveries_for
from tradehall.exchange.webhook_delivery import Delivery

__all__ = ["ExchangeMachine", "Executed", "MachineSnapshot", "Recorder", "ReplayDivergence"]


class ReplayDivergence(RuntimeError):
    """Replaying a record did not reproduce what happened live."""


class Recorder:
    """Clock and id source for the engine: pass-through, recording, or replaying.

    Live commands bracket their run with :meth:`start` and :meth:`stop` (what
    :meth:`ExchangeMachine.execute` does on every command, so these stay cheap);
    :meth:`recording` and :meth:`replaying` are the context-manager forms.

    The native engine core (``exchange/native/sources.c``) does what :meth:`time_ns` and
    :meth:`new_id` do for an exact ``Recorder`` without calling them, reading ``_replay_times`` /
    ``_replay_ids``, ``_read_clock`` / ``_mint`` and ``_times`` / ``_new_ids`` on every call (a
    replay goes through the methods themselves): keep these names and steps in step with it
    (``tests/exchange/test_engine_native_recorder.py`` compares the records of both builds).
    """

    def __init__(self, clock: Clock, ids: IdSource) -> None:
        self._clock = clock
        self._ids = ids
        self._read_clock = clock.time_ns
        self._mint = ids.new_id
        self._times: list[int] | None = None
        self._new_ids: list[str] | None = None
        self._replay_times: Iterator[int] | None = None
        self._replay_ids: Iterator[str] | None = None
        # A plain dict of its own: the native core reads these attributes from the instance dict,
        # and asking for it turns CPython's inline attribute values into a key-sharing ("split")
        # dict, which 3.11's specialised attribute stores and loads do not serve -- execute's four
        # stores per command would each take the generic path (~450 instructions more).
        self.__dict__ = dict(self.__dict__)

    def time_ns(self) -> int:
        if self._replay_times is not None:
            try:
                return next(self._replay_times)
            except StopIteration:
                raise ReplayDivergence("replayed command read the clock more often") from None
        now = self._read_clock()
        times = self._times
        if times is not None:
            times.append(now)
        return now

    def monotonic(self) -> float:
        return self._clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._clock.sleep(seconds)

    def new_id(self) -> str:
        if self._replay_ids is not None:
            try:
                return next(self._replay_ids)
            except StopIteration:
                raise ReplayDivergence("replayed command asked for more ids") from None
        new = self._mint()
        new_ids = self._new_ids
        if new_ids is not None:
            new_ids.append(new)
        return new

    def start(self, times: list[int], ids: list[str]) -> None:
        """Record every clock reading and id from now on into ``times`` and ``ids``."""
        self._times, self._new_ids = times, ids

    def stop(self) -> None:
        """Stop recording (back to pass-through)."""
        self._times = self._new_ids = None

    @contextmanager
    def recording(self) -> Iterator[tuple[list[int], list[str]]]:
        times: list[int] = []
        ids: list[str] = []
        self.start(times, ids)
        try:
            yield times, ids
        finally:
            self.stop()

    @contextmanager
    def replaying(self, times: list[int], ids: list[str]) -> Iterator[None]:
        replay_times, replay_ids = iter(times), iter(ids)
        self._replay_times, self._replay_ids = replay_times, replay_ids
        try:
            yield
        finally:
            self._replay_times = self._replay_ids = None
        if next(replay_times, None) is not None or next(replay_ids, None) is not None:
            raise ReplayDivergence("replayed command used fewer clock readings or ids")


class Executed(msgspec.Struct):
    """What one live command did: its journal record, result, events and new deliveries."""

    record: Record
    result: object
    events: list[EngineEvent]
    deliveries: list[Delivery]
    error: ExchangeError | None = None


class MachineSnapshot(msgspec.Struct, array_like=True):
    seq: int
    engine: EngineState
    subscriptions: list[SubscriptionState]
    outbox: list[Delivery]


_snapshot_encoder = msgspec.json.Encoder()  # unbounded integers, like the journal
_snapshot_decoder = msgspec.json.Decoder(MachineSnapshot)


class ExchangeMachine:
    """Engine + subscriptions + outbox, advanced one journaled command at a time."""

    def __init__(
        self,
        clock: Clock,
        ids: IdSource,
        *,
        vwap_window_ns: int,
        snapshot: MachineSnapshot | None = None,
    ) -> None:
        self.recorder = Recorder(clock, ids)
        self.vwap_window_ns = vwap_window_ns
        self.subscriptions = SubscriptionRegistry(self.recorder)
        # its subscriptions by id: a dict's truth is a C call, the registry's ``len`` a frame
        self._hooks = self.subscriptions.by_id
        self.outbox: dict[str, Delivery] = {}
        self.seq = 0
        if snapshot is None:
            self.engine = Engine(self.recorder, self.recorder, vwap_window_ns=vwap_window_ns)
        else:
            self.engine = Engine.from_state(
                snapshot.engine, self.recorder, self.recorder, vwap_window_ns=vwap_window_ns
            )
            self.subscriptions.restore(snapshot.subscriptions)
            self.outbox = {d.delivery_id: d for d in snapshot.outbox}
            self.seq = snapshot.seq
        # The engine's two hot commands, looked up once: a native engine's methods shadow its
        # class's in its instance dict, which Python's attribute caches do not serve. The engine
        # is the machine's for life (nothing replaces ``self.engine``).
        self._submit = self.engine.submit
        self._cancel = self.engine.cancel

    # ------------------------------------------------------------------ commands
    def execute(self, command: Command) -> Executed:
        """Run a live command, recording what it consumed; rejections are results too."""
        recorder = self.recorder
        times: list[int] = []
        ids: list[str] = []
        recorder._times = times  # start(), inline: once per command
        recorder._new_ids = ids
        result: object
        try:
            # Orders and cancels are nearly every command the server runs: inline here, as
            # _apply's frame and dispatch chain would cost about as much as the rest of this.
            if isinstance(command, SubmitOrder):
                result, events = self._submit(command.request)
                deliveries = self._deliver(events) if events and self._hooks else []
            elif isinstance(command, CancelOrder):
                result, events = self._cancel(command.order_id)
                deliveries = self._deliver(events) if events and self._hooks else []
            else:
                result, events, deliveries = self._apply(command)
        except ExchangeError as error:
            self.seq = seq = self.seq + 1
            return Executed(Record(seq, command, times, ids, error.code), None, [], [], error)
        finally:
            recorder._times = recorder._new_ids = None  # stop()
        self.seq = seq = self.seq + 1
        return Executed(Record(seq, command, times, ids), result, events, deliveries)

    def replay(self, record: Record) -> None:
        """Re-run a journaled command with its recorded clock readings and ids."""
        if record.seq != self.seq + 1:
            raise ReplayDivergence(f"journal gap: expected record {self.seq + 1}, got {record.seq}")
        rejected: str | None = None
        with self.recorder.replaying(record.clock, record.ids):
            try:
                self._apply(record.command)
            except ExchangeError as exc:
                rejected = exc.code
        if rejected != record.rejected:
            raise ReplayDivergence(
                f"record {record.seq}: live outcome {record.rejected!r}, replay {rejected!r}"
            )
        self.seq = record.seq

    def _apply(self, command: Command) -> tuple[object, list[EngineEvent], list[Delivery]]:
        """Run one command: its result, engine events and the webhook deliveries they call for."""
        engine = self.engine
        result: object
        events: list[EngineEvent]
        if isinstance(command, SubmitOrder):
            result, events = engine.submit(command.request)
        elif isinstance(command, CancelOrder):
            result, events = engine.cancel(command.order_id)
        elif isinstance(command, ExpireDue):
            result, events = None, engine.expire_due()
        elif isinstance(command, RegisterBroker):
            broker = engine.register_broker(command.broker_id, command.cash, command.holdings)
            return broker, [], []
        elif isinstance(command, UpsertWebhooks):
            engine.broker(command.broker_id)  # 404 before anything changes
            upserted = self.subscriptions.upsert(
                command.broker_id, command.url, command.events, engine.now()
            )
            return upserted, [], []
        elif isinstance(command, DeleteWebhook):
            return self.subscriptions.delete(command.webhook_id), [], []
        else:
            for delivery_id in command.delivery_ids:
                self.outbox.pop(delivery_id, None)
            return None, [], []
        return result, events, (self._deliver(events) if events and self._hooks else [])

    def _deliver(self, events: list[EngineEvent]) -> list[Delivery]:
        """The webhook deliveries ``events`` call for, added to the outbox."""
        deliveries = deliveries_for(events, self.subscriptions, self.recorder)
        outbox = self.outbox
        for delivery in deliveries:
            outbox[delivery.delivery_id] = delivery
        return deliveries

    # ------------------------------------------------------------------ images
    def snapshot(self) -> MachineSnapshot:
        return MachineSnapshot(
            self.seq,
            self.engine.export_state(),
            self.subscriptions.export_state(),
            list(self.outbox.values()),
        )

    def state_hash(self) -> str:
        """Hash of books, accounts, orders, trades and subscriptions (not the outbox)."""
        return state_hash(self.engine.export_state(), self.subscriptions.export_state())

    @staticmethod
    def encode_snapshot(snapshot: MachineSnapshot) -> bytes:
        return _snapshot_encoder.encode(snapshot)

    @staticmethod
    def decode_snapshot(data: bytes) -> MachineSnapshot:
        return _snapshot_decoder.decode(data)
