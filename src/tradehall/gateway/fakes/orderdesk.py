"""The order side of the fake venues: a venue-neutral order desk behind a real HTTP server.

:class:`FakeOrderDesk` keeps the venue's orders (id, client id, side, type, quantity, price,
filled quantity, status) and serves one venue's private REST API on a loopback port
(``uvicorn`` + Starlette; the apps are in :mod:`tradehall.gateway.fakes.order_api`). The apps
verify every request's signature with the desk's credentials and answer a bad one with the
venue's own error shape, so the gateway's signing is proven by the tests.

Tests drive the order's life with :meth:`fill`, :meth:`expire` and cancels through the API, and
script faults with :meth:`inject`:

* ``TIMEOUT``: the order is accepted and stored, but the answer is held back ``hang`` seconds
  (longer than the client's timeout): an unknown outcome.
* ``UNKNOWN``: the order is stored, the answer is the venue's "status unknown" error (5xx).
* ``REJECT``: the order is refused (insufficient funds) and not stored.

Market orders fill completely on entry; ``fill_on_entry`` fills part of every new limit order at
once (a taker that crossed the book).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

import uvicorn
from starlette.applications import Starlette

__all__ = ["FakeOrder", "FakeOrderDesk", "OrderFault"]


class OrderFault(StrEnum):
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    REJECT = "reject"


@dataclass
class FakeOrder:
    """One order as the venue keeps it; ``status`` is venue-neutral (open, filled, ...)."""

    order_id: str
    client_id: str
    symbol: str  # the venue's spelling
    side: str  # "buy" | "sell"
    type: str  # "limit" | "market"
    qty: Decimal
    price: Decimal | None
    filled: Decimal = Decimal(0)
    status: str = "open"  # open | filled | cancelled | expired
    created_ms: int = 0

    @property
    def is_open(self) -> bool:
        return self.status == "open"


class FakeOrderDesk:
    """One venue's orders and its private REST API (see the module docstring)."""

    def __init__(
        self,
        venue: str,
        app: Callable[[FakeOrderDesk], Starlette],
        *,
        api_key: str,
        api_secret: str,
        hang: float = 2.0,
        id_format: Callable[[int], str] = str,
    ) -> None:
        self.venue = venue
        self.api_key = api_key
        self.api_secret = api_secret
        self.hang = hang
        self.fill_on_entry = Decimal(0)
        self.orders: dict[str, FakeOrder] = {}
        self.placed = 0  # order-entry requests that passed authentication
        self.auth_failures = 0
        self.faults: dict[OrderFault, int] = {}
        self._ids = itertools.count(1)
        self._id_format = id_format
        self._released = asyncio.Event()
        self._app = app(self)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=0,
            log_level="error",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(10):
            while not self._server.started:  # noqa: ASYNC110 -- uvicorn has no startup event
                await asyncio.sleep(0.005)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._released.set()  # answer held (TIMEOUT) requests now
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> FakeOrderDesk:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults ----------------------------------------------------------------------------------

    def inject(self, fault: OrderFault, count: int = 1) -> None:
        self.faults[fault] = self.faults.get(fault, 0) + count

    def take(self, fault: OrderFault) -> bool:
        if self.faults.get(fault, 0) > 0:
            self.faults[fault] -= 1
            return True
        return False

    async def hold_answer(self) -> None:
        """The TIMEOUT fault: keep the client waiting (until ``hang`` s or :meth:`stop`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), self.hang)

    # -- orders ----------------------------------------------------------------------------------

    def new_order(
        self,
        *,
        client_id: str,
        symbol: str,
        side: str,
        type: str,
        qty: Decimal,
        price: Decimal | None,
    ) -> FakeOrder:
        order = FakeOrder(
            order_id=self._id_format(next(self._ids)),
            client_id=client_id,
            symbol=symbol,
            side=side,
            type=type,
            qty=qty,
            price=price,
            created_ms=time.time_ns() // 1_000_000,
        )
        self.orders[order.order_id] = order
        if type == "market":
            self._fill(order, qty)
        elif self.fill_on_entry:
            self._fill(order, min(qty, self.fill_on_entry))
        return order

    def open_by_client_id(self, client_id: str) -> FakeOrder | None:
        return next(
            (o for o in self.orders.values() if o.client_id == client_id and o.is_open), None
        )

    def by_client_id(self, client_id: str) -> FakeOrder | None:
        """The latest order with this client id (open or not)."""
        found = [o for o in self.orders.values() if o.client_id == client_id]
        return found[-1] if found else None

    def _fill(self, order: FakeOrder, qty: Decimal) -> None:
        order.filled += qty
        if order.filled >= order.qty:
            order.filled = order.qty
            order.status = "filled"

    def fill(self, client_id: str, qty: Decimal) -> FakeOrder:
        """Execute ``qty`` more of the open order with ``client_id``."""
        order = self.open_by_client_id(client_id)
        if order is None:
            raise KeyError(f"no open order {client_id!r}")
        self._fill(order, min(qty, order.qty - order.filled))
        return order

    def expire(self, client_id: str) -> FakeOrder:
        order = self.open_by_client_id(client_id)
        if order is None:
            raise KeyError(f"no open order {client_id!r}")
        order.status = "expired"
        return order

    def cancel(self, order: FakeOrder) -> bool:
        if not order.is_open:
            return False
        order.status = "cancelled"
        return True
