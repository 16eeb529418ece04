"""``tradehall bots``: run the market maker against an exchange until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

import httpx

from tradehall.core import logging as tlog
from tradehall.core.config import (
    Setting,
    add_arguments,
    parse_duration,
    parse_log_level,
    parse_positive_int,
    resolve,
)
from tradehall.platform.bots import DEFAULT_LISTINGS, MarketMaker, format_listings, parse_listings

__all__ = ["SETTINGS", "register", "run"]


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a probability between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a probability between 0 and 1")
    return value


def _interval(text: str) -> float:
    seconds = parse_duration(text)
    if seconds < 0.05:
        raise ValueError("expected a duration of at least 50ms")
    return seconds


def _exchange_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return text.rstrip("/")


SETTINGS: list[Setting] = [
    Setting("exchange_url", "http://127.0.0.1:8080", _exchange_url, "the exchange's base URL"),
    Setting(
        "listings",
        format_listings(DEFAULT_LISTINGS),
        parse_listings,
        "symbols to keep liquid and their starting mid price",
    ),
    Setting("bot_interval", "1s", _interval, "time between quote updates of each symbol"),
    Setting("bot_levels", "2", parse_positive_int, "quoted price levels per side"),
    Setting("bot_quantity", "5", parse_positive_int, "shares per quote"),
    Setting("cross_probability", "0.3", _probability, "chance per step of a taker trade"),
    Setting("log_level", "info", parse_log_level, "debug, info, warn or error"),
]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bots`` subcommand."""
    parser = subparsers.add_parser(
        "bots",
        help="run the market maker that keeps exchange symbols liquid",
        description="Quote both sides of a few exchange symbols and trade now and then.",
    )
    add_arguments(parser, SETTINGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve settings and quote until signalled; exit code 0."""
    values = resolve(SETTINGS, args)
    tlog.configure(values["log_level"])
    return asyncio.run(_main(values))


async def _main(values: dict[str, Any]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with httpx.AsyncClient(base_url=values["exchange_url"], timeout=5.0) as http:
        maker = MarketMaker(
            http,
            values["listings"],
            interval=values["bot_interval"],
            levels=values["bot_levels"],
            quantity=values["bot_quantity"],
            cross_probability=values["cross_probability"],
        )
        await maker.run(stop)
    tlog.get_logger("bots").info(
        "bots_stopped", placed=maker.placed, cancelled=maker.cancelled, crossed=maker.crossed
    )
    return 0
