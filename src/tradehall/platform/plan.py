"""What ``tradehall up`` runs: one :class:`~tradehall.platform.supervisor.ChildSpec` per system.

Dependency order: the Exchange first (the Gateway's Tradehall venue and the bots use it), then
the Gateway (the Tap's price feed is its BTC-USD stream), then the Tap, then the bots. Each
child gets explicit ``--host``/``--port``/``--data-dir`` flags, so ``TRADEHALL_*`` variables that
several systems share (``TRADEHALL_PORT``...) cannot point two of them at one port; every other
``TRADEHALL_*`` variable still reaches the system that has that setting.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tradehall.platform.bots import DEFAULT_LISTINGS, MAKER, Listing, format_listings
from tradehall.platform.supervisor import ChildSpec, Probe

__all__ = ["PlatformConfig", "Urls", "build_plan", "http_probe", "urls"]


@dataclass(frozen=True)
class PlatformConfig:
    """The settings of ``tradehall up``."""

    sim: bool = False
    host: str = "127.0.0.1"
    exchange_port: int = 8080
    gateway_port: int = 8085
    tap_port: int = 8090
    data_dir: Path = Path("./data")
    bots: bool = True
    log_level: str = "info"
    tap_price_venue: str = "coinbase"
    redis_url: str = ""
    listings: tuple[Listing, ...] = DEFAULT_LISTINGS
    gateway_symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD")


@dataclass(frozen=True)
class Urls:
    """Where a user (or a test) reaches each system."""

    exchange: str
    gateway: str
    gateway_ws: str
    tap: str


def connect_host(host: str) -> str:
    """The address to connect to for a listener on ``host`` (a wildcard means this machine)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def urls(config: PlatformConfig) -> Urls:
    """The base URLs of the systems of ``config``."""
    host = connect_host(config.host)
    return Urls(
        exchange=f"http://{host}:{config.exchange_port}",
        gateway=f"http://{host}:{config.gateway_port}",
        gateway_ws=f"ws://{host}:{config.gateway_port}/ws",
        tap=f"http://{host}:{config.tap_port}",
    )


def http_probe(url: str, check: Callable[[Any], bool] | None = None) -> Probe:
    """A readiness probe: ``GET url`` answers 200 (and its JSON passes ``check``, if given).

    A refused connection means "not yet".
    """

    async def probe() -> bool:
        async with httpx.AsyncClient(timeout=2.0) as client:
            try:
                response = await client.get(url)
            except httpx.TransportError:
                return False
            if response.status_code != 200:
                return False
            return check is None or check(response.json())

    return probe


def _has_orders(body: Any) -> bool:
    return isinstance(body, dict) and int(body.get("total", 0)) > 0


def _tradehall(*args: str) -> list[str]:
    return [sys.executable, "-m", "tradehall", *args]


def build_plan(config: PlatformConfig) -> list[ChildSpec]:
    """The children of ``tradehall up`` for ``config``, in start order."""
    u = urls(config)
    data = config.data_dir
    common = ["--host", config.host, "--log-level", config.log_level]
    exchange = ChildSpec(
        "exchange",
        _tradehall(
            "exchange", *common, "--port", str(config.exchange_port),
            "--data-dir", str(data / "exchange"),
        ),
        http_probe(f"{u.exchange}/healthz"),
    )  # fmt: skip
    gateway_args = [
        "gateway", *common, "--port", str(config.gateway_port),
        "--symbols", ",".join(config.gateway_symbols),
        "--tradehall-url", u.exchange,
        "--orders-db", str(data / "gateway" / "orders.sqlite"),
        "--print-events", "false",
    ]  # fmt: skip
    if config.sim:
        gateway_args.append("--sim")
    if config.redis_url:
        gateway_args += ["--redis-url", config.redis_url]
    gateway = ChildSpec("gateway", _tradehall(*gateway_args), http_probe(f"{u.gateway}/healthz"))
    tap_args = [
        "tap", *common, "--port", str(config.tap_port),
        "--data-dir", str(data / "tap"),
        "--price-source", "gateway",
        "--gateway-url", u.gateway_ws,
        "--gateway-symbol", "BTC-USD",
        "--gateway-provider", config.tap_price_venue,
    ]  # fmt: skip
    if config.sim:
        tap_args += ["--dev-self-fund", "true"]
    if config.redis_url:
        tap_args += ["--redis-url", config.redis_url]
    # /version, not /healthz: the Tap's health is 503 until its price feed is fresh (by design).
    tap = ChildSpec("tap", _tradehall(*tap_args), http_probe(f"{u.tap}/version"))
    specs = [exchange, gateway, tap]
    if config.bots:
        bots = ChildSpec(
            "bots",
            _tradehall(
                "bots", "--exchange-url", u.exchange, "--log-level", config.log_level,
                "--listings", format_listings(config.listings),
            ),
            # ready once the maker quotes: it has resting orders
            http_probe(f"{u.exchange}/brokers/{MAKER}/orders?status=pending", _has_orders),
        )  # fmt: skip
        specs.append(bots)
    return specs
