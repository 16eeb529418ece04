"""Binance, Kraken and Coinbase order APIs: real signing against the fake venues' order desks
(real HTTP), verified by the fakes; unknown outcomes (a timeout after the venue accepted, a
"status unknown" 5xx) reconciled by querying, never re-sent; refusals; follow-up polling on a
VirtualClock to PARTIAL/FILLED/CANCELLED/EXPIRED ExecReports, in order, for the owner only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tradehall.core.clock import VirtualClock
from tradehall.gateway.dispatcher import AsyncDispatcher, Consumer
from tradehall.gateway.events import ExecReport, ExecState, Side
from tradehall.gateway.fakes.order_api import order_desk
from tradehall.gateway.fakes.orderdesk import FakeOrderDesk, OrderFault
from tradehall.gateway.orders import (
    OrderRequest,
    OrderRouter,
    OrderStore,
    OrderVenue,
    TradingSwitch,
    VenueRejectedError,
)
from tradehall.gateway.service import GatewayConfig, GatewayService
from tradehall.gateway.signing import binance_signature, decimal_text, kraken_signature
from tradehall.gateway.venue_orders import (
    BinanceOrders,
    CoinbaseOrders,
    KrakenOrders,
    kraken_rest_pair,
)

VENUES = ("binance", "kraken", "coinbase")
KEY = "test-key"
SECRET = "dGVzdCBzZWNyZXQgZm9yIHRoZSBmYWtlIHZlbnVlIG9yZGVyIGRlc2tz"  # base64 (Kraken decodes)
WRONG = "b3RoZXIgc2VjcmV0IHRoYXQgdGhlIHZlbnVlIGRvZXMgbm90IGtub3c="
ERRORS = {  # the venue's own answer to a bad signature
    "binance": "-1022: Signature for this request is not valid.",
    "kraken": "EAPI:Invalid signature",
    "coinbase": "HTTP 401: Unauthorized",
}
CLIENTS = {"binance": BinanceOrders, "kraken": KrakenOrders, "coinbase": CoinbaseOrders}
VENUE_SYMBOL = {"binance": "BTCUSDT", "kraken": "XBTUSD", "coinbase": "BTC-USD"}


def test_binance_signature_matches_the_documented_example() -> None:
    # Binance spot API docs, "SIGNED request example (HMAC)"
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    query = (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559"
    )
    expected = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert binance_signature(secret, query) == expected


def test_kraken_signature_matches_the_documented_example() -> None:
    # Kraken "Spot REST Authentication" guide, AddOrder example
    secret = (
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
    )
    nonce = "1616492376594"
    data = f"nonce={nonce}&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    expected = (
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    )
    assert kraken_signature(secret, "/0/private/AddOrder", nonce, data) == expected


def test_decimal_text_and_kraken_pairs() -> None:
    assert decimal_text(Decimal("1E-8")) == "0.00000001"
    assert decimal_text(Decimal("37500.000")) == "37500"
    assert kraken_rest_pair("BTC/USD") == "XBTUSD" and kraken_rest_pair("ETH/USD") == "ETHUSD"


class Rig:
    def __init__(self, venue: str, desk: FakeOrderDesk, db: Path, secret: str = SECRET) -> None:
        self.venue = venue
        self.desk = desk
        self.http = httpx.AsyncClient(base_url=desk.base_url, timeout=0.3)
        self.client: OrderVenue = CLIENTS[venue](self.http, api_key=KEY, api_secret=secret)
        self.clock = VirtualClock()
        self.dispatcher = AsyncDispatcher(clock=self.clock)
        self.switch = TradingSwitch()
        self.switch.set("alice", True)
        self.store = OrderStore(db)
        self.router = OrderRouter(
            self.store, {venue: self.client}, self.switch, self.dispatcher.publish
        )
        self.feed: Consumer = self.dispatcher.consumer("alice")

    def request(self, cid: str, qty: str = "1.5", kind: str = "limit") -> OrderRequest:
        return OrderRequest(
            client_order_id=cid,
            consumer="alice",
            venue=self.venue,
            symbol="BTC-USD",
            side=Side.BUY,
            type="limit" if kind == "limit" else "market",
            quantity=Decimal(qty),
            price=Decimal("68000.25") if kind == "limit" else None,
        )

    async def reports(self, count: int) -> list[ExecReport]:
        out = []
        for _ in range(count):
            event = await asyncio.wait_for(self.feed.get(), 2)
            assert isinstance(event, ExecReport)
            out.append(event)
        assert len(self.feed.queue) == 0
        return out


@pytest.fixture(params=VENUES)
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with order_desk(request.param, api_key=KEY, api_secret=SECRET, hang=1.5) as desk:
        r = Rig(request.param, desk, tmp_path / "orders.sqlite")
        await r.store.open()
        await r.dispatcher.start()
        yield r
        await r.dispatcher.stop()
        await r.store.close()
        await r.http.aclose()


async def test_signed_order_reaches_the_venue_with_exact_fields(rig: Rig) -> None:
    outcome = await rig.router.submit(rig.request("a1", qty="0.00000001"))
    assert outcome.status == "accepted" and outcome.state is ExecState.ACK
    (order,) = rig.desk.orders.values()
    assert order.order_id == outcome.venue_order_id and order.client_id == "a1"
    assert order.symbol == VENUE_SYMBOL[rig.venue] and order.side == "buy"
    assert order.qty == Decimal("0.00000001") and order.price == Decimal("68000.25")
    assert rig.desk.auth_failures == 0
    (report,) = await rig.reports(1)
    assert report.state is ExecState.ACK and report.venue_order_id == order.order_id


async def test_wrong_secret_is_refused_by_the_venue_and_nothing_exists(
    rig: Rig, tmp_path: Path
) -> None:
    bad = Rig(rig.venue, rig.desk, tmp_path / "other.sqlite", secret=WRONG)
    await bad.store.open()
    try:
        outcome = await bad.router.submit(bad.request("b1"))
    finally:
        await bad.store.close()
        await bad.http.aclose()
    assert outcome.status == "rejected" and outcome.state is ExecState.REJECTED
    assert ERRORS[rig.venue] in outcome.reason
    assert rig.desk.orders == {} and rig.desk.auth_failures == 1


@pytest.mark.parametrize("fault", [OrderFault.TIMEOUT, OrderFault.UNKNOWN])
async def test_unknown_outcome_is_reconciled_by_query_never_resent(
    rig: Rig, fault: OrderFault
) -> None:
    rig.desk.inject(fault)
    rig.desk.fill_on_entry = Decimal("0.5")  # the venue accepted and partly filled it
    outcome = await rig.router.submit(rig.request("t1"))
    assert outcome.status == "accepted" and outcome.state is ExecState.PARTIAL
    (order,) = rig.desk.orders.values()
    assert outcome.venue_order_id == order.order_id and rig.desk.placed == 1
    (report,) = await rig.reports(1)
    assert report.state is ExecState.PARTIAL
    again = await rig.router.submit(rig.request("t1"))
    assert again.duplicate and again.venue_order_id == order.order_id
    assert rig.desk.placed == 1 and len(rig.desk.orders) == 1


async def test_concurrent_and_restarted_duplicates_send_one_order(rig: Rig, tmp_path: Path) -> None:
    outcomes = await asyncio.gather(*(rig.router.submit(rig.request("k1")) for _ in range(10)))
    assert rig.desk.placed == 1 and len(rig.desk.orders) == 1
    assert sum(not o.duplicate for o in outcomes) == 1
    assert {o.venue_order_id for o in outcomes} == {next(iter(rig.desk.orders))}
    await rig.store.close()  # a restart: a new router on the same SQLite file
    rig.store = OrderStore(tmp_path / "orders.sqlite")
    await rig.store.open()
    again = OrderRouter(rig.store, {rig.venue: rig.client}, rig.switch, rig.dispatcher.publish)
    repeat = await again.submit(rig.request("k1"))
    assert repeat.duplicate and repeat.venue_order_id == outcomes[0].venue_order_id
    assert rig.desk.placed == 1 and len(rig.desk.orders) == 1


async def test_order_that_never_arrived_stays_unknown_and_is_not_resent(rig: Rig) -> None:
    await rig.desk.stop()  # connection refused: the order cannot have reached the venue...
    outcome = await rig.router.submit(rig.request("n1"))
    assert outcome.status == "unknown" and rig.desk.placed == 0  # ...but we cannot know that
    await rig.desk.start()  # the venue is back (on a new port)
    rig.http.base_url = httpx.URL(rig.desk.base_url)
    again = await rig.router.submit(rig.request("n1"))
    assert again.status == "unknown" and rig.desk.placed == 0  # looked up, still not sent


async def test_refusal_is_a_rejected_exec_report(rig: Rig) -> None:
    rig.desk.inject(OrderFault.REJECT)
    outcome = await rig.router.submit(rig.request("r1"))
    assert outcome.status == "rejected" and "nsufficient" in outcome.reason.replace("_", " ")
    assert rig.desk.orders == {}
    (report,) = await rig.reports(1)
    assert report.state is ExecState.REJECTED


async def test_follow_up_polling_on_the_clock_reports_fills_in_order(rig: Rig) -> None:
    follower = asyncio.create_task(rig.router.follow(rig.clock, every=1.0))
    try:
        await rig.router.submit(rig.request("f1", qty="2"))
        await rig.router.submit(rig.request("f2", qty="1"))
        rig.desk.fill("f1", Decimal("0.5"))
        await rig.clock.advance(0.5)
        assert [r.state for r in await rig.reports(2)] == [ExecState.ACK, ExecState.ACK]
        await rig.clock.advance(0.6)  # one poll
        (partial,) = await rig.reports(1)
        assert partial.client_order_id == "f1" and partial.state is ExecState.PARTIAL
        assert (partial.last_qty, partial.cum_qty) == (Decimal("0.5"), Decimal("0.5"))
        rig.desk.fill("f1", Decimal("1.5"))
        rig.desk.expire("f2")
        await rig.clock.advance(1.0)
        filled, expired = await rig.reports(2)
        assert filled.state is ExecState.FILLED and filled.cum_qty == Decimal(2)
        assert filled.last_qty == Decimal("1.5")
        assert expired.client_order_id == "f2" and expired.state is ExecState.EXPIRED
        assert rig.router.open == {}
        await rig.clock.advance(3.0)
        assert len(rig.feed.queue) == 0  # final states are not reported again
    finally:
        follower.cancel()


async def test_cancel_reports_cancelled_to_the_owner_only(rig: Rig) -> None:
    other = rig.dispatcher.consumer("bob")
    await rig.router.submit(rig.request("c1"))
    refused = await rig.router.cancel("bob", "c1")
    assert refused.status == "rejected"
    outcome = await rig.router.cancel("alice", "c1")
    assert outcome.status == "accepted" and outcome.state is ExecState.CANCELLED
    assert [r.state for r in await rig.reports(2)] == [ExecState.ACK, ExecState.CANCELLED]
    assert rig.desk.by_client_id("c1") is not None
    assert rig.desk.by_client_id("c1").status == "cancelled"  # type: ignore[union-attr]
    assert len(other.queue) == 0


async def test_market_order_fills_and_is_followed_to_filled(rig: Rig) -> None:
    outcome = await rig.router.submit(rig.request("m1", qty="0.25", kind="market"))
    assert outcome.status == "accepted"
    await rig.router.poll()
    states = [r.state for r in await rig.reports(2 if outcome.state is ExecState.ACK else 1)]
    assert states[-1] is ExecState.FILLED


async def test_venue_duplicate_id_handling(rig: Rig) -> None:
    """The fakes model each venue's own duplicate rule (the router never relies on it)."""
    request = rig.request("d1")
    first, _ = await rig.client.place(request)
    if rig.venue == "coinbase":  # documented: a reused client_order_id returns that order
        second, _ = await rig.client.place(request)
        assert second == first and len(rig.desk.orders) == 1
    else:  # Binance and Kraken refuse a client id that an open order has
        with pytest.raises(VenueRejectedError, match="Duplicate order"):
            await rig.client.place(request)
        assert len(rig.desk.orders) == 1


async def test_service_in_simulation_routes_orders_to_every_fake_venue(tmp_path: Path) -> None:
    """``--sim --orders-db``: each fake venue gets an order desk, the router signed clients, and
    the poller runs on the service's clock."""
    clock = VirtualClock()
    config = GatewayConfig(
        venues=VENUES,
        symbols=("BTC-USD",),
        sim=True,
        sim_interval=0.05,
        orders_db=str(tmp_path / "orders.sqlite"),
        orders_poll=1.0,
    )
    service = GatewayService(config, clock=clock)
    await service.start()
    try:
        feed = service.dispatcher.consumer("alice")
        service.trading.set("alice", True)
        for venue in VENUES:
            outcome = await service.submit_order(
                OrderRequest(
                    client_order_id=f"s{venue}",
                    consumer="alice",
                    venue=venue,
                    symbol="BTC-USD",
                    side=Side.SELL,
                    type="limit",
                    quantity=Decimal("0.3"),
                    price=Decimal("70000"),
                )
            )
            assert outcome.status == "accepted", outcome
            service.order_desks[venue].fill(f"s{venue}", Decimal("0.3"))
        await clock.advance(1.0)
        states: dict[str, list[ExecState]] = {}
        for _ in range(2 * len(VENUES)):
            report = await asyncio.wait_for(feed.get(), 5)
            assert isinstance(report, ExecReport)
            states.setdefault(report.provider, []).append(report.state)
        assert states == {v: [ExecState.ACK, ExecState.FILLED] for v in VENUES}
        assert all(desk.auth_failures == 0 for desk in service.order_desks.values())
    finally:
        await service.stop()


class _OddVenue:
    """A venue edge whose status answer for one order is malformed (a KeyError in parsing)."""

    def __init__(self) -> None:
        self.filled: dict[str, Decimal] = {}

    async def place(self, request: OrderRequest) -> tuple[str, ExecState]:
        return f"v-{request.client_order_id}", ExecState.ACK

    async def lookup(self, request: OrderRequest) -> tuple[str, ExecState] | None:
        return None

    async def status(self, request: OrderRequest, venue_order_id: str) -> tuple[ExecState, Decimal]:
        if request.client_order_id == "bad":
            raise KeyError("status")
        return ExecState.FILLED, request.quantity

    async def cancel(self, request: OrderRequest, venue_order_id: str) -> None:
        return None


async def test_one_malformed_status_answer_does_not_stop_following_the_others(
    tmp_path: Path,
) -> None:
    store = OrderStore(tmp_path / "o.sqlite")
    await store.open()
    switch = TradingSwitch()
    switch.set("alice", True)
    reports: list[tuple[str, ExecState]] = []

    def sink(report: ExecReport, owner: str) -> None:
        reports.append((report.client_order_id, report.state))

    router = OrderRouter(store, {"odd": _OddVenue()}, switch, sink)
    try:
        for cid in ("bad", "good"):
            request = OrderRequest(
                client_order_id=cid,
                consumer="alice",
                venue="odd",
                symbol="BTC-USD",
                side=Side.BUY,
                type="market",
                quantity=Decimal(1),
            )
            assert (await router.submit(request)).status == "accepted"
        assert await router.poll() == 1
        assert reports[-1] == ("good", ExecState.FILLED) and set(router.open) == {"bad"}
    finally:
        await store.close()
