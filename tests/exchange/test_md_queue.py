"""Per-client queue rules of :class:`Subscriber`, with a fake socket at the network edge.

The fake's ``send_text`` blocks until the test lets it go, which is what a client that stopped
reading looks like to the server once the kernel buffers are full.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from decimal import Decimal
from typing import Any, cast

from starlette.websockets import WebSocket

from tradehall.exchange.marketdata import BookUpdateMsg, Frames, Item, MarketData, encoder
from tradehall.exchange.marketdata_state import pack_frames, wire_size
from tradehall.exchange.marketdata_ws import MAX_BATCH, Subscriber, merge_book_updates
from tradehall.exchange.schemas import LevelOut


class StuckSocket:
    """Accepts one frame, then blocks every send until ``release`` is set."""

    def __init__(self) -> None:
        self.frames: list[list[dict[str, Any]]] = []
        self.raw: list[str] = []
        self.release = asyncio.Event()
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.raw.append(text)
        self.frames.append(json.loads(text))
        if len(self.frames) > 1:
            await self.release.wait()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason or "")


def _update(seq: int, bid_qty: int, ask_price: int | None = None) -> tuple[BookUpdateMsg, str]:
    asks = [LevelOut(Decimal(ask_price) / 100, 1, 1)] if ask_price else []
    msg = BookUpdateMsg("S", seq, seq, [LevelOut(Decimal("10.00"), bid_qty, 1)], asks)
    return msg, encoder.encode(msg).decode()


def _subscriber(sock: StuckSocket, **kw: Any) -> Subscriber:
    hub = cast(MarketData, object())  # the queue never calls the hub here
    return Subscriber(cast(WebSocket, sock), hub, **kw)


def test_merge_keeps_latest_figures_and_sequence_range() -> None:
    msgs = [_update(1, 5)[0], _update(2, 0, 1100)[0], _update(3, 7)[0]]
    merged = merge_book_updates(msgs)
    assert (merged.first_sequence, merged.sequence) == (1, 3)
    assert merged.bids == [LevelOut(Decimal("10.00"), 7, 1)]
    assert merged.asks == [LevelOut(Decimal("11.00"), 1, 1)]


async def test_stuck_client_gets_coalesced_book_and_latest_ticker() -> None:
    sock = StuckSocket()
    sub = _subscriber(sock, book_merge_at=8)
    sub.start()
    sub.push_text('{"type":"first"}')
    await asyncio.sleep(0)  # the writer sends the first frame and blocks on the second
    sub.push_text('{"type":"second"}')
    await asyncio.sleep(0)
    for seq in range(1, 101):
        sub.push_book(*_update(seq, seq))
        sub.push_ticker("S", f'{{"type":"ticker","n":{seq}}}')
    assert sub.queued == 2  # one book slot, one ticker slot: bounded however long it waits
    sock.release.set()
    async with asyncio.timeout(5):
        while sub.queued:  # noqa: ASYNC110 -- the writer task drains it
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    messages = [m for frame in sock.frames for m in frame]
    books = [m for m in messages if m["type"] == "book"]
    assert books[0]["first_sequence"] == 1 and books[-1]["sequence"] == 100
    for prev, cur in itertools.pairwise(books):
        assert cur["first_sequence"] == prev["sequence"] + 1  # no gap for the client
    assert len(books) <= 8
    assert books[-1]["bids"] == [{"price": 10.0, "total_quantity": 100, "order_count": 1}]
    assert [m for m in messages if m["type"] == "ticker"] == [{"type": "ticker", "n": 100}]
    await sub.finish()


async def test_trade_backlog_over_limit_disconnects_with_reason() -> None:
    sock = StuckSocket()
    sub = _subscriber(sock, trade_limit=10)
    sub.start()
    for kind in ("first", "second"):  # the writer sends the first frame, blocks on the second
        sub.push_text(f'{{"type":"{kind}"}}')
        await asyncio.sleep(0)
    for n in range(10):
        sub.push_trade(f'{{"type":"trade","sequence":{n + 1}}}')
    await asyncio.sleep(0)
    assert sub.closing is None
    sub.push_trade('{"type":"trade","sequence":11}')  # one too many: never blocks the caller
    assert sub.closing is not None and sub.queued == 0
    async with asyncio.timeout(5):
        while sock.closed is None:  # noqa: ASYNC110 -- the closer task runs
            await asyncio.sleep(0)
    assert sock.closed == (4001, "slow consumer: more than 10 trade messages queued")
    await sub.finish()


def test_book_messages_never_overtake_a_queued_frame() -> None:
    sub = _subscriber(StuckSocket(), lag_frames=2)

    def flush(seq: int) -> None:
        msg, text = _update(seq, seq)
        sub.push_batch(Frames([f"[{text}]"], 0), [Item("S", "book", text, msg)])

    flush(1)
    flush(2)
    flush(3)  # two frames waiting: this one is queued per message (coalescable)
    sub._queue.popleft()  # the writer sent two frames meanwhile
    sub._queue.popleft()
    flush(4)  # caught up again: a shared frame
    flush(5)  # behind again: must queue after frame 4, not join the slot holding 3
    frames = sub._drain()
    assert len(frames) == 1  # small entries: joined into one frame
    assert [m["sequence"] for m in json.loads(frames[0])] == [3, 4, 5]


class FreeSocket:
    """A client that reads everything at once: every send completes immediately."""

    def __init__(self) -> None:
        self.frames: list[list[dict[str, Any]]] = []
        self.raw: list[str] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.raw.append(text)
        self.frames.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason or "")


SMALL_CAP = 16 * 1024  # a 5,000-trade flush below is ~10 frames at this cap


def _trade_flush(first: int, count: int, cap: int = SMALL_CAP) -> tuple[Frames, list[Item]]:
    """One flush with ``count`` trades, sequences ``first..first+count-1``, as the hub packs it
    (several frames when it is larger than ``cap``)."""
    texts = [f'{{"type":"trade","sequence":{n}}}' for n in range(first, first + count)]
    items = [Item("S", "trades", text, None) for text in texts]
    return Frames(pack_frames(texts, cap), count), items


async def test_caught_up_client_takes_flushes_of_any_size() -> None:
    """One flush carrying 5 times the trade limit, split into many frames by the cap, never
    counts against a client that keeps up; it is sent the shared frame strings themselves."""
    sock = FreeSocket()
    sub = _subscriber(cast(StuckSocket, sock), trade_limit=1000, max_frame_bytes=SMALL_CAP)
    sub.start()
    sent: list[str] = []
    for first in (1, 5_001, 10_001):
        batch, items = _trade_flush(first, 5_000)
        assert len(batch.frames) > 5
        sub.push_batch(batch, items)
        assert sub.closing is None and sub.counted_trades == 0
        assert sub.queued == 1  # the whole flush is one entry, however many frames
        async with asyncio.timeout(5):
            while len(sock.raw) < len(sent) + len(batch.frames):  # noqa: ASYNC110 -- writer
                await asyncio.sleep(0)
        assert all(a is b for a, b in zip(sock.raw[len(sent) :], batch.frames, strict=True))
        sent.extend(batch.frames)
        assert sub.queued == 0
    sequences = [m["sequence"] for frame in sock.frames for m in frame]
    assert sequences == list(range(1, 15_001))
    assert all(wire_size(text) <= SMALL_CAP for text in sock.raw)
    assert sock.closed is None
    await sub.finish()


async def test_one_frame_behind_is_not_slow_but_two_are() -> None:
    """The flush being written and the next waiting flush are free, however many frames each
    is; what piles up behind counts."""
    sock = StuckSocket()
    sub = _subscriber(sock, trade_limit=1000, max_frame_bytes=SMALL_CAP)
    sub.start()
    sub.push_text('{"type":"first"}')
    await asyncio.sleep(0)
    sub.push_batch(*_trade_flush(1, 5_000))
    await asyncio.sleep(0)  # the writer is now stuck writing this flush (in flight)
    sub.push_batch(*_trade_flush(5_001, 5_000))  # waiting, free: the client is one flush behind
    assert sub.closing is None and sub.counted_trades == 0 and sub.queued == 1
    sub.push_batch(*_trade_flush(10_001, 600))  # behind the free one: counted, within the limit
    assert sub.closing is None and sub.counted_trades == 600
    sub.push_batch(*_trade_flush(10_601, 401))  # 1 001 counted: too far behind
    assert sub.closing == (4001, "slow consumer: more than 1000 trade messages queued")
    assert sub.queued == 0 and sub.counted_trades == 0
    async with asyncio.timeout(5):
        while sock.closed is None:  # noqa: ASYNC110 -- the closer task runs
            await asyncio.sleep(0)
    assert sock.closed == sub.closing
    await sub.finish()


async def test_a_client_that_catches_up_gets_a_free_frame_again() -> None:
    """Once the writer takes the free frame, the oldest waiting flush becomes the free one."""
    sock = StuckSocket()
    sub = _subscriber(sock, trade_limit=1000)
    sub.start()
    sub.push_text('{"type":"first"}')
    await asyncio.sleep(0)
    sub.push_text('{"type":"second"}')
    await asyncio.sleep(0)  # stuck on "second"
    sub.push_batch(*_trade_flush(1, 3_000))  # free
    sub.push_batch(*_trade_flush(3_001, 900))  # counted
    assert sub.counted_trades == 900
    sock.release.set()
    async with asyncio.timeout(5):
        while sub.queued:  # noqa: ASYNC110 -- the writer task drains it
            await asyncio.sleep(0)
    assert sub.counted_trades == 0
    sub.push_batch(*_trade_flush(3_901, 5_000))  # caught up: free again
    assert sub.closing is None and sub.counted_trades == 0
    async with asyncio.timeout(5):
        while sub.queued:  # noqa: ASYNC110
            await asyncio.sleep(0)
    trades = [m["sequence"] for frame in sock.frames for m in frame if m["type"] == "trade"]
    assert trades == list(range(1, 8_901))
    await sub.finish()


async def test_stuck_client_memory_is_bounded_until_disconnected() -> None:
    """Small flushes to a client that stopped reading: its queue never exceeds the free frame,
    the trade limit and one slot per book/ticker, and it is cut off with 4001."""
    sock = StuckSocket()
    sub = _subscriber(sock, trade_limit=100, lag_frames=4)
    sub.start()
    sub.push_text('{"type":"first"}')
    await asyncio.sleep(0)
    sub.push_text('{"type":"second"}')
    await asyncio.sleep(0)  # stuck
    sequence = 1
    flushes = 0
    while sub.closing is None:
        msg, text = _update(flushes + 1, flushes + 1)
        batch, items = _trade_flush(sequence, 7)
        items = [Item("S", "book", text, msg), *items]
        sub.push_batch(Frames(pack_frames([i.text for i in items]), batch.trades), items)
        sequence += 7
        flushes += 1
        assert sub.queued <= 4 + 100 + 1  # lag_frames entries, counted trades, a book slot
        assert sub.counted_trades <= 100
        assert flushes < 1_000, "never disconnected"
    assert sub.closing == (4001, "slow consumer: more than 100 trade messages queued")
    assert sub.queued == 0
    await sub.finish()


async def test_lagging_client_frames_respect_the_cap() -> None:
    """A client that is behind has its queued entries joined into frames of at most the cap:
    whole flushes, single trades, a book slot larger than the cap (split between its diffs) and
    an oversized message (alone); every message once, in order."""
    cap = 4096
    sock = StuckSocket()
    sub = _subscriber(sock, trade_limit=100_000, lag_frames=2, max_frame_bytes=cap)
    sub.start()
    sub.push_text('{"type":"first"}')
    await asyncio.sleep(0)
    sub.push_text('{"type":"second"}')
    await asyncio.sleep(0)  # stuck on "second"
    pad = "x" * 60
    n = 0

    def trades(count: int) -> tuple[Frames, list[Item]]:
        nonlocal n
        texts = [f'{{"type":"trade","n":{n + i},"pad":"{pad}"}}' for i in range(count)]
        n += count
        return Frames(pack_frames(texts, cap), count), [Item("S", "trades", t, None) for t in texts]

    first, first_items = trades(30)  # ~2.6 KB: one frame each; the two fill the lag allowance
    sub.push_batch(first, first_items)
    sub.push_batch(*trades(30))
    sub.push_batch(*trades(200))  # behind: queued message by message from here on
    for _ in range(20):  # one slot of 20 diffs, ~6 KB: larger than the cap on its own
        msg = BookUpdateMsg("S", n, n, [LevelOut(Decimal(p), p, 1) for p in range(1, 9)], [])
        text = encoder.encode(msg).decode()
        sub.push_batch(Frames([f"[{text}]"], 0), [Item("S", "book", text, msg)])
        n += 1
    big = f'{{"type":"big","n":{n},"pad":"{"y" * (2 * cap)}"}}'  # a message over the cap
    n += 1
    sub.push_text(big)
    sub.push_batch(*trades(40))
    assert sub.queued == 2 + 200 + 1 + 1 + 40  # two flushes, trades, the slot, big, trades
    sock.release.set()
    async with asyncio.timeout(5):
        while sub.queued:  # noqa: ASYNC110 -- the writer task drains it
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    frames = sock.frames[2:]
    for frame, text in zip(frames, sock.raw[2:], strict=True):
        assert wire_size(text) <= cap or len(frame) == 1
    messages = [m for frame in frames for m in frame]
    assert [m.get("n", m.get("first_sequence")) for m in messages] == list(range(n))
    assert [frame[0]["type"] for frame in frames if len(frame) == 1] == ["big"]
    assert sock.raw[2] is first.frames[0]  # the first flush went alone: the shared string
    # Joined up to the cap, not one frame per entry: 200 trades of ~90 bytes need ~5 frames.
    assert len(frames) < 20
    # The slot's diffs are split over frames at message boundaries (none is merged at 20).
    books = [m for m in messages if m["type"] == "book"]
    assert len(books) == 20
    await sub.finish()


def test_drain_stops_at_max_batch_messages() -> None:
    """Small messages are joined up to :data:`MAX_BATCH` per frame even below the cap."""
    sub = _subscriber(StuckSocket(), trade_limit=10_000)
    for i in range(MAX_BATCH + 10):
        sub.push_trade(f'{{"type":"trade","sequence":{i}}}')
    first, second = sub._drain(), sub._drain()
    assert len(first) == len(second) == 1
    assert len(json.loads(first[0])) == MAX_BATCH and len(json.loads(second[0])) == 10
