"""§2.7 VWAP fallback: with no trade inside the window the price is the latest trade ever.

Needs trades to age out of the window, so this module starts its own exchange with
``TRADEHALL_VWAP_WINDOW=2s`` (§10: every setting is a ``TRADEHALL_*`` variable); it also sets a
webhook signing secret to check §10's ``X-Signature``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from exconf_support import (
    Api,
    D,
    WebhookReceiver,
    loads,
    money,
    new_symbol,
    start_exchange,
    stop_exchange,
)


@pytest.fixture(scope="module")
def short_window_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = start_exchange(
        tmp_path_factory.mktemp("exchange-vwap"),
        {"TRADEHALL_VWAP_WINDOW": "2s", "TRADEHALL_WEBHOOK_SIGNING_SECRET": SECRET},
    )
    try:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            yield Api(client)
    finally:
        stop_exchange(server.proc)
        server.log_file.close()


SECRET = "conformance-secret"


def _wait_out_of_window(api: Api, sym: str, timeout: float = 8.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = api.price(sym)
        if body["trades_in_window"] == 0 or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_vwap_falls_back_to_latest_trade(short_window_api: Api) -> None:
    api = short_window_api
    sym = new_symbol()
    seller = api.broker(holdings={sym: 100})
    api.limit(seller, "ask", sym, 10, "10.00")
    api.limit(seller, "ask", sym, 30, "12.00")
    order = api.limit(api.broker(), "bid", sym, 40, "12.00")
    inside = api.price(sym)
    assert inside["trades_in_window"] == 2
    assert money(inside["current_price"]) == D("11.50")

    body = _wait_out_of_window(api, sym)
    assert body["trades_in_window"] == 0
    # latest trade ever: the second fill of the pass, at 12.00 (not the VWAP 11.50)
    assert money(body["current_price"]) == D("12.00")
    assert body["last_trade_at"] == order["trades"][-1]["executed_at"]

    # a new trade brings the window back to that trade alone
    api.limit(seller, "ask", sym, 5, "9.99")
    api.market(api.broker(), "bid", sym, 5)
    fresh = loads(api.get(f"/stocks/{sym}/price").text)
    assert fresh["trades_in_window"] == 1
    assert money(fresh["current_price"]) == D("9.99")


def test_never_traded_is_null_with_short_window(short_window_api: Api) -> None:
    sym = new_symbol()
    short_window_api.broker(holdings={sym: 1})
    body = short_window_api.price(sym)
    assert body["current_price"] is None
    assert body["trades_in_window"] == 0
    assert body["last_trade_at"] is None


def test_webhook_signature(short_window_api: Api, receiver: WebhookReceiver) -> None:
    api = short_window_api
    sym = new_symbol()
    buyer = api.broker()
    url = receiver.new_url()
    api.subscribe(buyer, url, ["trade.executed"])
    api.limit(api.broker(holdings={sym: 5}), "ask", sym, 5, "1.00")
    api.limit(buyer, "bid", sym, 5, "1.00")
    [delivery] = receiver.wait(url, 1)
    expected = hmac.new(SECRET.encode(), delivery.raw, hashlib.sha256).hexdigest()
    assert delivery.headers["x-signature"] == f"sha256={expected}"
