"""The front end's HTTP surface: the page and its assets at ``/``, headers, and the app config.

No browser here (see ``test_web_browser.py``): these check what the tap server sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tradehall.tap.breaker import BreakerConfig
from tradehall.tap.web import SECURITY_HEADERS, STATIC_DIR

from .conftest import Harness


async def test_index_and_assets_are_served_with_security_headers(tap: Harness) -> None:
    index = await tap.http.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert '<canvas id="board"' in index.text
    for name, value in SECURITY_HEADERS.items():
        assert index.headers[name] == value
    # every script and stylesheet the page loads is local and exists
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', index.text)
    assert set(assets) == {"/app.css", "/ethsign.js", "/app.js"}
    for path in assets:
        resp = await tap.http.get(path)
        assert resp.status_code == 200, path
        assert resp.content == (STATIC_DIR / path.lstrip("/")).read_bytes()
        assert "content-security-policy" in resp.headers
    assert (
        (await tap.http.get("/app.js"))
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )


async def test_no_third_party_urls_in_the_page() -> None:
    """Machines are offline: the page must not reference any CDN or remote resource."""
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org)", text), path.name


async def test_api_routes_are_not_shadowed(tap: Harness) -> None:
    grid = await tap.http.get("/api/grid")
    assert grid.status_code == 200 and "cells" in grid.json()
    assert (await tap.http.get("/healthz")).status_code == 200
    assert (await tap.http.get("/api/me")).json()["error"] == "unauthorized"
    assert (await tap.http.get("/no-such-file.js")).status_code == 404


async def test_app_config_tells_the_page_the_chain_faucet_and_breaker(
    tap_with: Callable[..., Any],
) -> None:
    breaker = BreakerConfig(degraded_after_s=1.5, critical_after_s=4.0, recovery_s=12.25)
    async with tap_with(chain_id=5, dev_self_fund=True, breaker=breaker) as harness:
        resp = await harness.http.get("/app-config.json")
        assert resp.status_code == 200
        assert resp.json() == {
            "chain_id": 5,
            "dev_self_fund": True,
            "breaker_degraded_ms": 1500,
            "breaker_recovery_ms": 12250,
        }
        assert resp.headers["cache-control"] == "no-cache"
    async with tap_with() as harness:
        assert (await harness.http.get("/app-config.json")).json() == {
            "chain_id": 1,
            "dev_self_fund": False,
            "breaker_degraded_ms": 3000,
            "breaker_recovery_ms": 30000,
        }
