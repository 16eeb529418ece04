"""Server instructions per HTTP request: an HTTP figure that does not move with the machine's load.

    python bench/exchange/http_instructions.py resting crossing [--sync none|memory|fsync]
        [--requests 3000] [--baseline 300] [--src /path/to/old/checkout/src] [--no-pad]
    TRADEHALL_ENGINE=python python bench/exchange/http_instructions.py resting

``http_bench.py``'s req/s and CPU µs per request swing 2-5x with this shared machine's speed, which
hides the effect of a change to the server. This counts the work instead: it starts a real
``tradehall exchange`` process (``http_bench.start_server``, same seeding and environment) under
valgrind's cachegrind (no cache simulation, ``PYTHONHASHSEED=0``), sends the scenario's set-up
requests and then ``--requests`` requests one after another on one keep-alive connection from an
httpx client in this process, stops the server with SIGTERM (a clean shutdown) and reads
valgrind's ``I refs``. It does that twice, with ``--requests`` N and ``--baseline`` N0 requests,
and prints ``(I(N) - I(N0)) / (N - N0)``: the server's instructions per request, with start-up,
set-up and shutdown cancelled out.

Scenarios and bodies are http_bench's: ``resting`` (POST /orders, the body of
``resting_bid.lua``), ``crossing`` (alternating the bid and ask of ``crossing.lua``, as wrk sends
them on one connection), ``book``, ``balance`` and ``healthz`` (GETs after http_bench's set-up).
``--sync`` is the journal policy (default ``none``: journal written, no fsync); ``--src`` runs the
server from another source tree, as in http_bench; ``TRADEHALL_ENGINE`` passes through to the
server.

Work the server does per second of wall time rather than per request (uvicorn's 0.1 s tick, about
230k instructions a second under valgrind; the order-expiry sweep, which this sets to once an hour)
would otherwise leak into the figure in proportion to how slow the machine was. So the N0 run,
after its requests, waits idle until it has served as long as the N run did (``--no-pad`` skips
that, for a quicker and slightly high figure). Valgrind slows the server about 50x: start-up alone
takes 40-50 s here, and one figure a few minutes. Like ``instructions.py`` it counts work, not
time: cache misses and system-call latency are not in it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from http_bench import HERE, JSON, SCENARIOS, free_port, start_server

VALGRIND = ("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null")
SERVER_ENV = {
    "PYTHONHASHSEED": "0",
    # time-driven work is not per-request work; the padding cancels what remains (see above)
    "TRADEHALL_EXPIRATION_INTERVAL": "3600s",
    # a request under valgrind must not hit the body-read or write deadline
    "TRADEHALL_READ_TIMEOUT": "600s",
    "TRADEHALL_WRITE_TIMEOUT": "600s",
}
TIMEOUT = httpx.Timeout(600.0)  # one request under valgrind, or the server's first answer


@dataclass(frozen=True)
class Run:
    """One server life under valgrind."""

    instructions: int
    served: float
    """Seconds from the server's first answer to the stop signal."""


def lua_string(script: str, name: str) -> bytes:
    """The string assigned to ``name`` in a wrk script: ``name = '...' .. '...'`` joined."""
    text = (HERE / script).read_text()
    match = re.search(rf"{re.escape(name)}\s*=\s*((?:'[^']*'\s*(?:\.\.\s*)?)+)", text)
    if match is None:
        raise SystemExit(f"no string {name} in {script}")
    return "".join(re.findall(r"'([^']*)'", match.group(1))).encode()


def requests_of(scenario: str) -> list[tuple[str, bytes | None]]:
    """The scenario's requests as (path, body or None for a GET), sent in turn, cyclically."""
    _, script, path = SCENARIOS[scenario]
    if scenario == "resting":
        return [(path, lua_string(script, "wrk.body"))]
    if scenario == "crossing":  # crossing.lua's request() flips to the bid first
        return [(path, lua_string(script, "bid")), (path, lua_string(script, "ask"))]
    return [(path, None)]


def drive(client: httpx.Client, scenario: str, count: int) -> None:
    """Send ``count`` requests of the scenario, one at a time; any non-2xx answer is an error."""
    cycle = requests_of(scenario)
    for i in range(count):
        path, body = cycle[i % len(cycle)]
        if body is None:
            response = client.get(path)
        else:
            response = client.post(path, content=body, headers=JSON)
        response.raise_for_status()


def measure(scenario: str, sync: str, count: int, src: str | None, pad_to: float = 0.0) -> Run:
    """Run the server under valgrind for the set-up and ``count`` requests of ``scenario``.

    With ``pad_to``, wait after the requests until the server has served that many seconds.
    """
    setup = SCENARIOS[scenario][0]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "valgrind.log"
        data = Path(tmp) / "data"
        data.mkdir()
        wrapper = (*VALGRIND, f"--log-file={log}")
        proc = start_server(
            port, sync, data, src, wrapper=wrapper, extra_env=SERVER_ENV, ready_seconds=900
        )
        ready = time.monotonic()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
                setup(client)
                drive(client, scenario, count)
            time.sleep(max(0.0, ready + pad_to - time.monotonic()))
            served = time.monotonic() - ready
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        report = log.read_text()
    refs = re.search(r"I\s+refs:\s+([\d,]+)", report)
    if proc.returncode != 0 or refs is None:
        raise SystemExit(f"server exited {proc.returncode}; valgrind's log ends:\n{report[-2000:]}")
    return Run(int(refs.group(1).replace(",", "")), served)


def tree(src: str | None) -> str:
    """The directory the server imports ``tradehall`` from (``--src`` or this environment's)."""
    env = {**os.environ, "PYTHONPATH": src} if src is not None else None
    code = "import pathlib, tradehall; print(pathlib.Path(tradehall.__file__).parent.parent)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+", choices=sorted(SCENARIOS))
    parser.add_argument("--sync", default="none", choices=["none", "memory", "fsync"])
    parser.add_argument("--requests", type=int, default=3000, help="N: requests of the long run")
    parser.add_argument("--baseline", type=int, default=300, help="N0: requests of the short run")
    parser.add_argument("--src", help="run the server from this source directory (PYTHONPATH)")
    parser.add_argument(
        "--no-pad", action="store_true", help="do not idle the short run to the long run's time"
    )
    args = parser.parse_args()
    if not 0 <= args.baseline < args.requests:
        parser.error("need 0 <= --baseline < --requests")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    print(f"tree     {tree(args.src)}")
    print(f"engine   {os.environ.get('TRADEHALL_ENGINE', 'auto')}")
    print(f"sync     {args.sync}")
    print(f"requests {args.requests} - {args.baseline}", flush=True)
    header = ("scenario", "I refs (N)", "I refs (N0)", "served s", "instructions/request")
    print("{:10} {:>15} {:>15} {:>13} {:>20}".format(*header), flush=True)
    for scenario in args.scenarios:
        long = measure(scenario, args.sync, args.requests, args.src)
        pad = 0.0 if args.no_pad else long.served
        short = measure(scenario, args.sync, args.baseline, args.src, pad_to=pad)
        per_request = (long.instructions - short.instructions) / (args.requests - args.baseline)
        served = f"{long.served:.0f}/{short.served:.0f}"
        print(
            f"{scenario:10} {long.instructions:>15,} {short.instructions:>15,} {served:>13}"
            f" {per_request:>20,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
