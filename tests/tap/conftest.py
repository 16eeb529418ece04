"""A real tap server on 127.0.0.1 (random port) with virtual clocks, for API tests.

The domain clock (breaker, columns, resolution, sessions) and the batch/bet-wait clock are two
``VirtualClock``s. By default ``max_batch=1`` so every bet flushes as soon as it is queued; tests
of the timer, the full queue and the 504 path set ``max_batch`` higher and move the timer clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from tradehall.core.clock import VirtualClock
from tradehall.tap import redis_stores as rs
from tradehall.tap.admission import RedisAdmission
from tradehall.tap.app import create_app
from tradehall.tap.auth import LoginRequest, login_text
from tradehall.tap.balances import RedisBalanceCache
from tradehall.tap.grid import GridConfig, GridLayout, layout
from tradehall.tap.hub import Hub, MemoryBus
from tradehall.tap.price_history import RedisPriceMirror
from tradehall.tap.service import TapConfig, TapService
from tradehall.tap.stores import MemoryNonceStore, MemoryRateLimiter, MemorySessionStore

NS = 1_000_000_000
ADMIN = "admin-secret"
PRICE = 6_000_500


async def eventually(condition: Callable[[], bool], tries: int = 2_000) -> None:
    """Wait for real I/O (the server thread, HTTP requests in flight) to reach a state."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition never became true")


@dataclass
class Harness:
    url: str
    clock: VirtualClock
    timer: VirtualClock
    service: TapService
    hub: Hub
    http: httpx.AsyncClient

    @property
    def now_s(self) -> int:
        return self.clock.time_ns() // NS

    async def tick(self, seconds: int, price: int | None = PRICE) -> None:
        """``seconds`` of virtual time with one price per second (None: the feed is silent)."""
        for _ in range(seconds):
            if price is not None:
                self.service.ingest_price(price)
            await self.clock.advance(1.0)
            await self.service.quiesce()

    def login_body(
        self,
        account: LocalAccount,
        *,
        nonce: str | None = None,
        ts: int | None = None,
        chain: int = 1,
    ) -> dict[str, Any]:
        req = LoginRequest(
            account.address,
            nonce or uuid.uuid4().hex,
            self.now_s if ts is None else ts,
            chain,
            "0x",
        )
        sig = account.sign_message(encode_defunct(text=login_text(req)))
        return {
            "wallet": req.wallet,
            "nonce": req.nonce,
            "timestamp": req.timestamp,
            "chain_id": req.chain_id,
            "signature": "0x" + bytes(sig.signature).hex(),
        }

    async def login(self, account: LocalAccount | None = None) -> tuple[str, LocalAccount]:
        account = account or Account.create()
        resp = await self.http.post("/api/auth/login", json=self.login_body(account))
        assert resp.status_code == 200, resp.text
        return resp.json()["session_id"], account

    async def fund(self, account: LocalAccount, amount: int) -> None:
        resp = await self.http.post(
            "/api/admin/deposit",
            json={"wallet": account.address, "amount": amount},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert resp.status_code == 200, resp.text

    def layout(self) -> GridLayout:
        snap = self.service.grid_snapshot()
        return layout(self.service.config.grid, self.clock.time_ns(), snap.price)

    def placeable_cells(self) -> list[dict[str, Any]]:
        return [c for c in self.service.grid_json()["cells"] if c["placeable"]]

    async def bet(
        self, token: str, cell_id: str, amount: int = 100, nonce: str | None = None
    ) -> httpx.Response:
        return await self.http.post(
            "/api/bets",
            json={"cell_id": cell_id, "amount": amount, "nonce": nonce or uuid.uuid4().hex},
            headers={"Authorization": f"Bearer {token}"},
        )


def base_config(tmp_path: Path, **overrides: Any) -> TapConfig:
    config = TapConfig(
        data_dir=tmp_path,
        grid=GridConfig(presets=(10, 100, 500, 1_000)),
        admin_token=ADMIN,
        max_batch=1,
        bet_rate_limit=1_000,
        ip_rate_limit=100_000,
    )
    return replace(config, **overrides)


_REDIS: dict[str, str] = {}


@pytest.fixture(autouse=True, scope="session")
def _project_redis(redis_url: str) -> None:
    """The Redis server the project starts for this worker (``tests/conftest.py``)."""
    _REDIS["url"] = redis_url


def project_redis_url() -> str:
    return _REDIS["url"]


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    backend: str = "memory",
    redis_url: str | None = None,
    prefix: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    clock, timer = VirtualClock(), VirtualClock()
    config = base_config(tmp_path, **overrides)
    hub = Hub()
    client = None
    prefix = prefix or f"test-{uuid.uuid4().hex}:"
    if backend == "redis":
        client = rs.connect_redis(redis_url or project_redis_url())
        service = TapService(
            config,
            clock=clock,
            timer_clock=timer,
            sessions=rs.RedisSessionStore(client, clock, prefix),
            nonces=rs.RedisNonceStore(client, prefix, clock=clock),
            limiter=rs.RedisRateLimiter(client, prefix),
            admission=RedisAdmission(client, clock, prefix),
            bus=rs.RedisBus(client, hub, prefix, f"{prefix}circuit:override"),
            health_probes={"redis": functools.partial(rs.redis_health, client)},
            balances=RedisBalanceCache(client, prefix, clock=clock),
            price_mirror=RedisPriceMirror(client, prefix),
        )
    else:
        service = TapService(
            config,
            clock=clock,
            timer_clock=timer,
            sessions=MemorySessionStore(clock),
            nonces=MemoryNonceStore(clock),
            limiter=MemoryRateLimiter(clock),
            bus=MemoryBus(hub),
        )
    await service.start()
    app = create_app(service, hub, manage_service=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await eventually(lambda: server.started)
    url = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as http:
        harness = Harness(url, clock, timer, service, hub, http)
        try:
            yield harness
        finally:
            server.should_exit = True
            await task
            await service.stop()
            sock.close()
            if client is not None:
                with contextlib.suppress(Exception):
                    keys = [k async for k in client.scan_iter(match=prefix + "*")]
                    if keys:
                        await client.delete(*keys)
                await client.aclose()


@pytest.fixture(autouse=True)
def _fresh_structlog() -> None:
    """Start each test from structlog's defaults: a CLI test's ``configure()`` binds the
    captured stderr of that test, which is closed by the time a later test logs."""
    structlog.reset_defaults()


@pytest.fixture
async def tap(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path) as harness:
        await harness.tick(31)  # 30 s of fresh prices close the breaker
        yield harness


@pytest.fixture
def tap_with(tmp_path: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[Harness]]:
    @contextlib.asynccontextmanager
    async def factory(backend: str = "memory", **overrides: Any) -> AsyncIterator[Harness]:
        async with running(tmp_path, backend, **overrides) as harness:
            await harness.tick(31)
            yield harness

    return factory
