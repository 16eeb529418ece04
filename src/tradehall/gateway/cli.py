"""``tradehall gateway``: run the venue adapters and print canonical events.

``--sim`` starts the wire-compatible fake venues (Binance, Coinbase, Kraken) on loopback random
ports and points the adapters at them, so the whole pipeline runs offline; without it the
adapters connect to the live venue URLs (configurable). Canonical events go to stdout as JSON
lines (``--print-events``), logs to stderr. ``--host``/``--port`` is the gateway's own HTTP
listener (``/healthz``, ``/metrics``); the WebSocket data bus comes with issue 7.

Every flag also has a ``TRADEHALL_*`` environment variable; ``--duration`` stops after a while
(handy for demos and smoke tests), otherwise SIGINT/SIGTERM stop it cleanly with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

import uvicorn

from tradehall.core import logging as tlog
from tradehall.core.config import (
    Setting,
    add_arguments,
    add_switches,
    parse_bool,
    parse_duration,
    parse_log_level,
    parse_port,
    parse_positive_int,
    resolve,
)
from tradehall.gateway.events import Event, encode
from tradehall.gateway.service import ALL_VENUES, VENUE_NAMES, GatewayConfig, GatewayService
from tradehall.gateway.venues.base import AdapterSettings
from tradehall.gateway.venues.tradehall import market_ws_url, parse_symbol_overrides

__all__ = ["SETTINGS", "build_config", "register", "run"]


def _parse_venues(text: str) -> tuple[str, ...]:
    venues = tuple(v.strip().lower() for v in text.split(",") if v.strip())
    unknown = [v for v in venues if v not in ALL_VENUES]
    if unknown or not venues:
        raise ValueError(f"expected a comma-separated subset of {', '.join(ALL_VENUES)}")
    return venues


def _parse_url(text: str) -> str:
    if text:
        market_ws_url(text)  # validates the scheme
    return text


def _parse_symbols(text: str) -> tuple[str, ...]:
    symbols = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    if not symbols or any("-" not in s for s in symbols):
        raise ValueError("expected canonical symbols such as BTC-USD,ETH-USD")
    return symbols


def _parse_refresh(text: str) -> float | None:
    seconds = parse_duration(text)
    if seconds and not 120 <= seconds <= 300:
        raise ValueError("expected 0 (off) or a period between 2m and 5m")
    return seconds or None


SIM = Setting("sim", "false", parse_bool, "run against the in-repo fake venues")
SETTINGS: list[Setting] = [
    Setting("host", "127.0.0.1", str, "address of the gateway's HTTP listener"),
    Setting("port", "8085", parse_port, "port of the gateway's HTTP listener (0 = any)"),
    Setting("venues", ",".join(VENUE_NAMES), _parse_venues, "venues to connect"),
    Setting("symbols", "BTC-USD,ETH-USD", _parse_symbols, "canonical symbols to stream"),
    Setting("sim_interval", "100ms", parse_duration, "market tick period of the fake venues"),
    Setting("duration", "0", parse_duration, "stop after this long (0 = run until signalled)"),
    Setting("print_events", "true", parse_bool, "print canonical events as JSON lines"),
    Setting("log_level", "info", parse_log_level, "debug, info, warn or error"),
    Setting("stale_after", "10s", parse_duration, "resync a book silent this long"),
    Setting("refresh_every", "3m", _parse_refresh, "periodic Binance re-snapshot (2m-5m, 0=off)"),
    Setting("idle_timeout", "10s", parse_duration, "reconnect a socket silent this long"),
    Setting("kraken_depth", "10", parse_positive_int, "Kraken book depth (10, 25, 100, ...)"),
    Setting("binance_ws_url", "wss://stream.binance.com:9443", str, "Binance WebSocket base"),
    Setting("binance_rest_url", "https://api.binance.com", str, "Binance REST base"),
    Setting("coinbase_ws_url", "wss://advanced-trade-ws.coinbase.com", str, "Coinbase WS URL"),
    Setting("kraken_ws_url", "wss://ws.kraken.com/v2", str, "Kraken v2 WebSocket URL"),
    Setting(
        "tradehall_url",
        "",
        _parse_url,
        "our exchange's base URL (http://host:port); set: adds the tradehall venue",
    ),
    Setting("redis_url", "", str, "publish market data on this Redis (redis://host:port/db)"),
    Setting("orders_db", "", str, "SQLite file of the order router (empty: no order entry)"),
    Setting("orders_poll", "1s", parse_duration, "status query period of open orders"),
    Setting("order_timeout", "5s", parse_duration, "order request timeout (then reconciled)"),
    Setting("kraken_rest_url", "https://api.kraken.com", str, "Kraken REST base (orders)"),
    Setting("coinbase_rest_url", "https://api.coinbase.com", str, "Coinbase REST base (orders)"),
    *(
        Setting(f"{venue}_api_{part}", "", str, f"{venue} API {part} (order entry; env preferred)")
        for venue in VENUE_NAMES
        for part in ("key", "secret")
    ),
    Setting(
        "tradehall_symbols",
        "",
        parse_symbol_overrides,
        "exchange symbol overrides, e.g. BTC-USD=BTCUSD (default: drop the dash)",
    ),
]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``gateway`` subcommand."""
    parser = subparsers.add_parser(
        "gateway",
        help="run the market-data gateway (venue adapters)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add_switches(parser, [SIM])
    add_arguments(parser, SETTINGS)
    parser.set_defaults(func=run)


def build_config(values: dict[str, Any]) -> GatewayConfig:
    """The service configuration from resolved settings."""
    adapter = AdapterSettings(
        stale_after=values["stale_after"],
        refresh_every=values["refresh_every"],
        idle_timeout=values["idle_timeout"],
        depth=values["kraken_depth"],
    )
    venues = tuple(values["venues"])
    if values["tradehall_url"] and "tradehall" not in venues:
        venues += ("tradehall",)
    return GatewayConfig(
        venues=venues,
        symbols=values["symbols"],
        sim=values["sim"],
        sim_interval=values["sim_interval"],
        adapter=adapter,
        binance_ws_url=values["binance_ws_url"],
        binance_rest_url=values["binance_rest_url"],
        coinbase_ws_url=values["coinbase_ws_url"],
        kraken_ws_url=values["kraken_ws_url"],
        tradehall_url=values["tradehall_url"] or "http://127.0.0.1:8080",
        tradehall_symbols=values["tradehall_symbols"],
        redis_url=values["redis_url"],
        orders_db=values["orders_db"],
        orders_poll=values["orders_poll"],
        order_timeout=values["order_timeout"],
        kraken_rest_url=values["kraken_rest_url"],
        coinbase_rest_url=values["coinbase_rest_url"],
        credentials={
            venue: (values[f"{venue}_api_key"], values[f"{venue}_api_secret"])
            for venue in VENUE_NAMES
            if values[f"{venue}_api_key"]
        },
    )


def run(args: argparse.Namespace) -> int:
    """Resolve settings, run until signalled or ``--duration`` elapsed; exit code 0."""
    values = resolve([SIM, *SETTINGS], args)
    tlog.configure(values["log_level"])
    config = build_config(values)
    return asyncio.run(_main(config, values))


async def _main(config: GatewayConfig, values: dict[str, Any]) -> int:
    out = sys.stdout

    def printer(event: Event) -> None:
        out.write(encode(event).decode())
        out.write("\n")

    service = GatewayService(config, printer if values["print_events"] else None)
    log = tlog.get_logger("gateway")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    http = uvicorn.Server(
        uvicorn.Config(
            service.app(),
            host=values["host"],
            port=values["port"],
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    await service.start()
    server_task = asyncio.create_task(http.serve())
    log.info(
        "gateway_started",
        sim=config.sim,
        venues=list(config.venues),
        symbols=list(config.symbols),
        http=f"{values['host']}:{values['port']}",
    )
    try:
        # uvicorn captures SIGINT/SIGTERM itself while serving: either path means "stop".
        waiters = {server_task, asyncio.create_task(stop.wait())}
        timeout = values["duration"] or None
        _, pending = await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
        for task in pending - {server_task}:
            task.cancel()
    finally:
        http.should_exit = True
        await server_task
        await service.stop()
        out.flush()
    log.info("gateway_stopped", health=service.health()["books"])
    return 0
