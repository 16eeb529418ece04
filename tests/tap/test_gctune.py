"""The server's collector settings: start-up objects frozen, young passes rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tradehall.tap.gctune import YOUNG_THRESHOLD, tune_for_serving


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tuning_freezes_live_objects_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    alive = [object(), {"a": [1]}]  # tracked containers that exist before the call
    tune_for_serving()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 20, 100)
    assert all(gc.is_tracked(x) for x in alive[1:])
    gc.collect()  # a full pass leaves frozen objects frozen
    assert gc.get_freeze_count() > 0
