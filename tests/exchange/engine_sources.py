"""Clocks and id sources for running two engines in lockstep (see :mod:`engine_twin`).

Each recipe makes a fresh clock and id source; a twin calls it once per engine, so both engines
read equal clocks and mint equal ids. They cover both paths of the native core: it serves exact
:class:`SystemClock`, :class:`SequentialIds` and :class:`RandomIds` itself, and the machine's exact
:class:`Recorder` too (recording or replaying as its own methods would), and calls any other
clock or id source (a :class:`VirtualClock`, a subclass -- also when a Recorder wraps one) through
Python. The subclasses here also count how often
they are called: both builds must read the clock and mint ids exactly as often, or a journal
recorded by one build would not replay on the other.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tradehall.core.clock import Clock, SystemClock, VirtualClock
from tradehall.core.ids import IdSource, RandomIds, SequentialIds
from tradehall.exchange.machine import Recorder

T0 = 1_790_000_000 * 10**9


class CountingClock(VirtualClock):
    """Not the exact :class:`VirtualClock` type, and counts its readings."""

    def __init__(self, start_ns: int) -> None:
        super().__init__(start_ns)
        self.reads = 0

    def time_ns(self) -> int:
        self.reads += 1
        return super().time_ns()


class CountingIds(SequentialIds):
    """Not the exact :class:`SequentialIds` type (the core's generic path); counts its ids."""

    def __init__(self, start: int = 1, prefix: int = 0) -> None:
        super().__init__(start, prefix)
        self.minted = 0

    def new_id(self) -> str:
        self.minted += 1
        return super().new_id()


@dataclass
class Sources:
    """What one engine of a twin runs on; ``control`` moves time (None: the wall clock)."""

    control: VirtualClock | None
    clock: Clock
    ids: IdSource
    counters: Callable[[], Any] = lambda: None
    recorded: tuple[list[int], list[str]] | None = None


def _virtual(start: int, id_start: int, prefix: int) -> Sources:
    clock = VirtualClock(start)
    return Sources(clock, clock, SequentialIds(id_start, prefix))


def _counting(start: int, id_start: int, prefix: int) -> Sources:
    clock, ids = CountingClock(start), CountingIds(id_start, prefix)
    return Sources(clock, clock, ids, lambda: (clock.reads, ids.minted))


def _recorder(start: int, id_start: int, prefix: int) -> Sources:
    clock = VirtualClock(start)
    recorder = Recorder(clock, SequentialIds(id_start, prefix))
    times: list[int] = []
    ids: list[str] = []
    recorder.start(times, ids)  # every reading and id the engine takes is kept and compared
    return Sources(clock, recorder, recorder, recorded=(times, ids))


# Random ids made repeatable: a batch far longer than any exact stream needs, handed to each
# RandomIds up front, so both builds pop the same ids (the refill is covered by WALL_SOURCES).
_SEEDED = random.Random(20261121)
SEEDED_BATCH = tuple(str(uuid.UUID(int=_SEEDED.getrandbits(128), version=4)) for _ in range(3000))


def _seeded_random(start: int, id_start: int, prefix: int) -> Sources:
    clock, ids = VirtualClock(start), RandomIds()
    ids._batch = list(SEEDED_BATCH)  # popped from the end, as RandomIds.new_id does
    return Sources(clock, clock, ids)


EXACT_SOURCES: dict[str, Callable[[int, int, int], Sources]] = {
    "virtual clock, sequential ids": _virtual,  # generic clock path, fast id path
    "virtual clock, seeded random ids": _seeded_random,  # generic clock, fast random-id path
    "counting subclasses": _counting,  # generic clock and id paths
    "recorder": _recorder,  # the machine's clock and id source
}


def _wall_random() -> Sources:
    return Sources(None, SystemClock(), RandomIds())


def _wall_sequential() -> Sources:
    return Sources(None, SystemClock(), SequentialIds())


def _wall_counting_ids() -> Sources:
    ids = CountingIds()
    return Sources(None, SystemClock(), ids, lambda: ids.minted)


def _virtual_random() -> Sources:
    clock = VirtualClock(T0)
    return Sources(clock, clock, RandomIds())


WALL_SOURCES: dict[str, Callable[[], Sources]] = {
    "system clock, random ids": _wall_random,  # both fast paths
    "system clock, sequential ids": _wall_sequential,
    "system clock, counting ids": _wall_counting_ids,  # fast clock, generic ids
    "virtual clock, random ids": _virtual_random,  # generic clock, fast ids
}
