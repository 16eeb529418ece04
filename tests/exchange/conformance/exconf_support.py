"""Helpers for the Exchange conformance suite: an HTTP wrapper, a webhook sink, contract checks.

Money is checked on the raw JSON text: responses are parsed with ``parse_float=Decimal`` so a
number keeps its written exponent, and a money field must be a ``Decimal`` with exactly two
decimals (``150.00`` passes, ``150``/``150.0``/``1.5E+2`` fail). Timestamps must be second-granular
RFC 3339 with a trailing ``Z``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx

FAR_FUTURE = "2099-12-31T23:59:59Z"
INVALID_JSON_MESSAGE = "Request body must be valid JSON with Content-Type: application/json"
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

ORDER_COMMON_KEYS = {
    "order_id",
    "type",
    "broker_id",
    "document_number",
    "side",
    "symbol",
    "quantity",
    "filled_quantity",
    "remaining_quantity",
    "cancelled_quantity",
    "status",
    "created_at",
    "average_price",
    "trades",
}
LIMIT_ORDER_KEYS = ORDER_COMMON_KEYS | {"price", "expires_at", "cancelled_at", "expired_at"}
MARKET_ORDER_KEYS = ORDER_COMMON_KEYS
LIST_ITEM_KEYS = {
    "order_id",
    "type",
    "document_number",
    "symbol",
    "side",
    "quantity",
    "filled_quantity",
    "remaining_quantity",
    "cancelled_quantity",
    "status",
    "average_price",
    "created_at",
}
TRADE_KEYS = {"trade_id", "price", "quantity", "executed_at"}
WEBHOOK_KEYS = {"webhook_id", "broker_id", "event", "url", "created_at", "updated_at"}
EVENTS = ("trade.executed", "order.expired", "order.cancelled")


def D(text: str) -> Decimal:
    return Decimal(text)


def loads(text: str) -> Any:
    """Parse JSON keeping every non-integer number as the exact ``Decimal`` written."""
    return json.loads(text, parse_float=Decimal)


def dumps(obj: Any) -> str:
    """Serialise to JSON, writing ``Decimal`` values verbatim (``150.000`` stays ``150.000``)."""
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    return json.dumps(obj)


def money(value: Any) -> Decimal:
    """Assert ``value`` was written as a number with exactly two decimals; return it."""
    assert isinstance(value, Decimal), f"money must be a JSON number with 2 decimals: {value!r}"
    exponent = value.as_tuple().exponent
    assert exponent == -2, f"money must be written with exactly 2 decimals, got {value}"
    return value


def money_or_none(value: Any) -> Decimal | None:
    return None if value is None else money(value)


def ts(value: Any) -> str:
    """Assert a second-granular RFC 3339 UTC timestamp with a trailing ``Z``."""
    assert isinstance(value, str) and TS_RE.match(value), f"bad timestamp: {value!r}"
    return value


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and UUID_RE.match(value) is not None


def utc_now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expires_in(seconds: float) -> str:
    """An ``expires_at`` ``seconds`` from now, with millisecond precision."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def truncate_ts(text: str) -> str:
    """Second-granular ``Z`` rendering of an RFC 3339 timestamp (sub-seconds dropped)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_next_second() -> None:
    """Sleep until just past the next wall-clock second boundary (second-granular timestamps)."""
    now = time.time()
    time.sleep(1.0 - (now % 1.0) + 0.05)


def new_symbol(length: int = 10) -> str:
    return "".join(random.choices(string.ascii_uppercase, k=length))


def new_broker_id() -> str:
    return "b-" + uuid.uuid4().hex[:20]


def assert_error(resp: httpx.Response, status: int, error: str, message: str | None = None) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = loads(resp.text)
    assert isinstance(body, dict) and set(body) == {"error", "message"}, resp.text
    assert body["error"] == error, resp.text
    assert isinstance(body["message"], str) and body["message"], resp.text
    if message is not None:
        assert body["message"] == message, resp.text


def check_trade(trade: dict[str, Any]) -> None:
    assert set(trade) == TRADE_KEYS, trade
    assert is_uuid(trade["trade_id"])
    assert money(trade["price"]) > 0
    assert isinstance(trade["quantity"], int) and trade["quantity"] > 0
    ts(trade["executed_at"])


def check_order(order: dict[str, Any]) -> dict[str, Any]:
    """Shape, rendering and per-order invariants of a full order object (§2.5)."""
    if order["type"] == "limit":
        assert set(order) == LIMIT_ORDER_KEYS, sorted(order)
        money(order["price"])
        ts(order["expires_at"])
        if order["cancelled_at"] is not None:
            ts(order["cancelled_at"])
        if order["expired_at"] is not None:
            ts(order["expired_at"])
    else:
        assert order["type"] == "market"
        assert set(order) == MARKET_ORDER_KEYS, sorted(order)
    assert is_uuid(order["order_id"])
    ts(order["created_at"])
    for key in ("quantity", "filled_quantity", "remaining_quantity", "cancelled_quantity"):
        assert isinstance(order[key], int) and not isinstance(order[key], bool), (key, order)
    assert order["quantity"] == (
        order["filled_quantity"] + order["remaining_quantity"] + order["cancelled_quantity"]
    )
    for trade in order["trades"]:
        check_trade(trade)
    assert sum(t["quantity"] for t in order["trades"]) == order["filled_quantity"]
    if order["filled_quantity"] == 0:
        assert order["average_price"] is None
    else:
        cents = sum(int(t["price"] * 100) * t["quantity"] for t in order["trades"])
        expected = Decimal(cents // order["filled_quantity"]) / 100
        assert money(order["average_price"]) == expected
    if order["status"] in ("filled", "cancelled", "expired"):
        assert order["remaining_quantity"] == 0
    return order


@dataclass
class ExchangeServer:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    log_file: IO[bytes]


SERVER_LOGS: list[Path] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_exchange(tmp_dir: Path, extra_env: dict[str, str] | None = None) -> ExchangeServer:
    """Launch the exchange subprocess and wait (max 15 s) until ``GET /healthz`` answers 200."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    data_dir = tmp_dir / "data"
    data_dir.mkdir(exist_ok=True)
    log_path = tmp_dir / "stderr.log"
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "TRADEHALL_WEBHOOK_ALLOW_HTTP": "1",
            "TRADEHALL_EXPIRATION_INTERVAL": "100ms",
            "TRADEHALL_DATA_DIR": str(data_dir),
        }
    )
    env.update(extra_env or {})
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradehall", "exchange", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    SERVER_LOGS.append(log_path)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15.0
    while True:
        if proc.poll() is not None:
            log_file.close()
            raise RuntimeError(
                f"exchange exited with {proc.returncode} during startup:\n{log_path.read_text()}"
            )
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_exchange(proc)
            log_file.close()
            raise RuntimeError(f"exchange not healthy within 15 s:\n{log_path.read_text()}")
        time.sleep(0.1)
    return ExchangeServer(proc=proc, base_url=base_url, log_path=log_path, log_file=log_file)


def stop_exchange(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then kill after a grace period."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class Api:
    """Thin wrapper over ``httpx.Client`` with contract-aware shortcuts."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    # raw requests ---------------------------------------------------------------------------
    def get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        return self.client.get(path, params=params)

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.client.post(
            path, content=dumps(body).encode(), headers={"Content-Type": "application/json"}
        )

    def delete(self, path: str) -> httpx.Response:
        return self.client.delete(path)

    # brokers ------------------------------------------------------------------------------
    def broker(self, cash: str | int = "1000000.00", holdings: dict[str, int] | None = None) -> str:
        broker_id = new_broker_id()
        body: dict[str, Any] = {"broker_id": broker_id, "initial_cash": Decimal(str(cash))}
        if holdings:
            body["initial_holdings"] = [{"symbol": s, "quantity": q} for s, q in holdings.items()]
        resp = self.post("/brokers", body)
        assert resp.status_code == 201, resp.text
        return broker_id

    def balance(self, broker_id: str) -> dict[str, Any]:
        resp = self.get(f"/brokers/{broker_id}/balance")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = loads(resp.text)
        return body

    def holding(self, broker_id: str, symbol: str) -> dict[str, Any] | None:
        for item in self.balance(broker_id)["holdings"]:
            if item["symbol"] == symbol:
                return dict(item)
        return None

    def listing(self, broker_id: str, **params: Any) -> dict[str, Any]:
        resp = self.get(f"/brokers/{broker_id}/orders", params=params or None)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = loads(resp.text)
        return body

    # orders -------------------------------------------------------------------------------
    @staticmethod
    def limit_body(
        broker_id: str,
        side: str,
        symbol: str,
        quantity: int,
        price: str,
        expires_at: str = FAR_FUTURE,
        document_number: str = "DOC123",
    ) -> dict[str, Any]:
        return {
            "type": "limit",
            "broker_id": broker_id,
            "document_number": document_number,
            "side": side,
            "symbol": symbol,
            "quantity": quantity,
            "price": Decimal(price),
            "expires_at": expires_at,
        }

    @staticmethod
    def market_body(broker_id: str, side: str, symbol: str, quantity: int) -> dict[str, Any]:
        return {
            "type": "market",
            "broker_id": broker_id,
            "document_number": "DOC123",
            "side": side,
            "symbol": symbol,
            "quantity": quantity,
        }

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.post("/orders", body)
        assert resp.status_code == 201, resp.text
        return check_order(loads(resp.text))

    def limit(
        self,
        broker_id: str,
        side: str,
        symbol: str,
        quantity: int,
        price: str,
        expires_at: str = FAR_FUTURE,
    ) -> dict[str, Any]:
        return self.submit(self.limit_body(broker_id, side, symbol, quantity, price, expires_at))

    def market(self, broker_id: str, side: str, symbol: str, quantity: int) -> dict[str, Any]:
        return self.submit(self.market_body(broker_id, side, symbol, quantity))

    def order(self, order_id: str) -> dict[str, Any]:
        resp = self.get(f"/orders/{order_id}")
        assert resp.status_code == 200, resp.text
        return check_order(loads(resp.text))

    def cancel(self, order_id: str) -> dict[str, Any]:
        resp = self.delete(f"/orders/{order_id}")
        assert resp.status_code == 200, resp.text
        return check_order(loads(resp.text))

    # market data --------------------------------------------------------------------------
    def book(self, symbol: str, depth: int | None = None) -> dict[str, Any]:
        params = None if depth is None else {"depth": depth}
        resp = self.get(f"/stocks/{symbol}/book", params=params)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = loads(resp.text)
        return body

    def price(self, symbol: str) -> dict[str, Any]:
        resp = self.get(f"/stocks/{symbol}/price")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = loads(resp.text)
        return body

    def quote(self, symbol: str, side: str, quantity: int) -> dict[str, Any]:
        resp = self.get(f"/stocks/{symbol}/quote", params={"side": side, "quantity": quantity})
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = loads(resp.text)
        return body

    # webhooks -----------------------------------------------------------------------------
    def subscribe(self, broker_id: str, url: str, events: list[str]) -> list[dict[str, Any]]:
        resp = self.post("/webhooks", {"broker_id": broker_id, "url": url, "events": events})
        assert resp.status_code in (200, 201), resp.text
        hooks: list[dict[str, Any]] = loads(resp.text)["webhooks"]
        return hooks


@dataclass
class Delivery:
    seq: int
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    received: float = 0.0

    @property
    def body(self) -> Any:
        return loads(self.raw.decode())


@dataclass
class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 recording every request and answering 200."""

    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: dict[str, tuple[int, int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                delay = receiver.delays.get(self.path, 0.0)
                if delay:
                    time.sleep(delay)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with receiver.lock:
                    left, status = receiver.failures.get(self.path, (0, 200))
                    if left > 0:
                        receiver.failures[self.path] = (left - 1, status)
                    else:
                        status = 200
                    receiver.deliveries.append(
                        Delivery(
                            seq=len(receiver.deliveries),
                            method=self.command,
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            raw=raw,
                            received=time.monotonic(),
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _record

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def new_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{uuid.uuid4().hex}"

    def fail_next(self, url: str, count: int, status: int = 500) -> None:
        """Answer the next ``count`` requests to ``url`` with ``status`` instead of 200."""
        with self.lock:
            self.failures[self._path(url)] = (count, status)

    def delay(self, url: str, seconds: float) -> None:
        """Hold every answer to ``url`` for ``seconds`` (a slow receiver)."""
        with self.lock:
            self.delays[self._path(url)] = seconds

    def _path(self, url: str) -> str:
        return url.split(str(self.port), 1)[1]

    def raw_at(self, url: str) -> list[Delivery]:
        """Every request to ``url`` (retries included), arrival order."""
        path = self._path(url)
        with self.lock:
            return [item for item in self.deliveries if item.path == path]

    def at(self, url: str) -> list[Delivery]:
        """Deliveries to ``url``, one per ``X-Delivery-Id`` (retries collapsed), arrival order."""
        path = self._path(url)
        seen: set[str] = set()
        out: list[Delivery] = []
        with self.lock:
            items = list(self.deliveries)
        for item in items:
            if item.path != path:
                continue
            key = item.headers.get("x-delivery-id", f"#{item.seq}")
            if key in seen:
                continue
            seen.add(key)
            out.append(item)
        return out

    def wait(self, url: str, count: int, timeout: float = 5.0) -> list[Delivery]:
        """Poll until at least ``count`` distinct deliveries reached ``url``; return them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.at(url)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.02)
