"""Experiment: HTTP workers in N processes, one engine process behind a unix socket.

    python bench/exchange/split_probe.py --workers 1 2 --seconds 10

Not the shipped server. The engine process runs the real :class:`ExchangeService` (in memory, no
journal) and the real contract endpoint functions; uvicorn worker processes (same server stack as
the exchange) parse HTTP, read the body and forward ``(id, route, path parameter, content type,
body)`` as a length-prefixed msgpack frame over one unix-socket connection per worker. The engine
runs every complete frame of a read in order and answers them all with one write; each worker
flushes its frames once per loop iteration. Only ``POST /orders`` and ``GET`` book/balance are
wired -- enough to measure the resting-order scenario against the single-process server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from benchkit import answer_lifespan, tree_cpu

HERE = Path(__file__).resolve().parent
FRAME = struct.Struct("<I")
ROUTES = [
    ("POST", "/orders"),
    ("GET", "/stocks/{symbol}/book"),
    ("GET", "/brokers/{broker_id}/balance"),
    ("POST", "/brokers"),
]
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


# ---------------------------------------------------------------------- engine process
async def engine_main(socket_path: str) -> None:
    from tradehall.exchange.endpoints import contract_endpoints, error_body
    from tradehall.exchange.errors import ExchangeError
    from tradehall.exchange.marketdata import MarketData
    from tradehall.exchange.service import ExchangeService
    from tradehall.exchange.settings import ExchangeSettings

    service = ExchangeService(ExchangeSettings(data_dir=":memory:", snapshot_every=0))
    market = MarketData(service)
    by_key = {(e.method, e.path): e for e in contract_endpoints(service, market)}
    table = [by_key[key] for key in ROUTES]
    await service.start()
    market.start()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        while data := await reader.read(1 << 16):
            buffer += data
            out: list[bytes] = []
            pos = 0
            while len(buffer) - pos >= 4:
                (size,) = FRAME.unpack_from(buffer, pos)
                if len(buffer) - pos - 4 < size:
                    break
                rid, route, arg, ctype, body = _decode(buffer[pos + 4 : pos + 4 + size])
                pos += 4 + size
                endpoint = table[route]
                try:
                    status, payload = endpoint.fn(arg, {}, ctype, body)
                except ExchangeError as exc:
                    status, payload = exc.status, error_body(exc)
                reply = _encode((rid, status, payload))
                out.append(FRAME.pack(len(reply)) + reply)
            buffer = buffer[pos:]
            if out:
                await service.durable()  # no-op in memory; a journal would batch per read here
                writer.write(b"".join(out))

    server = await asyncio.start_unix_server(serve, socket_path)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------- worker processes
class _Channel:
    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.next_id = 0
        self.pending: list[bytes] = []
        self.lock = asyncio.Lock()

    async def call(self, route: int, arg: str, ctype: str | None, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            async with self.lock:
                if self.writer is None:
                    path = os.environ["SPLIT_SOCKET"]
                    self.reader, self.writer = await asyncio.open_unix_connection(path)
                    asyncio.get_running_loop().create_task(self._read())
        self.next_id += 1
        rid = self.next_id
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        frame = _encode((rid, route, arg, ctype, body))
        if not self.pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self.pending.append(FRAME.pack(len(frame)) + frame)
        return await future

    def _flush(self) -> None:
        assert self.writer is not None
        self.writer.write(b"".join(self.pending))
        self.pending.clear()

    async def _read(self) -> None:
        assert self.reader is not None
        buffer = b""
        while data := await self.reader.read(1 << 16):
            buffer += data
            pos = 0
            while len(buffer) - pos >= 4:
                (size,) = FRAME.unpack_from(buffer, pos)
                if len(buffer) - pos - 4 < size:
                    break
                rid, status, payload = _decode(buffer[pos + 4 : pos + 4 + size])
                pos += 4 + size
                self.waiting.pop(rid).set_result((status, payload))
            buffer = buffer[pos:]


_channel = _Channel()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The worker's ASGI app (imported by uvicorn as ``split_probe:app``)."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
        return
    parts = scope["path"].split("/")
    body = b""
    ctype = None
    if scope["method"] == "POST" and scope["path"] == "/orders":
        route, arg = 0, ""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value.decode("latin-1")
    elif len(parts) == 4 and parts[1] == "stocks" and parts[3] == "book":
        route, arg = 1, parts[2]
    elif len(parts) == 4 and parts[1] == "brokers" and parts[3] == "balance":
        route, arg = 2, parts[2]
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    status, payload = await _channel.call(route, arg, ctype, body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# ---------------------------------------------------------------------- runner
def run(workers: int, seconds: int, port: int) -> tuple[float, float, float]:
    tmp = tempfile.mkdtemp()
    sock = os.path.join(tmp, "engine.sock")
    engine = subprocess.Popen([sys.executable, __file__, "--engine", sock])
    code = (
        "import sys, uvicorn; sys.path.insert(0, sys.argv[1]);"
        "from tradehall.exchange.http_protocol import CoalescingHttpToolsProtocol as P;"
        "uvicorn.run('split_probe:app', port=int(sys.argv[2]), workers=int(sys.argv[3]),"
        " loop='uvloop', http=P, access_log=False, log_level='warning', proxy_headers=False)"
    )
    while not os.path.exists(sock):
        time.sleep(0.1)
    front = subprocess.Popen(
        [sys.executable, "-c", code, str(HERE), str(port), str(workers)],
        env={**os.environ, "SPLIT_SOCKET": sock},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/brokers/none/balance", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("front did not start") from None
                time.sleep(0.2)
        time.sleep(1)
        # the broker is created directly in the engine: POST /brokers is not wired
        subprocess.run([sys.executable, __file__, "--seed", sock], check=True)
        before = tree_cpu(front.pid), tree_cpu(engine.pid)
        wrk = shutil.which("wrk")
        assert wrk
        command = [wrk, "-t1", "-c16", f"-d{seconds}s", "-s", str(HERE / "resting_bid.lua")]
        out = subprocess.run(
            [*command, f"{base}/orders"], check=True, capture_output=True, text=True
        ).stdout
        front_cpu, engine_cpu = tree_cpu(front.pid) - before[0], tree_cpu(engine.pid) - before[1]
    finally:
        front.send_signal(signal.SIGTERM)
        front.wait(timeout=30)
        engine.kill()
        engine.wait()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert non2xx is None, out
    return rps, front_cpu / total * 1e6, engine_cpu / total * 1e6


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--engine":
        import uvloop

        uvloop.run(engine_main(sys.argv[2]))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--seed":
        seed_body = b'{"broker_id":"bench","initial_cash":1000000000000}'

        async def seed() -> None:
            reader, writer = await asyncio.open_unix_connection(sys.argv[2])
            frame = _encode((0, 3, "", "application/json", seed_body))
            writer.write(FRAME.pack(len(frame)) + frame)
            await writer.drain()
            header = await reader.readexactly(4)
            print("seeded", _decode(await reader.readexactly(FRAME.unpack(header)[0]))[1])
            writer.close()

        asyncio.run(seed())
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--port", type=int, default=18556)
    args = parser.parse_args()
    print(
        f"{'workers':>7} {'req/s':>9} {'front µs/req':>13} {'engine µs/req':>14}  load", flush=True
    )
    for workers in args.workers:
        rps, front_us, engine_us = run(workers, args.seconds, args.port)
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"{workers:7d} {rps:9.0f} {front_us:13.1f} {engine_us:14.1f}  {load}", flush=True)


if __name__ == "__main__":
    main()
