"""§2.10 POST /webhooks (upsert), §2.11 GET /webhooks, §2.12 DELETE /webhooks/{id}, §5.2."""

from __future__ import annotations

from typing import Any

import pytest
from exconf_support import (
    EVENTS,
    WEBHOOK_KEYS,
    Api,
    assert_error,
    is_uuid,
    loads,
    new_broker_id,
    ts,
    wait_next_second,
)

UNKNOWN_EVENT = (
    "Unknown event type: {}. Must be one of: trade.executed, order.expired, order.cancelled"
)
URL = "https://broker-system.example.com/hooks"


def _post(api: Api, body: dict[str, Any]) -> Any:
    return api.post("/webhooks", body)


def _check_hook(hook: dict[str, Any], broker_id: str, event: str, url: str) -> None:
    assert set(hook) == WEBHOOK_KEYS
    assert is_uuid(hook["webhook_id"])
    assert hook["broker_id"] == broker_id
    assert hook["event"] == event
    assert hook["url"] == url
    ts(hook["created_at"])
    ts(hook["updated_at"])


def test_create_all_events_in_request_order(api: Api) -> None:
    broker_id = api.broker()
    events = ["order.cancelled", "trade.executed", "order.expired"]
    resp = _post(api, {"broker_id": broker_id, "url": URL, "events": events})
    assert resp.status_code == 201, resp.text
    body = loads(resp.text)
    assert set(body) == {"webhooks"}
    hooks = body["webhooks"]
    assert [h["event"] for h in hooks] == events
    for hook, event in zip(hooks, events, strict=True):
        _check_hook(hook, broker_id, event, URL)
        assert hook["created_at"] == hook["updated_at"]
    assert len({h["webhook_id"] for h in hooks}) == 3


def test_duplicate_events_are_dropped(api: Api) -> None:
    broker_id = api.broker()
    events = ["trade.executed", "order.expired", "trade.executed", "order.expired"]
    resp = _post(api, {"broker_id": broker_id, "url": URL, "events": events})
    assert resp.status_code == 201
    assert [h["event"] for h in loads(resp.text)["webhooks"]] == [
        "trade.executed",
        "order.expired",
    ]


def test_same_url_again_is_200_noop(api: Api) -> None:
    broker_id = api.broker()
    first = _post(api, {"broker_id": broker_id, "url": URL, "events": ["trade.executed"]})
    assert first.status_code == 201
    wait_next_second()
    again = _post(api, {"broker_id": broker_id, "url": URL, "events": ["trade.executed"]})
    assert again.status_code == 200
    assert loads(again.text) == loads(first.text)


def test_new_url_updates_in_place(api: Api) -> None:
    broker_id = api.broker()
    first = loads(
        _post(api, {"broker_id": broker_id, "url": URL, "events": ["order.expired"]}).text
    )["webhooks"][0]
    wait_next_second()
    new_url = URL + "/v2"
    resp = _post(api, {"broker_id": broker_id, "url": new_url, "events": ["order.expired"]})
    assert resp.status_code == 200
    updated = loads(resp.text)["webhooks"][0]
    _check_hook(updated, broker_id, "order.expired", new_url)
    assert updated["webhook_id"] == first["webhook_id"]
    assert updated["created_at"] == first["created_at"]
    assert updated["updated_at"] > first["updated_at"]
    listed = api.get("/webhooks", params={"broker_id": broker_id})
    assert loads(listed.text)["webhooks"] == [updated]


def test_mixed_create_and_existing_is_201(api: Api) -> None:
    broker_id = api.broker()
    existing = api.subscribe(broker_id, URL, ["trade.executed"])[0]
    resp = _post(
        api,
        {"broker_id": broker_id, "url": URL, "events": ["trade.executed", "order.cancelled"]},
    )
    assert resp.status_code == 201
    hooks = loads(resp.text)["webhooks"]
    assert hooks[0] == existing
    _check_hook(hooks[1], broker_id, "order.cancelled", URL)


def test_list_in_creation_order(api: Api) -> None:
    broker_id = api.broker()
    c = api.subscribe(broker_id, URL, ["order.cancelled"])[0]
    t = api.subscribe(broker_id, URL + "/t", ["trade.executed"])[0]
    e = api.subscribe(broker_id, URL + "/e", ["order.expired"])[0]
    # updating the first one does not move it
    c2 = api.subscribe(broker_id, URL + "/c", ["order.cancelled"])[0]
    resp = api.get("/webhooks", params={"broker_id": broker_id})
    assert resp.status_code == 200
    assert loads(resp.text) == {"webhooks": [c2, t, e]}
    assert c2["webhook_id"] == c["webhook_id"]


def test_list_is_per_broker_and_empty(api: Api) -> None:
    a, b = api.broker(), api.broker()
    api.subscribe(a, URL, list(EVENTS))
    assert loads(api.get("/webhooks", params={"broker_id": b}).text) == {"webhooks": []}
    assert len(loads(api.get("/webhooks", params={"broker_id": a}).text)["webhooks"]) == 3


def test_list_requires_broker_id(api: Api) -> None:
    assert_error(
        api.get("/webhooks"), 400, "validation_error", "broker_id query parameter is required"
    )


def test_list_unknown_broker(api: Api) -> None:
    ghost = new_broker_id()
    assert_error(
        api.get("/webhooks", params={"broker_id": ghost}),
        404,
        "broker_not_found",
        f"Broker {ghost} does not exist",
    )


def test_delete_subscription(api: Api) -> None:
    broker_id = api.broker()
    hooks = api.subscribe(broker_id, URL, ["trade.executed", "order.expired"])
    resp = api.delete(f"/webhooks/{hooks[0]['webhook_id']}")
    assert resp.status_code == 204
    assert resp.content == b""
    listed = loads(api.get("/webhooks", params={"broker_id": broker_id}).text)
    assert listed == {"webhooks": [hooks[1]]}
    wid = hooks[0]["webhook_id"]
    assert_error(
        api.delete(f"/webhooks/{wid}"), 404, "webhook_not_found", f"Webhook {wid} does not exist"
    )


def test_resubscribe_after_delete_creates_new(api: Api) -> None:
    broker_id = api.broker()
    first = api.subscribe(broker_id, URL, ["trade.executed"])[0]
    assert api.delete(f"/webhooks/{first['webhook_id']}").status_code == 204
    resp = _post(api, {"broker_id": broker_id, "url": URL, "events": ["trade.executed"]})
    assert resp.status_code == 201
    assert loads(resp.text)["webhooks"][0]["webhook_id"] != first["webhook_id"]


@pytest.mark.parametrize("wid", ["5e4d3c2b-1a09-4f8e-b7d6-c5b4a3928170", "wh-nope"])
def test_delete_unknown_webhook(api: Api, wid: str) -> None:
    assert_error(
        api.delete(f"/webhooks/{wid}"), 404, "webhook_not_found", f"Webhook {wid} does not exist"
    )


def test_http_url_allowed_in_dev_mode(api: Api) -> None:
    broker_id = api.broker()
    resp = _post(
        api,
        {"broker_id": broker_id, "url": "http://127.0.0.1:9/x", "events": ["trade.executed"]},
    )
    assert resp.status_code == 201, resp.text


def test_url_max_length(api: Api) -> None:
    broker_id = api.broker()
    base = "https://example.com/"
    url = base + "a" * (2048 - len(base))
    assert len(url) == 2048
    resp = _post(api, {"broker_id": broker_id, "url": url, "events": ["trade.executed"]})
    assert resp.status_code == 201, resp.text
    assert loads(resp.text)["webhooks"][0]["url"] == url
    too_long = url + "a"
    resp = _post(api, {"broker_id": broker_id, "url": too_long, "events": ["order.expired"]})
    assert_error(resp, 400, "validation_error", "url must be at most 2048 characters")


MISSING = object()

WEBHOOK_INVALID = [
    pytest.param("url", MISSING, "url is required", id="url-missing"),
    pytest.param("url", "ftp://example.com/hook", "url must use https scheme", id="url-ftp"),
    pytest.param("url", "https://", "url must be a valid absolute URL", id="url-no-host"),
    pytest.param("url", 42, None, id="url-number"),
    pytest.param("events", MISSING, "events must be a non-empty array", id="events-missing"),
    pytest.param("events", [], "events must be a non-empty array", id="events-empty"),
    pytest.param(
        "events", "trade.executed", "events must be a non-empty array", id="events-string"
    ),
    pytest.param("events", ["trade.done"], UNKNOWN_EVENT.format("trade.done"), id="event-unknown"),
    pytest.param(
        "events",
        ["trade.executed", "ORDER.EXPIRED"],
        UNKNOWN_EVENT.format("ORDER.EXPIRED"),
        id="event-case",
    ),
    pytest.param("broker_id", MISSING, "broker_id is required", id="broker-missing"),
]


@pytest.mark.parametrize(("key", "value", "message"), WEBHOOK_INVALID)
def test_webhook_validation(api: Api, key: str, value: Any, message: str | None) -> None:
    broker_id = api.broker()
    body: dict[str, Any] = {"broker_id": broker_id, "url": URL, "events": ["trade.executed"]}
    if value is MISSING:
        del body[key]
    else:
        body[key] = value
    assert_error(_post(api, body), 400, "validation_error", message)
    # rejected: nothing was created
    assert loads(api.get("/webhooks", params={"broker_id": broker_id}).text) == {"webhooks": []}


def test_unknown_broker_404(api: Api) -> None:
    ghost = new_broker_id()
    resp = _post(api, {"broker_id": ghost, "url": URL, "events": ["trade.executed"]})
    assert_error(resp, 404, "broker_not_found", f"Broker {ghost} does not exist")


def test_validation_precedes_unknown_broker(api: Api) -> None:
    resp = _post(api, {"broker_id": new_broker_id(), "url": URL, "events": []})
    assert_error(resp, 400, "validation_error", "events must be a non-empty array")


def test_subscriptions_do_not_touch_orders(api: Api) -> None:
    from exconf_support import new_symbol

    broker_id = api.broker()
    order = api.limit(broker_id, "bid", new_symbol(), 1, "1.00")
    hooks = api.subscribe(broker_id, URL, list(EVENTS))
    for hook in hooks:
        api.delete(f"/webhooks/{hook['webhook_id']}")
    assert api.order(order["order_id"]) == order


def test_url_change_plus_create_is_201(api: Api) -> None:
    broker_id = api.broker()
    existing = api.subscribe(broker_id, URL, ["trade.executed"])[0]
    resp = _post(
        api,
        {
            "broker_id": broker_id,
            "url": URL + "/new",
            "events": ["order.expired", "trade.executed"],
        },
    )
    assert resp.status_code == 201
    created, updated = loads(resp.text)["webhooks"]
    _check_hook(created, broker_id, "order.expired", URL + "/new")
    _check_hook(updated, broker_id, "trade.executed", URL + "/new")
    assert updated["webhook_id"] == existing["webhook_id"]
    assert updated["created_at"] == existing["created_at"]
    listed = loads(api.get("/webhooks", params={"broker_id": broker_id}).text)["webhooks"]
    assert listed == [updated, created]


@pytest.mark.parametrize(
    "url",
    [
        "https://[bad/x",
        "https://host:99999/x",
        "https://host:abc/x",
        "https://exa mple.com/x",
        "https:example.com",
        "https:/example.com",
        " https://example.com/x",
        "javascript:alert(1)",
        "https://exa\tmple.com/x",
        "https://example.com\n/x",
    ],
)
def test_malformed_urls(api: Api, url: str) -> None:
    resp = _post(api, {"broker_id": api.broker(), "url": url, "events": ["trade.executed"]})
    assert_error(resp, 400, "validation_error", "url must be a valid absolute URL")


@pytest.mark.parametrize(
    "url", ["https://user:pw@example.com/x", "https://[::1]:8443/x", "https://example.com/x?a=1#f"]
)
def test_unusual_but_valid_urls(api: Api, url: str) -> None:
    resp = _post(api, {"broker_id": api.broker(), "url": url, "events": ["trade.executed"]})
    assert resp.status_code == 201, resp.text
    assert loads(resp.text)["webhooks"][0]["url"] == url


# §2.10: `url` must be a valid absolute URL; RFC 3986 allows no control characters anywhere.
@pytest.mark.parametrize("code", [0x00, 0x01, 0x08, 0x1B, 0x7F], ids=lambda c: f"0x{c:02x}")
@pytest.mark.parametrize("where", ["host", "path"])
def test_control_characters_in_url_rejected(api: Api, code: int, where: str) -> None:
    char = chr(code)
    url = f"https://exa{char}mple.com/x" if where == "host" else f"https://example.com/a{char}b"
    resp = _post(api, {"broker_id": api.broker(), "url": url, "events": ["order.expired"]})
    assert_error(resp, 400, "validation_error", "url must be a valid absolute URL")
