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

from tradehall.exchange.marketdata import BookUpdateMsg, Item, MarketData, encoder
from tradehall.exchange.marketdata_ws import Subscriber, merge_book_updates
from tradehall.exchange.schemas import LevelOut


class StuckSocket:
    """Accepts one frame, then blocks every send until ``release`` is set."""

    def __init__(self) -> None:
        self.frames: list[list[dict[str, Any]]] = []
        self.release = asyncio.Event()
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
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
        sub.push_batch(f"[{text}]", [Item("S", "book", text, msg)], 0)

    flush(1)
    flush(2)
    flush(3)  # two frames waiting: this one is queued per message (coalescable)
    sub._queue.popleft()  # the writer sent two frames meanwhile
    sub._queue.popleft()
    flush(4)  # caught up again: a shared frame
    flush(5)  # behind again: must queue after frame 4, not join the slot holding 3
    sequences = [json.loads(part)["sequence"] for part in sub._drain()]
    assert sequences == [3, 4, 5]
