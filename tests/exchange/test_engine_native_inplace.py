"""The native core updates counters and balances in place only when no one else can see them.

An int whose only reference is its slot's is rewritten in place instead of being replaced by a
new one (``th_long_set_inplace`` in ``native/native.h``). Anything that read the field before --
Python code, an event, a state image -- holds a counted reference, so it must keep the value it
read. These tests hold on to every int field the hot path changes, run commands that change
them all, and check that every held int still has its old value, and that the fields themselves
moved exactly as the pure build moves them.
"""

from __future__ import annotations

import msgspec
import pytest
from engine_builds import BUILDS, make_engine

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.engine import Engine, OrderRequest

T0 = 1_790_000_000 * 10**9
FAR = T0 + 10**15
CASH = 10**15 + 12_345  # two 30-bit digits: updates keep the size and could go in place


def engine_for(build: str) -> Engine:
    engine = make_engine(build, VirtualClock(T0), SequentialIds(), vwap_window_ns=10**12)
    engine.register_broker("maker", CASH, [("S", 10**9 + 7)])
    engine.register_broker("taker", CASH, [("S", 10**9 + 7)])
    return engine


def int_fields(engine: Engine) -> dict[str, int]:
    """Every int the commands below change, by name (the objects themselves)."""
    fields: dict[str, int] = {
        "trade_count": engine.trade_count,
        "seq": engine._seq,
        "expiry_live": len(engine._expiry),
    }
    for name, broker in engine.brokers.items():
        fields[f"{name}.cash"] = broker.cash
        fields[f"{name}.reserved_cash"] = broker.reserved_cash
        holding = broker.holdings["S"]
        fields[f"{name}.quantity"] = holding.quantity
        fields[f"{name}.reserved"] = holding.reserved
    window = engine._markets["S"].window
    fields["window.notional"], fields["window.quantity"] = window._notional, window._quantity
    for side in ("bids", "asks"):
        level = getattr(engine._markets["S"].book, side).best_level
        if level is not None:
            fields[f"{side}.total"] = level.total
    return fields


def commands(engine: Engine) -> None:
    for _ in range(3):
        engine.submit(OrderRequest("limit", "maker", "D", "bid", "S", 1000, 9_000, FAR))
        engine.submit(OrderRequest("limit", "maker", "D", "ask", "S", 1000, 11_000, FAR))
    engine.submit(OrderRequest("limit", "taker", "D", "ask", "S", 1500, 9_000, FAR))
    engine.submit(OrderRequest("limit", "taker", "D", "bid", "S", 1500, 11_000, FAR))


@pytest.mark.parametrize("build", BUILDS)
def test_ints_read_before_a_command_keep_their_values(build: str) -> None:
    engine = engine_for(build)
    commands(engine)  # leave levels, reservations and a VWAP window to change
    held = int_fields(engine)
    values = {name: int(repr(value)) for name, value in held.items()}  # copies, by value
    order, _ = engine.submit(OrderRequest("limit", "maker", "D", "bid", "S", 700, 9_000, FAR))
    filled_before, remaining_before = order.filled, order.remaining
    commands(engine)
    assert {name: int(repr(value)) for name, value in held.items()} == values
    assert (filled_before, remaining_before) == (0, 700)


def test_fields_move_as_in_the_pure_build() -> None:
    engines = [engine_for(build) for build in BUILDS]
    for engine in engines:
        for _ in range(5):
            commands(engine)
    pure, native = (int_fields(engine) for engine in engines)
    assert native == pure
    assert pure["trade_count"] > 0 and pure["maker.cash"] != CASH
    orders = [sorted(msgspec.structs.asdict(o).items()) for o in engines[1].orders.values()]
    assert orders == [sorted(msgspec.structs.asdict(o).items()) for o in engines[0].orders.values()]


def test_the_id_counter_read_before_minting_keeps_its_value() -> None:
    ids = SequentialIds(start=10**6)  # past the shared small ints: could go in place
    engine = make_engine("native", VirtualClock(T0), ids, vwap_window_ns=10**12)
    engine.register_broker("maker", CASH, [("S", 10**9 + 7)])
    seen = ids._next
    order, _ = engine.submit(OrderRequest("limit", "maker", "D", "bid", "S", 1, 9_000, FAR))
    assert seen == 10**6 and ids._next == 10**6 + 1
    assert order.order_id == f"00000000-0000-4000-8000-{10**6:012x}"
    engine.submit(OrderRequest("limit", "maker", "D", "bid", "S", 1, 9_000, FAR))
    assert ids._next == 10**6 + 2  # updated in place now that no one else holds it
