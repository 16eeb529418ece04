"""Fixtures shared by every test folder: the real services some tests need (see ``services``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services import start_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private Redis server for this test worker (started here, stopped at the end)."""
    with start_redis() as url:
        yield url
