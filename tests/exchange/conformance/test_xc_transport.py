"""§1.1 transport, §9 content type and non-object bodies, unknown routes/methods, §2.13."""

from __future__ import annotations

from typing import Any

import pytest
from exconf_support import (
    FAR_FUTURE,
    INVALID_JSON_MESSAGE,
    Api,
    assert_error,
    dumps,
    loads,
    new_broker_id,
    new_symbol,
)

POST_PATHS = ["/brokers", "/orders", "/webhooks"]

BAD_BODIES = [
    pytest.param(None, b'{"broker_id": "x", "initial_cash": 10}', id="no-content-type"),
    pytest.param("text/plain", b'{"broker_id": "x", "initial_cash": 10}', id="text-plain"),
    pytest.param(
        "application/x-www-form-urlencoded", b"broker_id=x&initial_cash=10", id="form-encoded"
    ),
    pytest.param("application/jsonp", b'{"broker_id": "x", "initial_cash": 10}', id="jsonp"),
    pytest.param(
        "application/json-patch+json",
        b'{"broker_id": "x", "initial_cash": 10}',
        id="json-patch",
    ),
    pytest.param("text/json", b'{"broker_id": "x", "initial_cash": 10}', id="text-json"),
    pytest.param("application/json", b'{"broker_id": ', id="truncated-json"),
    pytest.param("application/json", b"", id="empty-body"),
    pytest.param("application/json", b"not json at all", id="garbage"),
    pytest.param("application/json", b"[]", id="array"),
    pytest.param("application/json", b'"a string"', id="string"),
    pytest.param("application/json", b"42", id="number"),
    pytest.param("application/json", b"null", id="null"),
    pytest.param("application/json", b"true", id="boolean"),
]


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize(("content_type", "payload"), BAD_BODIES)
def test_bad_body_is_invalid_request(
    api: Api, path: str, content_type: str | None, payload: bytes
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    resp = api.client.post(path, content=payload, headers=headers)
    assert_error(resp, 400, "invalid_request", INVALID_JSON_MESSAGE)


def _valid_body(api: Api, path: str) -> dict[str, Any]:
    if path == "/brokers":
        return {"broker_id": new_broker_id(), "initial_cash": 100}
    broker = api.broker()
    if path == "/orders":
        return api.limit_body(broker, "bid", new_symbol(), 1, "1.00", FAR_FUTURE)
    return {"broker_id": broker, "url": "https://example.com/h", "events": ["trade.executed"]}


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/json;charset=UTF-8"],
)
def test_content_type_parameters_accepted(api: Api, path: str, content_type: str) -> None:
    body = _valid_body(api, path)
    resp = api.client.post(
        path, content=dumps(body).encode(), headers={"Content-Type": content_type}
    )
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("path", POST_PATHS)
def test_invalid_request_precedes_validation(api: Api, path: str) -> None:
    # fields that would all fail validation, but sent with the wrong content type
    resp = api.client.post(path, content=b"{}", headers={"Content-Type": "text/plain"})
    assert_error(resp, 400, "invalid_request", INVALID_JSON_MESSAGE)


def test_healthz(api: Api) -> None:
    resp = api.get("/healthz")
    assert resp.status_code == 200
    assert loads(resp.text) == {"status": "ok"}


def test_responses_are_json(api: Api) -> None:
    resp = api.get("/healthz")
    assert resp.headers["content-type"].startswith("application/json")
    resp = api.get("/brokers/nobody-here/balance")
    assert resp.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "path",
    ["/nope", "/brokers/abc", "/brokers/abc/unknown", "/stocks/AAPL", "/webhooks/x/y", "/healthz/"],
)
def test_unknown_route_is_404_with_error_body(api: Api, path: str) -> None:
    resp = api.get(path)
    assert resp.status_code == 404, resp.text
    body = loads(resp.text)
    assert set(body) == {"error", "message"}
    assert isinstance(body["error"], str) and isinstance(body["message"], str)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/brokers", "POST"),
        ("GET", "/orders", "POST"),
        ("PUT", "/brokers", "POST"),
        ("DELETE", "/brokers", "POST"),
        ("PATCH", "/orders/00000000-0000-4000-8000-000000000000", "GET,DELETE"),
        ("POST", "/stocks/ABC/price", "GET"),
        ("DELETE", "/stocks/ABC/book", "GET"),
        ("PUT", "/webhooks", "GET,POST"),
        ("POST", "/healthz", "GET"),
        ("POST", "/brokers/abc/balance", "GET"),
    ],
)
def test_wrong_method_is_405_with_error_body(
    api: Api, method: str, path: str, allowed: str
) -> None:
    resp = api.client.request(method, path)
    assert resp.status_code == 405, resp.text
    # RFC 9110 §15.5.6: a 405 lists every supported method of the path
    listed = {m.strip().upper() for m in resp.headers["allow"].split(",")}
    assert set(allowed.split(",")) <= listed, resp.headers["allow"]
    body = loads(resp.text)
    assert set(body) == {"error", "message"}
    assert isinstance(body["error"], str) and isinstance(body["message"], str)


def test_bodiless_requests_ignore_content_type(api: Api) -> None:
    resp = api.client.request(
        "DELETE",
        "/orders/00000000-0000-4000-8000-000000000000",
        content=b"garbage",
        headers={"Content-Type": "text/plain"},
    )
    assert_error(
        resp,
        404,
        "order_not_found",
        "Order 00000000-0000-4000-8000-000000000000 does not exist",
    )
    resp = api.client.request(
        "GET", "/healthz", content=b"garbage", headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 200


CONTRACT_ROUTES = {
    "/brokers": {"post"},
    "/brokers/{broker_id}/balance": {"get"},
    "/brokers/{broker_id}/orders": {"get"},
    "/orders": {"post"},
    "/orders/{order_id}": {"get", "delete"},
    "/stocks/{symbol}/price": {"get"},
    "/stocks/{symbol}/book": {"get"},
    "/stocks/{symbol}/quote": {"get"},
    "/webhooks": {"post", "get"},
    "/webhooks/{webhook_id}": {"delete"},
    "/healthz": {"get"},
}


def test_openapi_describes_every_contract_route(api: Api) -> None:
    resp = api.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert str(doc["openapi"]).startswith("3.")
    for path, methods in CONTRACT_ROUTES.items():
        assert path in doc["paths"], path
        assert methods <= set(doc["paths"][path]), (path, sorted(doc["paths"][path]))


def test_metrics_endpoint(api: Api) -> None:
    api.get("/healthz")
    resp = api.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in resp.text


def test_oversized_body_is_refused_without_state_change(api: Api) -> None:
    broker_id = new_broker_id()
    body = dumps({"broker_id": broker_id, "initial_cash": 1, "padding": "x" * (4 * 1024 * 1024)})
    resp = api.client.post(
        "/brokers", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code in (400, 413), resp.status_code
    err = loads(resp.text)
    assert set(err) == {"error", "message"}
    assert api.get(f"/brokers/{broker_id}/balance").status_code == 404


DEEP = 100_000


# §1.1/§1.4: a body the server cannot decode is 400 invalid_request, never a 500 (the body is
# either refused by the parser or is not a JSON object).
@pytest.mark.parametrize("path", ["/brokers", "/orders", "/webhooks"])
def test_deeply_nested_body_is_invalid_request(api: Api, path: str) -> None:
    payload = ("[" * DEEP + "]" * DEEP).encode()
    resp = api.client.post(path, content=payload, headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "invalid_request", INVALID_JSON_MESSAGE)


# Deep nesting inside an object field: a 400 (invalid_request if the parser refuses the depth,
# validation_error if it parses and the field is rejected) that changes no state.
def test_deeply_nested_field_is_400(api: Api) -> None:
    broker_id = new_broker_id()
    nested = "[" * DEEP + "]" * DEEP
    payload = f'{{"broker_id": "{broker_id}", "initial_cash": 1, "initial_holdings": {nested}}}'
    resp = api.client.post(
        "/brokers", content=payload.encode(), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400, resp.text
    assert loads(resp.text)["error"] in ("invalid_request", "validation_error")
    assert api.get(f"/brokers/{broker_id}/balance").status_code == 404
