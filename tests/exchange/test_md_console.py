"""The ``/console`` page in a real headless Chromium, driven over the Chrome DevTools Protocol.

Chromium comes from Debian (``chromium`` + ``chromium-driver``); the session fixture installs it
when ``/usr/bin/chromium`` is missing. Orders go in through the REST API; the test waits for the
page's DOM to show them (polling the DOM with a deadline -- no fixed sleeps), asserts on the ladder,
trades, last price and VWAP, and saves a screenshot to ``artifacts/console.png``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from services import serve
from tradehall.exchange.app import create_app
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SYMBOL = "ACME"
FAR = "2030-01-01T00:00:00Z"


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "chromium", "chromium-driver"],
            check=True,
            env=env,
            capture_output=True,
        )
    assert CHROMIUM.exists()
    return CHROMIUM


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    service = ExchangeService(ExchangeSettings())
    async with serve(create_app(service)) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser(chromium: Path, tmp_path: Path) -> Iterator[int]:
    """A headless Chromium; yields its DevTools port."""
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [
            str(chromium),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1200,700",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):  # up to 30 s for the first start
            if port_file.exists() and port_file.read_text().count("\n") >= 1:
                break
            if proc.poll() is not None:
                pytest.fail(f"chromium exited with {proc.returncode}")
            time.sleep(0.1)  # waiting on an external process to start
        yield int(port_file.read_text().splitlines()[0])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Page:
    """A minimal CDP client for one page target."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        await self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == ident:
                assert "error" not in reply, reply
                result: dict[str, Any] = reply["result"]
                return result

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_for(self, expression: str, wait: float = 15.0) -> Any:
        """Poll a JS expression until it is truthy (the page updates asynchronously)."""
        async with asyncio.timeout(wait):
            while True:
                value = await self.js(expression)
                if value:
                    return value
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def open_page(devtools_port: int) -> AsyncIterator[Page]:
    async with httpx.AsyncClient() as http:
        targets = (await http.get(f"http://127.0.0.1:{devtools_port}/json/list")).json()
    target = next(t for t in targets if t["type"] == "page")
    async with websockets.connect(
        target["webSocketDebuggerUrl"], max_size=None, compression=None
    ) as ws:
        yield Page(ws)


LADDER = """JSON.stringify([...document.querySelectorAll('#ladder tbody tr')].map(tr =>
  [tr.className, tr.dataset.price, [...tr.querySelectorAll('td.qty')].map(td => td.textContent)
   .join('')]))"""
TRADES = """JSON.stringify([...document.querySelectorAll('#trades tbody tr')].map(tr =>
  [...tr.querySelectorAll('td')].slice(1).map(td => td.textContent)))"""


async def test_console_shows_live_book_and_trades(base_url: str, browser: int) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        for broker, cash, qty in (("maker", 0, 1000), ("taker", 1_000_000, 0)):
            body: dict[str, Any] = {"broker_id": broker, "initial_cash": cash}
            if qty:
                body["initial_holdings"] = [{"symbol": SYMBOL, "quantity": qty}]
            assert (await http.post("/brokers", json=body)).status_code == 201

        async def order(broker: str, side: str, quantity: int, price: float) -> None:
            resp = await http.post(
                "/orders",
                json={
                    "type": "limit",
                    "broker_id": broker,
                    "document_number": "1",
                    "side": side,
                    "symbol": SYMBOL,
                    "quantity": quantity,
                    "price": price,
                    "expires_at": FAR,
                },
            )
            assert resp.status_code == 201, resp.text

        async with open_page(browser) as page:
            await page.call("Page.enable")
            await page.call("Page.navigate", url=f"{base_url}/console?symbol={SYMBOL}")
            await page.wait_for("document.getElementById('status')?.dataset.state === 'live'")
            assert await page.js("document.getElementById('watched').textContent") == SYMBOL
            await page.wait_for(
                "[...document.querySelectorAll('#symbols option')]"
                f".some(o => o.value == '{SYMBOL}')"
            )
            assert json.loads(await page.js(LADDER)) == []

            await order("maker", "ask", 10, 101.0)
            await order("maker", "ask", 5, 102.0)
            await order("taker", "bid", 7, 99.0)
            await page.wait_for(f"{LADDER}.includes('99.00')")
            assert json.loads(await page.js(LADDER)) == [
                ["ask", "102.00", "5"],
                ["ask", "101.00", "10"],
                ["bid", "99.00", "7"],
            ]
            assert await page.js("document.getElementById('spread').textContent") == "2.00"

            await order("taker", "bid", 4, 101.0)  # trades 4 @ 101.00
            await page.wait_for(f"{TRADES} !== '[]'")
            await page.wait_for("document.getElementById('vwap').textContent === '101.00'")
            assert json.loads(await page.js(TRADES)) == [["buy", "101.00", "4"]]
            assert await page.js("document.getElementById('last').textContent") == "101.00"
            await page.wait_for(f'{LADDER}.includes(\'"101.00","6"\')')
            assert json.loads(await page.js(LADDER)) == [
                ["ask", "102.00", "5"],
                ["ask", "101.00", "6"],
                ["bid", "99.00", "7"],
            ]

            shot = await page.call("Page.captureScreenshot", format="png")
            png = base64.b64decode(shot["data"])
            assert png.startswith(b"\x89PNG")
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "console.png").write_bytes(png)
