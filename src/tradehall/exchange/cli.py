"""``tradehall exchange``: run the Exchange HTTP server (uvicorn, uvloop, httptools)."""

from __future__ import annotations

import argparse
import dataclasses

from tradehall.core import logging as tlog
from tradehall.core.config import add_arguments, resolve
from tradehall.exchange.settings import SETTINGS, ExchangeSettings

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``exchange`` subcommand."""
    parser = subparsers.add_parser(
        "exchange",
        help="run the matching exchange",
        description="Run the Tradehall exchange. Every flag also has a TRADEHALL_* variable.",
    )
    add_arguments(parser, SETTINGS)
    parser.set_defaults(func=run)


def load_settings(args: argparse.Namespace | None = None) -> ExchangeSettings:
    """Resolve flags and environment into :class:`ExchangeSettings` (raises ``ConfigError``)."""
    values = resolve(SETTINGS, args)
    names = {field.name for field in dataclasses.fields(ExchangeSettings)}
    return ExchangeSettings(**{k: v for k, v in values.items() if k in names})


def run(args: argparse.Namespace) -> int:
    """Start the server and block until SIGINT/SIGTERM."""
    settings = load_settings(args)
    tlog.configure(settings.log_level)
    import uvicorn

    from tradehall.exchange.app import create_app
    from tradehall.exchange.service import ExchangeService

    service = ExchangeService(settings)
    log = tlog.get_logger("exchange")
    log.info("starting", host=settings.host, port=settings.port)
    uvicorn.run(
        create_app(service),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning" if settings.log_level != "debug" else "info",
        timeout_keep_alive=max(1, round(settings.idle_timeout)),
        timeout_graceful_shutdown=max(0, round(settings.shutdown_timeout)),
    )
    log.info("stopped")
    return 0
