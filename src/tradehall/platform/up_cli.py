"""``tradehall up``: the whole platform -- Exchange, Gateway, Tap and bots -- in one command.

Each system runs as its own supervised process (see :mod:`tradehall.platform.supervisor` and
``docs/platform.md`` for why). Exit status: 0 after Ctrl-C/SIGTERM, 1 when a system could not
start or kept crashing, 2 for a bad setting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tradehall.core.config import (
    Setting,
    add_arguments,
    add_switches,
    parse_bool,
    parse_duration,
    parse_log_level,
    parse_port,
    resolve,
)
from tradehall.platform.bots import DEFAULT_LISTINGS, Listing, seed_listings
from tradehall.platform.console import ChildLines, render_line, summary
from tradehall.platform.monitor import VenueMonitor
from tradehall.platform.plan import PlatformConfig, build_plan, urls
from tradehall.platform.supervisor import ChildSpec, StartupError, Supervisor

__all__ = ["SETTINGS", "register", "run"]


def _venue(text: str) -> str:
    venue = text.strip().lower()
    if venue not in ("*", "binance", "coinbase", "kraken", "tradehall"):
        raise ValueError("expected binance, coinbase, kraken, tradehall or * (every venue)")
    return venue


SIM = Setting("sim", "false", parse_bool, "use the built-in simulated venues (no network)")
NO_BOTS = Setting("no_bots", "false", parse_bool, "do not start the market-maker bots")
VERBOSE = Setting("verbose", "false", parse_bool, "show every log line, not only warnings")
FLAGS = (SIM, NO_BOTS, VERBOSE)
SETTINGS: list[Setting] = [
    Setting("host", "127.0.0.1", str, "interface every system listens on"),
    Setting("exchange_port", "8080", parse_port, "Exchange port (REST, console, /ws/market)"),
    Setting("gateway_port", "8085", parse_port, "Gateway port (/ws data bus, /healthz)"),
    Setting("tap_port", "8090", parse_port, "Tap port (app and API)"),
    Setting("data_dir", "./data", Path, "root directory: exchange/, gateway/, tap/, logs/"),
    Setting("log_level", "info", parse_log_level, "log level of every system"),
    Setting("tap_price_venue", "coinbase", _venue, "gateway venue whose BTC-USD prices the Tap"),
    Setting("redis_url", "", str, "Redis for the scale-out mode (gateway bus, tap stores)"),
    Setting("stop_grace", "15s", parse_duration, "wait this long after SIGTERM before SIGKILL"),
]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``up`` subcommand."""
    parser = subparsers.add_parser(
        "up",
        help="run the whole platform (exchange, gateway, tap, bots)",
        description=(__doc__ or "").splitlines()[0],
    )
    add_switches(parser, FLAGS)
    add_arguments(parser, SETTINGS)
    parser.set_defaults(func=run)


def config_from(values: dict[str, Any]) -> PlatformConfig:
    """The platform configuration from resolved settings."""
    return PlatformConfig(
        sim=values["sim"],
        host=values["host"],
        exchange_port=values["exchange_port"],
        gateway_port=values["gateway_port"],
        tap_port=values["tap_port"],
        data_dir=values["data_dir"],
        bots=not values["no_bots"],
        log_level=values["log_level"],
        tap_price_venue=values["tap_price_venue"],
        redis_url=values["redis_url"],
        listings=DEFAULT_LISTINGS,
    )


def run(args: argparse.Namespace) -> int:
    """Resolve settings, run the platform until signalled."""
    values = resolve([*FLAGS, *SETTINGS], args)
    config = config_from(values)
    ports = {config.exchange_port, config.gateway_port, config.tap_port}
    if len(ports) != 3 or 0 in ports:
        print("tradehall up: the three ports must be distinct and not 0", file=sys.stderr)
        return 2
    busy = busy_ports(config.host, sorted(ports))
    if busy:
        listed = ", ".join(str(p) for p in busy)
        what = f"port {listed} is" if len(busy) == 1 else f"ports {listed} are"
        print(
            f"tradehall up: {what} already in use on {config.host} "
            "(another tradehall up?); choose others with --exchange-port/--gateway-port/--tap-port",
            file=sys.stderr,
        )
        return 1
    return asyncio.run(_main(config, values["verbose"], values["stop_grace"]))


def busy_ports(host: str, ports: list[int]) -> list[int]:
    """The ports of ``ports`` that cannot be bound on ``host`` right now."""
    busy = []
    for port in ports:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            try:
                sock.bind((host, port))
            except OSError:
                busy.append(port)
    return busy


def _with_listings(spec: ChildSpec, base_url: str, listings: tuple[Listing, ...]) -> ChildSpec:
    """The exchange is ready once it is healthy *and* lists the symbols the gateway follows.

    The Gateway's Tradehall venue subscribes to its symbols once, at connect time, and a symbol
    the exchange does not list yet is refused; listing them first (the bots' brokers, created
    idempotently) makes the venue's books live from the start, with or without the bots.
    """
    healthy = spec.ready

    async def ready() -> bool:
        if not await healthy():
            return False
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as http:
            await seed_listings(http, listings)
        return True

    return ChildSpec(spec.name, spec.argv, ready, spec.env, spec.ready_timeout)


def _say(message: str) -> None:
    print(f"{'up':<8} | {message}", flush=True)


async def _main(config: PlatformConfig, verbose: bool, grace: float) -> int:
    specs = build_plan(config)
    (config.data_dir / "gateway").mkdir(parents=True, exist_ok=True)
    specs[0] = _with_listings(specs[0], urls(config).exchange, config.listings)
    supervisor = Supervisor(
        specs,
        report=_say,
        on_line=ChildLines(verbose=verbose),
        log_dir=config.data_dir / "logs",
        grace=grace,
        render=lambda line: render_line(line, verbose=True),
    )
    stop = asyncio.Event()
    _install_signals(stop, supervisor)
    mode = "simulated venues" if config.sim else "live venues"
    _say(f"starting {', '.join(s.name for s in specs)} ({mode}); data in {config.data_dir}/")
    began = time.monotonic()
    start = asyncio.create_task(supervisor.start())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        return await _shutdown(supervisor, start)
    try:
        start.result()
    except StartupError as exc:
        stopped.cancel()
        rendered = [render_line(line, verbose=True) for line in exc.tail[-10:]]
        tail = "\n".join(f"    {line}" for line in rendered if line)
        _say(f"could not start: {exc}" + (f"; last output:\n{tail}" if tail else ""))
        _say("stopped; nothing is running")
        return 1
    took = time.monotonic() - began
    print("\n" + summary(config, supervisor.pids(), took) + "\n", flush=True)
    monitor = VenueMonitor(_say, tap_venue=config.tap_price_venue, sim=config.sim)
    watching = asyncio.create_task(monitor.run(urls(config).gateway))
    failed = asyncio.create_task(supervisor.wait())
    await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
    watching.cancel()
    if stop.is_set():
        failed.cancel()
        return await _shutdown(supervisor, start)
    stopped.cancel()
    _say(f"stopped because {supervisor.failed} kept crashing; see its log above")
    return failed.result()


async def _shutdown(supervisor: Supervisor, start: asyncio.Task[None]) -> int:
    _say("stopping (Ctrl-C again to kill everything at once)")
    await supervisor.stop()
    with contextlib.suppress(StartupError, asyncio.CancelledError):
        await start
    _say("stopped cleanly")
    return 0


def _install_signals(stop: asyncio.Event, supervisor: Supervisor) -> None:
    loop = asyncio.get_running_loop()

    def handler() -> None:
        if stop.is_set():
            _kill_all(supervisor)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)


def _kill_all(supervisor: Supervisor) -> None:
    """Second Ctrl-C: SIGKILL every child now (the supervisor then finishes its stop)."""
    for pid in supervisor.pids().values():
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
