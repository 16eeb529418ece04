"""Identifier generation behind a seam.

Production uses random RFC 4122 version-4 UUIDs. Tests (and journal replay) use
:class:`SequentialIds`, which yields valid, deterministic UUID strings, so every run of a
scenario produces byte-identical state.
"""

from __future__ import annotations

import os
import uuid
import weakref
from typing import Protocol

__all__ = ["IdSource", "RandomIds", "SequentialIds", "format_uuid4s", "is_uuid"]


class IdSource(Protocol):
    """Anything that hands out fresh unique identifier strings."""

    def new_id(self) -> str:
        """Return an identifier never returned before by this source."""
        ...


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_BATCH_BYTES = 4096  # 256 ids per os.urandom call


class RandomIds:
    """Random version-4 UUIDs, as lowercase hyphenated strings.

    Same randomness as :func:`uuid.uuid4` (``os.urandom``), drawn 4 KiB at a time and formatted in
    batches of 256, several times cheaper per id. ``list.pop`` hands them out, so threads sharing
    a source never get the same id (a refill race only wastes a batch), and a forked child drops
    the batch it inherited, so parent and child never hand out the same ones.
    """

    # Slots: the native engine core serves ids from ``_batch`` by offset. ``__weakref__`` for
    # the registry of sources whose batches a forked child drops.
    __slots__ = ("__weakref__", "_batch")

    def __init__(self) -> None:
        self._batch: list[str] = []
        _random_sources.add(self)

    def new_id(self) -> str:
        try:
            return self._batch.pop()
        except IndexError:
            self._batch = batch = _random_batch()
            return batch.pop()


_random_sources: weakref.WeakSet[RandomIds] = weakref.WeakSet()


def _forget_batches() -> None:
    for source in _random_sources:
        source._batch = []


os.register_at_fork(after_in_child=_forget_batches)


def _random_batch() -> list[str]:
    return format_uuid4s(os.urandom(_BATCH_BYTES))


def format_uuid4s(raw: bytes) -> list[str]:
    """Version-4 UUID strings from each 16 bytes of ``raw``, in order.

    The version nibble becomes ``4`` and the variant nibble keeps its two low bits under ``10``
    (RFC 4122), as :func:`uuid.uuid4` does with the same bytes. The native engine core formats its
    refills the same way in C (``exchange/native/sources.c``), tested against this function.
    """
    h = raw.hex()
    return [
        f"{h[p : p + 8]}-{h[p + 8 : p + 12]}-4{h[p + 13 : p + 16]}-"
        f"{_VARIANT[h[p + 16]]}{h[p + 17 : p + 20]}-{h[p + 20 : p + 32]}"
        for p in range(0, 2 * len(raw) - 31, 32)
    ]


class SequentialIds:
    """Deterministic version-4-shaped UUIDs: ``00000000-0000-4000-8000-<counter:012x>``.

    The counter makes ids sort in issue order, which keeps test expectations readable.
    """

    __slots__ = ("_head", "_next")  # the native engine core reads and bumps ``_next`` by offset

    def __init__(self, start: int = 1, prefix: int = 0) -> None:
        self._next = start
        self._head = f"{prefix:08x}-0000-4000-8000-"

    def new_id(self) -> str:
        value = self._next
        self._next = value + 1
        return f"{self._head}{value:012x}"


def is_uuid(text: str) -> bool:
    """True when ``text`` is a canonical hyphenated UUID string."""
    if len(text) != 36:
        return False
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False
