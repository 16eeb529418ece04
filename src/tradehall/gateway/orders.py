"""Order routing: idempotent by ``client_order_id``, trading switch, reconciliation (spec §7).

:class:`OrderRouter.submit` takes an :class:`OrderRequest` from a consumer and returns an
:class:`OrderOutcome`:

1. **Trading switch**: a consumer whose switch is off is refused (``refused``), nothing is stored
   or sent.
2. **Idempotency**: the ``client_order_id`` is claimed in SQLite (:class:`OrderStore`) *before*
   anything is sent; a per-id lock serialises concurrent submits in this process. A repeat of a
   finished id returns the stored outcome (``duplicate=True``) and sends nothing -- also after a
   restart, since the store is a file.
3. **Unknown outcomes** (timeout, transport error, 5xx) are never retried blindly: the router
   asks the venue for the order by its client id (:meth:`OrderVenue.lookup`). Found: that is the
   outcome. Not found: the outcome stays ``unknown`` and is reconciled again on the next submit
   of the same id (or at startup via :meth:`OrderRouter.reconcile_pending`) -- never re-sent.
4. Every outcome known from the venue becomes an ``ExecReport`` handed to ``on_report`` with the
   owning consumer (the dispatcher's lossless lane: ``dispatcher.publish(report, owner=...)``).
   Orders still open (ACK/PARTIAL) are followed by :meth:`OrderRouter.poll`: every change of
   state or filled quantity is one more ExecReport (``last_qty``/``cum_qty``), in order, until a
   final state (FILLED, CANCELLED, EXPIRED). Open orders are reloaded at startup.

:class:`TradehallOrders` is the venue for our exchange's REST API: the client order id travels as
the order's ``document_number`` (``^[a-zA-Z0-9]{1,32}$``), which is how a lost answer is found
again (``GET /brokers/{broker}/orders``). Binance, Kraken and Coinbase are in
:mod:`tradehall.gateway.venue_orders`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Protocol

import httpx
import msgspec
import structlog

from tradehall.core.clock import Clock
from tradehall.gateway.events import EventIds, ExecReport, ExecState, Side, decision_id
from tradehall.gateway.orderstore import OrderOutcome, OrderRequest, OrderStore

__all__ = [
    "OrderOutcome",
    "OrderRequest",
    "OrderRouter",
    "OrderStore",
    "OrderVenue",
    "TradehallOrders",
    "TradingSwitch",
    "UnknownOutcomeError",
    "VenueRejectedError",
]

# Lazy: binds on first use, after the CLI has configured logging.
log = structlog.get_logger(component="gateway.orders")
_CLIENT_ID = re.compile(r"^[a-zA-Z0-9]{1,32}$")


class TradingSwitch:
    """Per-consumer order-entry switch; every consumer starts disabled."""

    def __init__(self) -> None:
        self._enabled: dict[str, bool] = {}

    def set(self, consumer: str, enabled: bool) -> None:
        self._enabled[consumer] = enabled

    def enabled(self, consumer: str) -> bool:
        return self._enabled.get(consumer, False)


class UnknownOutcomeError(Exception):
    """The venue may or may not have the order (timeout, transport error, 5xx)."""


class VenueRejectedError(Exception):
    """The venue refused the order; nothing exists there."""


class OrderVenue(Protocol):
    async def place(self, request: OrderRequest) -> tuple[str, ExecState]:
        """Send the order; ``(venue order id, state)``; raises the errors above."""
        ...

    async def lookup(self, request: OrderRequest) -> tuple[str, ExecState] | None:
        """Find the order by its client id; ``None`` if the venue has no such order."""
        ...

    async def status(self, request: OrderRequest, venue_order_id: str) -> tuple[ExecState, Decimal]:
        """The order's current state and cumulative filled quantity."""
        ...

    async def cancel(self, request: OrderRequest, venue_order_id: str) -> None:
        """Ask the venue to cancel (the resulting state is then reported by :meth:`status`)."""
        ...


ReportSink = Callable[[ExecReport, str], None]


class OrderRouter:
    """See the module docstring."""

    def __init__(
        self,
        store: OrderStore,
        venues: Mapping[str, OrderVenue],
        switch: TradingSwitch,
        on_report: ReportSink,
        *,
        ids: EventIds | None = None,
        clock_ns: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.venues = dict(venues)
        self.switch = switch
        self.on_report = on_report
        self.ids = ids or EventIds()
        self._now_ns = clock_ns or _time_ns
        self._locks: dict[str, asyncio.Lock] = {}
        # client_order_id -> (request, venue order id, last state, cumulative filled quantity)
        self.open: dict[str, tuple[OrderRequest, str, ExecState, Decimal]] = {}
        self.sent = 0
        self.refused = 0
        self.outcomes: dict[str, int] = {}  # answers by status (accepted, duplicate, ...)

    async def submit(self, request: OrderRequest) -> OrderOutcome:
        """Route one order (see the module docstring); every answer is logged as a decision."""
        decision = decision_id()
        outcome = await self._submit(request, decision)
        key = "duplicate" if outcome.duplicate else outcome.status
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        log.info(
            "order_decision",
            decision_id=decision,
            trace_id=request.client_order_id,
            consumer=request.consumer,
            venue=request.venue,
            symbol=request.symbol,
            outcome=key,
            state=outcome.state.value if outcome.state else None,
            venue_order_id=outcome.venue_order_id,
            reason=outcome.reason[:200],
        )
        return outcome

    async def _submit(self, request: OrderRequest, decision: str) -> OrderOutcome:
        cid = request.client_order_id
        if not self.switch.enabled(request.consumer):
            self.refused += 1
            return OrderOutcome(client_order_id=cid, status="refused", reason="trading disabled")
        if not _CLIENT_ID.match(cid):
            return OrderOutcome(
                client_order_id=cid,
                status="rejected",
                reason="client_order_id must match ^[a-zA-Z0-9]{1,32}$",
            )
        if request.venue not in self.venues:
            return OrderOutcome(client_order_id=cid, status="rejected", reason="unknown venue")
        lock = self._locks.setdefault(cid, asyncio.Lock())
        async with lock:
            stored = await self.store.get(cid)
            if stored is not None:
                original, outcome = stored
                if outcome is not None and outcome.status != "unknown":
                    return msgspec.structs.replace(outcome, duplicate=True)
                return await self._reconcile(original, decision)  # sent before: never again
            await self.store.claim(request)
            venue = self.venues[request.venue]
            try:
                self.sent += 1
                venue_id, state = await venue.place(request)
            except VenueRejectedError as exc:
                outcome = OrderOutcome(
                    client_order_id=cid,
                    status="rejected",
                    state=ExecState.REJECTED,
                    reason=str(exc),
                )
                await self._finish(request, outcome)
                return outcome
            except UnknownOutcomeError as exc:
                log.warning(
                    "order_outcome_unknown",
                    decision_id=decision,
                    trace_id=cid,
                    venue=request.venue,
                    error=str(exc)[:200],
                )
                return await self._reconcile(request, decision)
            outcome = OrderOutcome(
                client_order_id=cid, status="accepted", state=state, venue_order_id=venue_id
            )
            await self._finish(request, outcome)
            return outcome

    async def cancel(self, consumer: str, client_order_id: str) -> OrderOutcome:
        """Cancel an open order of ``consumer`` (allowed with the trading switch off: it only
        reduces risk); the CANCELLED ExecReport follows at once."""
        entry = self.open.get(client_order_id)
        log.info(
            "order_cancel",
            decision_id=decision_id(),
            trace_id=client_order_id,
            consumer=consumer,
            open=entry is not None and entry[0].consumer == consumer,
        )
        if entry is None or entry[0].consumer != consumer:
            return OrderOutcome(
                client_order_id=client_order_id, status="rejected", reason="no such open order"
            )
        request, venue_id, _, _ = entry
        try:
            await self.venues[request.venue].cancel(request, venue_id)
        except VenueRejectedError as exc:
            return OrderOutcome(client_order_id=client_order_id, status="rejected", reason=str(exc))
        except UnknownOutcomeError as exc:
            return OrderOutcome(client_order_id=client_order_id, status="unknown", reason=str(exc))
        try:
            state, _ = await self.venues[request.venue].status(request, venue_id)
        except UnknownOutcomeError:
            state = ExecState.CANCELLED  # the DELETE succeeded; the poll will confirm
        await self.poll()  # report what the venue says now (CANCELLED, or a fill that won)
        return OrderOutcome(
            client_order_id=client_order_id,
            status="accepted",
            state=state,
            venue_order_id=venue_id,
        )

    async def load_open(self) -> None:
        """At startup: keep following the orders that were still open (see :meth:`poll`)."""
        for request, outcome in await self.store.open_orders():
            assert outcome.state is not None
            self.open[request.client_order_id] = (
                request,
                outcome.venue_order_id,
                outcome.state,
                Decimal(0),
            )

    async def poll(self) -> int:
        """Ask the venue about every open order; report each change of state or fill, in order.

        Returns how many reports were emitted. A failed query is retried on the next poll.
        """
        emitted = 0
        for cid, (request, venue_id, state, cum) in list(self.open.items()):
            try:
                new_state, new_cum = await self.venues[request.venue].status(request, venue_id)
            except UnknownOutcomeError:
                continue
            except Exception as exc:  # an unexpected answer: keep following the others
                log.error("order_status_failed", trace_id=cid, error=repr(exc)[:200])
                continue
            if (new_state, new_cum) == (state, cum):
                continue
            log.info(
                "order_state_changed",
                decision_id=decision_id(),
                trace_id=cid,
                venue=request.venue,
                venue_order_id=venue_id,
                state=new_state.value,
                last_qty=str(new_cum - cum),
                cum_qty=str(new_cum),
            )
            self._report(request, venue_id, new_state, last=new_cum - cum, cum=new_cum)
            emitted += 1
            if new_state in (ExecState.ACK, ExecState.PARTIAL):
                self.open[cid] = (request, venue_id, new_state, new_cum)
            else:
                del self.open[cid]
                await self.store.mark_closed(cid)
        return emitted

    async def follow(self, clock: Clock, every: float = 1.0) -> None:
        """Poll the open orders every ``every`` seconds of ``clock`` (runs until cancelled)."""
        while True:
            await clock.sleep(every)
            try:
                await self.poll()
            except Exception as exc:  # a venue bug must not stop following the others
                log.error("order_poll_failed", error=repr(exc)[:200])

    async def reconcile_pending(self) -> list[OrderOutcome]:
        """At startup: settle every order whose outcome was not known when we stopped."""
        return [
            await self._reconcile(request, decision_id())
            for request in await self.store.unfinished()
        ]

    async def _reconcile(self, request: OrderRequest, decision: str) -> OrderOutcome:
        """Look the order up at the venue by client id; never sends it."""
        cid = request.client_order_id
        try:
            found = await self.venues[request.venue].lookup(request)
        except UnknownOutcomeError as exc:
            found, reason = None, f"lookup failed: {exc}"
        else:
            reason = "not found at the venue"
        log.info(
            "order_reconciled",
            decision_id=decision,
            trace_id=cid,
            venue=request.venue,
            found=found is not None,
            state=found[1].value if found else None,
            reason="" if found else reason[:200],
        )
        if found is None:
            outcome = OrderOutcome(client_order_id=cid, status="unknown", reason=reason)
            await self.store.finish(outcome)
            return outcome
        venue_id, state = found
        outcome = OrderOutcome(
            client_order_id=cid, status="accepted", state=state, venue_order_id=venue_id
        )
        await self._finish(request, outcome)
        return outcome

    async def _finish(self, request: OrderRequest, outcome: OrderOutcome) -> None:
        await self.store.finish(outcome)
        state = outcome.state
        if state is None:
            return
        self._report(request, outcome.venue_order_id, state, reason=outcome.reason)
        if state in (ExecState.ACK, ExecState.PARTIAL):
            self.open[request.client_order_id] = (
                request,
                outcome.venue_order_id,
                state,
                Decimal(0),
            )

    def _report(
        self,
        request: OrderRequest,
        venue_order_id: str,
        state: ExecState,
        *,
        last: Decimal = Decimal(0),
        cum: Decimal = Decimal(0),
        reason: str = "",
    ) -> None:
        report = ExecReport(
            event_id=self.ids.new_id(),
            provider=request.venue,
            symbol=request.symbol,
            ts_ingest=self._now_ns(),
            trace_id=request.client_order_id,
            client_order_id=request.client_order_id,
            venue_order_id=venue_order_id,
            state=state,
            side=request.side,
            last_qty=last,
            cum_qty=cum,
            price=request.price,
            reason=reason,
        )
        self.on_report(report, request.consumer)


def _time_ns() -> int:
    return time.time_ns()


_STATES = {
    "pending": ExecState.ACK,
    "partially_filled": ExecState.PARTIAL,
    "filled": ExecState.FILLED,
    "cancelled": ExecState.CANCELLED,
    "expired": ExecState.EXPIRED,
}


class _Order(msgspec.Struct):
    order_id: str
    status: str
    document_number: str = ""
    filled_quantity: int = 0


class _Page(msgspec.Struct):
    orders: list[_Order]
    total: int


class TradehallOrders:
    """Our exchange's REST order API as an :class:`OrderVenue`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        symbol_map: Callable[[str], str],
        brokers: Mapping[str, str] | None = None,
    ) -> None:
        self.http = http
        self.symbol_map = symbol_map
        self.brokers = dict(brokers or {})

    def broker(self, consumer: str) -> str:
        return self.brokers.get(consumer, consumer)

    async def place(self, request: OrderRequest) -> tuple[str, ExecState]:
        body: dict[str, object] = {
            "type": request.type,
            "broker_id": self.broker(request.consumer),
            "document_number": request.client_order_id,
            "side": "bid" if request.side is Side.BUY else "ask",
            "symbol": self.symbol_map(request.symbol),
            "quantity": int(request.quantity),
        }
        if request.type == "limit":
            body["price"] = float(request.price) if request.price is not None else None
            body["expires_at"] = request.expires_at
        try:
            resp = await self.http.post("/orders", json=body)
        except httpx.TransportError as exc:  # timeouts included: the order may exist
            raise UnknownOutcomeError(type(exc).__name__) from exc
        if resp.status_code >= 500:
            raise UnknownOutcomeError(f"HTTP {resp.status_code}")
        if resp.status_code != 201:
            raise VenueRejectedError(resp.text[:200])
        order = msgspec.json.decode(resp.content, type=_Order)
        return order.order_id, _STATES.get(order.status, ExecState.ACK)

    async def status(self, request: OrderRequest, venue_order_id: str) -> tuple[ExecState, Decimal]:
        try:
            resp = await self.http.get(f"/orders/{venue_order_id}")
        except httpx.TransportError as exc:
            raise UnknownOutcomeError(type(exc).__name__) from exc
        if resp.status_code != 200:
            raise UnknownOutcomeError(f"HTTP {resp.status_code}")
        order = msgspec.json.decode(resp.content, type=_Order)
        return _STATES.get(order.status, ExecState.ACK), Decimal(order.filled_quantity)

    async def cancel(self, request: OrderRequest, venue_order_id: str) -> None:
        try:
            resp = await self.http.delete(f"/orders/{venue_order_id}")
        except httpx.TransportError as exc:
            raise UnknownOutcomeError(type(exc).__name__) from exc
        if resp.status_code >= 500:
            raise UnknownOutcomeError(f"HTTP {resp.status_code}")
        if resp.status_code != 200:
            raise VenueRejectedError(resp.text[:200])

    async def lookup(self, request: OrderRequest) -> tuple[str, ExecState] | None:
        broker = self.broker(request.consumer)
        page = 1
        while True:
            try:
                resp = await self.http.get(
                    f"/brokers/{broker}/orders", params={"page": page, "limit": 100}
                )
            except httpx.TransportError as exc:
                raise UnknownOutcomeError(type(exc).__name__) from exc
            if resp.status_code != 200:
                raise UnknownOutcomeError(f"HTTP {resp.status_code}")
            data = msgspec.json.decode(resp.content, type=_Page)
            for order in data.orders:
                if order.document_number == request.client_order_id:
                    return order.order_id, _STATES.get(order.status, ExecState.ACK)
            if page * 100 >= data.total or not data.orders:
                return None
            page += 1
