"""Event factories shared by the dispatcher tests (imported as a plain module from this folder)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from tradehall.gateway.events import (
    BookSnapshot,
    BookUpdate,
    ExecReport,
    ExecState,
    Level,
    Side,
    Ticker,
    Trade,
)

_ids = itertools.count(1)


def trade(seq: int | None, *, provider: str = "binance", symbol: str = "BTC-USD") -> Trade:
    return Trade(
        event_id=f"t{next(_ids)}",
        provider=provider,
        symbol=symbol,
        seq_provider=seq,
        ts_ingest=next(_ids),
        price=Decimal("100.5"),
        qty=Decimal(1),
        side=Side.BUY,
        trade_id=str(seq),
    )


def ticker(
    seq: int | None, bid: str = "100", *, provider: str = "binance", symbol: str = "BTC-USD"
) -> Ticker:
    return Ticker(
        event_id=f"k{next(_ids)}",
        provider=provider,
        symbol=symbol,
        seq_provider=seq,
        ts_ingest=next(_ids),
        bid=Decimal(bid),
        bid_qty=Decimal(1),
        ask=Decimal(bid) + 1,
        ask_qty=Decimal(1),
    )


def update(
    first: int,
    last: int,
    bids: tuple[Level, ...] = (),
    asks: tuple[Level, ...] = (),
    *,
    epoch: int = 1,
    symbol: str = "BTC-USD",
) -> BookUpdate:
    return BookUpdate(
        event_id=f"u{next(_ids)}",
        provider="binance",
        symbol=symbol,
        seq_provider=last,
        ts_ingest=next(_ids),
        bids=bids,
        asks=asks,
        epoch=epoch,
        seq_first=first,
    )


def snapshot(
    seq: int,
    bids: tuple[Level, ...] = (),
    asks: tuple[Level, ...] = (),
    *,
    epoch: int = 1,
    symbol: str = "BTC-USD",
) -> BookSnapshot:
    return BookSnapshot(
        event_id=f"s{next(_ids)}",
        provider="binance",
        symbol=symbol,
        seq_provider=seq,
        ts_ingest=next(_ids),
        bids=bids,
        asks=asks,
        depth=max(len(bids), len(asks)),
        epoch=epoch,
    )


def exec_report(n: int, *, provider: str = "tradehall") -> ExecReport:
    return ExecReport(
        event_id=f"e{next(_ids)}",
        provider=provider,
        symbol="BTC-USD",
        ts_ingest=next(_ids),
        client_order_id=f"c{n}",
        venue_order_id=f"v{n}",
        state=ExecState.ACK,
        side=Side.BUY,
    )


def lv(price: str, qty: str) -> Level:
    return (Decimal(price), Decimal(qty))
