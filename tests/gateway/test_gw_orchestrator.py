"""Merged subscriptions (pure): windows by count and age, consolidated books with per-venue
breakdown, NBBO, partial windows suppressed (SC-010), late fragments, thresholds (SC-009)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradehall.gateway.book import OrderBook
from tradehall.gateway.events import (
    NBBO,
    BookSnapshot,
    BookStatus,
    BookUpdate,
    Event,
    Level,
    MergedBookSnapshot,
    decode,
    encode,
)
from tradehall.gateway.orchestrator import Orchestrator

D = Decimal


def snap(provider: str, bids: list[Level], asks: list[Level], ts: int = 0) -> BookSnapshot:
    return BookSnapshot(
        event_id="s",
        provider=provider,
        symbol="BTC-USD",
        ts_ingest=ts,
        bids=tuple(bids),
        asks=tuple(asks),
        depth=10,
        epoch=1,
    )


def upd(provider: str, bids: list[Level], asks: list[Level] = [], ts: int = 0) -> BookUpdate:  # noqa: B006
    return BookUpdate(
        event_id="u",
        provider=provider,
        symbol="BTC-USD",
        ts_ingest=ts,
        bids=tuple(bids),
        asks=tuple(asks),
        epoch=1,
    )


def status(provider: str, state: str) -> BookStatus:
    return BookStatus(
        event_id="b", provider=provider, symbol="BTC-USD", ts_ingest=0, state=state, epoch=2
    )


def test_a_full_window_emits_a_consolidated_book_and_nbbo() -> None:
    o = Orchestrator(max_events=3, max_age=10.0)
    o.merge("BTC-USD", ["kraken", "binance"])
    assert o.on_event(snap("binance", [(D(100), D(1)), (D(99), D(2))], [(D(101), D(1))]), 0.0) == []
    assert o.on_event(snap("kraken", [(D(100), D("0.5"))], [(D("100.5"), D(3))]), 0.1) == []
    out = o.on_event(upd("binance", [(D(99), D(0))]), 0.2)  # the 3rd fragment closes it
    merged, nbbo = out
    assert isinstance(merged, MergedBookSnapshot) and isinstance(nbbo, NBBO)
    assert merged.merge_id == nbbo.merge_id == "BTC-USD:1"
    assert merged.provider == "merged" and merged.providers == ("binance", "kraken")
    assert merged.bids == ((D(100), D("1.5"), (("binance", D(1)), ("kraken", D("0.5")))),)
    assert merged.asks == (
        (D("100.5"), D(3), (("kraken", D(3)),)),
        (D(101), D(1), (("binance", D(1)),)),
    )
    assert merged.window_events == 3
    assert (nbbo.bid, nbbo.bid_qty, nbbo.bid_providers) == (D(100), D("1.5"), ("binance", "kraken"))
    assert (nbbo.ask, nbbo.ask_qty, nbbo.ask_providers) == (D("100.5"), D(3), ("kraken",))
    assert o.subscriptions["BTC-USD"].stats.closed_by_count == 1
    assert decode(encode(merged)) == merged and decode(encode(nbbo)) == nbbo


def test_windows_close_on_age_partial_ones_are_suppressed_and_late_fragments_counted() -> None:
    o = Orchestrator(max_events=1000, max_age=10.0)
    sub = o.merge("BTC-USD", ["binance", "kraken"])
    o.on_event(snap("binance", [(D(100), D(1))], [(D(101), D(1))], ts=1), 0.0)
    assert o.tick(9.99, 2) == []
    assert o.tick(10.0, 3) == []  # kraken never contributed: partial
    assert sub.stats.suppressed_partial == 1 and sub.stats.closed_by_age == 1
    o.on_event(upd("binance", [(D(100), D(2))], ts=2), 10.5)  # produced before the close
    assert sub.stats.late == 1
    assert sub.books["binance"].best_bid() == (D(100), D(2))  # the book stays exact
    o.on_event(snap("kraken", [(D(99), D(1))], [(D(102), D(1))], ts=5), 11.0)
    o.on_event(upd("binance", [(D("100.5"), D(1))], ts=6), 12.0)
    out = o.tick(21.0, 7)
    assert [type(e) for e in out] == [MergedBookSnapshot, NBBO]
    assert isinstance(out[1], NBBO) and out[1].bid == D("100.5") and out[1].merge_id.endswith(":2")
    # a provider resyncing makes the window partial even if it sent fragments
    o.on_event(upd("kraken", [(D(98), D(1))], ts=8), 22.0)
    o.on_event(upd("binance", [(D(97), D(1))], ts=9), 22.0)
    o.on_event(status("kraken", "RESYNCING"), 22.5)
    assert o.tick(32.0, 10) == []
    assert sub.stats.suppressed_partial == 2 and sub.stats.emitted == 1


def test_merge_needs_two_providers_and_is_fixed_per_symbol() -> None:
    o = Orchestrator()
    with pytest.raises(ValueError):
        o.merge("BTC-USD", ["kraken"])
    o.merge("BTC-USD", ["kraken", "binance"])
    assert o.merge("BTC-USD", ["binance", "kraken"]) is o.subscriptions["BTC-USD"]
    with pytest.raises(ValueError):
        o.merge("BTC-USD", ["kraken", "coinbase"])
    assert o.on_event(snap("coinbase", [], []), 0.0) == []  # not part of the merge


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), max_events=st.sampled_from([5, 20, 100]))
def test_sc009_sc010_thresholds_held_and_no_partial_emission(seed: int, max_events: int) -> None:
    rng = random.Random(seed)
    providers = ("binance", "coinbase", "kraken")
    o = Orchestrator(max_events=max_events, max_age=1.0)
    sub = o.merge("BTC-USD", providers)
    truth = {p: OrderBook() for p in providers}
    live: set[str] = set()
    emitted: list[Event] = []
    now, tick_every = 0.0, 0.05
    next_tick = tick_every
    for ts in range(1, 2001):
        now += rng.choice([0.0005, 0.002, 0.02])
        while next_tick <= now:
            emitted += o.tick(next_tick, ts)
            next_tick += tick_every
        provider = rng.choice(providers[: rng.choice([2, 3, 3, 3])])  # coinbase sometimes absent
        roll = rng.random()
        if provider not in live or roll < 0.02:
            bids = [(D(100 - i), D(rng.randint(1, 5))) for i in range(3)]
            asks = [(D(101 + i), D(rng.randint(1, 5))) for i in range(3)]
            truth[provider].load(bids, asks)
            live.add(provider)
            event: Event = snap(provider, bids, asks, ts)
        elif roll < 0.03:
            truth[provider].clear()
            live.discard(provider)
            event = status(provider, "RESYNCING")
        else:
            change = [(D(100 - rng.randint(0, 4)), D(rng.randint(0, 3)))]
            truth[provider].apply(change, [])
            event = upd(provider, change, ts=ts)
        for out in o.on_event(event, now):
            emitted.append(out)
            if isinstance(out, MergedBookSnapshot):
                # SC-010: only complete windows, and they equal the venues' books
                assert out.providers == providers and live == set(providers)
                expected: dict[Decimal, Decimal] = {}
                for p in providers:
                    for price, qty in truth[p].top_bids():
                        expected[price] = expected.get(price, D(0)) + qty
                assert {price: qty for price, qty, _ in out.bids} == expected
                assert out.window_events <= max_events  # SC-009: never past the count
    stats = sub.stats
    closes = stats.closed_by_count + stats.closed_by_age
    assert closes == stats.emitted + stats.suppressed_partial
    merged = [e for e in emitted if isinstance(e, MergedBookSnapshot)]
    assert len(merged) == stats.emitted > 0
    assert sum(isinstance(e, NBBO) for e in emitted) == stats.emitted
    # SC-009: windows closed by age closed within one tick (50 ms, 5 %) of max_age (1 s)
    assert stats.max_overrun <= tick_every + 1e-9
