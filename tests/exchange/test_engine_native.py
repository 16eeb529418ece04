"""The native engine core is indistinguishable from the pure-Python engine.

Random command streams run on a pure and a native :class:`~tradehall.exchange.engine.Engine` side
by side (:mod:`engine_twin`); after every command both must have produced the same result or the
same exception (class, text, attributes), the same events, the same ``export_state()`` image and
the same books, expiry index and listings. Streams use a few symbols and small prices and
quantities so books cross often: self-trades, insufficient balance and holdings, unknown brokers,
no liquidity, past deadlines, cancels of live, terminal and unknown orders, clock advances, expiry
sweeps, reads, ids taken from the source between commands, and rebuilds from a state image.

The C core has a fast path for exact ``SystemClock``, ``SequentialIds`` and ``RandomIds`` and a
generic one for every other clock or id source; the sources below cover both, and numbers near and
beyond 2**63 cover its fallback from machine integers to Python's unbounded ones.
"""

from __future__ import annotations

import random

import pytest
from engine_sources import EXACT_SOURCES, T0, WALL_SOURCES, Sources
from engine_twin import (
    TICK,
    Advance,
    Cancel,
    Command,
    Expire,
    Mint,
    Query,
    Register,
    Restore,
    Submit,
    Twin,
    random_commands,
    wall_twin,
)
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds, _forget_batches
from tradehall.exchange.machine import ReplayDivergence

PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
SMALL_PRICES = st.integers(100, 104)
SMALL_QUANTITIES = st.integers(1, 6)
SMALL_CASH = st.integers(0, 3000)
OPENING_CASH = st.integers(500, 6000)
OPENING_STOCK = st.just(30)
NO_DEADLINE = st.none()
# Around the int64 edges: products and sums of these overflow 64 bits in every combination.
BIG = (2**31, 2**32 + 1, 2**62 + 3, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 3 * 2**64 + 5, 10**30)

brokers = st.sampled_from(("b0", "b1", "b0", "b1", "b0", "b1", "b2", "b3"))
symbols = st.sampled_from(("AAA", "BBB", "AAA", "BBB", "CCC"))
any_symbol = st.sampled_from(("AAA", "BBB", "CCC", "ZZZ"))
sides = st.sampled_from(("bid", "ask"))
statuses = st.sampled_from(
    (None, "pending", "partially_filled", "filled", "cancelled", "expired", "bogus")
)


def commands(
    prices: st.SearchStrategy[int] = SMALL_PRICES,
    quantities: st.SearchStrategy[int] = SMALL_QUANTITIES,
    cash: st.SearchStrategy[int] = SMALL_CASH,
    deadlines: st.SearchStrategy[int | None] = NO_DEADLINE,
) -> st.SearchStrategy[Command]:
    """One command of a stream; the value strategies set the numbers' range."""
    relative = st.sampled_from((*range(1, 17), *range(1, 17), -1, 0, None))
    limits = st.builds(
        Submit,
        type=st.just("limit"),
        broker_id=brokers,
        side=sides,
        symbol=symbols,
        quantity=quantities,
        price=prices,
        expires_in=relative,
        document_number=st.sampled_from(("D1", "doc2")),
        expires_at=deadlines,
    )
    markets = st.builds(
        Submit,
        type=st.just("market"),
        broker_id=brokers,
        side=sides,
        symbol=symbols,
        quantity=st.one_of(st.integers(1, 12), quantities),
        price=st.none(),
        expires_in=st.none(),
    )
    holdings = st.lists(
        st.tuples(st.sampled_from(("AAA", "BBB")), st.one_of(st.integers(1, 20), quantities)),
        max_size=2,
        unique_by=lambda h: h[0],
    ).map(tuple)
    registers = st.builds(Register, broker_id=brokers, cash=cash, holdings=holdings)
    queries = st.one_of(
        st.builds(Query, st.just("book"), st.tuples(any_symbol)),
        st.builds(
            Query,
            st.just("quote"),
            st.tuples(any_symbol, sides, st.one_of(st.sampled_from((1, 4, 10**6)), quantities)),
        ),
        st.builds(Query, st.just("vwap"), st.tuples(any_symbol)),
        st.builds(
            Query,
            st.just("page"),
            st.tuples(brokers, statuses, st.integers(1, 4), st.integers(1, 4)),
        ),
        st.builds(Query, st.just("broker"), st.tuples(brokers)),
        st.builds(Query, st.just("order"), st.tuples(st.integers(0, 100))),
        st.just(Query("now")),
    )
    cancels = st.builds(Cancel, pick=st.sampled_from((None, *range(40))))
    advances = st.builds(Advance, ticks=st.sampled_from((1, 1, 2, 3, 4, 7, 8, 8, 9, 12)))
    # Weighted choice of a kind, then the command (one_of would flatten the seven queries into
    # seven equal branches and drown the orders).
    kinds = (
        *(limits,) * 8,
        *(markets,) * 2,
        *(cancels,) * 3,
        advances,
        st.just(Expire()),
        queries,
        queries,
        registers,
        st.sampled_from((Mint(), Restore())),
    )
    return st.sampled_from(kinds).flatmap(lambda kind: kind)


def streams(
    command: st.SearchStrategy[Command],
    *,
    cash: st.SearchStrategy[int] = OPENING_CASH,
    stock: st.SearchStrategy[int] = OPENING_STOCK,
) -> st.SearchStrategy[list[Command]]:
    """Two funded brokers holding both seeded symbols, then 20 to 80 commands."""

    def opening(broker_id: str) -> st.SearchStrategy[Register]:
        holdings = st.tuples(stock, stock).map(lambda q: (("AAA", q[0]), ("BBB", q[1])))
        return st.builds(Register, broker_id=st.just(broker_id), cash=cash, holdings=holdings)

    return st.tuples(opening("b0"), opening("b1"), st.lists(command, min_size=20, max_size=80)).map(
        lambda t: [t[0], t[1], *t[2]]
    )


# ---------------------------------------------------------------------- exact sources
@settings(max_examples=150, deadline=None, derandomize=False, phases=PHASES)
@given(source=st.sampled_from(sorted(EXACT_SOURCES)), stream=streams(commands()))
def test_native_matches_pure_command_by_command(source: str, stream: list[Command]) -> None:
    twin = Twin(lambda: EXACT_SOURCES[source](T0, 1, 0))
    twin.run(stream)


big_numbers = st.one_of(SMALL_PRICES, st.sampled_from(BIG))


@settings(max_examples=60, deadline=None, derandomize=False, phases=PHASES)
@given(
    source=st.sampled_from(sorted(EXACT_SOURCES)),
    start=st.sampled_from((T0, 2**63 - 40 * TICK, 2**64 + 7)),
    id_start=st.sampled_from((1, 2**48 - 3, 2**64 + 1)),
    prefix=st.sampled_from((0, 2**32 - 1, 2**40)),
    stream=streams(
        commands(
            prices=big_numbers,
            quantities=st.one_of(SMALL_QUANTITIES, st.sampled_from(BIG)),
            cash=st.one_of(st.integers(0, 3000), st.sampled_from(BIG)),
            deadlines=st.one_of(st.none(), st.none(), st.sampled_from(BIG[3:])),
        ),
        cash=st.sampled_from(BIG[3:]),
        stock=st.one_of(st.just(30), st.sampled_from(BIG)),
    ),
)
def test_native_matches_pure_with_numbers_beyond_64_bits(
    source: str, start: int, id_start: int, prefix: int, stream: list[Command]
) -> None:
    """Cash, prices, quantities, notionals, deadlines, clock readings and ids past int64."""
    twin = Twin(lambda: EXACT_SOURCES[source](start, id_start, prefix))
    twin.run(stream)


def _rich(broker_id: str, cash: int, quantity: int) -> Register:
    return Register(broker_id, cash, (("AAA", quantity),))


PINNED: dict[str, list[Command]] = {
    # quantity x price is exactly 2**63: one past int64's maximum.
    "notional of 2**63": [
        _rich("b0", 2**63, 2**62),
        _rich("b1", 2**63, 2**62),
        Submit("limit", "b0", "ask", "AAA", 2**62, 2, 4),
        Submit("limit", "b1", "bid", "AAA", 2**62, 2, 4),
    ],
    # Cash at int64's maximum, bids that reserve all of it, then one cent more.
    "cash at int64 max": [
        _rich("b0", 2**63 - 1, 10),
        _rich("b1", 2**63 - 1, 10),
        Submit("limit", "b0", "bid", "AAA", 1, 2**63 - 1, 4),
        Submit("limit", "b1", "bid", "AAA", 1, 2**63, 4),
        Submit("limit", "b1", "ask", "AAA", 1, 1, 4),
        Query("broker", ("b0",)),
        Query("broker", ("b1",)),
    ],
    # Proceeds push a seller's cash past int64, then a market sweep needs a sum past it.
    "cash crossing int64": [
        _rich("b0", 2**63 - 5, 10),
        _rich("b1", 10**30, 10),
        Submit("limit", "b0", "ask", "AAA", 3, 2**62, 4),
        Submit("limit", "b1", "bid", "AAA", 3, 2**62, 4),
        Submit("limit", "b1", "ask", "AAA", 2, 2**63 + 1, 4),
        Submit("limit", "b1", "ask", "AAA", 2, 2**64, 4),
        Query("quote", ("AAA", "bid", 4)),
        Submit("market", "b0", "bid", "AAA", 4, None, None),
        Submit("market", "b0", "bid", "AAA", 3, None, None),
        Query("vwap", ("AAA",)),
    ],
    # Quantities past int64 resting, partially filled and cancelled.
    "quantity past int64": [
        _rich("b0", 10**40, 2**70),
        _rich("b1", 10**40, 2**70),
        Submit("limit", "b0", "ask", "AAA", 2**64 + 3, 7, 4),
        Submit("limit", "b1", "bid", "AAA", 2**63, 7, 4),
        Cancel(0),
        Submit("market", "b1", "ask", "AAA", 2**65, None, None),
    ],
    # Clock readings and deadlines past int64 (a generic clock can return anything).
    "time past int64": [
        _rich("b0", 10**6, 10),
        _rich("b1", 10**6, 10),
        Submit("limit", "b0", "ask", "AAA", 1, 100, None, expires_at=2**63 + 2 * TICK),
        Advance(1),
        Submit("limit", "b1", "bid", "AAA", 1, 99, 100),
        Advance(2),
        Expire(),
        Submit("limit", "b1", "ask", "AAA", 1, 99, 1),
        Query("vwap", ("AAA",)),
    ],
}


# Numbers that are ints by Python's rules but not exactly int (the core's machine-integer
# shortcuts must not apply; Python's arithmetic must).
PINNED["bools as numbers"] = [
    Register("b0", 10**6, (("AAA", 50),)),
    Register("b1", True, (("AAA", True),)),
    Submit("limit", "b0", "ask", "AAA", 3, 100, 4),
    Submit("limit", "b0", "bid", "AAA", True, 101, 4),
    Submit("limit", "b1", "ask", "AAA", True, True, 4),
    Submit("market", "b0", "bid", "AAA", True, None, None),
    Cancel(0),
    Query("quote", ("AAA", "bid", True)),
]


# The lazy-removal housekeeping thresholds, which short random streams never reach: a level with
# more than 64 dead slots is compacted, a deadline bucket with many dead entries too, and the book
# and expiry heaps are rebuilt once stale keys pile up.
PINNED["compaction of a level and a deadline bucket"] = [
    Register("b0", 0, (("AAA", 500),)),
    Register("b1", 10**6, ()),
    *(Submit("limit", "b0", "ask", "AAA", 1, 100, 40) for _ in range(150)),  # one deadline
    *(Cancel(pick) for pick in range(1, 140)),  # the head stays: dead slots pile up behind it
    Submit("market", "b1", "bid", "AAA", 5, None, None),
    Advance(41),
    Expire(),
]
PINNED["rebuilt heaps"] = [
    Register("b0", 0, (("AAA", 500),)),
    Register("b1", 10**6, ()),
    *(Submit("limit", "b0", "ask", "AAA", 1, 100 + n, 1 + n) for n in range(150)),
    *(Cancel(pick) for pick in range(1, 150)),  # deeper levels and later deadlines go
    *(Submit("limit", "b0", "ask", "AAA", 1, 300 + n, 200 + n) for n in range(3)),
    Submit("market", "b1", "bid", "AAA", 2, None, None),
    Advance(300),
    Expire(),
]


# An order's trades live in a tuple up to 16, then in a list (model.TRADE_LOG_TUPLE_MAX).
PINNED["long trade logs"] = [
    Register("b0", 10**6, (("AAA", 100),)),
    Register("b1", 10**6, (("AAA", 100),)),
    Submit("limit", "b0", "ask", "AAA", 40, 100, 40),
    *(Submit("limit", "b1", "bid", "AAA", 1, 100, 40) for _ in range(17)),  # 17 fills of one ask
    *(Submit("limit", "b1", "ask", "AAA", 1, 101 + n % 3, 40) for n in range(17)),
    Cancel(0),
    Submit("limit", "b0", "bid", "AAA", 30, 103, 40),  # one pass of 17 trades, then rests
    Cancel(35),
]


# Fields the request parser would refuse; the engine reads them the same way in both builds.
PINNED["unparsed request fields"] = [
    Register("b0", 10**6, (("AAA", 100),)),
    Register("b1", 10**6, (("AAA", 100),)),
    Submit("limit", "b0", "BID", "AAA", 2, 100, 4),  # not "bid": an ask
    Submit("Limit", "b1", "bid", "AAA", 1, None, None),  # not "limit": a market order
    Submit("limit", "b1", "bid", "AAA", 1, 100, 4, document_number=5),  # type: ignore[arg-type]
    Submit("limit", "b1", "bid", "AAA", 1, 101, 4),
]


@pytest.mark.parametrize("case", sorted(PINNED))
@pytest.mark.parametrize("source", sorted(EXACT_SOURCES))
def test_native_matches_pure_on_pinned_edge_cases(case: str, source: str) -> None:
    start = 2**63 - 2 * TICK if case == "time past int64" else T0
    stream = PINNED[case]
    full_every = 7 if len(stream) > 100 else 1  # the long ones are compared every few steps
    twin = Twin(lambda: EXACT_SOURCES[source](start, 2**64 - 2, 0), full_every=full_every)
    twin.run(stream)
    twin.compare_states()
    assert twin.pure.trade_count > 0, twin.kinds  # each case reaches a trade


def test_a_long_seeded_stream_reaches_every_outcome() -> None:
    """Deep books and long histories, which short random streams never build."""
    twin = Twin(lambda: EXACT_SOURCES["virtual clock, sequential ids"](T0, 1, 0), full_every=50)
    twin.run(random_commands(random.Random(4), 1500, symbols=("AAA", "BBB", "CCC")))
    twin.compare_states()
    reached = set(twin.kinds)
    for kind in (
        "Submit:ok",
        "Submit:InsufficientBalance",
        "Submit:InsufficientHoldings",
        "Submit:BrokerNotFound",
        "Submit:NoLiquidity",
        "Submit:ValidationError",
        "Cancel:ok",
        "Cancel:OrderNotCancellable",
        "Cancel:OrderNotFound",
        "Expire:ok",
        "Query:BrokerNotFound",
    ):
        assert kind in reached, (kind, twin.kinds)
    assert twin.pure.trade_count > 300
    expired = [o for o in twin.pure.orders.values() if o.status == "expired"]
    assert len(expired) > 10


@settings(max_examples=30, deadline=None, derandomize=False, phases=PHASES)
@given(stream=streams(commands()), routes=st.randoms(use_true_random=False))
def test_the_builds_interleave_on_one_engine(stream: list[Command], routes: random.Random) -> None:
    """Commands of either build on one engine keep it exactly where the pure engine is."""
    twin = Twin(lambda: EXACT_SOURCES["virtual clock, sequential ids"](T0, 1, 0))
    engine = twin.native
    native = (engine.submit, engine.cancel, engine.expire_due)
    python = (engine._submit_python, engine._cancel_python, engine._expire_due_python)
    for command in stream:
        engine.submit, engine.cancel, engine.expire_due = routes.choice((native, python))
        twin.step(command)
        if isinstance(command, Restore):
            engine = twin.native
            native = (engine.submit, engine.cancel, engine.expire_due)
            python = (engine._submit_python, engine._cancel_python, engine._expire_due_python)


# ---------------------------------------------------------------------- wall clock, random ids
@settings(max_examples=30, deadline=None, derandomize=False, phases=PHASES)
@given(source=st.sampled_from(sorted(WALL_SOURCES)), stream=streams(commands()))
def test_native_matches_pure_on_wall_clock_and_random_ids(
    source: str, stream: list[Command]
) -> None:
    """The fast paths: the same up to renaming ids and stamps, time order kept."""
    twin = wall_twin(WALL_SOURCES[source])
    twin.run(stream)


def test_random_ids_come_from_the_source_after_a_fork_reset() -> None:
    """A forked child drops the parent's batch of random ids; the core must not keep using it."""
    twin = wall_twin(WALL_SOURCES["system clock, random ids"])
    twin.full_every = 20
    stream = random_commands(random.Random(2), 200, symbols=("AAA",))
    twin.run(stream[:100])
    batches = [list(side.sources.ids._batch) for side in twin.sides]  # type: ignore[attr-defined]
    assert all(batches)
    _forget_batches()  # what os.fork runs in the child
    twin.run(stream[100:])
    twin.compare_states()
    for side, old in zip(twin.sides, batches, strict=True):
        used = set(side.engine.orders) | {
            t.trade_id for o in side.engine.orders.values() for t in o.trades
        }
        recent = set(side.issued[-30:])
        assert recent <= used and not recent & set(old), side.build


# ---------------------------------------------------------------------- failing sources
class FailingIds(SequentialIds):
    """Raises on the n-th id it is asked for (counting from 1)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.calls, self.fail_at = 0, fail_at

    def new_id(self) -> str:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ReplayDivergence("replayed command asked for more ids")
        return super().new_id()


class FailingClock(VirtualClock):
    """Raises on the n-th reading (counting from 1)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(T0)
        self.calls, self.fail_at = 0, fail_at

    def time_ns(self) -> int:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ReplayDivergence("replayed command read the clock more often")
        return super().time_ns()


FAILING_STREAM: list[Command] = [
    Register("b0", 10**6, (("AAA", 100),)),
    Register("b1", 10**6, (("AAA", 100),)),
    Submit("limit", "b0", "ask", "AAA", 3, 100, 10),
    Submit("limit", "b0", "ask", "AAA", 3, 101, 10),
    Submit("limit", "b1", "bid", "AAA", 1, 99, 10),
    Submit("limit", "b1", "bid", "AAA", 5, 101, 10),  # ids 4-6: the order and two trades
    Cancel(2),
    Submit("market", "b1", "bid", "AAA", 1, None, None),  # ids 7-8
    Advance(20),
    Expire(),
]
IDS_TAKEN, READINGS_TAKEN = 8, 9  # by FAILING_STREAM


@pytest.mark.parametrize(
    ("what", "fail_at"),
    [
        *(("ids", n) for n in range(1, IDS_TAKEN + 1)),
        *(("clock", n) for n in range(1, READINGS_TAKEN + 1)),
    ],
)
def test_a_failing_clock_or_id_source_fails_both_builds_alike(what: str, fail_at: int) -> None:
    """An error from the clock or the id source (a replay divergence) propagates unchanged.

    The exception is compared like any outcome, and so is the state it leaves behind. (What
    follows such a failure is not specified: the machine stops on a divergence.)
    """

    def sources() -> Sources:
        clock = FailingClock(fail_at) if what == "clock" else VirtualClock(T0)
        return Sources(clock, clock, FailingIds(fail_at) if what == "ids" else SequentialIds())

    twin = Twin(sources)
    for command in FAILING_STREAM:
        twin.step(command)
        if any("ReplayDivergence" in kind for kind in twin.kinds):
            break
    else:
        raise AssertionError(f"the stream never failed: {twin.kinds}")


# ---------------------------------------------------------------------- the comparison itself
def test_the_twin_catches_a_difference() -> None:
    """The comparison can fail: a native side whose id source runs one ahead is caught."""
    starts = iter((1, 2))

    def skewed() -> Sources:
        clock = VirtualClock(T0)
        return Sources(clock, clock, SequentialIds(start=next(starts)))

    twin = Twin(skewed)
    twin.step(Register("b0", 100, (("AAA", 1),)))
    with pytest.raises(AssertionError, match="builds differ in outcome after step 1"):
        twin.step(Submit("limit", "b0", "ask", "AAA", 1, 100, 4))
