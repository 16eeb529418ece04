from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from tradehall.gateway.events import (
    SCHEMA_VERSION,
    BookUpdate,
    EventIds,
    ExecReport,
    ExecState,
    Side,
    Trade,
    decode,
    encode,
)
from tradehall.gateway.symbols import BINANCE, COINBASE, KRAKEN, UnknownSymbolError


def _trade() -> Trade:
    return Trade(
        event_id="e-1",
        provider="binance",
        symbol="BTC-USD",
        seq_provider=12,
        ts_provider=1,
        ts_ingest=2,
        trace_id="f-1",
        price=Decimal("68000.10"),
        qty=Decimal("0.00100000"),
        side=Side.SELL,
        trade_id="12",
    )


def test_events_are_immutable_and_versioned() -> None:
    trade = _trade()
    assert trade.schema_version == SCHEMA_VERSION
    assert trade.event_type == "trade"
    with pytest.raises(AttributeError):
        trade.price = Decimal(1)  # type: ignore[misc]


def test_round_trip_keeps_exact_decimals_and_tag() -> None:
    trade = _trade()
    wire = encode(trade)
    assert b'"event_type":"trade"' in wire
    assert b'"price":"68000.10"' in wire  # decimal text, not a float
    assert decode(wire) == trade
    update = BookUpdate(
        event_id="e-2",
        provider="kraken",
        symbol="BTC-USD",
        ts_ingest=3,
        bids=((Decimal("1.5"), Decimal("0")),),
        asks=(),
        epoch=2,
    )
    back = decode(encode(update))
    assert isinstance(back, BookUpdate)
    assert back.bids == ((Decimal("1.5"), Decimal("0")),)


def test_exec_report_states() -> None:
    report = ExecReport(
        event_id="e-3",
        provider="binance",
        symbol="BTC-USD",
        ts_ingest=1,
        client_order_id="c1",
        venue_order_id="v1",
        state=ExecState.PARTIAL,
        side=Side.BUY,
        last_qty=Decimal("0.1"),
        cum_qty=Decimal("0.1"),
    )
    assert decode(encode(report)) == report
    with pytest.raises(msgspec.ValidationError):
        decode(encode(report).replace(b"PARTIAL", b"HALF"))


def test_event_ids_are_unique() -> None:
    ids = EventIds("p")
    assert [ids.new_id() for _ in range(3)] == ["p-1", "p-2", "p-3"]
    assert EventIds().new_id() != EventIds().new_id()


def test_symbol_maps_are_explicit_both_ways() -> None:
    assert BINANCE.to_venue("BTC-USD") == "BTCUSDT"
    assert COINBASE.to_venue("BTC-USD") == "BTC-USD"
    assert KRAKEN.to_venue("BTC-USD") == "BTC/USD"
    for symbol_map in (BINANCE, COINBASE, KRAKEN):
        for canonical in symbol_map.canonical_symbols:
            assert symbol_map.to_canonical(symbol_map.to_venue(canonical)) == canonical
    assert KRAKEN.entry("BTC-USD").price_precision == 1
    with pytest.raises(UnknownSymbolError):
        BINANCE.to_canonical("BTCUSD")
    with pytest.raises(UnknownSymbolError):
        KRAKEN.to_venue("WIF-USD")  # not in the 50-symbol universe
