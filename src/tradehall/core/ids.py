"""Identifier generation behind a seam.

Production uses random RFC 4122 version-4 UUIDs. Tests (and journal replay) use
:class:`SequentialIds`, which yields valid, deterministic UUID strings, so every run of a
scenario produces byte-identical state.
"""

from __future__ import annotations

import uuid
from typing import Protocol

__all__ = ["IdSource", "RandomIds", "SequentialIds", "is_uuid"]


class IdSource(Protocol):
    """Anything that hands out fresh unique identifier strings."""

    def new_id(self) -> str:
        """Return an identifier never returned before by this source."""
        ...


class RandomIds:
    """Random version-4 UUIDs, as lowercase hyphenated strings."""

    def new_id(self) -> str:
        return str(uuid.uuid4())


class SequentialIds:
    """Deterministic version-4-shaped UUIDs: ``00000000-0000-4000-8000-<counter:012x>``.

    The counter makes ids sort in issue order, which keeps test expectations readable.
    """

    def __init__(self, start: int = 1, prefix: int = 0) -> None:
        self._next = start
        self._prefix = prefix

    def new_id(self) -> str:
        value = self._next
        self._next += 1
        return f"{self._prefix:08x}-0000-4000-8000-{value:012x}"


def is_uuid(text: str) -> bool:
    """True when ``text`` is a canonical hyphenated UUID string."""
    if len(text) != 36:
        return False
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False
