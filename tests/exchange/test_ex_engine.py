"""Engine rules, one contract clause at a time (contract §§2.4, 3, 4); on both engine builds."""

from __future__ import annotations

import pytest
from engine_builds import BUILDS, make_engine

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange import errors
from tradehall.exchange.engine import Engine, OrderRequest
from tradehall.exchange.events import OrderClosed, OrderFilled, TradeExecuted

S = 10**9
T0 = 1_790_000_000 * S
LATER = T0 + 3600 * S


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture(params=BUILDS)
def build(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(clock: VirtualClock, build: str) -> Engine:
    eng = make_engine(build, clock, SequentialIds(), vwap_window_ns=300 * S)
    eng.register_broker("buyer", 1_000_000_00, [])
    eng.register_broker("seller", 0, [("AAPL", 10_000)])
    return eng


def limit(broker: str, side: str, qty: int, price: int, expires: int = LATER) -> OrderRequest:
    return OrderRequest("limit", broker, "doc1", side, "AAPL", qty, price, expires)


def market(broker: str, side: str, qty: int) -> OrderRequest:
    return OrderRequest("market", broker, "doc1", side, "AAPL", qty)


def test_limit_vs_limit_trades_at_the_resting_ask(engine: Engine) -> None:
    engine.submit(limit("seller", "ask", 10, 1000))
    order, _ = engine.submit(limit("buyer", "bid", 10, 1200))
    assert order.status == "filled"
    assert [t.price for t in order.trades] == [1000]


def test_incoming_ask_trades_at_its_own_price_and_refunds_the_improvement(engine: Engine) -> None:
    bid, _ = engine.submit(limit("buyer", "bid", 10, 2000))
    buyer = engine.broker("buyer")
    assert buyer.reserved_cash == 20_000
    ask, _ = engine.submit(limit("seller", "ask", 10, 1000))
    assert [t.price for t in ask.trades] == [1000]
    assert bid.status == "filled"
    assert buyer.reserved_cash == 0
    assert buyer.cash == 1_000_000_00 - 10_000  # paid 10.00 x 10, not 20.00 x 10
    assert engine.broker("seller").cash == 10_000


def test_price_time_priority_within_and_across_levels(engine: Engine, clock: VirtualClock) -> None:
    first, _ = engine.submit(limit("seller", "ask", 5, 1000))
    clock.set_ns(T0 + S)
    second, _ = engine.submit(limit("seller", "ask", 5, 1000))
    better, _ = engine.submit(limit("seller", "ask", 5, 990))
    order, _ = engine.submit(limit("buyer", "bid", 12, 1000))
    assert [t.sell_order_id for t in order.trades] == [
        better.order_id,
        first.order_id,
        second.order_id,
    ]
    assert [t.quantity for t in order.trades] == [5, 5, 2]
    assert second.status == "partially_filled"
    assert second.remaining == 3


def test_same_instant_orders_still_get_distinct_increasing_timestamps(engine: Engine) -> None:
    a, _ = engine.submit(limit("seller", "ask", 1, 1000))
    b, _ = engine.submit(limit("seller", "ask", 1, 1000))
    assert a.created_at < b.created_at


def test_market_sweep_example_from_the_contract(engine: Engine) -> None:
    for qty, price in ((100, 1000), (200, 1100), (50, 1200)):
        engine.submit(limit("seller", "ask", qty, price))
    order, events = engine.submit(market("buyer", "bid", 250))
    assert order.status == "filled"
    assert [(t.price, t.quantity) for t in order.trades] == [(1000, 100), (1100, 150)]
    assert order.average_price == 1060
    asks = [(lv.price, lv.total) for lv in engine.book("AAPL").asks.levels()]
    assert asks == [(1100, 50), (1200, 50)]
    assert len([e for e in events if isinstance(e, TradeExecuted)]) == 2


def test_market_leftover_is_cancelled_without_cancelled_at(engine: Engine) -> None:
    for qty, price in ((100, 1000), (200, 1100), (50, 1200)):
        engine.submit(limit("seller", "ask", qty, price))
    order, events = engine.submit(market("buyer", "bid", 400))
    assert (order.status, order.filled, order.cancelled_quantity, order.remaining) == (
        "cancelled",
        350,
        50,
        0,
    )
    assert order.cancelled_at is None
    assert order.average_price == 1085  # 380000 / 350 truncated, not 10.86
    assert not [e for e in events if isinstance(e, OrderClosed)]


def test_average_price_truncates(engine: Engine) -> None:
    engine.submit(limit("seller", "ask", 700, 14800))
    engine.submit(limit("seller", "ask", 300, 14900))
    order, _ = engine.submit(limit("buyer", "bid", 1000, 15000))
    assert order.average_price == 14830


def test_no_liquidity_creates_nothing_but_lists_the_symbol(engine: Engine) -> None:
    before = len(engine.orders)
    with pytest.raises(errors.NoLiquidity):
        engine.submit(OrderRequest("market", "buyer", "d", "bid", "NEWSYM", 5))
    assert len(engine.orders) == before
    assert engine.has_symbol("NEWSYM")


def test_balance_is_checked_before_liquidity(engine: Engine) -> None:
    with pytest.raises(errors.InsufficientHoldings):
        engine.submit(OrderRequest("market", "buyer", "d", "ask", "EMPTY", 5))


def test_market_bid_cash_check_uses_simulated_sweep(engine: Engine) -> None:
    engine.register_broker("poor", 10_000, [])
    engine.submit(limit("seller", "ask", 100, 1000))
    with pytest.raises(errors.InsufficientBalance):
        engine.submit(market("poor", "bid", 101))  # 1000.00 of liquidity costs > 100.00
    order, _ = engine.submit(market("poor", "bid", 10))  # 10 x 10.00 = 100.00 exactly
    assert order.status == "filled"
    assert engine.broker("poor").cash == 0


def test_checks_use_available_amounts(engine: Engine) -> None:
    engine.register_broker("small", 10_000, [("AAPL", 10)])
    engine.submit(OrderRequest("limit", "small", "d", "bid", "AAPL", 10, 1000, LATER))
    with pytest.raises(errors.InsufficientBalance):
        engine.submit(OrderRequest("limit", "small", "d", "bid", "AAPL", 1, 1, LATER))
    engine.submit(OrderRequest("limit", "small", "d", "ask", "AAPL", 10, 5000, LATER))
    with pytest.raises(errors.InsufficientHoldings):
        engine.submit(OrderRequest("limit", "small", "d", "ask", "AAPL", 1, 5000, LATER))


@pytest.mark.parametrize(
    ("cash", "held"),
    [(10_000, 0), (2**63 + 10_000, 2**63), (2**64, 2**64 - 10_000)],
    ids=["cents", "past-int64", "far-past-int64"],
)
def test_funds_and_holdings_checks_are_exact_at_the_boundary(
    engine: Engine, cash: int, held: int
) -> None:
    """Available = total - reserved, compared with exactly what the order needs, at any size."""
    engine.register_broker("edge", cash, [("AAPL", held + 7)])
    if held:
        engine.submit(limit("edge", "ask", held, 5000))  # reserve all but 7 shares
    with pytest.raises(errors.InsufficientHoldings):
        engine.submit(limit("edge", "ask", 8, 5000))
    engine.submit(limit("edge", "ask", 7, 5000))  # exactly what is left

    def bid(quantity: int, price: int) -> OrderRequest:  # another symbol: never crosses the asks
        return OrderRequest("limit", "edge", "doc1", "bid", "MSFT", quantity, price, LATER)

    engine.submit(bid(1, cash - 10_000))  # reserve all but 100.00
    with pytest.raises(errors.InsufficientBalance):
        engine.submit(bid(10, 1001))  # 100.10
    engine.submit(bid(10, 1000))  # 100.00 exactly
    broker = engine.broker("edge")
    assert broker.cash - broker.reserved_cash == 0
    assert broker.holdings["AAPL"].reserved == broker.holdings["AAPL"].quantity


def test_rejections_change_nothing(engine: Engine) -> None:
    buyer = engine.broker("buyer")
    snapshot = (buyer.cash, buyer.reserved_cash, buyer.updated_at, len(engine.orders))
    for request, error in (
        (limit("buyer", "bid", 10**9, 100_000), errors.InsufficientBalance),
        (limit("ghost", "bid", 1, 100), errors.BrokerNotFound),
        (limit("buyer", "bid", 1, 100, expires=T0), errors.ValidationError),
    ):
        with pytest.raises(error):
            engine.submit(request)
    assert (buyer.cash, buyer.reserved_cash, buyer.updated_at, len(engine.orders)) == snapshot


def test_expires_at_must_be_strictly_in_the_future(engine: Engine, clock: VirtualClock) -> None:
    with pytest.raises(errors.ValidationError, match="expires_at must be a future timestamp"):
        engine.submit(limit("buyer", "bid", 1, 100, expires=clock.time_ns()))


def test_cancel_releases_reservation_and_keeps_trades(engine: Engine) -> None:
    bid, _ = engine.submit(limit("buyer", "bid", 10, 1000))
    engine.submit(limit("seller", "ask", 4, 1000))
    order, events = engine.cancel(bid.order_id)
    assert (order.status, order.filled, order.cancelled_quantity, order.remaining) == (
        "cancelled",
        4,
        6,
        0,
    )
    assert order.cancelled_at is not None
    assert len(order.trades) == 1
    assert engine.broker("buyer").reserved_cash == 0
    assert engine.book("AAPL").bids.best() is None
    assert isinstance(events[0], OrderClosed)
    assert events[0].event == "order.cancelled"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("filled", "is already filled and cannot be cancelled"),
        ("cancelled", "is already cancelled"),
        ("expired", "is already expired and cannot be cancelled"),
    ],
)
def test_cancel_terminal_orders(
    engine: Engine, clock: VirtualClock, setup: str, message: str
) -> None:
    order, _ = engine.submit(limit("seller", "ask", 5, 1000, expires=T0 + S))
    if setup == "filled":
        engine.submit(limit("buyer", "bid", 5, 1000))
    elif setup == "cancelled":
        engine.cancel(order.order_id)
    else:
        clock.set_ns(T0 + 2 * S)
        engine.expire_due()
    with pytest.raises(errors.OrderNotCancellable, match=message):
        engine.cancel(order.order_id)


def test_market_orders_are_never_cancellable(engine: Engine) -> None:
    engine.submit(limit("seller", "ask", 5, 1000))
    order, _ = engine.submit(market("buyer", "bid", 5))
    with pytest.raises(errors.OrderNotCancellable):
        engine.cancel(order.order_id)


def test_expiry_uses_the_deadline_and_stops_at_the_first_live_order(
    engine: Engine, clock: VirtualClock
) -> None:
    soon, _ = engine.submit(limit("seller", "ask", 5, 1000, expires=T0 + 2 * S))
    sooner, _ = engine.submit(limit("seller", "ask", 5, 1100, expires=T0 + S))
    late, _ = engine.submit(limit("seller", "ask", 5, 1200, expires=T0 + 10 * S))
    clock.set_ns(T0 + 3 * S)
    events = engine.expire_due()
    assert [e.order_id for e in events if isinstance(e, OrderClosed)] == [
        sooner.order_id,
        soon.order_id,
    ]
    assert soon.expired_at == soon.expires_at
    assert soon.cancelled_at is None
    assert late.status == "pending"
    assert engine.broker("seller").holdings["AAPL"].reserved == 5
    assert engine.resting_orders == 1


def test_filled_orders_leave_the_expiry_index(engine: Engine, clock: VirtualClock) -> None:
    ask, _ = engine.submit(limit("seller", "ask", 5, 1000, expires=T0 + S))
    engine.submit(limit("buyer", "bid", 5, 1000))
    assert engine.resting_orders == 0
    clock.set_ns(T0 + 5 * S)
    assert engine.expire_due() == []
    assert ask.status == "filled"


def test_fill_events_carry_the_state_after_each_trade(engine: Engine) -> None:
    engine.submit(limit("seller", "ask", 3, 1000))
    engine.submit(limit("seller", "ask", 3, 1000))
    bid, events = engine.submit(limit("buyer", "bid", 10, 1000))
    buyer_fills = [e for e in events if isinstance(e, OrderFilled) and e.order_id == bid.order_id]
    assert [
        (e.order_status, e.order_filled_quantity, e.order_remaining_quantity) for e in buyer_fills
    ] == [
        ("partially_filled", 3, 7),
        ("partially_filled", 6, 4),
    ]
    seller_fills = [e for e in events if isinstance(e, OrderFilled) and e.broker_id == "seller"]
    assert [e.order_status for e in seller_fills] == ["filled", "filled"]


def test_vwap_window_fallback_and_counts(engine: Engine, clock: VirtualClock) -> None:
    assert engine.vwap("AAPL").current_price is None
    engine.submit(limit("seller", "ask", 10, 1000))
    engine.submit(limit("seller", "ask", 30, 2000))
    engine.submit(limit("buyer", "bid", 40, 2000))
    figures = engine.vwap("AAPL")
    assert (figures.current_price, figures.trades_in_window) == (1750, 2)
    clock.set_ns(T0 + 300 * S)  # window is inclusive: executed_at >= now - 5m
    assert engine.vwap("AAPL").trades_in_window == 2
    clock.set_ns(T0 + 301 * S)
    figures = engine.vwap("AAPL")
    assert (figures.current_price, figures.trades_in_window) == (2000, 0)
    assert figures.last_trade_at is not None


def test_broker_listing_is_newest_first_with_filters_and_pages(engine: Engine) -> None:
    ids = [engine.submit(limit("buyer", "bid", 1, 100 + i))[0].order_id for i in range(5)]
    engine.cancel(ids[1])
    page, total = engine.broker_orders("buyer", None, 1, 2)
    assert total == 5
    assert [o.order_id for o in page] == [ids[4], ids[3]]
    page, total = engine.broker_orders("buyer", None, 3, 2)
    assert [o.order_id for o in page] == [ids[0]]
    assert engine.broker_orders("buyer", None, 4, 2) == ([], 5)
    pending, total = engine.broker_orders("buyer", "pending", 1, 10)
    assert total == 4
    assert ids[1] not in [o.order_id for o in pending]
    cancelled, total = engine.broker_orders("buyer", "cancelled", 1, 10)
    assert [o.order_id for o in cancelled] == [ids[1]]


def test_quote_walks_levels_and_truncates(engine: Engine) -> None:
    engine.submit(limit("seller", "ask", 1, 1000))
    engine.submit(limit("seller", "ask", 2, 1001))
    quote = engine.quote("AAPL", "bid", 5)
    assert quote.quantity_available == 3
    assert quote.levels == [(1000, 1), (1001, 2)]
    assert quote.total == 3002
    with pytest.raises(errors.SymbolNotFound):
        engine.quote("ZZZ", "bid", 1)


def test_self_trade_keeps_every_balance_consistent(engine: Engine) -> None:
    engine.register_broker("both", 100_000, [("AAPL", 10)])
    engine.submit(OrderRequest("limit", "both", "d", "ask", "AAPL", 10, 1000, LATER))
    order, _ = engine.submit(OrderRequest("limit", "both", "d", "bid", "AAPL", 10, 1200, LATER))
    broker = engine.broker("both")
    assert order.status == "filled"
    assert (broker.cash, broker.reserved_cash) == (100_000, 0)
    assert (broker.holdings["AAPL"].quantity, broker.holdings["AAPL"].reserved) == (10, 0)


def test_duplicate_broker_is_refused(engine: Engine) -> None:
    with pytest.raises(errors.BrokerAlreadyExists, match="Broker buyer is already registered"):
        engine.register_broker("buyer", 0, [])


def test_vwap_keeps_a_trade_on_the_window_edge_despite_nudged_stamps(
    clock: VirtualClock, build: str
) -> None:
    # Several commands at one clock reading get stamps a few ns apart; a trade exactly one window
    # older than the clock must still count (the window is inclusive).
    engine = make_engine(build, clock, SequentialIds(), vwap_window_ns=2 * S)
    engine.register_broker("a", 10**6, [("AAPL", 10)])
    engine.submit(limit("a", "bid", 1, 100))
    engine.submit(limit("a", "ask", 1, 100))  # trade 1 at T0 (+ nudge)
    clock.set_ns(T0 + 2 * S)
    for _ in range(3):
        engine.submit(limit("a", "bid", 1, 100))
    engine.submit(limit("a", "ask", 1, 100))  # trade 2 at T0 + 2 s (+ a larger nudge)
    assert engine.vwap("AAPL").trades_in_window == 2


def test_a_clock_stepping_back_never_expires_early_or_refuses_a_future_deadline(
    engine: Engine, clock: VirtualClock
) -> None:
    clock.set_ns(T0 + 100 * S)
    engine.submit(limit("seller", "ask", 1, 5000))  # stamps now run at T0 + 100 s
    clock.set_ns(T0 + 10 * S)  # the wall clock steps back 90 s
    order, _ = engine.submit(limit("seller", "ask", 1, 5000, expires=T0 + 20 * S))
    assert order.created_at > T0 + 100 * S  # stamps stay increasing
    assert engine.expire_due() == []  # due by the stamp, not by the clock: must not expire
    clock.set_ns(T0 + 20 * S)
    assert [e.order_id for e in engine.expire_due() if isinstance(e, OrderClosed)] == [
        order.order_id
    ]
