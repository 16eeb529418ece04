"""Module-level loggers that honour ``configure()`` even when created before it.

``tradehall.core.logging.get_logger`` binds at call time, so a logger made at import (before the
CLI has called ``configure``) keeps structlog's defaults: console format and every level. A
:class:`LazyLogger` looks the logger up at each use instead; tap logs are rare (transitions,
rejections, resolutions), so the lookup costs nothing measurable.
"""

from __future__ import annotations

from typing import Any

from tradehall.core.logging import get_logger

__all__ = ["LazyLogger"]


class LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(get_logger(self._name), attr)
