"""The C-47 breaker override on the ``circuit:override`` channel, on both backends, and its CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tradehall.tap import redis_stores as rs
from tradehall.tap.breaker import parse_override
from tradehall.tap.hub import CIRCUIT_OVERRIDE, Hub
from tradehall.tap.operator import send_override

from .conftest import ADMIN, Harness, eventually, project_redis_url, running


@pytest.fixture(params=["memory", "redis"])
async def tap(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path, request.param) as harness:
        await harness.tick(31)
        yield harness


def test_parse_override_accepts_the_three_modes_only() -> None:
    assert parse_override(b"close").value == "close"
    assert parse_override(b' "OPEN"\n').value == "open"  # redis-cli users quote it
    assert parse_override(b"auto").value == "auto"
    for bad in (b"", b"shut", b'{"type":"breaker:override"}'):
        with pytest.raises(ValueError, match="close, open or auto"):
            parse_override(bad)


async def test_bus_message_forces_and_releases_the_breaker(tap: Harness) -> None:
    assert tap.service.breaker.state.value == "healthy"
    tap.service.bus.publish(CIRCUIT_OVERRIDE, b"open")
    await eventually(lambda: tap.service.breaker.override.value == "open")
    token, account = await tap.login()
    await tap.fund(account, 1_000)
    cell = tap.placeable_cells()[0]["cell_id"]
    refused = await tap.bet(token, cell)
    assert refused.status_code == 503 and refused.json()["error"] == "PRICE_FEED_STALE"
    tap.service.bus.publish(CIRCUIT_OVERRIDE, b"nonsense")  # ignored: nothing changes
    tap.service.bus.publish(CIRCUIT_OVERRIDE, b"auto")
    await eventually(lambda: tap.service.breaker.override.value == "auto")
    assert (await tap.bet(token, cell)).status_code == 202


async def test_admin_endpoint_publishes_on_the_channel(tap: Harness) -> None:
    seen: list[bytes] = []
    tap.hub.override_handlers.append(seen.append)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    resp = await tap.http.post("/api/admin/breaker", json={"mode": "close"}, headers=admin)
    assert resp.status_code == 200 and resp.json()["override"] == "close"
    await eventually(lambda: seen == [b"close"])
    bad = await tap.http.post("/api/admin/breaker", json={"mode": "shut"}, headers=admin)
    assert bad.status_code == 400 and tap.service.breaker.override.value == "close"


async def test_cli_without_redis_posts_to_the_admin_endpoint(tmp_path: Path, capsys: Any) -> None:
    async with running(tmp_path) as tap:
        parts = urlsplit(tap.url)
        values = {
            "redis_url": "",
            "host": parts.hostname,
            "port": parts.port,
            "admin_token": ADMIN,
        }
        assert await send_override(values, "open") == 0
        assert tap.service.breaker.override.value == "open"
        assert '"override": "open"' in capsys.readouterr().out
        assert await send_override({**values, "admin_token": "wrong"}, "auto") == 1
        assert tap.service.breaker.override.value == "open"


async def test_cli_with_redis_publishes_on_exactly_circuit_override(capsys: Any) -> None:
    """The production wiring listens on the unprefixed Part B name."""
    client = rs.connect_redis(project_redis_url())
    hub = Hub()
    got: list[bytes] = []
    hub.override_handlers.append(got.append)
    bus = rs.RedisBus(client, hub, "test-cli:")  # default channel: circuit:override
    await bus.start()
    try:
        values = {"redis_url": project_redis_url(), "override_channel": "circuit:override"}
        assert await send_override(values, "close") == 0
        for _ in range(500):
            if got:
                break
            await asyncio.sleep(0.01)  # a real Redis round trip
        assert got == [b"close"]
        assert '"receivers": 1' in capsys.readouterr().out
    finally:
        await bus.stop()
        await client.aclose()
    # nobody listening any more: the command says so with exit status 1
    assert await send_override(values, "auto") == 1
    capsys.readouterr()
    down = {"redis_url": "redis://127.0.0.1:1/0", "override_channel": "circuit:override"}
    assert await send_override(down, "auto") == 1  # Redis unreachable: an error, not a trace
    assert '"error"' in capsys.readouterr().out
