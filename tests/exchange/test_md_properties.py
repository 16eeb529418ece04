"""Property: the published book diffs rebuild the engine's book exactly, after every command.

No network here (``test_md_stream.py`` does that): Hypothesis drives random flows of limit and
market orders, cancels and expiry sweeps through the real service and :class:`MarketData`, and a
sink standing in for a client applies every flushed message to a replica. The hub's frame cap is
set tiny (:data:`CAP`) so that flushes are split into several frames all the time: the sink checks
each frame's size and that the frames together carry exactly the flush's messages, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.core.timefmt import format_ns
from tradehall.exchange import requests as rq
from tradehall.exchange.errors import ExchangeError
from tradehall.exchange.marketdata import (
    Channel,
    Frames,
    Item,
    MarketData,
    PublishedBook,
    encoder,
)
from tradehall.exchange.marketdata_state import wire_size
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

T0 = 1_790_000_000 * 10**9
SYMBOL = "S"
Level = tuple[int, int, int]  # price in cents, total quantity, order count
CAP = 600  # bytes: a few messages per frame


class Sink:
    """A subscriber that records what the hub hands it."""

    def __init__(self) -> None:
        self.signature: frozenset[tuple[str, Channel]] = frozenset(
            {(SYMBOL, "book"), (SYMBOL, "trades")}
        )
        self.items: list[Item] = []

    def push_batch(self, batch: Frames, items: list[Item]) -> None:
        messages: list[Any] = []
        for frame in batch.frames:
            decoded = json.loads(frame)
            assert wire_size(frame) <= CAP or len(decoded) == 1  # only a lone message is larger
            messages.extend(decoded)
        assert messages == [json.loads(item.text) for item in items]
        assert batch.trades == sum(1 for m in messages if m["type"] == "trade")
        self.items.extend(items)


def _cents(price: Any) -> int:
    return int(Decimal(str(price)) * 100)


class Replica:
    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.seq: int = snapshot["sequence"]
        self.sides: dict[str, dict[int, tuple[int, int]]] = {"bids": {}, "asks": {}}
        self.apply(snapshot)
        self.trade_seq = 0

    def apply(self, msg: dict[str, Any]) -> None:
        for name, side in self.sides.items():
            for level in msg[name]:
                price = _cents(level["price"])
                if level["total_quantity"]:
                    side[price] = (level["total_quantity"], level["order_count"])
                else:
                    side.pop(price, None)

    def on(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "book":
            assert msg["first_sequence"] == msg["sequence"] == self.seq + 1
            self.apply(msg)
            self.seq = msg["sequence"]
        else:
            assert msg["type"] == "trade" and msg["sequence"] == self.trade_seq + 1
            self.trade_seq = msg["sequence"]

    def levels(self, name: str) -> list[Level]:
        side = self.sides[name]
        return [(p, q, c) for p, (q, c) in sorted(side.items(), reverse=name == "bids")]


brokers = st.sampled_from(["a", "b"])
sides = st.sampled_from(["bid", "ask"])
commands = st.one_of(
    st.tuples(
        st.just("limit"),
        brokers,
        sides,
        st.integers(1, 20),
        st.integers(9_990, 10_010),
        st.integers(1, 4),
    ),
    st.tuples(st.just("market"), brokers, sides, st.integers(1, 40)),
    st.tuples(st.just("cancel"), st.integers(0, 200)),
    st.tuples(st.just("tick"), st.integers(1, 3)),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(commands, max_size=60))
def test_flushed_diffs_rebuild_the_engine_book(flow: list[tuple[Any, ...]]) -> None:
    asyncio.run(_check(flow))


async def _check(flow: list[tuple[Any, ...]]) -> None:
    clock = VirtualClock(T0)
    service = ExchangeService(ExchangeSettings(), clock=clock, ids=SequentialIds())
    holdings = [{"symbol": SYMBOL, "quantity": 10_000}]
    for broker in ("a", "b"):
        body = {"broker_id": broker, "initial_cash": 1_000_000, "initial_holdings": holdings}
        service.register_broker(rq.parse_broker(body))
    hub = MarketData(service, max_frame_bytes=CAP)
    hub.start()
    sink = Sink()
    for channel in ("book", "trades"):
        hub.subscribe(sink, SYMBOL, channel)  # type: ignore[arg-type]
    replica = Replica(json.loads(encoder.encode(hub.book_snapshot(SYMBOL))))
    placed: list[str] = []
    for step in flow:
        with contextlib.suppress(ExchangeError):  # rejected: changes and publishes nothing
            _run(service, clock, step, placed)
        hub.flush()
        for item in sink.items:
            replica.on(json.loads(item.text))
        sink.items.clear()
        book = service.engine.book(SYMBOL)
        assert replica.levels("bids") == [
            (lv.price, lv.total, lv.count) for lv in book.bids.levels()
        ]
        assert replica.levels("asks") == [
            (lv.price, lv.total, lv.count) for lv in book.asks.levels()
        ]
        assert replica.seq == hub.book_sequence(SYMBOL) == hub.book_snapshot(SYMBOL).sequence
        assert replica.trade_seq == service.engine.trade_count
    hub.stop()


def _run(
    service: ExchangeService, clock: VirtualClock, step: tuple[Any, ...], placed: list[str]
) -> None:
    kind = step[0]
    if kind == "limit":
        _, broker, side, qty, cents, ttl = step
        order = service.submit(
            rq.parse_order(
                {
                    "type": "limit",
                    "broker_id": broker,
                    "document_number": "1",
                    "side": side,
                    "symbol": SYMBOL,
                    "quantity": qty,
                    "price": Decimal(cents) / 100,
                    "expires_at": format_ns(clock.time_ns() + ttl * 10**9),
                }
            )
        )
        placed.append(order.order_id)
    elif kind == "market":
        _, broker, side, qty = step
        service.submit(
            rq.parse_order(
                {
                    "type": "market",
                    "broker_id": broker,
                    "document_number": "1",
                    "side": side,
                    "symbol": SYMBOL,
                    "quantity": qty,
                }
            )
        )
    elif kind == "cancel":
        if placed:
            service.cancel(placed[step[1] % len(placed)])
    else:
        clock.set_ns(clock.time_ns() + step[1] * 10**9)
        service.expire_due()


# Long enough that levels come and go many times, so stale heap keys pile up and get rebuilt.
level_changes = st.lists(
    st.tuples(st.booleans(), st.integers(1, 12), st.integers(0, 3), st.integers(1, 2)), max_size=400
)


@settings(max_examples=200, deadline=None)
@given(level_changes)
def test_published_sides_keep_every_level_and_the_best(
    changes: list[tuple[bool, int, int, int]],
) -> None:
    """Against a plain dict per side: same levels best first, and the cached best is the top."""
    book = PublishedBook()
    model: dict[bool, dict[int, tuple[int, int]]] = {True: {}, False: {}}
    for is_bid, price, total, count in changes:
        book.apply([(is_bid, price, total, total and count)])
        if total:
            model[is_bid][price] = (total, count)
        else:
            model[is_bid].pop(price, None)
        for side_is_bid, side in ((True, book.bids), (False, book.asks)):
            expected = sorted(model[side_is_bid].items(), reverse=side_is_bid)
            assert side.sorted_levels() == expected
            assert book.best(side_is_bid) == (
                (expected[0][0], expected[0][1][0]) if expected else None
            )
