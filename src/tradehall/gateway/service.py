"""The gateway process, part 1: venue adapters (optionally against in-process fake venues).

:class:`GatewayService` builds one adapter per configured venue, all feeding one sink that
counts events in Prometheus metrics, hands them to an optional callback (the CLI prints them as
JSON lines) and publishes them to the :class:`~tradehall.gateway.dispatcher.AsyncDispatcher`,
whose in-process consumers (``service.dispatcher.consumer(name)``) are the data bus's first half.
In simulation mode it first starts the wire-compatible fake venues on loopback and points the
adapters at them -- the adapters themselves are the production code, only their URLs swapped.

A small HTTP listener serves ``/healthz`` (per-book state as JSON), ``/metrics`` and the
WebSocket data bus ``/ws`` (:mod:`~tradehall.gateway.databus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import structlog
from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tradehall.core.clock import Clock
from tradehall.core.metrics import CONTENT_TYPE_LATEST, new_registry, render
from tradehall.gateway.databus import databus_routes
from tradehall.gateway.dispatcher import AsyncDispatcher
from tradehall.gateway.events import Event, EventIds, ExecReport
from tradehall.gateway.fakes.binance import FakeBinance
from tradehall.gateway.fakes.coinbase import FakeCoinbase
from tradehall.gateway.fakes.kraken import FakeKraken
from tradehall.gateway.fakes.order_api import order_desk
from tradehall.gateway.fakes.orderdesk import FakeOrderDesk
from tradehall.gateway.fakes.server import FakeVenue
from tradehall.gateway.metrics import GatewayMetrics
from tradehall.gateway.orchestrator import Orchestrator
from tradehall.gateway.orders import (
    OrderOutcome,
    OrderRequest,
    OrderRouter,
    OrderStore,
    OrderVenue,
    TradehallOrders,
    TradingSwitch,
)
from tradehall.gateway.redisbus import RedisPublisher
from tradehall.gateway.venue_orders import BinanceOrders, CoinbaseOrders, KrakenOrders
from tradehall.gateway.venues.base import AdapterSettings, VenueAdapter
from tradehall.gateway.venues.binance import BinanceAdapter
from tradehall.gateway.venues.coinbase import CoinbaseAdapter
from tradehall.gateway.venues.kraken import KrakenAdapter
from tradehall.gateway.venues.tradehall import TradehallAdapter, market_ws_url, tradehall_symbols

__all__ = ["GatewayConfig", "GatewayService"]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway")
VENUE_NAMES = ("binance", "coinbase", "kraken")
ALL_VENUES = (*VENUE_NAMES, "tradehall")  # tradehall: our exchange, optional (no fake: run one)


@dataclass(frozen=True)
class GatewayConfig:
    venues: Sequence[str] = VENUE_NAMES
    symbols: Sequence[str] = ("BTC-USD", "ETH-USD")
    sim: bool = False
    sim_interval: float = 0.1
    adapter: AdapterSettings = field(default_factory=AdapterSettings)
    binance_ws_url: str = "wss://stream.binance.com:9443"
    binance_rest_url: str = "https://api.binance.com"
    coinbase_ws_url: str = "wss://advanced-trade-ws.coinbase.com"
    kraken_ws_url: str = "wss://ws.kraken.com/v2"
    tradehall_url: str = "http://127.0.0.1:8080"
    tradehall_symbols: Mapping[str, str] = field(default_factory=dict)  # overrides BTC-USD=BTCUSD
    merge_max_events: int = 1000  # a merge window closes after this many fragments ...
    merge_max_age: float = 10.0  # ... or this many seconds
    redis_url: str = ""  # set: publish market data on Redis pub/sub for other processes
    orders_db: str = ""  # set (SQLite path): order entry via the tradehall venue's REST API
    orders_poll: float = 1.0  # seconds between status queries of open orders
    order_timeout: float = 5.0  # HTTP timeout of order requests (then: unknown, reconciled)
    # private order APIs: base URLs and credentials (in simulation: fake desks, made-up keys)
    kraken_rest_url: str = "https://api.kraken.com"  # (Binance orders use binance_rest_url)
    coinbase_rest_url: str = "https://api.coinbase.com"
    credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # venue: key, secret


class GatewayService:
    """Adapters (and fakes in simulation) under one lifecycle."""

    def __init__(
        self,
        config: GatewayConfig,
        on_event: Callable[[Event], None] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self.registry = new_registry()
        self.metrics = GatewayMetrics(self.registry)
        self.ids = EventIds()
        self.fakes: dict[str, FakeVenue] = {}
        self.adapters: dict[str, VenueAdapter] = {}
        self.dispatcher = AsyncDispatcher(clock=clock)
        self.trading = TradingSwitch()
        self.router: OrderRouter | None = None
        self._order_http: list[httpx.AsyncClient] = []
        self.order_desks: dict[str, FakeOrderDesk] = {}  # simulation: the fakes' order APIs
        self.redis: RedisPublisher | None = None
        self.dispatcher.on_deliver = self._observe
        self.orchestrator = Orchestrator(
            max_events=config.merge_max_events, max_age=config.merge_max_age, ids=self.ids
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._event_counters: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    def sink(self, event: Event) -> None:
        key = (event.provider, event.event_type)
        counter = self._event_counters.get(key)
        if counter is None:
            counter = self._event_counters[key] = self.metrics.events.labels(*key)
        counter.inc()
        inbound = self.metrics.streams.inbound
        stream = (event.provider, event.symbol, event.event_type)
        inbound[stream] = inbound.get(stream, 0) + 1
        if self.on_event is not None:
            self.on_event(event)
        dispatcher = self.dispatcher
        dispatcher.publish(event)
        if self.orchestrator.subscriptions:
            for merged in self.orchestrator.on_event(event, dispatcher.clock.monotonic()):
                dispatcher.publish(merged)

    async def _start_orders(self) -> None:
        config = self.config
        store = OrderStore(config.orders_db)
        await store.open()
        venues: dict[str, OrderVenue] = {}
        if "tradehall" in config.venues:
            base = market_ws_url(config.tradehall_url).removesuffix("/ws/market")
            base = base.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
            http = httpx.AsyncClient(base_url=base, timeout=config.order_timeout)
            self._order_http.append(http)
            symbols = tradehall_symbols(config.symbols, config.tradehall_symbols)
            venues["tradehall"] = TradehallOrders(http, symbol_map=symbols.to_venue)
        for name in VENUE_NAMES:
            if name in config.venues:
                venue = await self._venue_orders(name)
                if venue is not None:
                    venues[name] = venue
        self.router = OrderRouter(
            store,
            venues,
            self.trading,
            self._on_report,
            ids=self.ids,
            clock_ns=self.dispatcher.clock.time_ns,
        )
        await self.router.load_open()
        clock = self.dispatcher.clock
        self._tasks.append(
            asyncio.create_task(self.router.follow(clock, config.orders_poll), name="order-poller")
        )
        for outcome in await self.router.reconcile_pending():
            log.info(
                "order_reconciled", client_order_id=outcome.client_order_id, status=outcome.status
            )

    def _on_report(self, report: ExecReport, owner: str) -> None:
        self.metrics.orders.labels(report.provider, report.state.value).inc()
        self.dispatcher.publish(report, owner)

    async def _venue_orders(self, name: str) -> OrderVenue | None:
        """The order API client of a crypto venue: its fake desk in simulation, else the real
        URL when credentials are configured (``None``: no order entry on that venue)."""
        config = self.config
        key, secret = config.credentials.get(name, ("", ""))
        url: str = getattr(config, f"{name}_rest_url")
        if config.sim:
            key, secret = key or f"sim-{name}-key", secret or _SIM_SECRET
            desk = order_desk(name, api_key=key, api_secret=secret)
            await desk.start()
            self.order_desks[name] = desk
            url = desk.base_url
            log.info("fake_order_desk_started", venue=name, url=url)
        elif not (key and secret):
            return None
        http = httpx.AsyncClient(base_url=url, timeout=config.order_timeout)
        self._order_http.append(http)
        client = _ORDER_CLIENTS[name]
        return client(http, api_key=key, api_secret=secret)

    async def submit_order(self, request: OrderRequest) -> OrderOutcome:
        """Order entry for consumers (the ``/ws`` ``order`` op); refused when not configured."""
        if self.router is None:
            return OrderOutcome(
                client_order_id=request.client_order_id,
                status="rejected",
                reason="order entry is not configured (--orders-db)",
            )
        return await self.router.submit(request)

    async def cancel_order(self, consumer: str, client_order_id: str) -> OrderOutcome:
        """Cancel an open order of ``consumer`` (the ``/ws`` ``cancel`` op)."""
        if self.router is None:
            return OrderOutcome(
                client_order_id=client_order_id,
                status="rejected",
                reason="order entry is not configured (--orders-db)",
            )
        return await self.router.cancel(consumer, client_order_id)

    def merged_subscribe(self, symbol: str, providers: Sequence[str]) -> None:
        """Start merging ``symbol`` across ``providers``, seeded with the books already live."""
        self.orchestrator.merge(symbol, providers)
        for provider in providers:
            adapter = self.adapters.get(provider)
            asm = adapter.assemblers.get(symbol) if adapter is not None else None
            if asm is not None and asm.state.value == "LIVE":
                self.orchestrator.seed(symbol, provider, asm.book.top_bids(), asm.book.top_asks())

    async def _merge_windows(self) -> None:
        clock = self.dispatcher.clock
        while True:
            await clock.sleep(0.05)
            for merged in self.orchestrator.tick(clock.monotonic(), time.time_ns()):
                self.dispatcher.publish(merged)

    def _observe(self, consumer: str, event: Event) -> None:
        outbound = self.metrics.streams.outbound
        stream = (event.provider, event.symbol, event.event_type)
        outbound[stream] = outbound.get(stream, 0) + 1
        # ts_ingest is wall-anchored monotonic time (ns); so is the adapters' clock
        delay = (time.time_ns() - event.ts_ingest) / 1e9
        histogram = self._latency.get(event.event_type)
        if histogram is None:  # labels() costs ~2 us: keep the children
            histogram = self._latency[event.event_type] = self.metrics.latency.labels(
                event.event_type
            )
        histogram.observe(max(0.0, delay))

    async def start(self) -> None:
        config = self.config
        await self.dispatcher.start()
        if config.redis_url:
            self.redis = RedisPublisher(self.dispatcher, config.redis_url)
            await self.redis.start()
        self._tasks.append(asyncio.create_task(self._merge_windows(), name="merge-windows"))
        if config.orders_db:
            await self._start_orders()
        urls: dict[str, dict[str, str]] = {
            "binance": {"ws_url": config.binance_ws_url, "rest_url": config.binance_rest_url},
            "coinbase": {"ws_url": config.coinbase_ws_url},
            "kraken": {"ws_url": config.kraken_ws_url},
            "tradehall": {"ws_url": config.tradehall_url},
        }
        if config.sim:
            for name in config.venues:
                if name not in _FAKES:
                    continue  # the Tradehall venue is a real exchange even in simulation
                fake = _FAKES[name](config.symbols, interval=config.sim_interval)
                await fake.start()
                self.fakes[name] = fake
                urls[name] = {"ws_url": fake.base_ws}
                if name == "binance":
                    urls[name]["rest_url"] = fake.base_http
                elif name == "kraken":
                    urls[name]["ws_url"] = f"{fake.base_ws}/v2"
                log.info("fake_venue_started", venue=name, url=fake.base_ws)
        for name in config.venues:
            extra: dict[str, Any] = dict(urls[name])
            if name == "tradehall":
                extra["symbol_map"] = tradehall_symbols(config.symbols, config.tradehall_symbols)
            adapter = _ADAPTERS[name](
                config.symbols, self.sink, settings=config.adapter, ids=self.ids, **extra
            )
            self.adapters[name] = adapter
            task = asyncio.create_task(adapter.run(), name=f"adapter:{name}")
            task.add_done_callback(self._adapter_done)
            self._tasks.append(task)

    @staticmethod
    def _adapter_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("adapter_crashed", task=task.get_name(), error=repr(task.exception()))

    async def stop(self) -> None:
        for adapter in self.adapters.values():
            await adapter.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for fake in self.fakes.values():
            await fake.stop()
        if self.redis is not None:
            await self.redis.stop()
        if self.router is not None:
            await self.router.store.close()
        for http in self._order_http:
            await http.aclose()
        for desk in self.order_desks.values():
            await desk.stop()
        await self.dispatcher.stop()

    def health(self) -> dict[str, Any]:
        books = {
            name: {symbol: asm.state.value for symbol, asm in adapter.assemblers.items()}
            for name, adapter in self.adapters.items()
        }
        return {"status": "ok", "books": books, "sim": self.config.sim}

    def refresh_gauges(self) -> None:
        m = self.metrics
        for name, adapter in self.adapters.items():
            reasons: dict[str, int] = {}
            ok = failed = 0
            for symbol, asm in adapter.assemblers.items():
                m.book_live.labels(name, symbol).set(1 if asm.state.value == "LIVE" else 0)
                for reason, count in asm.stats.resyncs.items():
                    reasons[reason] = reasons.get(reason, 0) + count
                ok += asm.stats.checksum_ok
                failed += asm.stats.checksum_failed
            for reason, count in reasons.items():
                m.resyncs.labels(name, reason).set(count)
            m.checksum.labels(name, "ok").set(ok)
            m.checksum.labels(name, "failed").set(failed)
            runners = [getattr(adapter, "runner", None)] + [
                s.runner for s in getattr(adapter, "sessions", {}).values()
            ]
            m.reconnects.labels(name).set(sum(max(0, r.connects - 1) for r in runners if r))
        core = self.dispatcher.core
        for name, queue in core.fanout.queues.items():
            m.delivered.labels(name).set(queue.stats.delivered)
            m.coalesced.labels(name).set(queue.stats.coalesced)
            m.overflow.labels(name).set(queue.stats.overflow)
            m.depth.labels(name).set(len(queue))
            m.throttled.labels(name).set(queue.bucket.throttled)
        stats = core.reorderer.stats
        for outcome in ("released", "reordered", "late", "superseded", "gaps", "overflows"):
            m.reorder.labels(outcome).set(getattr(stats, outcome))
        m.buffered.set(core.reorderer.buffered)
        m.dead_letters.set(core.dead_letters.total)
        m.dead_letters_queued.set(len(core.dead_letters))
        if self.router is not None:
            open_by_venue: dict[str, int] = dict.fromkeys(self.router.venues, 0)
            for request, *_ in self.router.open.values():
                open_by_venue[request.venue] = open_by_venue.get(request.venue, 0) + 1
            for venue, count in open_by_venue.items():
                m.orders_open.labels(venue).set(count)
            for outcome, count in self.router.outcomes.items():
                m.order_decisions.labels(outcome).set(count)
        for symbol, sub in self.orchestrator.subscriptions.items():
            st = sub.stats
            for outcome, value in (
                ("emitted", st.emitted),
                ("suppressed_partial", st.suppressed_partial),
                ("late", st.late),
                ("closed_by_count", st.closed_by_count),
                ("closed_by_age", st.closed_by_age),
            ):
                m.merge_windows.labels(symbol, outcome).set(value)

    def app(self) -> Starlette:
        async def healthz(request: Request) -> Response:
            return JSONResponse(self.health())

        async def metrics(request: Request) -> Response:
            self.refresh_gauges()
            return Response(render(self.registry), media_type=CONTENT_TYPE_LATEST)

        async def dead_letters(request: Request) -> Response:
            """The bounded dead-letter queue: ``?consumer=&reason=&limit=`` (newest last)."""
            dlq = self.dispatcher.core.dead_letters
            consumer = request.query_params.get("consumer")
            reason = request.query_params.get("reason")
            try:
                limit = int(request.query_params.get("limit", "100"))
            except ValueError:
                limit = -1
            if limit < 0:
                return JSONResponse({"error": "limit must be a non-negative integer"}, 400)
            items = [
                d
                for d in dlq
                if (consumer is None or d.consumer == consumer)
                and (reason is None or d.reason == reason)
            ]
            body = {
                "total": dlq.total,
                "queued": len(dlq),
                "limit": dlq.limit,
                "matching": len(items),
                "recent": [
                    {
                        "consumer": d.consumer,
                        "reason": d.reason,
                        "event": msgspec.to_builtins(d.event),
                    }
                    for d in (items[-limit:] if limit else [])
                ],
            }
            return Response(msgspec.json.encode(body), media_type="application/json")

        return Starlette(
            routes=[
                Route("/healthz", healthz),
                Route("/metrics", metrics),
                Route("/deadletters", dead_letters),
                Route("/dlq", dead_letters),
                *databus_routes(
                    self.dispatcher,
                    self.trading,
                    self.merged_subscribe,
                    self.submit_order,
                    self.cancel_order,
                ),
            ]
        )


_FAKES: dict[str, Callable[..., FakeVenue]] = {
    "binance": FakeBinance,
    "coinbase": FakeCoinbase,
    "kraken": FakeKraken,
}
_ORDER_CLIENTS: dict[str, Callable[..., OrderVenue]] = {
    "binance": BinanceOrders,
    "coinbase": CoinbaseOrders,
    "kraken": KrakenOrders,
}
_SIM_SECRET = "c2ltdWxhdGlvbiBzZWNyZXQgb2YgdGhlIGZha2UgdmVudWVz"  # base64: Kraken decodes it
_ADAPTERS: dict[str, Callable[..., VenueAdapter]] = {
    "binance": BinanceAdapter,
    "coinbase": CoinbaseAdapter,
    "kraken": KrakenAdapter,
    "tradehall": TradehallAdapter,
}
