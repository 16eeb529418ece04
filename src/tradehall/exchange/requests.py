"""Raw request bodies and query strings into validated commands, with the contract's messages.

Bodies are decoded with JSON numbers as :class:`~decimal.Decimal` (never floats), then checked field
by field in the contract's table order; the first broken rule raises
:class:`~tradehall.exchange.errors.ValidationError` with its exact text. Nothing here looks at
state, so a request that fails here can never have changed anything. Rules that need state (a
future ``expires_at``, broker existence, funds) belong to the engine, which applies them in the
contract's check order.

``POST /orders`` bodies first try a quick path (:func:`parse_order_body`: one typed decode, string
checks, no ``Decimal``); whatever it does not plainly accept goes through the detailed path, the
only one that produces errors.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import msgspec

from tradehall.core.money import MoneyError, parse_cents
from tradehall.core.timefmt import parse_rfc3339_ns
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.errors import (
    MONEY_PRECISION_MESSAGE,
    InvalidRequest,
    ValidationError,
)
from tradehall.exchange.model import ORDER_STATUSES
from tradehall.exchange.subscriptions import EVENT_TYPES

__all__ = [
    "BROKER_ID",
    "SYMBOL",
    "BrokerRequest",
    "WebhookRequest",
    "decode_body",
    "parse_broker",
    "parse_order",
    "parse_order_body",
    "parse_webhook",
    "query_int",
]

BROKER_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
DOCUMENT_NUMBER = re.compile(r"[a-zA-Z0-9]{1,32}")
SYMBOL = re.compile(r"[A-Z]{1,10}")
MAX_URL_LENGTH = 2048

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_NO_PRICE = msgspec.Raw()
# A price the fast path takes as is: plain decimal digits, at most two places (15 integer digits
# keep the cents far inside the range where money renders without an exponent).
_PLAIN_PRICE = re.compile(rb"(0|[1-9][0-9]{0,14})(?:\.([0-9]{1,2}))?")
_plain_prices: dict[bytes, int] = {}  # price text -> cents: clients repeat a few prices


class BrokerRequest(msgspec.Struct, frozen=True):
    broker_id: str
    initial_cash: int
    initial_holdings: list[tuple[str, int]]


class WebhookRequest(msgspec.Struct, frozen=True):
    broker_id: str
    url: str
    events: list[str]


def decode_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or :class:`InvalidRequest` (contract §1.1, §9)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise InvalidRequest()
    try:
        value = _decoder.decode(body)
    except (msgspec.DecodeError, ValueError, ArithmeticError, RecursionError):
        raise InvalidRequest() from None  # RecursionError: absurdly deep nesting
    if not isinstance(value, dict):
        raise InvalidRequest()
    return value


class _OrderBody(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The usual ``POST /orders`` body, typed: what :func:`parse_order_body` decodes first.

    Unknown fields are refused here (the detailed path ignores them) so that everything this
    decoder accepts is plainly the same document :func:`decode_body` would see.
    """

    type: str
    broker_id: str
    document_number: str
    side: str
    symbol: str
    quantity: int
    price: msgspec.Raw = _NO_PRICE  # its JSON text, parsed to cents without a Decimal
    expires_at: str | None = None


_order_decoder = msgspec.json.Decoder(_OrderBody)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _money(value: object, field: str) -> int:
    try:
        return parse_cents(value)
    except MoneyError as exc:
        if exc.reason == "precision":
            raise ValidationError(MONEY_PRECISION_MESSAGE) from None
        if exc.reason == "range":
            raise ValidationError(f"{field} is out of range") from None
        raise ValidationError(f"{field} must be a number") from None


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _required(body: dict[str, Any], field: str) -> Any:
    value = body.get(field)
    if value is None:
        raise ValidationError(f"{field} is required")
    return value


def parse_broker(body: dict[str, Any]) -> BrokerRequest:
    """``POST /brokers`` (contract §2.1)."""
    broker_id = _required(body, "broker_id")
    if not _matches(BROKER_ID, broker_id):
        raise ValidationError("broker_id must match ^[a-zA-Z0-9_-]{1,64}$")
    cash = _money(_required(body, "initial_cash"), "initial_cash")
    if cash < 0:
        raise ValidationError("initial_cash must be >= 0")
    raw_holdings = body.get("initial_holdings")
    holdings: list[tuple[str, int]] = []
    if raw_holdings is not None:
        if not isinstance(raw_holdings, list):
            raise ValidationError("initial_holdings must be an array")
        seen: set[str] = set()
        for item in raw_holdings:
            if not isinstance(item, dict):
                raise ValidationError("initial_holdings items must be objects")
            symbol, quantity = item.get("symbol"), item.get("quantity")
            if symbol is None:
                raise ValidationError("initial_holdings symbol is required")
            if not _matches(SYMBOL, symbol):
                raise ValidationError("initial_holdings symbol must match ^[A-Z]{1,10}$")
            if not _is_int(quantity) or quantity <= 0:
                raise ValidationError("initial_holdings quantity must be a positive integer")
            if symbol in seen:
                raise ValidationError(f"Duplicate symbol in initial_holdings: {symbol}")
            seen.add(symbol)
            holdings.append((symbol, quantity))
    return BrokerRequest(broker_id, cash, holdings)


def parse_order(body: dict[str, Any]) -> OrderRequest:
    """``POST /orders`` field rules (§2.4); the future-``expires_at`` rule is the engine's."""
    order_type = _required(body, "type")
    if order_type not in ("limit", "market"):
        raise ValidationError(f"Unknown order type: {order_type}. Must be one of: limit, market")
    broker_id = _required(body, "broker_id")
    if not _matches(BROKER_ID, broker_id):
        raise ValidationError("broker_id must match ^[a-zA-Z0-9_-]{1,64}$")
    document_number = _required(body, "document_number")
    if not _matches(DOCUMENT_NUMBER, document_number):
        raise ValidationError("document_number must match ^[a-zA-Z0-9]{1,32}$")
    side = _required(body, "side")
    if side not in ("bid", "ask"):
        raise ValidationError(f"Invalid side: '{side}'. Must be one of: bid, ask")
    symbol = _required(body, "symbol")
    if not _matches(SYMBOL, symbol):
        raise ValidationError("symbol must match ^[A-Z]{1,10}$")
    quantity = _required(body, "quantity")
    if not _is_int(quantity) or quantity <= 0:
        raise ValidationError("quantity must be a positive integer")
    raw_price, raw_expiry = body.get("price"), body.get("expires_at")
    if order_type == "market":
        if raw_price is not None:
            raise ValidationError("price must be null or omitted for market orders")
        if raw_expiry is not None:
            raise ValidationError("expires_at must be null or omitted for market orders")
        return OrderRequest("market", broker_id, document_number, side, symbol, quantity)
    if raw_price is None:
        raise ValidationError("price is required for limit orders")
    price = _money(raw_price, "price")
    if price <= 0:
        raise ValidationError("price must be > 0")
    if raw_expiry is None:
        raise ValidationError("expires_at is required for limit orders")
    try:
        if not isinstance(raw_expiry, str):
            raise ValueError(raw_expiry)
        expires_at = parse_rfc3339_ns(raw_expiry)
    except (ValueError, OverflowError):
        raise ValidationError("expires_at must be a valid RFC 3339 timestamp") from None
    return OrderRequest(
        "limit", broker_id, document_number, side, symbol, quantity, price, expires_at
    )


def parse_order_body(content_type: str | None, body: bytes) -> OrderRequest:
    """``decode_body`` + ``parse_order`` for a ``POST /orders`` request, the usual case cheaply.

    A well-formed order -- exactly the contract's fields, valid values, a plain price -- is
    decoded into a typed Struct and checked with string methods (about 1 µs instead of 4). Any
    other body, or any rule this quick check does not settle, goes through the detailed path,
    which alone produces errors: messages and the order of checks stay exactly the contract's.
    Every body the quick check accepts gives the same :class:`OrderRequest` as the detailed path.
    """
    if content_type != "application/json":
        return parse_order(decode_body(content_type, body))
    try:
        raw = _order_decoder.decode(body)
    except (msgspec.DecodeError, ValueError, ArithmeticError, RecursionError):
        return parse_order(decode_body(content_type, body))
    quick = _quick_order(raw)
    return quick if quick is not None else parse_order(decode_body(content_type, body))


def _quick_order(raw: _OrderBody) -> OrderRequest | None:
    """``raw`` as a request if it plainly passes every field rule; ``None`` to check in detail."""
    broker_id, document_number, symbol = raw.broker_id, raw.document_number, raw.symbol
    quantity, side = raw.quantity, raw.side
    if not (
        side in ("bid", "ask")
        and quantity > 0
        and 0 < len(broker_id) <= 64
        and broker_id.isascii()
        and (broker_id.isalnum() or BROKER_ID.fullmatch(broker_id) is not None)
        and len(document_number) <= 32
        and document_number.isascii()
        and document_number.isalnum()
        and len(symbol) <= 10
        and symbol.isascii()
        and symbol.isalpha()
        and symbol.isupper()
    ):
        return None
    price_text = bytes(raw.price)
    expires = raw.expires_at
    if raw.type == "market":
        if (price_text and price_text != b"null") or expires is not None:
            return None
        return OrderRequest("market", broker_id, document_number, side, symbol, quantity)
    if raw.type != "limit" or expires is None:
        return None
    price = _plain_prices.get(price_text)
    if price is None:
        price = _plain_cents(price_text)
        if price is None:
            return None
    try:
        expires_at = parse_rfc3339_ns(expires)
    except (ValueError, OverflowError):
        return None
    return OrderRequest(
        "limit", broker_id, document_number, side, symbol, quantity, price, expires_at
    )


def _plain_cents(text: bytes) -> int | None:
    """The cents of a plain positive price (``12.5`` -> 1250), cached; ``None`` otherwise."""
    plain = _PLAIN_PRICE.fullmatch(text)
    if plain is None:
        return None
    whole, fraction = plain.groups()
    cents = int(whole) * 100 + (int(fraction.ljust(2, b"0")) if fraction else 0)
    if cents <= 0:
        return None
    if len(_plain_prices) >= 4096:
        _plain_prices.clear()
    _plain_prices[text] = cents
    return cents


def parse_webhook(body: dict[str, Any], *, allow_http: bool) -> WebhookRequest:
    """``POST /webhooks`` (contract §2.10); ``allow_http`` is the development setting."""
    broker_id = _required(body, "broker_id")
    if not isinstance(broker_id, str) or broker_id == "":
        raise ValidationError("broker_id is required")
    url = body.get("url")
    if url is None or url == "":
        raise ValidationError("url is required")
    if not isinstance(url, str):
        raise ValidationError("url must be a valid absolute URL")
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"url must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        # RFC 3986 allows no whitespace or control characters anywhere in a URI.
        valid = bool(parts.scheme and parts.netloc and parts.hostname) and not any(
            ch.isspace() or ch < " " or ch == "\x7f" for ch in url
        )
        _ = parts.port  # raises on a malformed port
    except ValueError:
        valid = False
    if not valid:
        raise ValidationError("url must be a valid absolute URL")
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise ValidationError("url must use https scheme")
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise ValidationError("events must be a non-empty array")
    for event in events:
        if event not in EVENT_TYPES:
            raise ValidationError(
                f"Unknown event type: {event}. Must be one of: " + ", ".join(EVENT_TYPES)
            )
    return WebhookRequest(broker_id, url, list(events))


def query_int(raw: str | None, default: int, low: int, high: int | None, message: str) -> int:
    """A query integer: plain decimal digits within ``[low, high]`` (contract §9)."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise ValidationError(message)
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise ValidationError(message)
    return value


def status_filter(raw: str | None) -> str | None:
    """The ``status`` query of a broker's order list."""
    if raw is None:
        return None
    if raw not in ORDER_STATUSES:
        raise ValidationError(
            f"Invalid status filter: '{raw}'. Must be one of: " + ", ".join(ORDER_STATUSES)
        )
    return raw
