"""The native core's heap pushes and pops leave the exact layout :mod:`heapq` leaves.

The book sides' price heaps and the expiry index's deadline heap are lists that the pure build
and ``ExpiryIndex.pop_due`` keep with :mod:`heapq`, and that the C core pushes to and pops from
itself. The twin tests compare the heaps' contents; this compares the lists item by item after
every command of random flows that drain and re-open levels (stale keys popped), cancel, expire
and use prices far off the book, so the two builds hand each other identical structures.
"""

from __future__ import annotations

import random

import pytest
from engine_builds import make_engine

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.engine import Engine, OrderRequest
from tradehall.exchange.errors import ExchangeError

T0 = 1_790_000_000 * 10**9


def step(engine: Engine, clock: VirtualClock, command: tuple[str, object]) -> object:
    """Run one command; its outcome (a status, an expiry count or the error's class name)."""
    kind, payload = command
    try:
        if kind == "submit":
            assert isinstance(payload, OrderRequest)
            return engine.submit(payload)[0].status
        if kind == "cancel":
            assert isinstance(payload, str)
            return engine.cancel(payload)[0].status
        assert isinstance(payload, int)
        clock.set_ns(clock.time_ns() + payload)
        return len(engine.expire_due())
    except ExchangeError as exc:
        return type(exc).__name__


def heaps(engine: Engine) -> list[list[int]]:
    book = engine._markets["S"].book
    return [book.bids._heap, book.asks._heap, engine._expiry._heap]


@pytest.mark.parametrize("seed", range(8))
def test_heaps_match_heapq_item_by_item(seed: int) -> None:
    rng = random.Random(seed)
    twins = []
    for build in ("python", "native"):
        clock = VirtualClock(T0)
        engine = make_engine(build, clock, SequentialIds(), vwap_window_ns=10**9)
        for broker in ("a", "b"):
            engine.register_broker(broker, 10**15, [("S", 10**9)])
        twins.append((engine, clock))
    popped = 0
    for number in range(1500):
        roll = rng.random()
        if roll < 0.6:
            price = rng.randint(90, 110) if rng.random() < 0.8 else rng.choice((1, 10**6, 2**70))
            side = rng.choice(("bid", "ask"))
            deadline = T0 + rng.randint(1, 400) * 10**6
            request = OrderRequest("limit", rng.choice("ab"), "D", side, "S", 3, price, deadline)
            command: tuple[str, object] = ("submit", request)
        elif roll < 0.9:
            command = ("cancel", f"00000000-0000-4000-8000-{rng.randint(1, number + 1):012x}")
        else:
            command = ("advance", rng.randint(1, 50) * 10**6)
        (pure, pure_clock), (native, native_clock) = twins
        before = sum(map(len, heaps(pure)[:2]))
        assert step(native, native_clock, command) == step(pure, pure_clock, command)
        assert heaps(native) == heaps(pure)
        popped += max(0, before - sum(map(len, heaps(pure)[:2])))
    assert popped >= 5  # stale price keys were popped (by the core's heap pop), not only pushed
