"""The real ``tradehall exchange`` process: startup, fail-fast settings, graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services import free_port


def _start(port: int, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tradehall", "exchange", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)  # real process start-up: no virtual clock can stand in here
    raise AssertionError("exchange did not become healthy")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly_after_serving(sig: signal.Signals, tmp_path: Path) -> None:
    port = free_port()
    proc = _start(port, TRADEHALL_DATA_DIR=str(tmp_path))
    try:
        _wait_healthy(port, proc)
        response = httpx.post(
            f"http://127.0.0.1:{port}/brokers",
            json={"broker_id": "b1", "initial_cash": 10},
            timeout=5,
        )
        assert response.status_code == 201
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()
    assert b'"stopped"' in stderr


@pytest.mark.parametrize(
    ("variable", "value", "mentions"),
    [
        ("TRADEHALL_VWAP_WINDOW", "5 minutes", "vwap_window"),
        ("EXPIRATION_INTERVAL", "soon", "EXPIRATION_INTERVAL"),
        ("TRADEHALL_LOG_LEVEL", "loud", "log_level"),
        ("TRADEHALL_WEBHOOK_ALLOW_HTTP", "maybe", "webhook_allow_http"),
    ],
)
def test_invalid_setting_fails_fast_with_a_clear_message(
    variable: str, value: str, mentions: str
) -> None:
    proc = _start(free_port(), TRADEHALL_DATA_DIR=":memory:", **{variable: value})
    _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 2
    text = stderr.decode()
    assert "configuration error" in text
    assert mentions in text
    assert repr(value) in text
