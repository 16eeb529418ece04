"""Which engine build runs, and that CI never silently tests only the pure one.

The rest of the suite runs the default build (native wherever it is built); the engine-level tests
run both (:mod:`engine_builds`). Here: the native core must be importable wherever a C compiler
is installed, the ``native=`` switch and ``TRADEHALL_ENGINE`` choose as documented, and a journal
recorded by one build replays on the other to the same state.
"""

from __future__ import annotations

import importlib
import os
import random
import shlex
import shutil
import sysconfig
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from exchange_harness import T0 as HARNESS_T0
from exchange_harness import ExchangeHarness

import tradehall.exchange.engine as engine_module
from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.app import create_app
from tradehall.exchange.commands import CancelOrder, ExpireDue, RegisterBroker, SubmitOrder
from tradehall.exchange.engine import Engine, OrderRequest
from tradehall.exchange.machine import ExchangeMachine
from tradehall.exchange.service import ExchangeService
from tradehall.exchange.settings import ExchangeSettings
from tradehall.exchange.webhook_delivery import WebhookDispatcher

T0 = 1_790_000_000 * 10**9
LATER = T0 + 10**12


def compiler() -> str | None:
    """The C compiler the build script would use (``CC``, else the interpreter's), if installed."""
    command = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    return shutil.which(command[0]) if command else None


def native_import_problem() -> str | None:
    try:
        importlib.import_module("tradehall.exchange._native")
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def python_headers() -> bool:
    """Whether ``Python.h`` is there to compile against (a distribution's ``python3.x-dev``)."""
    return Path(sysconfig.get_paths()["include"], "Python.h").exists()


def test_the_native_core_is_built_wherever_a_c_compiler_is() -> None:
    cc, problem = compiler(), native_import_problem()
    if cc is not None and python_headers():
        assert problem is None, (
            f"a C compiler ({cc}) and the Python headers are installed but the native engine "
            f"core does not import "
            f"({problem}). Run `make native` (or `make test`, which builds it first) so the "
            "tests cover the native engine, not only the pure-Python one."
        )
    default = Engine(VirtualClock(T0), SequentialIds()).build
    pure = problem is not None or os.environ.get("TRADEHALL_ENGINE") == "python"
    assert default == ("python" if pure else "native")


def test_the_environment_and_the_switch_choose_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, ids = VirtualClock(T0), SequentialIds()
    monkeypatch.setenv("TRADEHALL_ENGINE", "python")
    assert Engine(clock, ids).build == "python"
    assert Engine(clock, ids, native=False).build == "python"
    state = Engine(clock, ids).export_state()
    assert Engine.from_state(state, clock, ids, vwap_window_ns=10**9).build == "python"
    if native_import_problem() is None:
        assert Engine(clock, ids, native=True).build == "native"  # explicit beats the variable
        rebuilt = Engine.from_state(state, clock, ids, vwap_window_ns=10**9, native=True)
        assert rebuilt.build == "native"
        monkeypatch.delenv("TRADEHALL_ENGINE")
        assert Engine(clock, ids).build == "native"
        assert Engine.from_state(state, clock, ids, vwap_window_ns=10**9).build == "native"
    assert Engine(clock, ids, native=False).build == "python"


def test_requiring_a_missing_native_core_says_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRADEHALL_ENGINE", raising=False)
    monkeypatch.setattr(engine_module, "_native_loaded", [None])  # as if the import had failed
    clock, ids = VirtualClock(T0), SequentialIds()
    with pytest.raises(ImportError, match="not built; run `make`"):
        Engine(clock, ids, native=True)
    with pytest.raises(ImportError, match="not built"):
        Engine.from_state(
            Engine(clock, ids).export_state(), clock, ids, vwap_window_ns=1, native=True
        )
    assert Engine(clock, ids).build == "python"  # the default falls back quietly


def _commands() -> list[object]:
    def limit(broker: str, side: str, quantity: int, price: int, expires: int) -> SubmitOrder:
        return SubmitOrder(
            OrderRequest("limit", broker, "D", side, "AAA", quantity, price, expires)
        )

    return [
        RegisterBroker("b0", 10**6, [("AAA", 100)]),
        RegisterBroker("b1", 10**6, [("AAA", 100)]),
        RegisterBroker("b1", 10**6, []),  # rejected: recorded with its error code
        limit("b0", "ask", 5, 100, LATER),  # id 1
        limit("b0", "ask", 5, 101, LATER),  # id 2
        limit("b1", "bid", 7, 101, LATER),  # id 3, trades 4 and 5
        limit("b1", "bid", 3, 99, T0 + 10**9),  # id 6, expires below
        limit("b1", "bid", 2, 98, LATER),  # id 7
        SubmitOrder(OrderRequest("market", "b1", "D", "bid", "AAA", 50, None, None)),  # 8, 9
        CancelOrder("00000000-0000-4000-8000-000000000008"),  # rejected: a market order
        CancelOrder("00000000-0000-4000-8000-000000000007"),
        ExpireDue(),  # two seconds later
        limit("b0", "ask", 9, 99, LATER),
    ]


@pytest.mark.parametrize(("live", "replayed"), [("python", "native"), ("native", "python")])
def test_a_journal_from_one_build_replays_on_the_other(
    live: str, replayed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same clock readings and ids consumed per command, or replay raises a divergence."""

    def machine(build: str, clock: VirtualClock) -> ExchangeMachine:
        if build == "python":
            monkeypatch.setenv("TRADEHALL_ENGINE", "python")
        else:
            monkeypatch.delenv("TRADEHALL_ENGINE", raising=False)
        made = ExchangeMachine(clock, SequentialIds(), vwap_window_ns=10**9)
        assert made.engine.build == build
        return made

    clock = VirtualClock(T0)
    original = machine(live, clock)
    records = []
    for command in _commands():
        if isinstance(command, ExpireDue):
            clock.set_ns(T0 + 2 * 10**9)
        records.append(original.execute(command).record)  # type: ignore[arg-type]
    assert [r.rejected for r in records if r.rejected] == [
        "broker_already_exists",
        "order_not_cancellable",
    ]
    statuses = [o.status for o in original.engine.orders.values()]
    assert statuses == [
        "filled",
        "filled",
        "filled",
        "expired",
        "cancelled",
        "cancelled",
        "pending",
    ]
    assert original.engine.trade_count == 3
    copy = machine(replayed, VirtualClock(0))  # replay never reads the clock it is given
    for record in records:
        copy.replay(record)
    assert copy.snapshot() == original.snapshot()


@asynccontextmanager
async def _exchange(build: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ExchangeHarness]:
    """The in-process HTTP exchange of the ``exchange`` fixture, on the given engine build."""
    if build == "python":
        monkeypatch.setenv("TRADEHALL_ENGINE", "python")
    else:
        monkeypatch.delenv("TRADEHALL_ENGINE", raising=False)
    clock = VirtualClock(HARNESS_T0)
    settings = ExchangeSettings(webhook_allow_http=True, expiration_interval=1.0)
    dispatcher = WebhookDispatcher(clock=clock, timeout=2.0, rng=random.Random(7))
    service = ExchangeService(settings, clock=clock, ids=SequentialIds(), dispatcher=dispatcher)
    await service.start()
    assert service.engine.build == build
    transport = httpx.ASGITransport(app=create_app(service, manage_service=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ex.test") as client:
            yield ExchangeHarness(service, client, clock)
    finally:
        await service.stop()


async def _http_flow(ex: ExchangeHarness) -> list[tuple[int, str]]:
    """A short session over HTTP: trades, a cancel, an expiry, rejections and every read."""
    seen: list[tuple[int, str]] = []

    def keep(response: httpx.Response) -> dict[str, object]:
        seen.append((response.status_code, response.text))
        body = response.json()
        return body if isinstance(body, dict) else {}

    await ex.broker("seller", AAPL=100)
    await ex.broker("buyer", cash="500")
    soon = "2026-09-21T14:13:22.500Z"
    keep(await ex.order(broker_id="seller", side="ask", symbol="AAPL", quantity=5, price="1.00"))
    keep(await ex.order(broker_id="seller", side="ask", symbol="AAPL", quantity=5, price="1.50"))
    late = keep(
        await ex.order(broker_id="seller", side="ask", symbol="AAPL", quantity=5, price="2.00")
    )
    keep(
        await ex.order(
            broker_id="seller", side="ask", symbol="AAPL", quantity=3, price="3.00", expires_at=soon
        )
    )
    keep(await ex.order(broker_id="buyer", side="bid", symbol="AAPL", quantity=8, price="1.60"))
    keep(await ex.order(type="market", broker_id="buyer", side="bid", symbol="AAPL", quantity=3))
    keep(await ex.order(broker_id="ghost", side="bid", symbol="AAPL", quantity=1, price="1.00"))
    keep(await ex.order(type="market", broker_id="buyer", side="bid", symbol="NEW", quantity=1))
    keep(await ex.client.delete(f"/orders/{late['order_id']}"))
    keep(await ex.client.delete(f"/orders/{late['order_id']}"))
    await ex.clock.advance(3)  # the sweep expires the 3.00 ask
    for path in (
        "/brokers/buyer/balance",
        "/brokers/seller/balance",
        "/brokers/seller/orders?status=cancelled",
        "/brokers/buyer/orders",
        "/stocks/AAPL/book?depth=10",
        "/stocks/AAPL/price",
    ):
        keep(await ex.client.get(path))
    return seen


async def test_the_http_exchange_answers_alike_on_both_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {}
    for build in ("python", "native"):
        async with _exchange(build, monkeypatch) as ex:
            answers[build] = await _http_flow(ex)
    assert [status for status, _ in answers["python"]] == [
        *(201,) * 5,
        201,  # the market bid: 2 @ 1.50, 1 @ 2.00
        404,
        409,  # no liquidity on NEW
        200,
        409,  # already cancelled
        *(200,) * 6,
    ]
    assert answers["python"] == answers["native"]
