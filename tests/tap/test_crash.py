"""Crash safety: SIGKILL the real server during bet load; every 202 survives the restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

from services import free_port
from tradehall.tap.auth import LoginRequest, login_text

ADMIN = "crash-admin"
TRADEHALL = str(Path(sys.executable).with_name("tradehall"))


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRADEHALL_ADMIN_TOKEN": ADMIN,
        "TRADEHALL_BET_RATE_LIMIT": "1000000",
        "TRADEHALL_IP_RATE_LIMIT": "100000000",
        "TRADEHALL_BREAKER_RECOVERY": "0s",
        "TRADEHALL_FLUSH_INTERVAL": "20ms",
        "TRADEHALL_LOG_LEVEL": "error",
    }
    cmd = [TRADEHALL, "tap", "--port", str(port), "--data-dir", str(data_dir)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _writer_children(pid: int) -> list[int]:
    """The spawned writer processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def wait_healthy(http: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("server never became healthy")


async def login(http: httpx.AsyncClient) -> tuple[str, str]:
    account = Account.create()
    req = LoginRequest(account.address, uuid.uuid4().hex, int(time.time()), 1, "0x")
    sig = account.sign_message(encode_defunct(text=login_text(req)))
    body = {
        "wallet": req.wallet,
        "nonce": req.nonce,
        "timestamp": req.timestamp,
        "chain_id": 1,
        "signature": "0x" + bytes(sig.signature).hex(),
    }
    resp = await http.post("/api/auth/login", json=body)
    assert resp.status_code == 200, resp.text
    fund = await http.post(
        "/api/admin/deposit",
        json={"wallet": account.address, "amount": 1_000_000},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert fund.status_code == 200
    token: str = resp.json()["session_id"]
    return token, account.address.lower()


async def test_sigkill_during_load_loses_no_acknowledged_bet(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port)
    accepted: list[str] = []
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=5, limits=httpx.Limits(max_connections=64)
        ) as http:
            await wait_healthy(http)
            tokens = [await login(http) for _ in range(16)]
            grid = (await http.get("/api/grid")).json()
            cells = [c["cell_id"] for c in grid["cells"] if c["placeable"]]
            killed = asyncio.Event()

            async def bettor(token: str, offset: int) -> None:
                for i in range(len(cells)):
                    if killed.is_set():
                        return
                    cell = cells[(offset + i) % len(cells)]
                    body = {"cell_id": cell, "amount": 100, "nonce": uuid.uuid4().hex}
                    try:
                        resp = await http.post(
                            "/api/bets", json=body, headers={"Authorization": f"Bearer {token}"}
                        )
                    except httpx.TransportError:
                        return
                    if resp.status_code == 202:
                        accepted.append(resp.json()["bet_id"])

            tasks = [
                asyncio.create_task(bettor(token, n * 7)) for n, (token, _) in enumerate(tokens)
            ]
            for _ in range(400):  # kill mid-load, once a good number of bets went through
                if len(accepted) >= 300:
                    break
                await asyncio.sleep(0.01)
            writers = _writer_children(proc.pid)
            proc.send_signal(signal.SIGKILL)
            killed.set()
            proc.wait(10)
            await asyncio.gather(*tasks)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(accepted) >= 50
    assert writers, "the server runs its SQLite writer in a child process"
    for _ in range(100):  # the orphaned writer notices within ~0.2 s and exits
        if not any(_alive(pid) for pid in writers):
            break
        await asyncio.sleep(0.05)
    assert not any(_alive(pid) for pid in writers), "the writer outlived the killed server"

    # restart: the server comes back healthy on the same data
    port = free_port()
    proc = start(tmp_path, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            await wait_healthy(http)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)

    conn = sqlite3.connect(tmp_path / "tap.db")
    stored = {
        row[0]
        for row in conn.execute(
            "SELECT b.id FROM bets b JOIN transaction_ledger l"
            " ON l.ref_type = 'BET' AND l.ref_id = b.id WHERE b.status <> 'insufficient_funds'"
        )
    }
    conn.close()
    missing = set(accepted) - stored
    assert not missing, f"{len(missing)} acknowledged bets lost"
    check = subprocess.run(  # noqa: ASYNC221 - the server is down; nothing else runs
        [TRADEHALL, "tap", "--data-dir", str(tmp_path), "integrity-check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout
    assert '"drift_users": 0' in check.stdout
