"""Black-box conformance fixtures for the Exchange HTTP API (contract: shared/spec/exchange-api.md).

A session-scoped fixture starts ``python -m tradehall exchange`` as a subprocess on a free port and
every test talks to it over real HTTP; a second, threaded HTTP server on 127.0.0.1 records webhook
deliveries. Tests share the server, so each one uses fresh broker ids and symbols. The helpers in
``exconf_support`` (an ``Api`` wrapper plus shape/money/timestamp checks) are exposed as fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from exconf_support import (
    SERVER_LOGS,
    Api,
    ExchangeServer,
    WebhookReceiver,
    start_exchange,
    stop_exchange,
)


@pytest.fixture(scope="session")
def exchange_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeServer]:
    server = start_exchange(tmp_path_factory.mktemp("exchange"))
    yield server
    stop_exchange(server.proc)
    server.log_file.close()


@pytest.fixture(scope="session")
def http(exchange_server: ExchangeServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=exchange_server.base_url, timeout=10.0) as client:
        yield client


@pytest.fixture(scope="session")
def api(http: httpx.Client) -> Api:
    return Api(http)


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver()
    yield hooks
    hooks.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed:
        for path in SERVER_LOGS:
            if path.exists():
                tail = path.read_text(errors="replace")[-6000:]
                report.sections.append((f"exchange server output ({path})", tail))
