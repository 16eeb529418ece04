"""SC-001/SC-011 shape, correctness only: 3 fake venues x 50 symbols through the real adapters
and the dispatcher to 3 consumers (wildcard, per provider, 150 per-symbol subscriptions).

Every delivery is checked against what the adapters emitted: per stream in order, trades exact,
anything else missing only by latest-wins coalescing (counted). Timing is the benchmark's job
(``bench/gateway/e2e_bench.py``), never asserted here.
"""

from __future__ import annotations

import asyncio

from gw_helpers import eventually

from tradehall.gateway.loadrun import LoadRecorder
from tradehall.gateway.service import VENUE_NAMES, GatewayConfig, GatewayService
from tradehall.gateway.symbols import UNIVERSE

SYMBOLS = tuple(f"{base}-USD" for base in UNIVERSE)


async def test_three_consumers_fifty_symbols_three_venues_nothing_lost_in_order() -> None:
    assert len(SYMBOLS) == 50
    recorder = LoadRecorder(VENUE_NAMES, SYMBOLS)
    config = GatewayConfig(venues=VENUE_NAMES, symbols=SYMBOLS, sim=True, sim_interval=0.05)
    service = GatewayService(config, recorder.on_event)
    recorder.attach(service.dispatcher)
    await service.start()
    try:

        def all_live() -> bool:
            books = service.health()["books"]
            return all(books[v].get(s) == "LIVE" for v in VENUE_NAMES for s in SYMBOLS)

        await eventually(all_live, within=60)
        start = recorder.emitted_count
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
        assert core.dead_letters.total == 0
    finally:
        await recorder.stop()
        await service.stop()
