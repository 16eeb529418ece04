from __future__ import annotations

from decimal import Decimal

from tradehall.gateway.events import EventIds, KlineSummary, Side, Trade
from tradehall.gateway.kline import KlineBuilder

NS = 1_000_000_000


def _trade(second: float, price: str, qty: str) -> Trade:
    return Trade(
        event_id="t",
        provider="kraken",
        symbol="BTC-USD",
        ts_provider=int(second * NS),
        ts_ingest=0,
        price=Decimal(price),
        qty=Decimal(qty),
        side=Side.BUY,
        trade_id="1",
    )


def test_candles_are_built_from_trades_by_venue_time() -> None:
    builder = KlineBuilder("kraken", "BTC-USD", 60, EventIds("k"))
    assert builder.add(_trade(120.0, "100.5", "1")) is None
    assert builder.add(_trade(130.0, "101.0", "0.5")) is None
    assert builder.add(_trade(150.0, "99.0", "0.25")) is None
    assert builder.add(_trade(179.9, "100.0", "0.25")) is None
    kline = builder.add(_trade(185.0, "102", "1"))  # first trade of the next minute closes it
    assert isinstance(kline, KlineSummary)
    assert (kline.open_ns, kline.interval_s) == (120 * NS, 60)
    assert (kline.open, kline.high, kline.low, kline.close) == (
        Decimal("100.5"),
        Decimal("101.0"),
        Decimal("99.0"),
        Decimal("100.0"),
    )
    assert kline.volume == Decimal("2.00") and kline.trades == 4
    assert builder.add(_trade(100.0, "1", "1")) is None  # older than the open candle: ignored
    last = builder.flush()
    assert last is not None and last.open == last.close == Decimal("102") and last.trades == 1
    assert builder.flush() is None
