"""The tap page in a real headless Chromium, driven over the Chrome DevTools Protocol.

A session fixture installs Debian's ``chromium`` (and ``chromium-driver``) when missing and starts
it once; each test opens its own tab through a small CDP client on ``websockets``. The tap server
runs in-process on 127.0.0.1 with the real clock, a simulated feed that the test can stop, the dev
faucet on, 2-second columns and short breaker thresholds, so the whole story fits in seconds:
sign in with the development wallet, fund, tap a placeable cell (PENDING -> CONFIRMED, balance
drops), watch it resolve, have a closed column refuse a tap, lose the socket while a bet is
pending (UNKNOWN, then a refresh settles it), and stop the feed (DEGRADED, then CRITICAL banners
and a disabled grid), and tell a breaker warming up over fresh prices from a dead feed.
Screenshots go to ``artifacts/``.

Waiting is polling of page state (a browser and a server run in real time); no step asserts on
durations.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak as eth_keccak
from websockets.asyncio.client import ClientConnection, connect

from tradehall.core.clock import SystemClock
from tradehall.tap.app import create_app
from tradehall.tap.auth import LoginRequest, login_text, verify_login
from tradehall.tap.breaker import BreakerConfig, Health, Override
from tradehall.tap.feed import Emit
from tradehall.tap.grid import GridConfig
from tradehall.tap.hub import Hub, MemoryBus
from tradehall.tap.service import TapConfig, TapService
from tradehall.tap.stores import MemoryNonceStore, MemoryRateLimiter, MemorySessionStore
from tradehall.tap.web import STATIC_DIR

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
NS = 1_000_000_000
DEGRADED_TEXT = "Price feed delayed - trades at your own risk"
CRITICAL_TEXT = "Betting suspended - price feed issue detected"
WARMING_PREFIX = "Warming up - betting opens in "  # + the seconds left, counting down

# The first test's setup may include installing Chromium with apt (a minute or two on a fresh
# machine), more than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(900)


# ---------------------------------------------------------------------- browser process


def _install_chromium() -> None:
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    cmd = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
    if subprocess.run(cmd, check=False, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(cmd, env=env, check=True, capture_output=True)


@pytest.fixture(scope="session")
def browser_ws_url() -> Iterator[str]:
    """Start one headless Chromium for the session; yield its browser DevTools websocket URL."""
    if not CHROMIUM.exists():
        _install_chromium()
    profile = Path(tempfile.mkdtemp(prefix="tap-chromium-"))
    proc = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and len(active.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start")
            time.sleep(0.05)
        port, path = active.read_text().splitlines()[:2]
        yield f"ws://127.0.0.1:{port}{path}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------------- a minimal CDP client


class CdpError(Exception):
    pass


class Cdp:
    """Commands and events over the browser's DevTools websocket (flat sessions)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            future = self._waiting.pop(msg.get("id", -1), None)
            if future is not None and not future.done():
                if "error" in msg:
                    future.set_exception(CdpError(str(msg["error"])))
                else:
                    future.set_result(msg.get("result", {}))
            elif "method" in msg:
                self.events.append(msg)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._ids] = future
        await self.ws.send(json.dumps(message))
        return await asyncio.wait_for(future, 20)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self.ws.close()


@dataclass
class Page:
    cdp: Cdp
    session: str
    target: str

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.cdp.send(method, params, self.session)

    async def js(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            raise CdpError(json.dumps(result["exceptionDetails"])[:800])
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 15.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            value = await self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {expression}")
            await asyncio.sleep(0.05)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete' && !!window.tapDebug")

    async def click(self, x: float, y: float) -> None:
        base = {"x": x, "y": y, "button": "left", "clickCount": 1}
        await self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        await self.send("Input.dispatchMouseEvent", {"type": "mousePressed", **base})
        await self.send("Input.dispatchMouseEvent", {"type": "mouseReleased", **base})

    async def click_element(self, selector: str) -> None:
        box = await self.wait_for(
            f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
                if (!el || el.disabled || el.offsetParent === null) return null;
                el.scrollIntoView({{block: 'center'}}); const r = el.getBoundingClientRect();
                return {{x: r.left + r.width / 2, y: r.top + r.height / 2}}; }})()"""
        )
        await self.click(box["x"], box["y"])

    async def viewport(self, width: int, height: int, *, mobile: bool) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    async def screenshot(self, path: Path) -> None:
        data = await self.send("Page.captureScreenshot", {"format": "png"})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def errors(self) -> list[str]:
        """Uncaught exceptions, console errors and CSP violations seen in this tab."""
        found = []
        for event in self.cdp.events:
            if event.get("sessionId") != self.session:
                continue
            if event["method"] == "Runtime.exceptionThrown":
                found.append(json.dumps(event["params"]["exceptionDetails"])[:500])
            elif event["method"] == "Log.entryAdded":
                entry = event["params"]["entry"]
                # HTTP error answers are logged with source "network"; the page handles them
                if entry["level"] == "error" and entry.get("source") != "network":
                    found.append(entry["text"])
        return found


@contextlib.asynccontextmanager
async def open_page(
    browser_ws_url: str, width: int = 1280, height: int = 860
) -> AsyncIterator[Page]:
    async with connect(browser_ws_url, max_size=None, ping_interval=None) as ws:
        cdp = Cdp(ws)
        context = (await cdp.send("Target.createBrowserContext"))["browserContextId"]
        target = (
            await cdp.send(
                "Target.createTarget", {"url": "about:blank", "browserContextId": context}
            )
        )["targetId"]
        session = (await cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True}))[
            "sessionId"
        ]
        page = Page(cdp, session, target)
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        await page.viewport(width, height, mobile=False)
        try:
            yield page
        finally:
            with contextlib.suppress(Exception):
                await cdp.send("Target.disposeBrowserContext", {"browserContextId": context})
            await cdp.close()


# ---------------------------------------------------------------------- the tap server


class StoppableSim:
    """A simulated random walk (5 ticks a second) the test can stop and restart."""

    name = "sim"

    def __init__(self, start_cents: int = 6_000_000, seed: int = 9) -> None:
        self.running = asyncio.Event()
        self.running.set()
        self.price = start_cents
        self._rng = random.Random(seed)

    async def run(self, emit: Emit) -> None:
        while True:
            await self.running.wait()
            emit(self.price)
            await asyncio.sleep(0.2)
            self.price += round(self._rng.gauss(0.0, 120.0))


@dataclass
class Server:
    url: str
    service: TapService
    hub: Hub
    source: StoppableSim


@contextlib.asynccontextmanager
async def tap_server(
    tmp_path: Path, recovery_s: float = 0.5, *, wait_open: bool = True
) -> AsyncIterator[Server]:
    """The server; ready once betting is open, or once it serves if not ``wait_open``."""
    config = TapConfig(
        data_dir=tmp_path,
        grid=GridConfig(column_seconds=2, rows=16, presets=(100, 500, 1_000, 2_500)),
        breaker=BreakerConfig(degraded_after_s=1.2, critical_after_s=2.5, recovery_s=recovery_s),
        dev_self_fund=True,
        max_batch=1,
        db_writer="thread",
        sqlite_synchronous="NORMAL",
        resolve_delay_s=1,
        resolve_interval_s=0.25,
        status_interval_s=1.0,
        bet_rate_limit=1_000,
        ip_rate_limit=100_000,
    )
    clock = SystemClock()
    hub = Hub()
    source = StoppableSim()
    service = TapService(
        config,
        clock=clock,
        sessions=MemorySessionStore(clock),
        nonces=MemoryNonceStore(clock),
        limiter=MemoryRateLimiter(clock),
        bus=MemoryBus(hub),
        source=source,
    )
    await service.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service, hub, manage_service=False),
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 15
        while not (server.started and (service.breaker.allows_bets or not wait_open)):
            assert time.monotonic() < deadline, "server or breaker never became ready"
            await asyncio.sleep(0.05)
        yield Server(f"http://127.0.0.1:{port}", service, hub, source)
    finally:
        server.should_exit = True
        await task
        await service.stop()
        sock.close()


# ---------------------------------------------------------------------- helpers

RECORD_STATES = """(() => {
  window.__states = [];
  const el = document.getElementById('bet-status');
  new MutationObserver(() => window.__states.push(el.dataset.state))
    .observe(el, {attributes: true, childList: true, characterData: true, subtree: true});
  return true; })()"""


async def sign_in_and_fund(page: Page) -> None:
    await page.wait_for("!!window.tapDebug.grid() && window.tapDebug.socketOpen()")
    await page.click_element("#signin")
    await page.wait_for("document.getElementById('signin-dialog').open")
    await page.click_element("#signin-dev")
    await page.wait_for("!document.getElementById('signin-dialog').open")
    await page.wait_for("document.getElementById('balance').dataset.cents === '0'")
    await page.click_element("#fund")
    await page.wait_for("document.getElementById('balance').dataset.cents === '10000'")


async def open_cell(page: Page, columns_ahead: int = 1) -> str:
    """A placeable cell in the price's row, ``columns_ahead`` columns after the first open one."""
    cell_id: str = await page.wait_for(
        f"""(() => {{ const g = window.tapDebug.grid(); if (!g) return null;
            const col = g.first_placeable + {columns_ahead} * g.column_seconds;
            const row = g.rows[Math.floor(g.rows.length / 2)];
            const id = `${{col}}_${{row}}_${{row + g.row_cents}}`;
            const debug = window.tapDebug;
            return debug.placeable(id) && debug.cellRect(id) ? id : null; }})()"""
    )
    return cell_id


async def tap_cell(page: Page, cell_id: str) -> str:
    """Click the middle of a cell; return the cell the page saw tapped.

    Rows re-centre on the price when a new grid arrives, so a click can land one row off the
    cell it aimed at; callers follow the cell actually tapped (same column).
    """
    before = await page.js("window.tapDebug.taps()")
    rect = await page.js(f"window.tapDebug.cellRect({json.dumps(cell_id)})")
    await page.click(rect["x"] + rect["w"] / 2, rect["y"] + rect["h"] / 2)
    await page.wait_for(f"window.tapDebug.taps() > {before}")
    tapped: str = await page.js("window.tapDebug.lastTap()")
    assert tapped.partition("_")[0] == cell_id.partition("_")[0]
    return tapped


async def server_bets(server: Server, page: Page) -> list[dict[str, Any]]:
    token = await page.js("JSON.parse(localStorage.getItem('tap.session.v1')).id")
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get("/api/bets", headers={"Authorization": f"Bearer {token}"})
    bets: list[dict[str, Any]] = resp.json()["bets"]
    return bets


# ---------------------------------------------------------------------- tests


async def test_dev_wallet_signatures_match_eth_account(browser_ws_url: str) -> None:
    """The page's own Keccak/secp256k1/EIP-191 code signs exactly like eth-account."""
    async with open_page(browser_ws_url) as page:
        await page.js((STATIC_DIR / "ethsign.js").read_text())
        for seed in range(3):
            account = Account.from_key(bytes([seed + 1]) * 32)
            req = LoginRequest(account.address, f"nonce-{uuid.uuid4().hex}", 1_763_700_000, 1, "")
            text = login_text(req) + ("\u00e9\u20bf" if seed == 2 else "")
            ours = await page.js(
                f"""(() => {{ const key = EthSign.fromHex({json.dumps(account.key.hex())});
                    return [EthSign.address(key),
                            EthSign.personalSign(key, {json.dumps(text)})]; }})()"""
            )
            theirs = account.sign_message(encode_defunct(text=text))
            assert ours[0] == account.address
            assert ours[1] == "0x" + bytes(theirs.signature).hex()
            if seed < 2:  # and the backend's own check accepts it
                signed = LoginRequest(
                    account.address, req.nonce, req.timestamp, req.chain_id, ours[1]
                )
                assert verify_login(signed, now_ns=req.timestamp * NS, chain_id=1) == (
                    account.address.lower()
                )
        digest = await page.js("EthSign.toHex(EthSign.keccak256(new Uint8Array(300).fill(1)))")
        assert digest == eth_keccak(bytes([1]) * 300).hex()
        assert page.errors() == []


async def test_tap_flow_in_the_browser(browser_ws_url: str, tmp_path: Path) -> None:
    async with tap_server(tmp_path) as server, open_page(browser_ws_url) as page:
        await page.goto(server.url + "/")
        await page.wait_for(
            "document.getElementById('feed-state').dataset.state === 'healthy'"
            " && document.getElementById('banner').hidden"
        )
        await sign_in_and_fund(page)

        # choose the $5 preset, then tap an open cell: PENDING, then CONFIRMED, balance drops
        await page.click_element("#presets input[value='500']")
        assert await page.js("document.querySelector(\"#presets input[value='500']\").checked")
        await page.js(RECORD_STATES)
        cell = await tap_cell(page, await open_cell(page, 2))
        await page.wait_for(f"window.tapDebug.cellState({json.dumps(cell)}) === 'confirmed'")
        states = await page.js("window.__states")
        assert "pending" in states and "confirmed" in states
        assert states.index("pending") < states.index("confirmed"), states
        await page.wait_for("document.getElementById('balance').dataset.cents === '9500'")
        await page.wait_for(
            f"document.querySelector('#history-body tr[data-cell=\"{cell}\"]')?.dataset.status"
            " === 'confirmed'"
        )
        [bet] = await server_bets(server, page)
        assert (bet["cell_id"], bet["amount"], bet["status"]) == (cell, 500, "confirmed")

        # a column that is not open refuses the tap without asking the server
        await page.js(RECORD_STATES)
        closed = await page.js(
            """(() => { const g = window.tapDebug.grid();
                const col = g.columns[0] + g.column_seconds;
                const row = g.rows[Math.floor(g.rows.length / 2) + 2];
                return `${col}_${row}_${row + g.row_cents}`; })()"""
        )
        assert await page.js(f"window.tapDebug.placeable({json.dumps(closed)})") is False
        closed = await tap_cell(page, closed)
        await page.wait_for("document.getElementById('bet-status').dataset.state === 'refused'")
        assert "closed" in await page.js("document.getElementById('bet-status').textContent")
        assert await page.js(f"window.tapDebug.cellState({json.dumps(closed)})") is None
        assert len(await server_bets(server, page)) == 1
        assert await page.js("document.getElementById('balance').dataset.cents") == "9500"

        # the bet resolves: won or lost, with the payout shown in the history
        await page.wait_for(
            f"['won', 'lost'].includes(window.tapDebug.cellState({json.dumps(cell)}))", 20
        )
        [bet] = await server_bets(server, page)
        assert bet["status"] in ("won", "lost")
        row = f'#history-body tr[data-cell="{cell}"]'
        await page.wait_for(
            f"document.querySelector('{row}')?.dataset.status === '{bet['status']}'"
        )
        expected = 9500 + (bet["payout"] or 0)
        await page.wait_for(f"document.getElementById('balance').dataset.cents === '{expected}'")
        if bet["status"] == "won":
            assert bet["payout"] > 500

        await page.screenshot(ARTIFACTS / "tap-desktop.png")
        await page.viewport(375, 812, mobile=True)
        await page.wait_for("document.getElementById('board').getBoundingClientRect().width < 380")
        await page.js("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        phone_cell = await open_cell(page, 0)  # the grid still works at phone size
        assert (await page.js(f"window.tapDebug.cellRect({json.dumps(phone_cell)})"))["w"] >= 40
        await page.screenshot(ARTIFACTS / "tap-phone.png")
        await page.viewport(1280, 860, mobile=False)

        # stop the simulated feed: DEGRADED, then CRITICAL disables the grid
        server.source.running.clear()
        await page.wait_for(
            f"document.getElementById('banner-text').textContent === {json.dumps(DEGRADED_TEXT)}"
        )
        await page.wait_for(
            f"document.getElementById('banner-text').textContent === {json.dumps(CRITICAL_TEXT)}"
        )
        # a routine status, announced politely rather than as an alert
        assert await page.js("document.getElementById('banner').getAttribute('role')") == "status"
        assert await page.js("document.getElementById('board').getAttribute('aria-disabled')") == (
            "true"
        )
        await tap_cell(page, await open_cell(page))  # open by the grid, but the feed is down
        await page.wait_for(
            "document.getElementById('bet-status').textContent === " + json.dumps(CRITICAL_TEXT)
        )
        assert len(await server_bets(server, page)) == 1
        await page.screenshot(ARTIFACTS / "tap-critical.png")
        assert page.errors() == []


async def test_socket_drop_while_pending_shows_unknown_then_refresh(
    browser_ws_url: str, tmp_path: Path
) -> None:
    async with tap_server(tmp_path) as server, open_page(browser_ws_url, 390, 844) as page:
        await page.goto(server.url + "/")
        await sign_in_and_fund(page)
        # hold the bet request inside the page, and keep the socket down once it drops
        await page.js(
            """(() => { const realFetch = window.fetch; window.__realWebSocket = window.WebSocket;
                const gate = new Promise(r => { window.__release = r; });
                window.fetch = async (url, opts) => {
                  if (String(url) === '/api/bets' && opts && opts.method === 'POST') await gate;
                  return realFetch(url, opts); };
                window.WebSocket = class { constructor() {
                  setTimeout(() => this.onclose && this.onclose(), 20); }
                  send() {} close() {} };
                return true; })()"""
        )
        # this time from the keyboard: focus the grid, move the cursor one column right, Enter
        await open_cell(page)
        await page.js("document.getElementById('board').focus(); true")
        for key, code in (("ArrowRight", 39), ("Enter", 13)):
            for kind in ("keyDown", "keyUp"):
                await page.send(
                    "Input.dispatchKeyEvent",
                    {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code},
                )
        cell = await page.wait_for("window.tapDebug.lastTap()")
        await page.wait_for(f"window.tapDebug.cellState({json.dumps(cell)}) === 'pending'")
        assert "open: press Enter" in await page.js(
            "document.getElementById('cell-readout').textContent"
        )
        for client in list(server.hub._clients):
            client.close()
        await page.wait_for(f"window.tapDebug.cellState({json.dumps(cell)}) === 'unknown'")
        assert await page.js("!document.getElementById('unknown-banner').hidden")
        assert await page.js("document.getElementById('bet-status').dataset.state") == "unknown"
        assert await page.js("window.tapDebug.socketOpen()") is False
        # the request completes (the bet exists) but the page cannot know: still UNKNOWN
        await page.js("window.__release(); true")
        await page.wait_for("document.getElementById('balance').dataset.cents === '9900'")
        assert await page.js(f"window.tapDebug.cellState({json.dumps(cell)})") == "unknown"
        # the refresh prompt asks the server and settles it
        await page.click_element("#refresh-bets")
        await page.wait_for(
            f"['confirmed', 'won', 'lost'].includes(window.tapDebug.cellState({json.dumps(cell)}))"
        )
        await page.wait_for("document.getElementById('unknown-banner').hidden")
        # the socket comes back on its own once connections work again
        await page.js("window.WebSocket = window.__realWebSocket; true")
        await page.wait_for("window.tapDebug.socketOpen()", 10)
        assert page.errors() == []


FAKE_WALLET = """
window.__walletCalls = [];
window.ethereum = {
  async request({ method, params }) {
    window.__walletCalls.push({ method, params });
    const key = EthSign.fromHex('%s');
    if (method === 'eth_requestAccounts') return [EthSign.address(key).toLowerCase()];
    if (method === 'personal_sign') {
      const text = new TextDecoder().decode(EthSign.fromHex(params[0]));
      const sig = EthSign.personalSign(key, text);
      return sig.slice(0, -2) + (parseInt(sig.slice(-2), 16) - 27).toString(16).padStart(2, '0');
    }
    throw new Error('unsupported ' + method);
  },
};
"""


async def test_sign_in_with_an_injected_wallet(browser_ws_url: str, tmp_path: Path) -> None:
    """``window.ethereum``: eth_requestAccounts, then personal_sign of the hex-encoded text."""
    account = Account.from_key(bytes([7]) * 32)
    async with tap_server(tmp_path) as server, open_page(browser_ws_url) as page:
        await page.goto(server.url + "/")
        # a stand-in provider (signs with v in {0, 1}, as some wallets do)
        await page.js(FAKE_WALLET % account.key.hex())
        await page.click_element("#signin")
        await page.click_element("#signin-injected")
        await page.wait_for("document.getElementById('balance').dataset.cents === '0'")
        calls = await page.js("window.__walletCalls")
        assert [c["method"] for c in calls] == ["eth_requestAccounts", "personal_sign"]
        text = bytes.fromhex(calls[1]["params"][0][2:]).decode()
        assert text.startswith("Tap Trading Bet\nAction: login\n") and text.endswith("Version: 1")
        assert calls[1]["params"][1] == account.address.lower()
        session = await page.js("JSON.parse(localStorage.getItem('tap.session.v1'))")
        assert session["wallet"] == account.address.lower() and session["kind"] == "injected"
        assert await page.js("localStorage.getItem('tap.devWallet.v1')") is None
        # no funds yet: the server refuses the bet and the cell reverts with the reason
        await page.js(RECORD_STATES)
        cell = await tap_cell(page, await open_cell(page))
        await page.wait_for("document.getElementById('bet-status').dataset.state === 'failed'")
        assert "Not enough balance" in await page.js(
            "document.getElementById('bet-status').textContent"
        )
        await page.wait_for(f"window.tapDebug.cellState({json.dumps(cell)}) === null")
        assert (await page.js("window.__states"))[0] == "pending"
        assert await page.js("document.getElementById('balance').dataset.cents") == "0"
        # reconnect back-off: full jitter, exponential, capped at 5 s
        top = await page.js("[...Array(12).keys()].map(n => window.tapDebug.backoffDelay(n, 1))")
        assert top[:6] == [250, 500, 1000, 2000, 4000, 5000] and set(top[5:]) == {5000}
        assert await page.js("window.tapDebug.backoffDelay(9, 0)") == 0
        assert page.errors() == []


def feed_is(state: str, banner: str) -> str:
    """A page expression: the feed indicator shows ``state`` and the banner says ``banner``."""
    return (
        f"document.getElementById('feed-state').dataset.state === {json.dumps(state)}"
        f" && document.getElementById('banner-text').textContent === {json.dumps(banner)}"
    )


def warming() -> str:
    """A page expression: the feed shows "Warming up" with a countdown in the banner."""
    return (
        "document.getElementById('feed-state').dataset.state === 'warming'"
        " && document.getElementById('banner-text').textContent.startsWith("
        f"{json.dumps(WARMING_PREFIX)})"
    )


async def seconds_left(page: Any) -> int:
    text = await page.js("document.getElementById('banner-text').textContent")
    assert text.startswith(WARMING_PREFIX) and text.endswith(" s"), text
    return int(text[len(WARMING_PREFIX) : -2])


async def test_warming_up_is_told_apart_from_a_dead_feed(
    browser_ws_url: str, tmp_path: Path
) -> None:
    """After start the breaker stays CRITICAL for its recovery period although prices flow: the
    page says "Warming up", calmly, and still refuses taps; a feed that really stops is "Feed
    down"; an operator opening the breaker is "Betting suspended" even with fresh prices."""
    async with (
        tap_server(tmp_path, recovery_s=600, wait_open=False) as server,
        open_page(browser_ws_url) as page,
    ):
        await page.goto(server.url + "/")
        await page.wait_for(warming())
        assert server.service.breaker.state is Health.CRITICAL
        # the countdown comes from the server's recovering_for_ms and runs down locally
        first = await seconds_left(page)
        assert 590 <= first <= 600
        await page.wait_for(
            "document.getElementById('banner-text').textContent !== "
            + json.dumps(f"{WARMING_PREFIX}{first} s")
        )
        assert await seconds_left(page) < first
        assert await page.js("document.getElementById('banner').getAttribute('role')") == "status"
        assert await page.js("document.getElementById('feed-text').textContent") == "Warming up"
        assert await page.js("document.getElementById('banner').dataset.level") == "warming"
        assert await page.js("document.getElementById('board').getAttribute('aria-disabled')") == (
            "true"
        )
        await sign_in_and_fund(page)
        await tap_cell(page, await open_cell(page))
        await page.wait_for(
            "document.getElementById('bet-status').textContent.startsWith("
            + json.dumps(WARMING_PREFIX)
            + ")"
        )
        # refused, but calmly: not the red "refused" style
        assert await page.js("document.getElementById('bet-status').dataset.state") == "waiting"
        assert await server_bets(server, page) == []
        await page.screenshot(ARTIFACTS / "tap-warming.png")

        # the feed stops: the page turns to "Feed down" (the server's state never changed)
        server.source.running.clear()
        await page.wait_for(feed_is("critical", CRITICAL_TEXT))
        assert await page.js("document.getElementById('feed-text').textContent") == "Feed down"
        # prices again: warming up again, the page's countdown follows the server's warm-up
        # (recovery restarts on the server once it saw the feed stale). Judged against the
        # server's own figure rather than a fixed margin: on a loaded machine the browser can
        # take seconds to show it.
        server.source.running.set()
        await page.wait_for(warming())
        left = await seconds_left(page)
        since = server.service.breaker.recovering_since_ns
        assert since is not None
        server_left = 600 - (time.time_ns() - since) / 1e9
        assert server_left - 2 <= left <= server_left + 3
        # an operator's "open" is a suspension, whatever the prices
        server.service.request_override(Override.OPEN)
        await page.wait_for(feed_is("critical", CRITICAL_TEXT))
        await page.js("new Promise(r => setTimeout(r, 1200))")  # a few more prices and renders
        assert await page.js("window.tapDebug.feed()") == "critical"
        assert server.service.breaker.state is Health.CRITICAL
        assert page.errors() == []
