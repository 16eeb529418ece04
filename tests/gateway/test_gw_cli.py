"""``tradehall gateway``: settings, the --sim run, health and metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from gw_helpers import eventually

from tradehall.cli import main
from tradehall.core.config import ConfigError, resolve
from tradehall.gateway.cli import SETTINGS, SIM, build_config
from tradehall.gateway.service import GatewayConfig, GatewayService
from tradehall.gateway.venues.base import AdapterSettings


def test_settings_from_flags_environment_and_defaults() -> None:
    values = resolve(
        [SIM, *SETTINGS],
        {"sim": "true", "symbols": "btc-usd"},
        {"TRADEHALL_VENUES": "kraken,binance", "TRADEHALL_REFRESH_EVERY": "2m"},
    )
    config = build_config(values)
    assert config.sim is True
    assert config.symbols == ("BTC-USD",)
    assert config.venues == ("kraken", "binance")
    assert config.adapter.refresh_every == 120.0
    assert config.adapter.stale_after == 10.0
    with pytest.raises(ConfigError, match="venues"):
        resolve(SETTINGS, {"venues": "nasdaq"}, {})
    with pytest.raises(ConfigError, match="refresh_every"):
        resolve(SETTINGS, {"refresh_every": "30s"}, {})


def test_bad_setting_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--sim", "--venues", "nope"]) == 2
    assert "venues" in capsys.readouterr().err


def test_sim_run_prints_canonical_events_from_every_venue() -> None:
    env = dict(os.environ, TRADEHALL_SIM_INTERVAL="20ms", TRADEHALL_PORT="0")
    proc = subprocess.run(
        [sys.executable, "-m", "tradehall", "gateway", "--sim", "--duration", "2s"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    providers = {e["provider"] for e in events}
    assert providers == {"binance", "coinbase", "kraken"}
    kinds = {e["event_type"] for e in events}
    assert {"book_snapshot", "book_update", "trade", "ticker", "book_status"} <= kinds
    assert all(e["schema_version"] == 1 for e in events)
    snapshot = next(e for e in events if e["event_type"] == "book_snapshot")
    assert isinstance(snapshot["bids"][0][0], str)  # exact decimal text, never a float
    assert '"gateway_stopped"' in proc.stderr


def test_sigterm_stops_cleanly_with_exit_0() -> None:
    env = dict(os.environ, TRADEHALL_SIM_INTERVAL="50ms", TRADEHALL_PORT="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradehall", "gateway", "--sim"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first event: the gateway is up
        assert json.loads(first)["schema_version"] == 1
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - start < 20
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_health_and_metrics_endpoints() -> None:
    config = GatewayConfig(
        venues=("kraken",),
        symbols=("BTC-USD",),
        sim=True,
        sim_interval=0.01,
        adapter=AdapterSettings(),
    )
    service = GatewayService(config)
    await service.start()
    try:
        await eventually(lambda: service.health()["books"]["kraken"]["BTC-USD"] == "LIVE")
        transport = httpx.ASGITransport(app=service.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            health = (await client.get("/healthz")).json()
            assert health["books"] == {"kraken": {"BTC-USD": "LIVE"}}
            metrics = (await client.get("/metrics")).text
        assert 'gateway_events_total{event_type="book_snapshot",provider="kraken"}' in metrics
        assert 'gateway_book_live{provider="kraken",symbol="BTC-USD"} 1.0' in metrics
        assert 'gateway_checksum_checks{provider="kraken",result="failed"} 0.0' in metrics
    finally:
        await service.stop()
