"""Real services the tests need, started by the project itself (never assumed to be running).

:func:`start_redis` launches a private ``redis-server`` on a free loopback port with persistence
off, installing Debian's ``redis-server`` package first if the binary is missing (machines of this
kind allow ``apt-get`` as root). Each pytest-xdist worker gets its own server, so tests never share
keys across workers. ``TRADEHALL_TEST_REDIS_URL`` points the tests at an existing server instead.

:func:`free_port` / :func:`free_ports` pick unused loopback ports, and :func:`serve` runs an ASGI
app on a real uvicorn server on one of them for the length of an ``async with`` block.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn

__all__ = ["free_port", "free_ports", "serve", "start_redis"]


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback TCP ports, all held at once while they are picked."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@asynccontextmanager
async def serve(
    app: Any, *, port: int | None = None, start_within: float = 10.0, **options: Any
) -> AsyncIterator[int]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (``port``, else a free one); yield the port.

    It yields once the server listens (or raises ``TimeoutError`` after ``start_within`` seconds).
    ``options`` go to ``uvicorn.Config`` (``lifespan``, ``http``, ...). The server is stopped
    gracefully when the block ends.
    """
    port = free_port() if port is None else port
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(start_within):
        while not server.started:  # noqa: ASYNC110 -- uvicorn has no startup event
            await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env)
        found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server could not be installed")
    return found


@contextmanager
def start_redis() -> Iterator[str]:
    """Yield the URL of a running Redis server; stop it afterwards if we started it."""
    given = os.environ.get("TRADEHALL_TEST_REDIS_URL")
    if given:
        yield given
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tradehall-redis-") as workdir:
        proc = subprocess.Popen(
            [
                _redis_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start within 15 s")
                time.sleep(0.02)  # waiting for a real process to listen
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
