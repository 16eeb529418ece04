"""``tradehall_trades`` is a loop-only counter now: scraped exactly as prometheus_client's own."""

from __future__ import annotations

from exchange_harness import T0
from prometheus_client import CollectorRegistry, Counter, generate_latest

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.metrics import LoopCounter
from tradehall.exchange.requests import BrokerRequest
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings


def _exposition(registry: CollectorRegistry) -> list[str]:
    """Exposition lines (HELP and TYPE included) without ``_created`` (ours have none)."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_unlabelled_loop_counter_matches_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopCounter("t_trades", "Trades executed", [], ours).labels()
    reference = Counter("t_trades", "Trades executed", registry=theirs)
    assert _exposition(ours) == _exposition(theirs)  # 0 before the first increment
    assert "t_trades_total 0.0" in _exposition(ours)
    for amount in (1, 3):
        loop.inc(amount)
        reference.inc(amount)
    assert _exposition(ours) == _exposition(theirs)
    assert "t_trades_total 4.0" in _exposition(ours)


def test_service_exports_trades_from_the_first_scrape() -> None:
    service = ExchangeService(ExchangeSettings(), clock=VirtualClock(T0), ids=SequentialIds())
    lines = _exposition(service.registry)
    assert "# TYPE tradehall_trades_total counter" in lines
    assert "tradehall_trades_total 0.0" in lines
    service.register_broker(BrokerRequest("a", 10**9, [("S", 10)]))
    far = T0 + 3600 * 10**9
    service.submit(OrderRequest("limit", "a", "D", "ask", "S", 3, 100, far))
    service.submit(OrderRequest("limit", "a", "D", "bid", "S", 3, 100, far))
    assert "tradehall_trades_total 1.0" in _exposition(service.registry)
