"""How fast can HTTP alone go here? A trivial ASGI app on uvicorn, one process vs several.

    python bench/exchange/http_ceiling.py --workers 1 2 --seconds 10

The app reads the POST body and answers 201 with a fixed ~400-byte JSON body: no validation, no
engine, no journal. It runs on the same server stack as the exchange (uvloop, httptools with one
write per response) with 1 or N uvicorn worker processes sharing the listening socket, loaded by
wrk with the resting-order script. This bounds what splitting HTTP parsing across processes (with
one engine process behind them) could gain on this machine: if N trivial workers are not faster
than one, N real workers plus an engine process and the channel between them cannot be either.
Server CPU is summed over the worker processes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from benchkit import answer_lifespan, tree_cpu

HERE = Path(__file__).resolve().parent
BODY = b'{"order_id":"' + b"0" * 36 + b'","status":"pending","pad":"' + b"x" * 300 + b'"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The trivial ASGI app (imported by the worker processes as ``http_ceiling:app``)."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def run(workers: int, seconds: int, port: int) -> tuple[float, float]:
    code = (
        "import sys, uvicorn; sys.path.insert(0, sys.argv[1]);"
        "from tradehall.exchange.http_protocol import CoalescingHttpToolsProtocol as P;"
        "uvicorn.run('http_ceiling:app', port=int(sys.argv[2]), workers=int(sys.argv[3]),"
        " loop='uvloop', http=P, access_log=False, log_level='warning', proxy_headers=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(HERE), str(port), str(workers)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{port}/orders", content=b"{}", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start") from None
                time.sleep(0.2)
        time.sleep(1)  # every worker up
        wrk = shutil.which("wrk")
        assert wrk, "run bench/exchange/ensure_wrk.sh"
        before = tree_cpu(proc.pid)
        command = [wrk, "-t1", "-c16", f"-d{seconds}s", "-s", str(HERE / "resting_bid.lua")]
        out = subprocess.run(
            [*command, f"http://127.0.0.1:{port}/orders"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        cpu = tree_cpu(proc.pid) - before
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, cpu / total * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--port", type=int, default=18555)
    args = parser.parse_args()
    print(f"{'workers':>7} {'req/s':>9} {'server cpu µs/req':>18}  load avg", flush=True)
    for workers in args.workers:
        rps, cpu_us = run(workers, args.seconds, args.port)
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"{workers:7d} {rps:9.0f} {cpu_us:18.1f}  {load}", flush=True)


if __name__ == "__main__":
    main()
