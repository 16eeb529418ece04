"""RFC 3339 timestamps at the API boundary; integer nanoseconds since the epoch inside.

Responses use second granularity with a trailing ``Z`` (``2026-02-17T19:00:00Z``); internal
ordering keeps full clock precision. Parsing accepts ``Z`` or an explicit offset and normalises
to UTC nanoseconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

__all__ = ["format_ns", "parse_rfc3339_ns"]

NS_PER_SECOND = 1_000_000_000

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_last_second = -1
_last_text = ""


def format_ns(ns: int) -> str:
    """Format epoch nanoseconds as second-granular UTC RFC 3339 (sub-seconds truncated)."""
    global _last_second, _last_text  # one-entry cache: most calls in a burst share a second
    second = ns // NS_PER_SECOND
    if second != _last_second:
        _last_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _last_second = second
    return _last_text


@lru_cache(maxsize=4096)
def parse_rfc3339_ns(text: str) -> int:
    """Parse an RFC 3339 timestamp into UTC epoch nanoseconds; ``ValueError`` if malformed.

    Cached: clients tend to repeat the same deadlines (end of day, end of week), and parsing
    through ``datetime`` costs several microseconds on the order path.
    """
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, offset = match.group(7), match.group(8)
    if second == 60:  # leap seconds are legal RFC 3339 but not representable; clamp
        second = 59
    base = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"bad UTC offset in {text!r}")
        base -= sign * timedelta(hours=hours, minutes=minutes)
    nanos = int(fraction[1:].ljust(9, "0")) if fraction else 0
    return int(base.timestamp()) * NS_PER_SECOND + nanos
