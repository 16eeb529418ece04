"""What ``tradehall up`` prints: the startup summary and the children's notable log lines.

Children log JSON lines (one object per line, with ``level`` and ``event``). Everything goes to
``DATA/logs/<child>.log``; the terminal shows warnings and errors (and any line that is not JSON,
such as a traceback), prefixed with the child's name and rendered as ``level event key=value``.
``--verbose`` shows every line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from tradehall.platform.bots import Listing
from tradehall.platform.plan import PlatformConfig, urls

__all__ = ["ChildLines", "render_line", "summary"]

_QUIET_LEVELS = frozenset({"debug", "info"})
_SKIP_KEYS = frozenset({"level", "event", "timestamp", "component"})
_WIDTH = 8  # longest child name ("exchange") for aligned prefixes


def render_line(line: str, *, verbose: bool = False) -> str | None:
    """The terminal form of one child output line, or None to keep it off the terminal."""
    stripped = line.strip()
    if not stripped:
        return None
    try:
        record = json.loads(stripped)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        # uvicorn's own start-up chatter is noise; anything else unstructured is shown
        if not verbose and stripped.startswith("INFO:"):
            return None
        return line.rstrip()
    level = str(record.get("level", "info")).lower()
    if level in _QUIET_LEVELS and not verbose:
        return None
    parts = [level, str(record.get("event", ""))]
    for key, value in record.items():
        if key in _SKIP_KEYS:
            continue
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"{key}={text}" if " " not in text else f"{key}={json.dumps(text)}")
    return " ".join(parts)


class ChildLines:
    """The supervisor's line sink: notable lines to ``out`` with a ``name |`` prefix."""

    def __init__(self, *, verbose: bool = False, out: TextIO | None = None) -> None:
        self.verbose = verbose
        self.out = out

    def __call__(self, name: str, line: str) -> None:
        rendered = render_line(line, verbose=self.verbose)
        if rendered is None:
            return
        out = self.out or sys.stdout
        out.write(f"{name:<{_WIDTH}} | {rendered}\n")
        out.flush()


def _listing_names(listings: Sequence[Listing]) -> str:
    return ", ".join(li.symbol for li in listings)


def summary(config: PlatformConfig, pids: dict[str, int | None], seconds: float = 0.0) -> str:
    """The startup summary: what runs where, and what to open first."""
    u = urls(config)
    mode = "simulated venues, no network needed" if config.sim else "live venues"
    first = config.listings[0].symbol if config.listings else "BTCUSD"
    rows = [
        ("Exchange console", f"{u.exchange}/console?symbol={first}"),
        ("Exchange API docs", f"{u.exchange}/docs   (REST at {u.exchange})"),
        ("Tap app", f"{u.tap}/"),
        ("Gateway data bus", f"{u.gateway_ws}   (health {u.gateway}/healthz)"),
        ("Metrics", f"{u.exchange}/metrics  {u.gateway}/metrics  {u.tap}/metrics"),
    ]
    if config.bots:
        rows.append(("Market maker", f"quoting {_listing_names(config.listings)}"))
    took = f" in {seconds:.1f} s" if seconds else ""
    lines = [f"Tradehall is up{took} ({mode}).", ""]
    lines += [f"  {label:<18} {value}" for label, value in rows]
    processes = ", ".join(f"{name} {pid}" for name, pid in pids.items())
    lines += [
        "",
        f"  Processes: {processes}",
        f"  Data in {config.data_dir}/, logs in {config.data_dir / 'logs'}/ "
        "(warnings and errors are shown here)",
        f"  Tap price: the gateway's BTC-USD from {config.tap_price_venue}; bets open once the "
        "feed has been fresh for the breaker's recovery time (30 s by default).",
    ]
    if config.sim:
        lines.append("  Tap wallets can fund themselves (development mode, --sim only).")
    lines += ["", "Press Ctrl-C to stop."]
    return "\n".join(lines)
