"""Drive a pure-Python engine and a native one side by side, comparing after every command.

A :class:`Twin` holds one engine of each build, each with its own clock and id source made by the
same recipe (:mod:`engine_sources`). Every command runs on both; the
outcome (result, or exception class, text and attributes), the events, the ``export_state()``
image and the derived indexes (book levels and queues, expiry, listings) must then be equal.

Exact sources (a virtual clock, sequential ids) make both runs byte-identical, so everything is
compared as is. Wall-clock and random-id sources cannot: there ids and timestamps are renamed by
first appearance (:class:`Canon`) before comparing, and the renaming must keep time order.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from engine_builds import engine_from_state, make_engine
from engine_sources import T0, Sources

from tradehall.exchange.book import BookSide
from tradehall.exchange.engine import Engine, OrderRequest, Quote
from tradehall.exchange.events import OrderClosed, OrderFilled, TradeExecuted
from tradehall.exchange.indexes import VwapFigures
from tradehall.exchange.model import Broker, Order
from tradehall.exchange.state import EngineState, order_state

TICK = 250_000_000
WINDOW = 8 * TICK
STATUSES = (None, "pending", "partially_filled", "filled", "cancelled", "expired", "bogus")
UNKNOWN_ID = "00000000-0000-4000-8000-ffffffffffff"


# ---------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Register:
    broker_id: str
    cash: int
    holdings: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Submit:
    type: str
    broker_id: str
    side: str
    symbol: str
    quantity: int
    price: int | None
    expires_in: int | None  # ticks after the clock reading; <= 0 is not in the future
    document_number: str = "D1"
    expires_at: int | None = None  # an absolute deadline instead, when set


@dataclass(frozen=True)
class Cancel:
    pick: int | None  # index into the orders issued so far (modulo); None: an unknown id


@dataclass(frozen=True)
class Advance:
    ticks: int


@dataclass(frozen=True)
class Expire:
    pass


@dataclass(frozen=True)
class Query:
    """A read: ``book``, ``quote``, ``vwap``, ``page``, ``broker``, ``order`` or ``now``."""

    kind: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Mint:
    """Take an id from the engine's id source outside the engine (as the service does)."""


@dataclass(frozen=True)
class Restore:
    """Rebuild the engine from its own image (through JSON), same build, same clock and ids."""


Command = Register | Submit | Cancel | Advance | Expire | Query | Mint | Restore


# ---------------------------------------------------------------------- images
def image(value: Any) -> Any:
    """A plain, comparable picture of anything the engine returns."""
    if isinstance(value, Order):
        state = msgspec.to_builtins(order_state(value, 0))
        return ["order", state, value.list_pos, field_types(value)]
    if isinstance(value, TradeExecuted | OrderFilled | OrderClosed | Quote):
        return [type(value).__name__, msgspec.to_builtins(value), field_types(value)]
    if isinstance(value, Broker):
        holdings = [[s, h.quantity, h.reserved] for s, h in value.holdings.items()]
        return [
            "broker",
            value.broker_id,
            value.cash,
            value.reserved_cash,
            value.available_cash,
            value.created_at,
            value.updated_at,
            holdings,
            field_types(value),
        ]
    if isinstance(value, VwapFigures):
        return ["vwap", value.current_price, value.trades_in_window, value.last_trade_at]
    if isinstance(value, BookSide):
        return [
            [level.price, level.total, level.count, [o.order_id for o in level.live_orders()]]
            for level in value.levels()
        ]
    if isinstance(value, list):
        return [image(v) for v in value]
    if isinstance(value, tuple):
        return ["tuple", *(image(v) for v in value)]
    assert value is None or type(value) in (int, str, bool), type(value)
    return value


def field_types(record: Any) -> str:
    """The exact type of every field: ``1`` and ``True``, an int and an int subclass, a tuple and
    a list of trades all compare equal, yet are different states."""
    names = getattr(record, "__struct_fields__", None) or record.__slots__
    return " ".join(type(getattr(record, name)).__name__ for name in names)


def error_image(exc: Exception) -> Any:
    attributes = {k: v for k, v in vars(exc).items() if k != "__traceback__"}
    return ["raised", type(exc).__name__, str(exc), list(exc.args), attributes]


def observe(engine: Engine) -> dict[str, Any]:
    """Everything a later command or a reader could see, beyond the command's own result."""
    seen: dict[str, Any] = {
        "state": msgspec.to_builtins(engine.export_state()),
        "resting": engine.resting_orders,
        "deadline": engine.next_deadline(),
        "trades": engine.trade_count,
        "symbols": engine.symbols,
    }
    for symbol in engine.symbols:
        book = engine.book(symbol)
        seen["book " + symbol] = [image(book.bids), image(book.asks), book.is_crossed()]
    for broker_id in engine.brokers:
        seen["orders of " + broker_id] = [
            image(engine.broker_orders(broker_id, status, 1, 1000)) for status in STATUSES
        ]
    seen["types"] = sorted(
        {field_types(o) for o in engine.orders.values()}
        | {field_types(b) for b in engine.brokers.values()}
        | {field_types(h) for b in engine.brokers.values() for h in b.holdings.values()}
    )
    seen["internals"] = internals(engine)
    # The engine's own records are the ones it hands out.
    for order in engine.orders.values():
        assert engine.order(order.order_id) is order
    return seen


def internals(engine: Engine) -> Any:
    """The lazy-removal bookkeeping behind the books and the expiry index.

    Not visible to a reader, but the C core translates the Python methods one to one, so the
    dead slots, stale heap keys and deadline buckets must match too: a drift here is a memory or
    speed bug that no query shows until much later.
    """
    books = {}
    for symbol in engine.symbols:
        book = engine.book(symbol)
        books[symbol] = [
            [sorted(side._heap), [[lv.dead, len(lv.orders)] for lv in side._levels.values()]]
            for side in (book.bids, book.asks)
        ]
    expiry = engine._expiry
    buckets = [
        [deadline, len(getattr(bucket, "orders", ())), getattr(bucket, "live", 1)]
        for deadline, bucket in expiry._buckets.items()
    ]
    return [books, sorted(expiry._heap), buckets, expiry._live]


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class Canon:
    """Renames ids and timestamps by first appearance, for runs that cannot share them."""

    def __init__(self, first_ns: int, last_ns: int) -> None:
        self.first_ns, self.last_ns = first_ns, last_ns
        self.ids: dict[str, str] = {}
        self.stamps: dict[int, str] = {}

    def __call__(self, value: Any) -> Any:
        if type(value) is str:  # ids, also inside error messages
            return _UUID.sub(lambda m: self.ids.setdefault(m[0], f"id#{len(self.ids)}"), value)
        if type(value) is int and self.first_ns <= value <= self.last_ns:
            return self.stamps.setdefault(value, f"t#{len(self.stamps)}")
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value

    def time_order(self) -> list[str]:
        """The stamp names sorted by the real stamps: equal for two runs that kept time order."""
        return [name for _, name in sorted(self.stamps.items())]


# ---------------------------------------------------------------------- the twin
@dataclass
class Side:
    build: str
    sources: Sources
    engine: Engine
    issued: list[str] = field(default_factory=list)


class Twin:
    """A pure and a native engine run in lockstep; every step compares the two."""

    def __init__(
        self,
        make_sources: Callable[[], Sources],
        *,
        window: int = WINDOW,
        canon: tuple[int, int] | None = None,
        far_deadline: int | None = None,
        full_every: int = 1,
    ) -> None:
        self.window = window
        self.full_every = full_every  # compare whole states every this many steps (long runs)
        self.far_deadline = far_deadline  # wall clock: deadlines that never come due in a test
        self.sides = [self._side("python", make_sources()), self._side("native", make_sources())]
        self.canons = [Canon(*canon), Canon(*canon)] if canon is not None else None
        self.steps = 0
        self.kinds: dict[str, int] = {}  # outcome kinds seen, so tests can check their reach

    def _side(self, build: str, sources: Sources) -> Side:
        engine = make_engine(build, sources.clock, sources.ids, vwap_window_ns=self.window)
        return Side(build, sources, engine)

    @property
    def pure(self) -> Engine:
        return self.sides[0].engine

    @property
    def native(self) -> Engine:
        return self.sides[1].engine

    def run(self, commands: list[Command]) -> None:
        for command in commands:
            self.step(command)

    def step(self, command: Command) -> None:
        outcomes = []
        for side in self.sides:
            try:
                outcome = apply(side, command, window=self.window, far=self.far_deadline)
            except Exception as exc:  # any failure must be the same failure on both builds
                outcome = error_image(exc)
            outcomes.append(outcome)
        first = outcomes[0]
        kind = first[1] if isinstance(first, list) and first[:1] == ["raised"] else "ok"
        key = f"{type(command).__name__}:{kind}"
        self.kinds[key] = self.kinds.get(key, 0) + 1
        self._same(outcomes, "outcome", command)
        self.steps += 1
        if self.steps % self.full_every == 0:
            self.compare_states(command)

    def compare_states(self, command: Command | None = None) -> None:
        """Compare everything observable (done after every step unless ``full_every`` says)."""
        self._same([self._observe(side) for side in self.sides], "state", command)

    def _observe(self, side: Side) -> Any:
        seen = observe(side.engine)
        seen["counters"] = side.sources.counters()
        if side.sources.recorded is not None:
            times, ids = side.sources.recorded
            seen["recorded"] = [list(times), list(ids)]
            times.clear()
            ids.clear()
        return seen

    def _same(self, pictures: list[Any], what: str, command: Command | None) -> None:
        pure, native = pictures
        if self.canons is not None:
            pure, native = self.canons[0](pure), self.canons[1](native)
            assert self.canons[0].time_order() == self.canons[1].time_order(), (what, command)
        if pure != native:
            raise AssertionError(_difference(what, command, self.steps, pure, native))


def apply(side: Side, command: Command, *, window: int, far: int | None = None) -> Any:
    """Run one command on one side's engine; the image of its result (exceptions propagate).

    ``far``: on a wall clock, limit deadlines are this far-off instant (plus the command's
    ticks) or long past, so no test depends on how fast it runs.
    """
    engine, sources = side.engine, side.sources
    if isinstance(command, Register):
        holdings = [*command.holdings]
        return image(engine.register_broker(command.broker_id, command.cash, holdings))
    if isinstance(command, Submit):
        order, events = engine.submit(_request(sources, command, far))
        side.issued.append(order.order_id)
        return image((order, events))
    if isinstance(command, Cancel):
        order_id = UNKNOWN_ID
        if command.pick is not None and side.issued:
            order_id = side.issued[command.pick % len(side.issued)]
        return image(engine.cancel(order_id))
    if isinstance(command, Advance):
        if sources.control is not None:
            sources.control.set_ns(sources.control.time_ns() + command.ticks * TICK)
        return None
    if isinstance(command, Expire):
        return image(engine.expire_due())
    if isinstance(command, Mint):
        return sources.ids.new_id()
    if isinstance(command, Restore):
        data = msgspec.json.encode(engine.export_state())
        state = msgspec.json.decode(data, type=EngineState)
        side.engine = engine_from_state(
            side.build, state, sources.clock, sources.ids, vwap_window_ns=window
        )
        return None
    return image(_query(side, command))


def _query(side: Side, query: Query) -> Any:
    engine, args = side.engine, query.args
    if query.kind == "book":
        book = engine.book(args[0])
        return [book.symbol, book.bids, book.asks]
    if query.kind == "quote":
        return engine.quote(*args)
    if query.kind == "vwap":
        return engine.vwap(args[0])
    if query.kind == "page":
        return engine.broker_orders(*args)
    if query.kind == "broker":
        return engine.broker(args[0])
    if query.kind == "order":
        issued = side.issued
        return engine.order(issued[args[0] % len(issued)] if issued else UNKNOWN_ID)
    assert query.kind == "now", query.kind
    return engine.now()


def _request(sources: Sources, cmd: Submit, far: int | None) -> OrderRequest:
    expires_at = cmd.expires_at
    if expires_at is None and cmd.expires_in is not None:
        if far is not None:
            expires_at = far + cmd.expires_in if cmd.expires_in > 0 else T0
        else:
            expires_at = sources.clock.time_ns() + cmd.expires_in * TICK
    return OrderRequest(
        cmd.type,
        cmd.broker_id,
        cmd.document_number,
        cmd.side,
        cmd.symbol,
        cmd.quantity,
        cmd.price,
        expires_at,
    )


def wall_twin(make_sources: Callable[[], Sources]) -> Twin:
    """A twin on wall-clock or random-id sources: compared up to renaming ids and stamps."""
    span = 10**13  # about 2.8 hours: more than any stamp the test can take
    if make_sources().control is not None:  # a virtual clock, random ids
        return Twin(make_sources, window=10**15, canon=(T0, T0 + span))
    now = time.time_ns()
    return Twin(
        make_sources,
        window=10**15,  # no trade leaves the VWAP window while the test runs
        canon=(now - span, now + span),
        far_deadline=now + 10**15,  # limit orders never come due while the test runs
    )


def _difference(what: str, command: Command | None, step: int, pure: Any, native: Any) -> str:
    """A readable first difference between the builds' pictures."""
    path = ""
    while True:
        if isinstance(pure, dict) and isinstance(native, dict) and pure.keys() == native.keys():
            key = next(k for k in pure if pure[k] != native[k])
            path, pure, native = f"{path}[{key!r}]", pure[key], native[key]
        elif isinstance(pure, list) and isinstance(native, list) and len(pure) == len(native):
            index = next(i for i, (a, b) in enumerate(zip(pure, native, strict=True)) if a != b)
            path, pure, native = f"{path}[{index}]", pure[index], native[index]
        else:
            break
    return (
        f"builds differ in {what} after step {step} ({command!r}) at {path or 'top'}:\n"
        f"  python: {pure!r}\n  native: {native!r}"
    )


def random_commands(rng: random.Random, count: int, *, symbols: tuple[str, ...]) -> list[Command]:
    """A seeded mixed flow for long runs: mostly limits near one price, with everything else.

    Brokers b0 and b1 are registered first (rich); b2 may or may not be; b3 never is.
    """
    commands: list[Command] = [
        Register("b0", 10**7, tuple((s, 10**5) for s in symbols[:2])),
        Register("b1", 10**7, tuple((s, 10**5) for s in symbols[:2])),
    ]
    brokers = ("b0", "b1", "b0", "b1", "b2", "b3")
    while len(commands) < count:
        roll = rng.random()
        broker, symbol = rng.choice(brokers), rng.choice(symbols)
        side = rng.choice(("bid", "ask"))
        if roll < 0.5:
            deadline = rng.choice((*range(1, 40), -1, 0, None))
            price = rng.randrange(98, 104)
            commands.append(
                Submit("limit", broker, side, symbol, rng.randrange(1, 9), price, deadline)
            )
        elif roll < 0.6:
            commands.append(
                Submit("market", broker, side, symbol, rng.randrange(1, 15), None, None)
            )
        elif roll < 0.8:
            commands.append(Cancel(rng.choice((None, *range(200)))))
        elif roll < 0.85:
            commands.append(Advance(rng.choice((1, 2, 4, 8))))
        elif roll < 0.88:
            commands.append(Expire())
        elif roll < 0.89:
            commands.append(Register("b2", rng.randrange(0, 600), ((symbol, 50),)))
        else:
            kind = rng.choice(("book", "quote", "vwap", "page", "broker", "order", "now"))
            args: tuple[Any, ...] = {
                "book": (symbol,),
                "quote": (symbol, side, rng.choice((1, 7, 10**6))),
                "vwap": (symbol,),
                "page": (broker, rng.choice(STATUSES), rng.randrange(1, 4), rng.randrange(1, 20)),
                "broker": (broker,),
                "order": (rng.randrange(10**6),),
                "now": (),
            }[kind]
            commands.append(Query(kind, args))
    return commands
