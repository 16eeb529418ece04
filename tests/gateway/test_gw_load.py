"""SC-001/SC-011 shape, correctness only: 3 fake venues x 50 symbols through the real adapters
and the dispatcher to 3 consumers (wildcard, per provider, 150 per-symbol subscriptions), plus a
fourth consumer that never reads while it trades on the three venues (fair share, SC-003/SC-004
end to end).

Every delivery is checked against what the adapters emitted: per stream in order, trades exact,
anything else missing only by latest-wins coalescing (counted). The stuck consumer slows no one,
gets coalesced market data and every ExecReport, in order, first. Timing is the benchmark's job
(``bench/gateway/e2e_bench.py``), never asserted here.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from gw_helpers import eventually

from tradehall.gateway.events import ExecReport, ExecState, Side
from tradehall.gateway.loadrun import LoadRecorder
from tradehall.gateway.orders import OrderRequest
from tradehall.gateway.service import VENUE_NAMES, GatewayConfig, GatewayService
from tradehall.gateway.symbols import UNIVERSE

SYMBOLS = tuple(f"{base}-USD" for base in UNIVERSE)


def _order(cid: str, venue: str) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        consumer="stuck",
        venue=venue,
        symbol="BTC-USD",
        side=Side.BUY,
        type="limit",
        quantity=Decimal("0.2"),
        price=Decimal("60000"),
    )


async def test_three_consumers_fifty_symbols_three_venues_nothing_lost_in_order(
    tmp_path: Path,
) -> None:
    assert len(SYMBOLS) == 50
    recorder = LoadRecorder(VENUE_NAMES, SYMBOLS)
    config = GatewayConfig(
        venues=VENUE_NAMES,
        symbols=SYMBOLS,
        sim=True,
        sim_interval=0.05,
        orders_db=str(tmp_path / "orders.sqlite"),
        orders_poll=0.2,
    )
    service = GatewayService(config, recorder.on_event)
    recorder.attach(service.dispatcher)
    stuck = service.dispatcher.consumer("stuck", capacity=50)
    stuck.subscribe()  # everything, never read until the end
    service.trading.set("stuck", True)
    await service.start()
    try:

        def all_live() -> bool:
            books = service.health()["books"]
            return all(books[v].get(s) == "LIVE" for v in VENUE_NAMES for s in SYMBOLS)

        await eventually(all_live, within=60)
        start = recorder.emitted_count
        cids = [f"s{venue[:2]}{i}" for venue in VENUE_NAMES for i in range(4)]
        for cid in cids:
            venue = next(v for v in VENUE_NAMES if cid[1:3] == v[:2])
            assert (await service.submit_order(_order(cid, venue))).status == "accepted"
            service.order_desks[venue].fill(cid, Decimal("0.2"))
        assert service.router is not None
        router = service.router
        await eventually(lambda: not router.open, within=30)  # followed to FILLED
        await eventually(lambda: recorder.emitted_count > start + 5000, within=60)
        for fake in service.fakes.values():
            fake.pause()
        core = service.dispatcher.core

        last = -1
        async with asyncio.timeout(30):  # drained: nothing new, nothing queued or held back
            while not (
                recorder.emitted_count == last
                and recorder.pending() == 0
                and core.reorderer.buffered == 0
            ):
                last = recorder.emitted_count
                await asyncio.sleep(0.3)  # real sockets: the adapters' last frames in flight
        assert recorder.verify() == []
        trades = sum(len(v) for k, v in recorder.emitted.items() if k[2] == "trade")
        assert trades > 0 and len(recorder.emitted) >= 3 * 50 * 2
        for name, got in recorder.received.items():
            streams = {k[:2] for k in got.ids}
            assert len(streams) == 150, name  # every (venue, symbol) reached every consumer
        assert core.reorderer.stats.late == 0
        # the stuck consumer: bounded, coalesced, its trades dead-lettered, no one else's
        assert stuck.queue.stats.coalesced > 0 and stuck.queue.stats.overflow > 0
        assert core.dead_letters.total == stuck.queue.stats.overflow
        assert {d.consumer for d in core.dead_letters} == {"stuck"}
        reports = []
        while isinstance(event := stuck.queue.pop(0.0), ExecReport):  # ExecReports come first
            reports.append((event.client_order_id, event.state))
        assert sorted(reports) == sorted(
            [(c, ExecState.ACK) for c in cids] + [(c, ExecState.FILLED) for c in cids]
        )
        for cid in cids:  # per order, in order
            assert [s for c, s in reports if c == cid] == [ExecState.ACK, ExecState.FILLED]
    finally:
        await recorder.stop()
        await service.stop()
