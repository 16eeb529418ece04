"""Server CPU per request of the HTTP protocol alone: requests fed to it in-process, no sockets.

    python bench/exchange/http_protocol_bench.py                  # all scenarios, both protocols
    python bench/exchange/http_protocol_bench.py --requests 50000 --repeat 5
    python bench/exchange/http_protocol_bench.py --stages     # validation, rendering of an order
    PYTHONPATH=/path/to/old/checkout/src python bench/exchange/http_protocol_bench.py   # before

wrk figures swing with the machine's load and include the kernel's loopback TCP work. This
drives the exchange app (in memory, no journal; ``--sync none`` adds a journal in a temporary
directory) through uvicorn's httptools protocol with a stand-in transport: each request's bytes go
to ``data_received`` and the event loop runs until its response has been written. It compares
``CoalescingHttpToolsProtocol`` (every request through uvicorn's ASGI cycle and ``FastRoutes``)
with ``LeanHttpProtocol`` (contract routes answered from the parser callbacks), and prints CPU µs
per request (best of ``--repeat``) for a resting ``POST /orders``, ``GET`` book and balance, and
``GET /healthz`` (nearly no endpoint work: the cost of the HTTP path itself). ``--stages`` times
two stages of a resting ``POST /orders`` alone (best of 60 rounds): validating its body and
rendering its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import timeit
from collections.abc import Callable
from typing import Any, Literal

from uvicorn.config import Config
from uvicorn.server import ServerState

from tradehall.core.ids import SequentialIds
from tradehall.exchange import requests as rq
from tradehall.exchange import schemas as out
from tradehall.exchange.app import create_app
from tradehall.exchange.endpoints import encode
from tradehall.exchange.http_protocol import CoalescingHttpToolsProtocol
from tradehall.exchange.journal import SyncPolicy
from tradehall.exchange.lean_http import LeanHttpProtocol
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings

ORDER = (
    b'{"type":"limit","broker_id":"bench","document_number":"B1","side":"bid",'
    b'"symbol":"AAPL","quantity":1,"price":1.00,"expires_at":"2030-01-01T00:00:00Z"}'
)


def _post(path: bytes, body: bytes) -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
    )


def _get(path: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path


SCENARIOS = {
    "resting": _post(b"/orders", ORDER),
    "book": _get(b"/stocks/AAPL/book?depth=10"),
    "balance": _get(b"/brokers/bench/balance"),
    "healthz": _get(b"/healthz"),  # the HTTP path alone
}
SETUP = [
    _post(
        b"/brokers",
        b'{"broker_id":"bench","initial_cash":1000000000000,'
        b'"initial_holdings":[{"symbol":"AAPL","quantity":1000000}]}',
    ),
    *[_post(b"/orders", ORDER.replace(b"1.00", b"1.%02d" % i)) for i in range(20)],
    *[
        _post(b"/orders", ORDER.replace(b'"bid"', b'"ask"').replace(b"1.00", b"9.%02d" % i))
        for i in range(20)
    ],
]


class _Transport(asyncio.Transport):
    """Counts complete responses written (one per status line); keeps nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.responses = 0
        self.last = b""

    def write(self, data: Any) -> None:
        self.responses += bytes(data).count(b"HTTP/1.1 ")
        self.last = bytes(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _drive(protocol: Any, transport: _Transport, request: bytes, count: int) -> None:
    for _ in range(count):
        expected = transport.responses + 1
        protocol.data_received(request)
        while transport.responses < expected:  # noqa: ASYNC110 -- the loop runs the tasks
            await asyncio.sleep(0)


async def measure(
    protocol_class: type, scenario: str, requests: int, sync: SyncPolicy | Literal["memory"]
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        if sync == "memory":
            settings = ExchangeSettings(snapshot_every=0)
        else:
            settings = ExchangeSettings(data_dir=tmp, journal_sync=sync, snapshot_every=0)
        service = ExchangeService(settings, ids=SequentialIds())
        service.recover()
        await service.start()
        try:
            app = create_app(service, manage_service=False)
            config = Config(app, proxy_headers=False, server_header=False, log_level="warning")
            config.load()
            state = ServerState()
            loop = asyncio.get_running_loop()
            protocol = protocol_class(config=config, server_state=state, app_state={}, _loop=loop)
            transport = _Transport()
            protocol.connection_made(transport)
            for request in SETUP:
                await _drive(protocol, transport, request, 1)
                assert b" 201 " in transport.last, transport.last
            request = SCENARIOS[scenario]
            await _drive(protocol, transport, request, 200)  # warm up
            assert b" 20" in transport.last, transport.last
            started = time.process_time()
            await _drive(protocol, transport, request, requests)
            cpu = time.process_time() - started
            protocol.connection_lost(None)
            return cpu / requests * 1e6
        finally:
            await service.stop()


def stages() -> dict[str, float]:
    """CPU µs of validating a resting order's body and of rendering its answer (best of 60)."""
    # Older trees have no quick path: validation there is decode_body + parse_order.
    parse: Callable[[str, bytes], Any] = getattr(rq, "parse_order_body", None) or (
        lambda ctype, body: rq.parse_order(rq.decode_body(ctype, body))
    )
    service = ExchangeService(ExchangeSettings(snapshot_every=0), ids=SequentialIds())

    async def one_order() -> Any:
        service.register_broker(rq.BrokerRequest("bench", 10**12, [("AAPL", 10**6)]))
        return service.submit(parse("application/json", ORDER))

    order = asyncio.run(one_order())
    timed: dict[str, Callable[[], object]] = {
        "validate body": lambda: parse("application/json", ORDER),
        "render + encode answer": lambda: encode(out.render_order(order)),
    }
    best = dict.fromkeys(timed, float("inf"))
    for _ in range(60):  # interleaved, so a burst of load on the machine hits both alike
        for name, fn in timed.items():
            best[name] = min(best[name], timeit.timeit(fn, timer=time.process_time, number=2000))
    return {name: seconds / 2000 * 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sync", default="memory", choices=["memory", "none", "fsync"])
    parser.add_argument("--stages", action="store_true", help="time validation and rendering")
    args = parser.parse_args()
    if args.stages:
        for name, micros in stages().items():
            print(f"{name:24} {micros:6.2f} µs")
        return
    import uvloop

    from tradehall.core import logging as tlog

    tlog.configure("warn")  # recovery and snapshot lines would interleave with the table

    print(f"{'scenario':10} {'protocol':12} {'cpu µs/req (best of ' + str(args.repeat) + ')'}")
    for scenario in args.scenarios or list(SCENARIOS):
        for name, cls in (("asgi", CoalescingHttpToolsProtocol), ("lean", LeanHttpProtocol)):
            runs = [
                uvloop.run(measure(cls, scenario, args.requests, args.sync))
                for _ in range(args.repeat)
            ]
            print(
                f"{scenario:10} {name:12} {min(runs):8.1f}   (all: "
                + ", ".join(f"{r:.1f}" for r in runs)
                + ")"
            )


if __name__ == "__main__":
    main()
