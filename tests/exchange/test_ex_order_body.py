"""``parse_order_body`` (typed quick decode) answers exactly like ``parse_order(decode_body())``.

The quick path may only ever accept what the detailed path accepts, with the same result; every
refusal must come out of the detailed path, so its message and check order are the contract's.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradehall.exchange import requests as rq
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.errors import ExchangeError

JSON = "application/json"
BASE: dict[str, Any] = {
    "type": "limit",
    "broker_id": "broker-1",
    "document_number": "DOC1",
    "side": "bid",
    "symbol": "AAPL",
    "quantity": 10,
    "price": 150.25,
    "expires_at": "2030-01-01T00:00:00Z",
}


def _outcome(parse: Any, content_type: str | None, body: bytes) -> object:
    try:
        return parse(content_type, body)
    except ExchangeError as exc:
        return (type(exc).__name__, exc.status, exc.code, exc.message)


def _detailed(content_type: str | None, body: bytes) -> OrderRequest:
    return rq.parse_order(rq.decode_body(content_type, body))


def _same(content_type: str | None, body: bytes) -> object:
    quick = _outcome(rq.parse_order_body, content_type, body)
    assert quick == _outcome(_detailed, content_type, body), body
    return quick


def _body(**changes: Any) -> bytes:
    fields = {**BASE, **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not _DROP}).encode()


_DROP = object()

RAW_CASES = [
    # prices as the client wrote them: JSON text is parsed without floats either way
    b'{"type":"limit","broker_id":"b","document_number":"1","side":"ask","symbol":"A",'
    b'"quantity":1,"price":0.1,"expires_at":"2030-01-01T00:00:00Z"}',
    b'{"type":"limit","broker_id":"b","document_number":"1","side":"ask","symbol":"A",'
    b'"quantity":1,"price":10.000,"expires_at":"2030-01-01T00:00:00Z"}',
    b'{"type":"limit","broker_id":"b","document_number":"1","side":"ask","symbol":"A",'
    b'"quantity":1,"price":1e2,"expires_at":"2030-01-01T00:00:00Z"}',
    b'{"type":"limit","broker_id":"b","document_number":"1","side":"ask","symbol":"A",'
    b'"quantity":1,"price":1.001,"expires_at":"2030-01-01T00:00:00Z"}',
    b'{"type":"limit","broker_id":"b","document_number":"1","side":"ask","symbol":"A",'
    b'"quantity":1,"price":-0.0,"expires_at":"2030-01-01T00:00:00Z"}',
    b'{"type":"limit","broker_id":"b","document_number":"1","side":"ask","symbol":"A",'
    b'"quantity":1,"price":0.00,"expires_at":"2030-01-01T00:00:00Z"}',
    b'{"type":"limit","broker_id":"b","document_number":"1","side":"ask","symbol":"A",'
    b'"quantity":1,"price":"1.00","expires_at":"2030-01-01T00:00:00Z"}',
    b'{"type":"limit","broker_id":"b","document_number":"1","side":"ask","symbol":"A",'
    b'"quantity":1,"price":12345678901234567890.5,"expires_at":"2030-01-01T00:00:00Z"}',
    b'{"type":"limit","broker_id":"b","document_number":"1","side":"ask","symbol":"A",'
    b'"quantity":1,"price" : 7 ,"expires_at":"2030-01-01T00:00:00+02:00"}',
    # duplicate keys: the last one wins on both paths
    b'{"type":"market","type":"limit","broker_id":"b","document_number":"1","side":"bid",'
    b'"symbol":"A","quantity":1,"price":1,"price":2.5,"expires_at":"2030-01-01T00:00:00Z"}',
    b'{"type":"limit","type":"market","broker_id":"b","document_number":"1","side":"bid",'
    b'"symbol":"A","quantity":1}',
    # unknown fields (ignored by the contract), nulls, wrong types, not an object, not JSON
    b'{"type":"market","broker_id":"b","document_number":"1","side":"bid","symbol":"A",'
    b'"quantity":1,"note":{"deep":[1,2,{"x":null}]}}',
    b'{"type":"market","broker_id":"b","document_number":"1","side":"bid","symbol":"A",'
    b'"quantity":1,"price":null,"expires_at":null}',
    b'{"type":"market","broker_id":"b","document_number":"1","side":"bid","symbol":"A",'
    b'"quantity":1,"note":[1,}',
    b'{"type":"market","broker_id":"b","document_number":"1","side":"bid","symbol":"A",'
    b'"quantity":1} trailing',
    b'{"type":"market","broker_id":"b","document_number":"1","side":"bid","symbol":"A",'
    b'"quantity":1.0}',
    b'{"type":"market","broker_id":"b","document_number":"1","side":"bid","symbol":"A",'
    b'"quantity":true}',
    b'{"type":"market","broker_id":"b","document_number":"1","side":"bid","symbol":"A",'
    b'"quantity":123456789012345678901234567890}',
    b'{"type":"market","broker_id":"b\\u0031","document_number":"1","side":"bid",'
    b'"symbol":"A","quantity":1}',
    b'{"type":"market","broker_id":"b\\u00e9","document_number":"1","side":"bid",'
    b'"symbol":"A","quantity":1}',
    b'{"type":"market","broker_id":"b","document_number":"1","side":"bid","symbol":"\\u0410",'
    b'"quantity":1}',
    b'{"type":null,"broker_id":"b","document_number":"1","side":"bid","symbol":"A","quantity":1}',
    b"[1, 2]",
    b'"order"',
    b"",
    b"\xff\xfe",
    b"[" * 5000 + b"]" * 5000,
    b'{"type":"market","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
]


@pytest.mark.parametrize("body", RAW_CASES)
def test_raw_bodies_answer_like_the_detailed_path(body: bytes) -> None:
    _same(JSON, body)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"type": "market", "price": _DROP, "expires_at": _DROP},
        {"type": "market", "price": None, "expires_at": None},
        {"type": "market"},
        {"type": "market", "expires_at": _DROP},
        {"type": "stop"},
        {"type": _DROP},
        {"broker_id": ""},
        {"broker_id": "___"},
        {"broker_id": "a" * 64},
        {"broker_id": "a" * 65},
        {"broker_id": "bad id"},
        {"broker_id": 7},
        {"document_number": ""},
        {"document_number": "A" * 32},
        {"document_number": "A" * 33},
        {"document_number": "A-1"},
        {"side": "buy"},
        {"side": None},
        {"symbol": "aapl"},
        {"symbol": "ABCDEFGHIJ"},
        {"symbol": "ABCDEFGHIJK"},
        {"symbol": "AB1"},
        {"quantity": 0},
        {"quantity": -3},
        {"quantity": "10"},
        {"price": _DROP},
        {"price": None},
        {"price": 0},
        {"price": -1},
        {"price": 5},
        {"price": True},
        {"expires_at": _DROP},
        {"expires_at": "tomorrow"},
        {"expires_at": "2030-02-30T00:00:00Z"},
        {"expires_at": "2030-01-01T00:00:00.123456789+05:30"},
        {"expires_at": 1893456000},
    ],
)
def test_field_rules_answer_like_the_detailed_path(changes: dict[str, Any]) -> None:
    _same(JSON, _body(**changes))


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/json; charset=utf-8", "APPLICATION/JSON"]
)
def test_content_types_answer_like_the_detailed_path(content_type: str | None) -> None:
    _same(content_type, _body())


def test_the_usual_order_does_not_take_the_detailed_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(body: dict[str, Any]) -> OrderRequest:
        raise AssertionError("detailed path taken")

    expected = _detailed(JSON, _body())
    monkeypatch.setattr(rq, "parse_order", refuse)
    assert rq.parse_order_body(JSON, _body()) == expected
    market = _body(type="market", price=_DROP, expires_at=_DROP)
    assert rq.parse_order_body(JSON, market).type == "market"
    with pytest.raises(AssertionError, match="detailed path"):
        rq.parse_order_body(JSON, _body(side="buy"))


_text = st.one_of(
    st.sampled_from(["", "AAPL", "aapl", "b-1_x", "DOC9", "bid", "ask", "limit", "market", "A1"]),
    st.text(max_size=12),
)
_number = st.one_of(
    st.integers(-5, 10**6),
    st.decimals(min_value=-10, max_value=10**6, places=3, allow_nan=False),
    st.sampled_from(["1e2", "0.10", "1.0", "00.5", "12.345"]),
)
_value = st.one_of(
    st.none(), st.booleans(), _text, _number, st.just([]), st.just({"a": 1}), st.just(_DROP)
)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "type": st.one_of(st.sampled_from(["limit", "market"]), _value),
            "broker_id": st.one_of(st.just("b"), _value),
            "document_number": st.one_of(st.just("D1"), _value),
            "side": st.one_of(st.sampled_from(["bid", "ask"]), _value),
            "symbol": st.one_of(st.just("AAPL"), _value),
            "quantity": st.one_of(st.integers(-2, 10**20), _value),
            "price": st.one_of(_number, _value),
            "expires_at": st.one_of(
                st.sampled_from(["2030-01-01T00:00:00Z", "2030-01-01T00:00:00.5-01:00"]), _value
            ),
        }
    )
)
def test_generated_bodies_answer_like_the_detailed_path(fields: dict[str, Any]) -> None:
    # Numbers are written as the JSON text a client would send (no float round trip).
    parts = []
    for name, value in fields.items():
        if value is _DROP:
            continue
        if isinstance(value, str) and value[:1].isdigit() and name == "price":
            text = value
        elif not isinstance(value, bool | int | str | type(None) | list | dict):
            text = str(value)  # a Decimal, as its exact digits
        else:
            text = msgspec.json.encode(value).decode()
        parts.append(f'"{name}":{text}')
    _same(JSON, ("{" + ",".join(parts) + "}").encode())
