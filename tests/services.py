"""Real services the tests need, started by the project itself (never assumed to be running).

:func:`start_redis` launches a private ``redis-server`` on a free loopback port with persistence
off, installing Debian's ``redis-server`` package first if the binary is missing (machines of this
kind allow ``apt-get`` as root). Each pytest-xdist worker gets its own server, so tests never share
keys across workers. ``TRADEHALL_TEST_REDIS_URL`` points the tests at an existing server instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["start_redis"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    port = _free_port()
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
