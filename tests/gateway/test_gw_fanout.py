"""Fan-out (pure): routing, coalescing, trade overflow, the lossless ExecReport lane (SC-003),
token buckets and the fair delivery round (SC-004)."""

from __future__ import annotations

from decimal import Decimal

from dispatch_helpers import exec_report, lv, snapshot, ticker, trade, update

from tradehall.gateway.book import OrderBook
from tradehall.gateway.events import BookSnapshot, BookUpdate, Event, ExecReport, Ticker, Trade
from tradehall.gateway.fanout import ConsumerQueue, Fanout, TokenBucket, merge_book


def _drain(queue: ConsumerQueue, now: float = 0.0) -> list[Event]:
    out: list[Event] = []
    while (event := queue.pop(now)) is not None:
        out.append(event)
    return out


def test_routing_table_with_wildcards_types_and_unsubscribe() -> None:
    f = Fanout()
    for name in ("all", "btc", "kraken_eth", "trades"):
        f.add_consumer(name)
    f.subscribe("all")
    f.subscribe("btc", symbol="BTC-USD")
    f.subscribe("kraken_eth", provider="kraken", symbol="ETH-USD")
    f.subscribe("trades", event_types=["trade"])
    assert f.route(trade(1)) == {"all", "btc", "trades"}
    assert f.route(ticker(1, symbol="ETH-USD", provider="kraken")) == {"all", "kraken_eth"}
    assert f.route(ticker(1, symbol="ETH-USD")) == {"all"}
    assert f.unsubscribe("btc", symbol="BTC-USD") == 1
    assert f.route(trade(1)) == {"all", "trades"}
    f.remove_consumer("all")
    assert f.route(trade(2)) == {"trades"}
    assert set(f.publish(trade(3))) == {"trades"}


def test_exec_reports_go_to_their_owner_only_and_unowned_ones_are_dead_lettered() -> None:
    f = Fanout()
    a, b = f.add_consumer("a"), f.add_consumer("b")
    f.subscribe("a")
    f.subscribe("b")
    assert list(f.publish(exec_report(1), owner="b")) == ["b"]
    assert len(a) == 0 and isinstance(b.pop(0.0), ExecReport)
    assert list(f.publish(exec_report(2), owner="ghost")) == []
    assert f.unroutable_exec == 1
    assert [d.reason for d in f.dead_letters] == ["no_owner"]


def test_a_lagging_consumer_gets_the_latest_ticker_per_stream_a_fast_one_gets_all() -> None:
    f = Fanout()
    fast, slow = f.add_consumer("fast"), f.add_consumer("slow")
    f.subscribe("fast")
    f.subscribe("slow")
    got: list[Event] = []
    for i in range(100):
        f.publish(ticker(i, bid=str(100 + i)))
        f.publish(ticker(i, bid=str(200 + i), symbol="ETH-USD"))
        got += _drain(fast)
    assert len(got) == 200
    pending = _drain(slow)
    assert [(e.symbol, e.bid) for e in pending if isinstance(e, Ticker)] == [
        ("BTC-USD", Decimal(199)),
        ("ETH-USD", Decimal(299)),
    ]
    assert slow.stats.coalesced == 198 and fast.stats.coalesced == 0


def test_trades_are_never_coalesced_overflow_is_counted_and_dead_lettered() -> None:
    f = Fanout()
    q = f.add_consumer("q", capacity=10)
    f.subscribe("q")
    for seq in range(1, 16):
        f.publish(trade(seq))
    f.publish(ticker(1))  # coalescible entries do not count against the trade bound
    out = _drain(q)
    assert [e.seq_provider for e in out if isinstance(e, Trade)] == list(range(1, 11))
    assert sum(isinstance(e, Ticker) for e in out) == 1
    assert q.stats.overflow == 5 and q.stats.coalesced == 0
    dead = list(f.dead_letters)
    assert [(d.consumer, d.reason, d.event.seq_provider) for d in dead] == [
        ("q", "overflow", s) for s in range(11, 16)
    ]


def _apply(book: OrderBook, events: list[Event]) -> None:
    for event in events:
        if isinstance(event, BookSnapshot):
            book.load(event.bids, event.asks)
        elif isinstance(event, BookUpdate):
            book.apply(event.bids, event.asks)


def test_book_events_merge_so_a_lagging_consumer_keeps_a_correct_book() -> None:
    f = Fanout()
    fast, slow = f.add_consumer("fast"), f.add_consumer("slow")
    f.subscribe("fast")
    f.subscribe("slow")
    events: list[Event] = [
        snapshot(10, (lv("99", "1"), lv("98", "2")), (lv("101", "1"),)),
        update(11, 11, (lv("99", "0"),), (lv("102", "4"),)),
        update(12, 13, (lv("97", "5"),), (lv("101", "3"),)),
        update(14, 14, (), (lv("102", "0"),)),
    ]
    fast_book, slow_book = OrderBook(), OrderBook()
    for event in events:
        f.publish(event)
        _apply(fast_book, _drain(fast))
    merged = _drain(slow)
    assert len(merged) == 1 and isinstance(merged[0], BookSnapshot)  # snapshot + 3 diffs
    assert merged[0].seq_provider == 14
    _apply(slow_book, merged)
    assert slow_book.as_dicts() == fast_book.as_dicts()
    assert slow_book.as_dicts() == (
        {Decimal(98): Decimal(2), Decimal(97): Decimal(5)},
        {Decimal(101): Decimal(3)},
    )
    # diffs only: they merge into one diff spanning seq_first..seq
    for event in events[1:]:
        f.publish(event)
    diffs = _drain(slow)
    assert len(diffs) == 1 and isinstance(diffs[0], BookUpdate)
    assert (diffs[0].seq_first, diffs[0].seq_provider) == (11, 14)
    # a new epoch's snapshot replaces whatever is pending
    f.publish(update(15, 15, (lv("90", "1"),)))
    f.publish(snapshot(500, (lv("50", "1"),), epoch=2))
    only = _drain(slow)
    assert len(only) == 1 and isinstance(only[0], BookSnapshot) and only[0].epoch == 2
    assert merge_book(snapshot(1, epoch=1), update(2, 2, epoch=2)) is None


def test_sc003_every_exec_report_is_delivered_in_order_under_overload() -> None:
    f = Fanout()
    q = f.add_consumer("owner", capacity=50, rate=100.0, burst=10.0)
    f.subscribe("owner")
    for i in range(20_000):
        f.publish(trade(i))
        f.publish(ticker(i))
        if i % 20 == 0:
            f.publish(exec_report(i), owner="owner")
    delivered: list[Event] = []
    now = 0.0
    for _ in range(3000):  # a consumer far slower than the feed, and out of tokens
        now += 0.001
        event = q.pop(now)
        if event is not None:
            delivered.append(event)
    reports = [e.client_order_id for e in delivered if isinstance(e, ExecReport)]
    assert reports == [f"c{i}" for i in range(0, 20_000, 20)]  # 100 %, in order
    assert q.stats.overflow == 20_000 - 50  # trades beyond the bound went to the dead letters
    assert f.dead_letters.total == 20_000 - 50
    assert len(f.dead_letters) == 10_000  # the dead-letter queue itself is bounded
    assert not any(d.event.event_type == "exec_report" for d in f.dead_letters)


def test_token_bucket_paces_market_data_and_accounts_throttled_time() -> None:
    bucket = TokenBucket(rate=10.0, burst=2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert not bucket.take(0.05)
    assert bucket.take(0.1)  # one token per 100 ms
    assert abs(bucket.throttled - 0.1) < 1e-9
    f = Fanout()
    q = f.add_consumer("paced", rate=100.0, burst=1.0)
    f.subscribe("paced")
    for seq in range(1, 1001):
        f.publish(trade(seq, provider="coinbase"))
    per_second = sum(q.pop(t / 1000) is not None for t in range(1000))
    assert 99 <= per_second <= 101


def test_sc004_fair_share_with_three_fast_consumers_and_one_slow() -> None:
    """A dispatcher budget below total demand is shared equally; the slow consumer costs the
    others nothing and still gets every ExecReport and its market data coalesced."""
    f = Fanout()
    names = ("a", "b", "c", "slow")
    for name in names:
        f.add_consumer(name, capacity=10_000)
        f.subscribe(name)
    delivered = dict.fromkeys(names, 0)
    slow_got: list[Event] = []
    per_round, rounds = 100, 200
    for r in range(rounds):
        for i in range(per_round):
            seq = r * per_round + i
            f.publish(trade(seq, provider="coinbase"))
            if i % 20 == 0:
                f.publish(ticker(seq, provider="coinbase", symbol=f"S{i}"))
        f.publish(exec_report(r), owner="slow")
        credit = {"a": 10_000, "b": 10_000, "c": 10_000, "slow": 2}  # slow takes 2 per round
        # the budget covers half the demand of the four consumers
        for name, event in f.deliver(2 * (per_round + 5), now=float(r), credit=credit):
            delivered[name] += 1
            if name == "slow":
                slow_got.append(event)
    subscribed = per_round + 5  # trades + tickers routed per consumer per round
    for name in ("a", "b", "c"):
        share = delivered[name] / (rounds * subscribed)
        assert share >= 0.25, (name, share)
        assert share > 0.6  # the slow consumer's unused share goes to the others
    assert max(delivered[n] for n in "abc") - min(delivered[n] for n in "abc") <= rounds
    reports = [e for e in slow_got if isinstance(e, ExecReport)]
    assert len(reports) == rounds  # every ExecReport, first in line
    slow = f.queues["slow"]
    assert slow.stats.coalesced > 0 and slow.stats.exec_delivered == rounds
