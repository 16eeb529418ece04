"""Market-data WebSocket stream against a real uvicorn server on 127.0.0.1.

Clients are real ``websockets`` connections; orders go through the REST API (or, for the slow-client
flood, straight into the service on the server's own loop). The service runs on a
:class:`VirtualClock`, so expiry is driven by moving the clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from services import serve
from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.core.timefmt import format_ns
from tradehall.exchange import requests as rq
from tradehall.exchange.app import create_app
from tradehall.exchange.marketdata import MAX_FRAME_BYTES, MarketData
from tradehall.exchange.marketdata_state import wire_size
from tradehall.exchange.marketdata_ws import Subscriber
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

SYMBOL = "ACME"
T0 = 1_790_000_000 * 10**9
FAR = "2030-01-01T00:00:00Z"
Msg = dict[str, Any]


@dataclass
class Server:
    service: ExchangeService
    clock: VirtualClock
    http: httpx.AsyncClient
    ws_url: str

    async def order(self, broker: str, side: str, qty: int, price: str | None, **kw: Any) -> Msg:
        body: Msg = {
            "type": "limit" if price is not None else "market",
            "broker_id": broker,
            "document_number": "1",
            "side": side,
            "symbol": SYMBOL,
            "quantity": qty,
        }
        if price is not None:
            body["price"] = float(price)
            body["expires_at"] = kw.get("expires_at", FAR)
        resp = await self.http.post("/orders", json=body)
        result: Msg = resp.json()
        return result

    async def rest_book(self) -> Msg:
        resp = await self.http.get(f"/stocks/{SYMBOL}/book?depth=50&with_sequence=1")
        assert resp.status_code == 200
        book: Msg = json.loads(resp.content, parse_float=Decimal)
        return book


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with running(ExchangeSettings()) as srv:
        yield srv


@pytest.fixture
async def durable_server(tmp_path: Path) -> AsyncIterator[Server]:
    """With a journal: market data is released only after each group commit."""
    async with running(ExchangeSettings(data_dir=str(tmp_path), journal_sync="none")) as srv:
        yield srv


@contextlib.asynccontextmanager
async def running(settings: ExchangeSettings) -> AsyncIterator[Server]:
    clock = VirtualClock(T0)
    service = ExchangeService(settings, clock=clock, ids=SequentialIds())
    async with (
        serve(create_app(service), lifespan="on") as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        srv = Server(service, clock, http, f"ws://127.0.0.1:{port}/ws/market")
        for broker in ("alice", "bob", "carol"):
            resp = await http.post(
                "/brokers",
                json={
                    "broker_id": broker,
                    "initial_cash": 10_000_000,
                    "initial_holdings": [{"symbol": SYMBOL, "quantity": 100_000}],
                },
            )
            assert resp.status_code == 201
        yield srv


class Feed:
    """One WebSocket client: frames are JSON arrays; hand out their messages one by one."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.buffer: deque[Msg] = deque()

    async def send(self, **msg: Any) -> None:
        await self.ws.send(json.dumps(msg))

    async def next(self, wait: float = 10.0) -> Msg:
        while not self.buffer:
            frame = await asyncio.wait_for(self.ws.recv(), wait)
            batch = json.loads(frame, parse_float=Decimal)
            assert isinstance(batch, list) and batch
            self.buffer.extend(batch)
        return self.buffer.popleft()

    async def until(self, pred: Callable[[Msg], bool], wait: float = 10.0) -> Msg:
        async with asyncio.timeout(wait):
            while True:
                msg = await self.next()
                if pred(msg):
                    return msg


@dataclass
class Replica:
    """A client-side L2 book kept from snapshot + diffs, checking sequence continuity."""

    seq: int | None = None
    bids: dict[Decimal, tuple[int, int]] = field(default_factory=dict)
    asks: dict[Decimal, tuple[int, int]] = field(default_factory=dict)
    trade_seq: int | None = None
    trades: list[Msg] = field(default_factory=list)

    def reset(self, seq: int, bids: list[Msg], asks: list[Msg]) -> None:
        self.seq, self.bids, self.asks = seq, {}, {}
        self._apply(bids, asks)

    def on(self, msg: Msg) -> None:
        kind = msg["type"]
        if kind == "book_snapshot":
            self.reset(msg["sequence"], msg["bids"], msg["asks"])
        elif kind == "book" and self.seq is not None and msg["sequence"] > self.seq:
            assert msg["first_sequence"] == self.seq + 1, (msg, self.seq)
            self._apply(msg["bids"], msg["asks"])
            self.seq = msg["sequence"]
        elif kind == "trades_snapshot":
            self.trade_seq = msg["sequence"]
        elif kind == "trade":
            assert self.trade_seq is not None and msg["sequence"] == self.trade_seq + 1
            self.trade_seq = msg["sequence"]
            self.trades.append(msg)

    def _apply(self, bids: list[Msg], asks: list[Msg]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for level in levels:
                if level["total_quantity"] == 0:
                    side.pop(level["price"], None)
                else:
                    side[level["price"]] = (level["total_quantity"], level["order_count"])

    def levels(self) -> tuple[list[Msg], list[Msg]]:
        def render(side: dict[Decimal, tuple[int, int]], reverse: bool) -> list[Msg]:
            return [
                {"price": p, "total_quantity": q, "order_count": c}
                for p, (q, c) in sorted(side.items(), reverse=reverse)
            ]

        return render(self.bids, True), render(self.asks, False)


async def connect(srv: Server, channels: list[str] | None = None) -> tuple[Feed, Replica]:
    ws = await websockets.connect(srv.ws_url)
    feed = Feed(ws)
    await feed.send(op="subscribe", symbol=SYMBOL, channels=channels or ["book", "trades"], id=1)
    ack = await feed.next()
    assert ack == {
        "type": "subscribed",
        "symbol": SYMBOL,
        "channels": channels or ["book", "trades"],
        "id": 1,
    }
    return feed, Replica()


async def catch_up(feed: Feed, replica: Replica, sequence: int) -> None:
    while replica.seq is None or replica.seq < sequence:
        replica.on(await feed.next())


# ------------------------------------------------------------------------------ protocol
async def test_acks_and_errors(server: Server) -> None:
    async with websockets.connect(server.ws_url) as ws:
        feed = Feed(ws)
        await feed.send(op="subscribe", symbol="NOPE", channels=["book"], id="x")
        err = await feed.next()
        assert err == {
            "type": "error",
            "code": "symbol_not_found",
            "message": "Symbol NOPE not found",
            "id": "x",
        }
        await ws.send("{not json")
        assert (await feed.next())["code"] == "invalid_request"
        await feed.send(op="watch", symbol=SYMBOL)
        assert (await feed.next())["code"] == "invalid_request"
        await feed.send(op="subscribe", symbol=SYMBOL, channels=["book", "candles"])
        bad = await feed.next()
        assert bad["code"] == "invalid_request" and "channels" in bad["message"]
        await ws.send(b"\x00binary")
        assert (await feed.next())["code"] == "invalid_request"
        await feed.send(op="symbols", id=2)
        assert await feed.next() == {"type": "symbols", "symbols": [SYMBOL], "id": 2}
        # the connection survives bad messages
        await feed.send(op="subscribe", symbol=SYMBOL, channels=["ticker"], id=3)
        assert (await feed.next())["type"] == "subscribed"
        ticker = await feed.next()
        assert ticker["type"] == "ticker" and ticker["best_bid"] is None


async def test_snapshot_diffs_trades_and_ticker(server: Server) -> None:
    await server.order("alice", "ask", 10, "150.00")
    feed, _ = await connect(server, ["book", "trades", "ticker"])
    snapshot = await feed.next()
    assert snapshot == {
        "type": "book_snapshot",
        "symbol": SYMBOL,
        "sequence": 1,
        "bids": [],
        "asks": [{"price": Decimal("150.00"), "total_quantity": 10, "order_count": 1}],
    }
    assert (await feed.next())["type"] == "trades_snapshot"
    assert (await feed.next())["best_ask"] == Decimal("150.00")

    await server.order("bob", "ask", 5, "150.00")
    diff = await feed.until(lambda m: m["type"] == "book")
    assert diff["first_sequence"] == diff["sequence"] == 2
    assert diff["asks"] == [{"price": Decimal("150.00"), "total_quantity": 15, "order_count": 2}]

    # a limit bid above the ask trades at the ask; the ask level shrinks, the bid never rests
    order = await server.order("carol", "bid", 12, "151.00")
    assert order["status"] == "filled"
    seen = [await feed.next()]
    while not (seen[-1]["type"] == "ticker" and seen[-1]["last_price"] is not None):
        seen.append(await feed.next())
    kinds = [m["type"] for m in seen]
    assert kinds.count("trade") == 2 and kinds.count("book") == 1
    book = next(m for m in seen if m["type"] == "book")
    assert book["sequence"] == 3 and book["bids"] == []
    assert book["asks"] == [{"price": Decimal("150.00"), "total_quantity": 3, "order_count": 1}]
    trades = [m for m in seen if m["type"] == "trade"]
    assert [t["sequence"] for t in trades] == [1, 2]
    assert [t["quantity"] for t in trades] == [10, 2]
    assert all(t["price"] == Decimal("150.00") and t["taker_side"] == "bid" for t in trades)
    assert trades[0]["executed_at"] == format_ns(server.clock.time_ns())
    assert {t["trade_id"] for t in trades} == {t["trade_id"] for t in order["trades"]}
    ticker = seen[-1]
    assert ticker["last_price"] == Decimal("150.00") and ticker["best_ask_quantity"] == 3

    # cancel deletes the level: absolute zero
    resting = await server.order("alice", "bid", 4, "149.00")
    await feed.until(lambda m: m["type"] == "book" and m["sequence"] == 4)
    assert (await server.http.delete(f"/orders/{resting['order_id']}")).status_code == 200
    gone = await feed.until(lambda m: m["type"] == "book")
    assert gone["sequence"] == 5
    assert gone["bids"] == [{"price": Decimal("149.00"), "total_quantity": 0, "order_count": 0}]
    await feed.ws.close()


async def test_expiry_unsubscribe_and_rest_sequence(server: Server) -> None:
    soon = format_ns(T0 + 2 * 10**9)
    await server.order("alice", "bid", 7, "99.00", expires_at=soon)
    plain = await server.http.get(f"/stocks/{SYMBOL}/book")
    assert "sequence" not in plain.json()  # the contract response is untouched
    assert (await server.rest_book())["sequence"] == 1
    feed, replica = await connect(server, ["book"])
    replica.on(await feed.next())
    assert replica.bids == {Decimal("99.00"): (7, 1)}
    server.clock.set_ns(T0 + 3 * 10**9)
    assert server.service.expire_due() == 1
    replica.on(await feed.until(lambda m: m["type"] == "book"))
    assert replica.seq == 2 and replica.bids == {}
    await feed.send(op="unsubscribe", symbol=SYMBOL, channels=["book"], id=9)
    assert await feed.next() == {
        "type": "unsubscribed",
        "symbol": SYMBOL,
        "channels": ["book"],
        "id": 9,
    }
    await server.order("bob", "ask", 1, "120.00")
    await feed.send(op="symbols", id=10)
    assert (await feed.next())["type"] == "symbols"  # nothing for the book came in between
    await feed.ws.close()


# ------------------------------------------------------------------------------ property
async def _random_flow(
    server: Server, rng: random.Random, steps: int, concurrency: int = 1
) -> None:
    placed: list[str] = []
    for _ in range(0, steps, concurrency):
        await asyncio.gather(*(_random_step(server, rng, placed) for _ in range(concurrency)))


async def _random_step(server: Server, rng: random.Random, placed: list[str]) -> None:
    roll = rng.random()
    broker = rng.choice(["alice", "bob", "carol"])
    side = rng.choice(["bid", "ask"])
    if roll < 0.55:
        price = f"{100 + rng.randint(-15, 15) / 100:.2f}"
        order = await server.order(broker, side, rng.randint(1, 20), price)
        placed.append(order["order_id"])
    elif roll < 0.65:
        await server.order(broker, side, rng.randint(1, 30), None)
    elif roll < 0.75:
        deadline = format_ns(server.clock.time_ns() + rng.randint(1, 3) * 10**9)
        price = f"{100 + rng.randint(-15, 15) / 100:.2f}"
        order = await server.order(broker, side, rng.randint(1, 20), price, expires_at=deadline)
        placed.append(order["order_id"])
    elif roll < 0.9 and placed:
        await server.http.delete(f"/orders/{rng.choice(placed)}")
    else:
        server.clock.set_ns(server.clock.time_ns() + 10**9)
        server.service.expire_due()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_snapshot_plus_diffs_reproduce_rest_book(server: Server, seed: int) -> None:
    """Property: early, late and REST-spliced clients all end with exactly the REST book."""
    rng = random.Random(seed)
    early, early_book = await connect(server)
    await _random_flow(server, rng, 120)
    late, late_book = await connect(server)
    # REST splice: buffer WS diffs, take the REST snapshot with its sequence, drop older diffs
    splice, _ = await connect(server, ["book"])
    ws_snapshot = await splice.next()
    assert ws_snapshot["type"] == "book_snapshot"
    await _random_flow(server, rng, 40)
    rest = await server.rest_book()
    spliced = Replica()
    spliced.reset(rest["sequence"], rest["bids"], rest["asks"])
    await _random_flow(server, rng, 120)

    final = await server.rest_book()
    for feed, replica in ((early, early_book), (late, late_book), (splice, spliced)):
        await catch_up(feed, replica, final["sequence"])
        assert replica.seq == final["sequence"]
        assert replica.levels() == (final["bids"], final["asks"])
        await feed.ws.close()
    state = (await server.http.get("/admin/state")).json()
    assert early_book.trade_seq == state["trades"] > 0
    assert [t["sequence"] for t in early_book.trades] == list(range(1, state["trades"] + 1))


# ------------------------------------------------------------------------------ slow client
async def test_slow_client_is_disconnected_and_others_get_everything(server: Server) -> None:
    fast, fast_book = await connect(server, ["book", "trades", "ticker"])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(server.ws_url.split(":")[2].split("/")[0])))
    # no permessage-deflate: compressed JSON would let the kernel absorb ~10x more
    slow_ws = await websockets.connect(server.ws_url, sock=sock, max_queue=1, compression=None)
    slow = Feed(slow_ws)
    await slow.send(op="subscribe", symbol=SYMBOL, channels=["trades"])
    assert (await slow.next())["type"] == "subscribed"

    service = server.service
    ask = rq.parse_order(
        {
            "type": "limit",
            "broker_id": "alice",
            "document_number": "1",
            "side": "ask",
            "symbol": SYMBOL,
            "quantity": 100_000,
            "price": Decimal("1.00"),
            "expires_at": FAR,
        }
    )
    bid = rq.parse_order(
        {
            "type": "market",
            "broker_id": "bob",
            "document_number": "1",
            "side": "bid",
            "symbol": SYMBOL,
            "quantity": 1,
        }
    )
    service.submit(ask)
    trades = 0
    received: list[Msg] = []

    async def read_fast() -> None:
        while True:
            msg = await fast.next(wait=30)
            fast_book.on(msg)
            received.append(msg)

    reader = asyncio.create_task(read_fast())
    hub = service.on_executed.__self__  # type: ignore[union-attr]
    assert hub.subscriber_count(SYMBOL, "trades") == 2
    assert hub.clients == 2 and hub.flush_interval == hub.min_interval
    # The slow client reads nothing; flood until the server gives up on it (bounded), keeping
    # the fast client (which shares this test's loop) within a few hundred trades. The kernel's
    # socket buffers absorb several MB first, so this takes tens of thousands of trades.
    while trades < 99_000 and hub.subscriber_count(SYMBOL, "trades") == 2:
        for _ in range(50):
            service.submit(bid)  # straight on the server's loop: matching never awaits a client
            trades += 1
        async with asyncio.timeout(30):
            while (fast_book.trade_seq or 0) < trades - 200:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
    assert hub.subscriber_count(SYMBOL, "trades") == 1
    assert hub.clients == 1
    # Now drain the slow client: its backlog, then the close frame with the reason.
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(30):
            while True:
                await slow_ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4001
    assert "slow consumer" in closed.value.rcvd.reason
    # the fast client got every trade, in sequence
    async with asyncio.timeout(30):
        while fast_book.trade_seq != trades:  # noqa: ASYNC110 -- reader task fills it
            await asyncio.sleep(0.01)
    reader.cancel()
    assert [m["sequence"] for m in received if m["type"] == "trade"] == list(range(1, trades + 1))
    slow_count = "exchange_marketdata_slow_consumer_disconnects_total 1.0"
    async with asyncio.timeout(10):  # counted when the server's handler for it returns
        while slow_count not in (metrics := (await server.http.get("/metrics")).text):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert "exchange_marketdata_clients 1.0" in metrics
    await fast.ws.close()


async def test_caught_up_client_keeps_up_with_5000_trade_flushes(server: Server) -> None:
    """A client that reads everything stays connected however many trades one flush carries
    (five times the 1 000-trade limit here, ~1.7 MB: several frames each) and receives every
    trade in order -- with the ``websockets`` defaults, 1 MiB ``max_size`` included."""
    ws = await websockets.connect(server.ws_url)
    feed, replica = Feed(ws), Replica()
    await feed.send(op="subscribe", symbol=SYMBOL)
    for _ in range(4):  # subscribed, book, trades and ticker snapshots
        replica.on(await feed.next())
    assert replica.trade_seq == 0
    service = server.service
    hub = service.on_executed.__self__  # type: ignore[union-attr]
    frames = await _frames_handed_out(server)
    body = {"broker_id": "alice", "document_number": "1", "symbol": SYMBOL, "expires_at": FAR}
    service.submit(
        rq.parse_order(
            {**body, "type": "limit", "side": "ask", "quantity": 100_000, "price": Decimal(1)}
        )
    )
    bid = rq.parse_order(
        {"type": "market", "broker_id": "bob", "document_number": "1", "side": "bid"}
        | {"symbol": SYMBOL, "quantity": 1}
    )
    for round_ in range(1, 4):  # the ask above joins the first round's flush (no await since)
        for _ in range(5_000):  # no await: all of them are released into one flush
            service.submit(bid)
        async with asyncio.timeout(30):
            while replica.trade_seq != 5_000 * round_:
                replica.on(await feed.next())
        handed = await _frames_handed_out(server)
        assert handed > frames + 1  # the round's flush went out as several frames
        frames = handed
        assert hub.subscriber_count(SYMBOL, "trades") == 1
    assert [t["sequence"] for t in replica.trades] == list(range(1, 15_001))
    assert "exchange_marketdata_slow_consumer_disconnects_total 0.0" in (
        (await server.http.get("/metrics")).text
    )
    await ws.close()


def _bids(server: Server, count: int) -> None:
    """A 100,000-share ask at 1.00, then ``count`` one-share market bids against it: each bid
    is a book diff and a trade. No await: all of it is released into one flush."""
    body = {"broker_id": "alice", "document_number": "1", "symbol": SYMBOL, "expires_at": FAR}
    ask = {**body, "type": "limit", "side": "ask", "quantity": 100_000, "price": Decimal(1)}
    server.service.submit(rq.parse_order(ask))
    bid = rq.parse_order(
        {"type": "market", "broker_id": "bob", "document_number": "1", "side": "bid"}
        | {"symbol": SYMBOL, "quantity": 1}
    )
    for _ in range(count):
        server.service.submit(bid)


def _hub(server: Server) -> MarketData:
    hub = server.service.on_executed.__self__  # type: ignore[union-attr]
    assert isinstance(hub, MarketData)
    return hub


async def test_busy_flush_arrives_in_frames_within_the_cap(server: Server) -> None:
    """One flush of 5,000 bids (~1.7 MB): a client with the ``websockets`` defaults (1 MiB
    ``max_size``) gets it as several frames of at most 256 KiB whose messages, joined, are
    exactly the unsplit flush, and stays connected."""
    ws = await websockets.connect(server.ws_url)
    feed = Feed(ws)
    await feed.send(op="subscribe", symbol=SYMBOL)
    for _ in range(4):  # subscribed, book, trades and ticker snapshots
        await feed.next()
    assert not feed.buffer
    hub = _hub(server)
    before = await _frames_handed_out(server)
    _bids(server, 5_000)
    hub.flush()  # the flush, driven directly: exactly one
    frames: list[str] = []
    messages: list[Msg] = []
    async with asyncio.timeout(30):
        while not messages or messages[-1]["type"] != "ticker":  # a flush ends with its ticker
            frame = await ws.recv()
            assert isinstance(frame, str)
            frames.append(frame)
            messages.extend(json.loads(frame))
    assert sum(wire_size(frame) for frame in frames) > 2**20  # more than 1 MiB in one flush
    assert len(frames) > 4
    assert all(wire_size(frame) <= MAX_FRAME_BYTES for frame in frames)
    assert await _frames_handed_out(server) == before + len(frames)
    # The unsplit flush: the ask's diff, then per bid its diff and its trade; one ticker.
    expected = [("book", 1)]
    for n in range(1, 5_001):
        expected += [("book", n + 1), ("trade", n)]
    expected.append(("ticker", 5_001))
    assert [(m["type"], m.get("sequence", m.get("book_sequence"))) for m in messages] == expected
    await feed.send(op="symbols", id=7)  # still connected
    assert await feed.next() == {"type": "symbols", "symbols": [SYMBOL], "id": 7}
    await ws.close()


async def test_lagging_client_frames_stay_within_the_cap(server: Server) -> None:
    """A client that stops reading until two ~170 KB flushes wait in its queue: when it reads
    again, they are not joined into one frame above the cap; every trade arrives once, in order,
    and the client is not cut off (the waiting flush is uncounted, the other within the limit)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(server.ws_url.split(":")[2].split("/")[0])))
    ws = await websockets.connect(server.ws_url, sock=sock, max_queue=1, compression=None)
    feed = Feed(ws)
    await feed.send(op="subscribe", symbol=SYMBOL, channels=["trades"])
    for _ in range(2):  # subscribed, trades snapshot
        await feed.next()
    hub = _hub(server)
    (sub,) = hub._members
    assert isinstance(sub, Subscriber)
    _bids(server, 0)
    bid = rq.parse_order(
        {"type": "market", "broker_id": "bob", "document_number": "1", "side": "bid"}
        | {"symbol": SYMBOL, "quantity": 1}
    )
    trades = 0
    # The kernel's buffers take several MB first; then the writer blocks and flushes queue up.
    while sub.queued < 2:
        for _ in range(900):
            server.service.submit(bid)
        trades += 900
        hub.flush()
        for _ in range(5):  # let the writer hand what it can to the socket
            await asyncio.sleep(0)
        assert trades < 90_000, "the client never fell behind"
    assert sub.queued == 2 and sub.closing is None
    frames: list[str] = []
    received: list[int] = []
    async with asyncio.timeout(60):
        while len(received) < trades:
            frame = await ws.recv()
            assert isinstance(frame, str)
            frames.append(frame)
            received.extend(m["sequence"] for m in json.loads(frame))
    assert received == list(range(1, trades + 1))
    assert all(wire_size(frame) <= MAX_FRAME_BYTES for frame in frames)
    assert hub.subscriber_count(SYMBOL, "trades") == 1
    await ws.close()


async def _frames_handed_out(server: Server) -> float:
    metrics = (await server.http.get("/metrics")).text
    prefix = "exchange_marketdata_frames_total "
    return float(
        next(line for line in metrics.splitlines() if line.startswith(prefix))[len(prefix) :]
    )


async def test_durable_mode_snapshot_plus_diffs(durable_server: Server) -> None:
    """Concurrent commands share group commits; subscribers join while some are not durable."""
    server = durable_server
    rng = random.Random(11)
    early, early_book = await connect(server)
    flow = asyncio.create_task(_random_flow(server, rng, 200, concurrency=8))
    late: list[tuple[Feed, Replica]] = []
    while not flow.done():
        if len(late) < 4:
            late.append(await connect(server))
        await asyncio.sleep(0.01)
    await flow
    final = await server.rest_book()
    for feed, replica in [(early, early_book), *late]:
        await catch_up(feed, replica, final["sequence"])
        assert replica.seq == final["sequence"]
        assert replica.levels() == (final["bids"], final["asks"])
        await feed.ws.close()
