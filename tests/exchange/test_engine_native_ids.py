"""The native core refills ``RandomIds`` batches itself, formatted as ``core/ids.py`` does."""

from __future__ import annotations

import os
import uuid

import pytest

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import RandomIds, format_uuid4s, is_uuid
from tradehall.exchange import _native
from tradehall.exchange.engine import Engine, OrderRequest

T0 = 1_790_000_000 * 10**9


@pytest.mark.parametrize("size", [16, 4096, 4096 + 15, 0])
def test_native_formatting_equals_the_python_formatting(size: int) -> None:
    raw = os.urandom(size)
    assert _native._format_uuid4s(raw) == format_uuid4s(raw)


def test_formatting_matches_uuid4_of_the_same_bytes() -> None:
    for fill in (b"\x00", b"\xff", b"\x5a"):
        raw = fill * 16
        expected = str(uuid.UUID(bytes=raw, version=4))
        assert _native._format_uuid4s(raw) == format_uuid4s(raw) == [expected]


def test_a_native_engine_mints_valid_distinct_random_ids_across_refills() -> None:
    ids = RandomIds()
    engine = Engine(VirtualClock(T0), ids, vwap_window_ns=10**9, native=True)
    engine.register_broker("b", 10**12, [("S", 10**6)])
    minted = [
        engine.submit(OrderRequest("limit", "b", "D", "bid", "S", 1, 100, T0 + 10**12))[0].order_id
        for _ in range(600)  # past two refills of 256
    ]
    assert len(set(minted)) == 600
    assert all(is_uuid(order_id) and order_id[14] == "4" for order_id in minted)
    assert {order_id[19] for order_id in minted} <= set("89ab")


def test_a_non_bytes_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _native._format_uuid4s("not bytes")  # type: ignore[arg-type]
