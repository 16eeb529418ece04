"""Structured logging: one JSON object per line on stderr (or readable key=value on a TTY).

Call :func:`configure` once at process start; everything else uses ``structlog.get_logger()``.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure", "get_logger"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Set the minimum level (``debug``/``info``/``warn``/``error``) and the output format."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is at that moment.

    structlog's print logger keeps the stream it was created with; test runners swap
    ``sys.stderr`` per test, and a cached logger would then write to a closed stream.
    """

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger(*_args: object) -> _StderrLogger:
    return _StderrLogger()


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound with ``component=name``.

    Lazy: modules create their loggers at import time, before :func:`configure` runs, so the
    logger must pick up the configuration on first use rather than when it is created.
    """
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger
