"""§1.2/§1.3 rendering on the raw JSON text of every endpoint: money with exactly two decimals,
timestamps second-granular with ``Z``. Round amounts (150, 10.5) are used on purpose, so that a
``150``/``150.0``/``10.5`` rendering anywhere would show up."""

from __future__ import annotations

import re

import httpx
from exconf_support import Api, WebhookReceiver, expires_in, new_symbol, utc_now_text

MONEY_KEYS = (
    "price",
    "cash_balance",
    "reserved_cash",
    "available_cash",
    "average_price",
    "current_price",
    "spread",
    "estimated_total",
    "estimated_average_price",
    "trade_price",
)
MONEY_RE = re.compile(r'"(' + "|".join(MONEY_KEYS) + r')":\s*(null|-?[0-9][0-9.eE+-]*)')
TIME_RE = re.compile(
    r'"([a-z_]*_at|timestamp|executed_at)":\s*(null|"[^"]*")',
)
GOOD_MONEY = re.compile(r"^-?\d+\.\d{2}$")
GOOD_TIME = re.compile(r'^"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"$')


def _scan(text: str) -> tuple[int, int]:
    monies = MONEY_RE.findall(text)
    for key, value in monies:
        assert value == "null" or GOOD_MONEY.match(value), (key, value, text)
    times = TIME_RE.findall(text)
    for key, value in times:
        assert value == "null" or GOOD_TIME.match(value), (key, value, text)
    return len(monies), len(times)


def test_every_response_renders_money_and_time(api: Api, receiver: WebhookReceiver) -> None:
    sym = new_symbol()
    url = receiver.new_url()
    texts: list[str] = []

    def keep(resp: httpx.Response) -> None:
        assert resp.status_code < 300, resp.text
        texts.append(resp.text)

    seller_resp = api.post(
        "/brokers",
        {
            "broker_id": "r" + new_symbol(),
            "initial_cash": 150,
            "initial_holdings": [{"symbol": sym, "quantity": 100}],
        },
    )
    keep(seller_resp)
    seller = seller_resp.json()["broker_id"]
    buyer = api.broker(cash="10000")
    keep(api.post("/webhooks", {"broker_id": buyer, "url": url, "events": ["trade.executed"]}))
    keep(api.post("/webhooks", {"broker_id": seller, "url": url, "events": ["order.cancelled"]}))
    keep(api.post("/orders", api.limit_body(seller, "ask", sym, 10, "150")))
    keep(api.post("/orders", api.limit_body(seller, "ask", sym, 10, "150.5")))
    keep(api.post("/orders", api.limit_body(buyer, "bid", sym, 4, "100", expires_in(60))))
    bid = api.post("/orders", api.limit_body(buyer, "bid", sym, 15, "160"))
    keep(bid)
    market = api.post("/orders", api.market_body(seller, "ask", sym, 2))
    keep(market)
    resting_ask = api.post("/orders", api.limit_body(seller, "ask", sym, 5, "200"))
    keep(resting_ask)
    keep(api.delete(f"/orders/{resting_ask.json()['order_id']}"))
    keep(api.get(f"/orders/{bid.json()['order_id']}"))
    keep(api.get(f"/orders/{market.json()['order_id']}"))
    for broker_id in (seller, buyer):
        keep(api.get(f"/brokers/{broker_id}/balance"))
        keep(api.get(f"/brokers/{broker_id}/orders"))
        keep(api.get("/webhooks", params={"broker_id": broker_id}))
    keep(api.get(f"/stocks/{sym}/price"))
    keep(api.get(f"/stocks/{sym}/book"))
    keep(api.get(f"/stocks/{sym}/quote", params={"side": "bid", "quantity": 3}))
    keep(api.get(f"/stocks/{sym}/quote", params={"side": "ask", "quantity": 3}))
    deliveries = receiver.wait(url, 4)
    assert len(deliveries) == 4
    texts.extend(d.raw.decode() for d in deliveries)

    money_seen = time_seen = 0
    for text in texts:
        m, t = _scan(text)
        money_seen += m
        time_seen += t
    assert money_seen >= 50 and time_seen >= 40
    joined = "\n".join(texts)
    for key in MONEY_KEYS:
        assert f'"{key}"' in joined, key  # every money field was exercised


def test_timestamps_are_current_utc(api: Api) -> None:
    """Every server-set timestamp lies between the client's UTC clock before and after."""
    before = utc_now_text()
    sym = new_symbol()
    seller = api.broker(holdings={sym: 5})
    created = api.balance(seller)["updated_at"]
    ask = api.limit(seller, "ask", sym, 5, "1.00")
    bid = api.limit(api.broker(), "bid", sym, 2, "1.00")
    cancelled = api.cancel(ask["order_id"])
    stamps = [
        created,
        ask["created_at"],
        bid["created_at"],
        bid["trades"][0]["executed_at"],
        cancelled["cancelled_at"],
        api.book(sym)["snapshot_at"],
        api.quote(sym, "bid", 1)["quoted_at"],
        api.price(sym)["last_trade_at"],
        api.balance(seller)["updated_at"],
    ]
    after = utc_now_text()
    for stamp in stamps:
        assert before <= stamp <= after, (before, stamp, after)
