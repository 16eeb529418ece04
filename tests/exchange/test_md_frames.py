"""Frame packing: :func:`pack_frames` against its contract, and the cap's bad values.

The real-socket checks (a busy flush over several frames, a default ``websockets`` client through a
burst of more than 1 MiB) are in ``test_md_stream.py``; the per-client queue's frames in
``test_md_queue.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.marketdata import MarketData
from tradehall.exchange.marketdata_state import MAX_FRAME_BYTES, Frames, pack_frames, wire_size
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

# Messages as the hub encodes them: compact JSON objects, sometimes with non-ASCII text (sized in
# UTF-8 bytes, not characters).
messages = st.lists(
    st.builds(
        lambda n, note: json.dumps({"n": n, "note": note}, ensure_ascii=False),
        st.integers(0, 10**6),
        st.text(max_size=40),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(messages, st.integers(1, 400))
def test_frames_carry_every_message_in_order_within_the_cap(texts: list[str], cap: int) -> None:
    frames = pack_frames(texts, cap)
    decoded: list[list[Any]] = [json.loads(frame) for frame in frames]
    assert [m for frame in decoded for m in frame] == [json.loads(t) for t in texts]
    for frame, content in zip(frames, decoded, strict=True):
        assert content  # never an empty frame
        assert wire_size(frame) == len(frame.encode())
        assert wire_size(frame) <= cap or len(content) == 1  # only a lone message is larger
    # Greedy: the next frame's first message would not have fitted into the frame before it.
    start = 0
    for frame, content in zip(frames[:-1], decoded[:-1], strict=True):
        start += len(content)
        assert wire_size(frame) + 1 + wire_size(texts[start]) > cap
    batch = Frames(frames, 0)
    assert batch.size == wire_size(",".join(texts))  # what the messages add to a joined frame


def test_small_flush_is_one_frame_and_a_busy_one_is_split() -> None:
    texts = [f'{{"type":"trade","sequence":{n},"pad":"{"x" * 100}"}}' for n in range(10_000)]
    assert pack_frames(texts[:100]) == ["[" + ",".join(texts[:100]) + "]"]
    frames = pack_frames(texts)
    assert len(frames) == 6  # ~1.4 MB at 256 KiB
    assert all(wire_size(frame) <= MAX_FRAME_BYTES for frame in frames)
    assert "".join(frame[1:-1] + "," for frame in frames) == ",".join(texts) + ","


def test_non_ascii_is_measured_in_utf8_bytes() -> None:
    text = json.dumps({"s": "é" * 10}, ensure_ascii=False)  # 10 characters, 20 bytes
    assert wire_size(text) == len(text) + 10
    assert len(pack_frames([text, text], 2 * len(text) + 3)) == 2  # fits in characters only
    assert len(pack_frames([text, text], 2 * wire_size(text) + 3)) == 1


@pytest.mark.parametrize("cap", [0, -5])
def test_hub_rejects_a_cap_below_one_byte(cap: int) -> None:
    service = ExchangeService(ExchangeSettings(), clock=VirtualClock(0), ids=SequentialIds())
    with pytest.raises(ValueError, match="max_frame_bytes must be at least 1"):
        MarketData(service, max_frame_bytes=cap)
