"""§3.9 atomicity under concurrency, §10 webhook retries and durability, §8 startup/shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from exconf_support import (
    Api,
    D,
    WebhookReceiver,
    expires_in,
    free_port,
    loads,
    money,
    new_symbol,
    start_exchange,
    stop_exchange,
)


def test_concurrent_orders_keep_invariants(api: Api, http: httpx.Client) -> None:
    """Many clients hammer two symbols at once; cash and shares are conserved exactly."""
    syms = [new_symbol(), new_symbol()]
    initial_cash = D("5000.00")
    brokers = [
        api.broker(cash=str(initial_cash), holdings={s: 200 for s in syms}) for _ in range(6)
    ]
    base_url = str(http.base_url)

    def worker(index: int) -> list[int]:
        codes = []
        with httpx.Client(base_url=base_url, timeout=10.0) as client:
            local = Api(client)
            me = brokers[index % len(brokers)]
            for step in range(25):
                sym = syms[(index + step) % 2]
                side = "bid" if (index + step) % 3 else "ask"
                if step % 4 == 3:
                    body = local.market_body(me, side, sym, 7)
                else:
                    price = f"{10 + (index * 7 + step * 3) % 5}.{(step * 13) % 100:02d}"
                    body = local.limit_body(me, side, sym, 5 + step % 6, price)
                resp = local.post("/orders", body)
                codes.append(resp.status_code)
        return codes

    stop = threading.Event()
    crossed: list[Any] = []

    def reader() -> int:
        reads = 0
        with httpx.Client(base_url=base_url, timeout=10.0) as client:
            while not stop.is_set():
                for sym in syms:
                    book = loads(client.get(f"/stocks/{sym}/book").text)
                    reads += 1
                    if book["bids"] and book["asks"]:
                        if book["bids"][0]["price"] >= book["asks"][0]["price"]:
                            crossed.append(book)
                        if book["spread"] != book["asks"][0]["price"] - book["bids"][0]["price"]:
                            crossed.append(book)
                    quote = loads(
                        client.get(
                            f"/stocks/{sym}/quote", params={"side": "bid", "quantity": 10**6}
                        ).text
                    )
                    levels = quote["price_levels"]
                    if sum(lv["quantity"] for lv in levels) != quote["quantity_available"]:
                        crossed.append(quote)
                    total = sum((lv["price"] * lv["quantity"] for lv in levels), Decimal(0))
                    if levels and total != quote["estimated_total"]:
                        crossed.append(quote)
        return reads

    with ThreadPoolExecutor(max_workers=14) as pool:
        readers = [pool.submit(reader) for _ in range(2)]
        results = list(pool.map(worker, range(12)))
        stop.set()
        assert sum(r.result() for r in readers) > 10
    assert crossed == []
    codes = [c for r in results for c in r]
    assert set(codes) <= {201, 409}
    assert codes.count(201) > 50

    balances = [api.balance(b) for b in brokers]
    assert sum(money(b["cash_balance"]) for b in balances) == initial_cash * len(brokers)
    for sym in syms:
        total = sum(h["quantity"] for b in balances for h in b["holdings"] if h["symbol"] == sym)
        assert total == 200 * len(brokers)
        book = api.book(sym, depth=50)
        if book["bids"] and book["asks"]:
            assert book["bids"][0]["price"] < book["asks"][0]["price"]
    for bal in balances:
        assert money(bal["available_cash"]) >= 0
        assert money(bal["available_cash"]) == money(bal["cash_balance"]) - money(
            bal["reserved_cash"]
        )
        for holding in bal["holdings"]:
            assert holding["available_quantity"] >= 0
    # every listed active bid is fully reserved
    for broker_id, bal in zip(brokers, balances, strict=True):
        active = (
            api.listing(broker_id, status="pending", limit=100)["orders"]
            + api.listing(broker_id, status="partially_filled", limit=100)["orders"]
        )
        reserved = sum(
            (o["price"] * o["remaining_quantity"] for o in active if o["side"] == "bid"),
            start=Decimal("0"),
        )
        assert money(bal["reserved_cash"]) == reserved


def test_concurrent_cancels_release_once(api: Api, http: httpx.Client) -> None:
    sym = new_symbol()
    broker_id = api.broker(cash="100.00")
    order = api.limit(broker_id, "bid", sym, 10, "10.00")
    base_url = str(http.base_url)

    def cancel(_: int) -> int:
        with httpx.Client(base_url=base_url, timeout=10.0) as client:
            return client.delete(f"/orders/{order['order_id']}").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(cancel, range(8)))
    assert sorted(codes) == [200] + [409] * 7
    bal = api.balance(broker_id)
    assert money(bal["available_cash"]) == D("100.00")
    assert money(bal["reserved_cash"]) == D("0.00")


def test_concurrent_buyers_cannot_overdraw(api: Api, http: httpx.Client) -> None:
    sym = new_symbol()
    api.limit(api.broker(holdings={sym: 1000}), "ask", sym, 1000, "1.00")
    buyer = api.broker(cash="50.00")
    base_url = str(http.base_url)

    def buy(_: int) -> int:
        with httpx.Client(base_url=base_url, timeout=10.0) as client:
            return Api(client).post("/orders", Api.market_body(buyer, "bid", sym, 10)).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(buy, range(10)))
    assert codes.count(201) == 5
    assert codes.count(409) == 5
    assert money(api.balance(buyer)["cash_balance"]) == D("0.00")


def test_webhook_retried_with_same_delivery_id(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    buyer = api.broker()
    url = receiver.new_url()
    receiver.fail_next(url, 1)
    api.subscribe(buyer, url, ["trade.executed"])
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    deadline = time.monotonic() + 15.0
    while len(receiver.raw_at(url)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    attempts = receiver.raw_at(url)
    assert len(attempts) >= 2
    assert attempts[0].headers["x-delivery-id"] == attempts[1].headers["x-delivery-id"]
    assert attempts[0].raw == attempts[1].raw
    assert len(receiver.at(url)) == 1


def test_retries_are_bounded(api: Api, receiver: WebhookReceiver) -> None:
    """§10: default 3 retries after the first failure, all with the same X-Delivery-Id."""
    sym = new_symbol()
    buyer = api.broker()
    url = receiver.new_url()
    receiver.fail_next(url, 1000)
    api.subscribe(buyer, url, ["trade.executed"])
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    deadline = time.monotonic() + 20.0
    while len(receiver.raw_at(url)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(3.0)  # no fifth attempt comes
    attempts = receiver.raw_at(url)
    assert len(attempts) == 4
    assert len({a.headers["x-delivery-id"] for a in attempts}) == 1


def test_client_errors_are_not_retried(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    buyer = api.broker()
    url = receiver.new_url()
    receiver.fail_next(url, 10, status=404)
    api.subscribe(buyer, url, ["trade.executed"])
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    assert len(receiver.wait(url, 1)) == 1
    time.sleep(2.0)
    assert len(receiver.raw_at(url)) == 1


def test_slow_receiver_never_delays_responses(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    buyer = api.broker()
    url = receiver.new_url()
    receiver.delay(url, 3.0)
    api.subscribe(buyer, url, ["trade.executed", "order.cancelled"])
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    started = time.monotonic()
    order = api.limit(buyer, "bid", sym, 10, "1.00")
    api.cancel(order["order_id"])
    api.balance(buyer)
    assert time.monotonic() - started < 1.5
    assert len(receiver.wait(url, 2, timeout=10.0)) == 2


def test_no_signature_without_secret(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    buyer = api.broker()
    url = receiver.new_url()
    api.subscribe(buyer, url, ["trade.executed"])
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    [delivery] = receiver.wait(url, 1)
    assert "x-signature" not in delivery.headers


EXCHANGE_CMD = [sys.executable, "-m", "tradehall", "exchange", "--host", "127.0.0.1"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRADEHALL_VWAP_WINDOW", "five minutes"),
        ("TRADEHALL_EXPIRATION_INTERVAL", "10 parsecs"),
        ("TRADEHALL_WEBHOOK_TIMEOUT", "-1s"),
        ("TRADEHALL_LOG_LEVEL", "verbose"),
    ],
)
def test_unparsable_setting_stops_startup(tmp_path: Path, variable: str, value: str) -> None:
    env = dict(os.environ, TRADEHALL_DATA_DIR=str(tmp_path), **{variable: value})
    proc = subprocess.run(
        [*EXCHANGE_CMD, "--port", str(free_port())],
        check=False,
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert variable.removeprefix("TRADEHALL_").lower() in proc.stderr.decode().lower().replace(
        "-", "_"
    )


def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    server = start_exchange(tmp_path / "run")
    try:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            api = Api(client)
            sym = new_symbol()
            api.limit(api.broker(), "bid", sym, 1, "1.00", expires_at=expires_in(0.5))
    finally:
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=15)
        server.log_file.close()
    assert code == 0


def test_empty_setting_means_default(tmp_path: Path) -> None:
    server = start_exchange(tmp_path / "run", {"TRADEHALL_VWAP_WINDOW": ""})
    try:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            api = Api(client)
            sym = new_symbol()
            api.broker(holdings={sym: 1})
            assert api.price(sym)["window"] == "5m"
    finally:
        stop_exchange(server.proc)
        server.log_file.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_state_survives_restart(tmp_path: Path, stop_signal: signal.Signals) -> None:
    """§10 durability: acknowledged state is back after a restart on the same data dir."""
    sym = new_symbol()
    server = start_exchange(tmp_path / "run1")
    data_dir = tmp_path / "run1" / "data"
    try:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            api = Api(client)
            seller = api.broker(cash="0", holdings={sym: 10})
            buyer = api.broker(cash="100.00")
            api.subscribe(buyer, "https://example.com/h", ["trade.executed"])
            gone = api.subscribe(buyer, "https://example.com/c", ["order.cancelled"])[0]
            assert api.delete(f"/webhooks/{gone['webhook_id']}").status_code == 204
            hooks = api.subscribe(buyer, "https://example.com/h2", ["trade.executed"])
            ask = api.limit(seller, "ask", sym, 10, "2.00")
            bid = api.limit(buyer, "bid", sym, 4, "3.00")
            cancelled = api.limit(buyer, "bid", sym, 1, "1.00")
            api.cancel(cancelled["order_id"])
            before: dict[str, Any] = {
                "seller": api.balance(seller),
                "buyer": api.balance(buyer),
                "ask": api.order(ask["order_id"]),
                "bid": api.order(bid["order_id"]),
                "cancelled": api.order(cancelled["order_id"]),
                "book": api.book(sym)["asks"],
                "price": api.price(sym),
                "listing": api.listing(buyer),
            }
    finally:
        server.proc.send_signal(stop_signal)
        code = server.proc.wait(timeout=15)
        server.log_file.close()
    if stop_signal == signal.SIGTERM:
        assert code == 0

    again = start_exchange(tmp_path / "run2", {"TRADEHALL_DATA_DIR": str(data_dir)})
    try:
        with httpx.Client(base_url=again.base_url, timeout=10.0) as client:
            api = Api(client)
            assert api.balance(seller) == before["seller"]
            assert api.balance(buyer) == before["buyer"]
            assert api.order(ask["order_id"]) == before["ask"]
            assert api.order(bid["order_id"]) == before["bid"]
            assert api.order(cancelled["order_id"]) == before["cancelled"]
            assert api.book(sym)["asks"] == before["book"]
            assert api.listing(buyer) == before["listing"]
            restored_price = api.price(sym)
            for key in ("current_price", "trades_in_window", "last_trade_at"):
                assert restored_price[key] == before["price"][key], key
            listed = loads(api.get("/webhooks", params={"broker_id": buyer}).text)
            assert listed["webhooks"] == hooks
            # the restored book keeps trading
            more = api.limit(buyer, "bid", sym, 6, "2.00")
            assert more["status"] == "filled"
            assert api.order(ask["order_id"])["status"] == "filled"
            dup = api.post("/brokers", {"broker_id": seller, "initial_cash": 1})
            assert dup.status_code == 409
    finally:
        stop_exchange(again.proc)
        again.log_file.close()


def _snapshot(api: Api, brokers: list[str], orders: list[str], syms: list[str]) -> dict[str, Any]:
    return {
        "balances": [api.balance(b) for b in brokers],
        "orders": [api.order(o) for o in orders],
        "listings": [api.listing(b, limit=100) for b in brokers],
        "books": [{k: v for k, v in api.book(s).items() if k != "snapshot_at"} for s in syms],
        "prices": [api.price(s) for s in syms],
    }


def test_random_flow_and_expiry_survive_kill(tmp_path: Path) -> None:
    syms = [new_symbol(), new_symbol()]
    server = start_exchange(tmp_path / "run1")
    data_dir = tmp_path / "run1" / "data"
    orders: list[str] = []
    try:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            api = Api(client)
            brokers = [
                api.broker(cash="2000.00", holdings={s: 100 for s in syms}) for _ in range(4)
            ]
            for step in range(60):
                me = brokers[step % 4]
                sym = syms[step % 2]
                side = "bid" if step % 3 else "ask"
                if step % 5 == 4:
                    resp = api.post("/orders", api.market_body(me, side, sym, 3 + step % 7))
                else:
                    price = f"{9 + step % 4}.{(step * 7) % 100:02d}"
                    resp = api.post("/orders", api.limit_body(me, side, sym, 2 + step % 9, price))
                if resp.status_code == 201:
                    orders.append(loads(resp.text)["order_id"])
                if step % 11 == 10 and orders:
                    api.delete(f"/orders/{orders[-2]}")
            expiring = api.limit(brokers[0], "bid", syms[0], 1, "0.50", expires_at=expires_in(1.0))
            orders.append(expiring["order_id"])
            before = _snapshot(api, brokers, orders, syms)
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=15)
        server.log_file.close()

    again = start_exchange(tmp_path / "run2", {"TRADEHALL_DATA_DIR": str(data_dir)})
    try:
        with httpx.Client(base_url=again.base_url, timeout=10.0) as client:
            api = Api(client)
            deadline = time.monotonic() + 8.0
            while api.order(expiring["order_id"])["status"] != "expired":
                assert time.monotonic() < deadline, "restored order never expired"
                time.sleep(0.05)
            after = _snapshot(api, brokers, orders, syms)
    finally:
        stop_exchange(again.proc)
        again.log_file.close()

    # everything but the expired order (and what its expiry touched) is identical
    exp_before, exp_after = before["orders"][-1], after["orders"][-1]
    assert exp_before["status"] == "pending"
    assert exp_after["expired_at"] == exp_after["expires_at"]
    assert exp_after["cancelled_quantity"] == 1
    assert before["orders"][:-1] == after["orders"][:-1]
    assert before["balances"][1:] == after["balances"][1:]
    assert before["prices"] == after["prices"]
    assert before["books"][1] == after["books"][1]
    bal_before, bal_after = before["balances"][0], after["balances"][0]
    assert bal_after["reserved_cash"] == bal_before["reserved_cash"] - D("0.50")
    assert bal_after["cash_balance"] == bal_before["cash_balance"]
    assert bal_after["holdings"] == bal_before["holdings"]


def test_unreachable_subscriber_does_not_block_others(api: Api, receiver: WebhookReceiver) -> None:
    """§5.3: network errors are absorbed; other subscribers still get their deliveries."""
    sym = new_symbol()
    dead = api.broker()
    api.subscribe(dead, f"http://127.0.0.1:{free_port()}/refused", ["trade.executed"])
    slow_url = receiver.new_url()
    receiver.fail_next(slow_url, 1000)
    api.subscribe(dead, slow_url, ["order.cancelled"])
    for _ in range(3):
        api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
        order = api.limit(dead, "bid", sym, 6, "1.00")
        api.cancel(order["order_id"])
    alive = api.broker()
    url = receiver.new_url()
    api.subscribe(alive, url, ["trade.executed"])
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    started = time.monotonic()
    api.limit(alive, "bid", sym, 5, "1.00")
    assert len(receiver.wait(url, 1)) == 1
    assert time.monotonic() - started < 3.0


def test_time_priority_and_listing_order_survive_restart(tmp_path: Path) -> None:
    """Full-precision created_at (not the rendered second) must come back from the journal."""
    sym = new_symbol()
    server = start_exchange(tmp_path / "run1")
    data_dir = tmp_path / "run1" / "data"
    try:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            api = Api(client)
            seller = api.broker(holdings={sym: 100})
            asks = [api.limit(seller, "ask", sym, 1, "5.00")["order_id"] for _ in range(8)]
            listing = [o["order_id"] for o in api.listing(seller)["orders"]]
            assert listing == asks[::-1]
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=15)
        server.log_file.close()

    again = start_exchange(tmp_path / "run2", {"TRADEHALL_DATA_DIR": str(data_dir)})
    try:
        with httpx.Client(base_url=again.base_url, timeout=10.0) as client:
            api = Api(client)
            assert [o["order_id"] for o in api.listing(seller)["orders"]] == asks[::-1]
            buyer = api.broker()
            for order_id in asks:
                api.market(buyer, "bid", sym, 1)
                assert api.order(order_id)["status"] == "filled"
    finally:
        stop_exchange(again.proc)
        again.log_file.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_restart_never_duplicates_a_delivery_under_a_new_id(
    tmp_path: Path, receiver: WebhookReceiver, stop_signal: signal.Signals
) -> None:
    sym = new_symbol()
    url = receiver.new_url()
    server = start_exchange(tmp_path / "run1")
    data_dir = tmp_path / "run1" / "data"
    try:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            api = Api(client)
            buyer = api.broker()
            api.subscribe(buyer, url, ["trade.executed", "order.cancelled"])
            api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
            order = api.limit(buyer, "bid", sym, 8, "1.00")
            api.cancel(order["order_id"])
            assert len(receiver.wait(url, 2)) == 2
    finally:
        server.proc.send_signal(stop_signal)
        server.proc.wait(timeout=15)
        server.log_file.close()

    again = start_exchange(tmp_path / "run2", {"TRADEHALL_DATA_DIR": str(data_dir)})
    try:
        time.sleep(1.5)
        events = [d.headers["x-event-type"] for d in receiver.at(url)]
        assert events == ["trade.executed", "order.cancelled"]
    finally:
        stop_exchange(again.proc)
        again.log_file.close()


def test_expiry_racing_with_matching_keeps_invariants(api: Api, http: httpx.Client) -> None:
    """Short-lived orders expire while others trade against them (§3.9, §4.3, §7)."""
    sym = new_symbol()
    brokers = [api.broker(cash="3000.00", holdings={sym: 300}) for _ in range(4)]
    base_url = str(http.base_url)

    def worker(index: int) -> list[str]:
        placed = []
        with httpx.Client(base_url=base_url, timeout=10.0) as client:
            local = Api(client)
            me = brokers[index % len(brokers)]
            for step in range(20):
                side = "bid" if (index + step) % 2 else "ask"
                price = f"{10 + (step * 3 + index) % 4}.{(step * 17) % 100:02d}"
                lifetime = 0.2 + ((index * 7 + step) % 8) / 10
                body = local.limit_body(me, side, sym, 3 + step % 5, price, expires_in(lifetime))
                resp = local.post("/orders", body)
                if resp.status_code == 201:
                    placed.append(loads(resp.text)["order_id"])
        return placed

    with ThreadPoolExecutor(max_workers=8) as pool:
        orders = [oid for batch in pool.map(worker, range(8)) for oid in batch]
    assert len(orders) > 40
    deadline = time.monotonic() + 8.0
    while True:
        states = [api.order(oid) for oid in orders]
        if all(s["status"] not in ("pending", "partially_filled") for s in states):
            break
        assert time.monotonic() < deadline, "orders outlived their expires_at"
        time.sleep(0.2)
    assert any(s["status"] == "expired" for s in states)
    for state in states:
        if state["status"] == "expired":
            assert state["expired_at"] == state["expires_at"]
            assert state["cancelled_quantity"] == state["quantity"] - state["filled_quantity"]
    balances = [api.balance(b) for b in brokers]
    assert sum(money(b["cash_balance"]) for b in balances) == D("12000.00")
    assert sum(h["quantity"] for b in balances for h in b["holdings"]) == 1200
    for bal in balances:
        assert money(bal["reserved_cash"]) == D("0.00")
        assert all(h["reserved_quantity"] == 0 for h in bal["holdings"])
    book = api.book(sym)
    assert book["bids"] == [] and book["asks"] == []
