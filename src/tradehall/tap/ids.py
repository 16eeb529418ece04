"""Fast, time-ordered identifiers for bets and ledger rows (UUID version 7 layout).

``uuid.uuid4()`` reads the OS random source on every call (~20 µs under load here) and scatters
primary-key inserts across the B-tree. These ids put the Unix millisecond time in the first 48
bits (RFC 9562 version 7), so inserts append at the right edge of the index, and fill the rest
from a ``random.Random`` seeded once from the OS. Bet and ledger ids are not secrets (every read
is checked against the owner; session ids still come from :mod:`secrets`).
"""

from __future__ import annotations

import os
import random
import threading
import time

__all__ = ["new_id"]

_local = threading.local()


def _rng() -> random.Random:
    rng: random.Random | None = getattr(_local, "rng", None)
    if rng is None:
        rng = random.Random(os.urandom(32))
        _local.rng = rng
    return rng


def new_id() -> str:
    """A version-7 UUID string: 48 bits of Unix ms, then 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = _rng().getrandbits(74)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= (rand >> 62) << 64  # 12 bits rand_a
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & ((1 << 62) - 1)  # 62 bits rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
