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


# format_uuid4s: each id's slot in the output (36 characters and a separator), where hex digit
# k of an id goes in it (past the hyphens), and the variant digit's mapping (two low bits kept)
_ID_TEMPLATE = b"00000000-0000-4000-8000-000000000000 "
_ID_STRIDE = len(_ID_TEMPLATE)
_ID_PLACES = [k + (k >= 8) + (k >= 12) + (k >= 16) + (k >= 20) for k in range(32)]
_VARIANT_DIGIT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
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
    count = len(raw) // 16
    if not count:
        return []
    # Column by column rather than id by id: hex digit k of every id is one stepped slice of the
    # hex string, stored with one stepped slice assignment into a template of all the ids -- 31
    # C-level copies per batch instead of nine slices and a join per id (about 5x cheaper).
    digits = raw[: 16 * count].hex().encode()
    out = bytearray(_ID_TEMPLATE * count)
    for k, place in enumerate(_ID_PLACES):
        if k == 12:
            continue  # the version digit: the template's '4'
        column = digits[k::32]
        out[place::_ID_STRIDE] = column.translate(_VARIANT_DIGIT) if k == 16 else column
    return out.decode().split()


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
