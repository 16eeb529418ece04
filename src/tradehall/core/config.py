"""Typed settings from command-line flags and ``TRADEHALL_*`` environment variables.

Each system declares its settings once as a list of :class:`Setting`; :func:`add_arguments`
turns them into ``argparse`` flags and :func:`resolve` produces a plain ``dict`` of parsed values.
Precedence: explicit flag > environment variable > default. An empty variable means "default".
A value that does not parse stops startup with :class:`ConfigError`, naming the setting, the source
and what was expected -- never a silent fallback.

Durations use Go-style unit-suffixed strings (``500ms``, ``1s``, ``5m``, ``1m30s``); see
:func:`parse_duration`.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ConfigError",
    "Setting",
    "add_arguments",
    "add_switches",
    "parse_bool",
    "parse_duration",
    "parse_log_level",
    "parse_port",
    "parse_positive_int",
    "resolve",
]

ENV_PREFIX = "TRADEHALL_"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class ConfigError(ValueError):
    """A setting whose value cannot be used; the message says which, from where, and why."""


def parse_duration(text: str) -> float:
    """Parse ``500ms``/``1s``/``5m``/``1m30s`` (a bare ``0`` too) into seconds."""
    raw = text.strip()
    if raw == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise ValueError("expected a duration such as 500ms, 1s, 5m or 1m30s")
    return total


def parse_port(text: str) -> int:
    """A TCP port number, 0 (any free port) to 65535."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError("expected a port number between 0 and 65535")
    return int(text)


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of 1, 0, true, false, yes, no, on, off")


def parse_log_level(text: str) -> str:
    """``debug``, ``info``, ``warn`` (or ``warning``) or ``error``."""
    lowered = text.strip().lower()
    if lowered == "warning":
        lowered = "warn"
    if lowered not in ("debug", "info", "warn", "error"):
        raise ValueError("expected one of debug, info, warn, error")
    return lowered


def parse_positive_int(text: str) -> int:
    """A whole number >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError("expected a whole number >= 1")
    return int(text)


@dataclass(frozen=True)
class Setting:
    """One setting: ``name`` (snake_case) maps to ``--name-with-dashes`` and ``TRADEHALL_NAME``."""

    name: str
    default: str
    parse: Callable[[str], Any]
    help: str
    aliases: Sequence[str] = ()  # extra environment variables, e.g. the contract's bare PORT

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def add_arguments(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    """Add one optional flag per setting; unset flags stay ``None`` so the environment applies."""
    for setting in settings:
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            default=None,
            help=f"{setting.help} (env {setting.env}, default {setting.default!r})",
        )


def add_switches(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    """Add one value-less flag per boolean setting: given, it means ``true``.

    Unset switches stay ``None``, so :func:`resolve` falls back to the environment and default.
    """
    for setting in settings:
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            action="store_const",
            const="true",
            default=None,
            help=f"{setting.help} (env {setting.env})",
        )


def resolve(
    settings: Sequence[Setting],
    flags: Mapping[str, object] | argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Parse every setting from flags, then environment, then default; raise on the first error."""
    env = os.environ if environ is None else environ
    given = vars(flags) if isinstance(flags, argparse.Namespace) else dict(flags or {})
    values: dict[str, Any] = {}
    for setting in settings:
        flag_value = given.get(setting.name)
        if flag_value is not None:
            raw, source = str(flag_value), f"flag {setting.flag}"
        else:
            raw, source = setting.default, "default"
            for name in (setting.env, *setting.aliases):
                if env.get(name, "") != "":
                    raw, source = env[name], f"environment variable {name}"
                    break
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"invalid {setting.name} from {source}: {raw!r}: {exc}") from None
    return values
