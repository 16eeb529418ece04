"""Order records and their SQLite store: ``client_order_id`` -> request and outcome.

:class:`OrderStore` is the router's idempotency source of truth (it survives restarts): an id is
*claimed* before anything is sent, *finished* with the venue's answer, and *closed* once the order
has been followed to a final state. :class:`OrderRequest` and :class:`OrderOutcome` are the
records (re-exported by :mod:`tradehall.gateway.orders`).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

import aiosqlite
import msgspec

from tradehall.gateway.events import ExecState, Side

__all__ = ["OrderOutcome", "OrderRequest", "OrderStore"]


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    consumer: str
    venue: str
    symbol: str
    side: Side
    type: Literal["limit", "market"]
    quantity: Decimal
    price: Decimal | None = None
    expires_at: str | None = None  # time in force: good till this RFC 3339 instant


class OrderOutcome(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    status: Literal["accepted", "rejected", "refused", "unknown"]
    state: ExecState | None = None
    venue_order_id: str = ""
    reason: str = ""
    duplicate: bool = False


class OrderStore:
    """``client_order_id`` -> request and outcome, in SQLite (survives restarts)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._db = await aiosqlite.connect(self.path)
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS orders (client_order_id TEXT PRIMARY KEY,"
            " request BLOB NOT NULL, outcome BLOB)"
        )
        # orders followed to a final state (the stored outcome stays the original answer)
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS closed (client_order_id TEXT PRIMARY KEY)"
        )
        await self._db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "OrderStore.open() first"
        return self._db

    async def get(self, cid: str) -> tuple[OrderRequest, OrderOutcome | None] | None:
        async with self.db.execute(
            "SELECT request, outcome FROM orders WHERE client_order_id = ?", (cid,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        request = msgspec.json.decode(row[0], type=OrderRequest)
        outcome = msgspec.json.decode(row[1], type=OrderOutcome) if row[1] else None
        return request, outcome

    async def claim(self, request: OrderRequest) -> None:
        await self.db.execute(
            "INSERT INTO orders (client_order_id, request) VALUES (?, ?)",
            (request.client_order_id, msgspec.json.encode(request)),
        )
        await self.db.commit()

    async def finish(self, outcome: OrderOutcome) -> None:
        await self.db.execute(
            "UPDATE orders SET outcome = ? WHERE client_order_id = ?",
            (msgspec.json.encode(outcome), outcome.client_order_id),
        )
        await self.db.commit()

    async def open_orders(self) -> list[tuple[OrderRequest, OrderOutcome]]:
        """Accepted orders whose first known state was not final (to keep following them)."""
        async with self.db.execute(
            "SELECT request, outcome FROM orders WHERE outcome IS NOT NULL AND client_order_id"
            " NOT IN (SELECT client_order_id FROM closed) ORDER BY rowid"
        ) as cursor:
            rows = await cursor.fetchall()
        out = []
        for request, outcome in rows:
            known = msgspec.json.decode(outcome, type=OrderOutcome)
            if known.state in (ExecState.ACK, ExecState.PARTIAL):
                out.append((msgspec.json.decode(request, type=OrderRequest), known))
        return out

    async def mark_closed(self, cid: str) -> None:
        await self.db.execute("INSERT OR IGNORE INTO closed VALUES (?)", (cid,))
        await self.db.commit()

    async def unfinished(self) -> list[OrderRequest]:
        """Requests sent (or about to be) whose outcome is not known."""
        async with self.db.execute("SELECT request, outcome FROM orders ORDER BY rowid") as cursor:
            rows = await cursor.fetchall()
        out = []
        for request, outcome in rows:
            known = msgspec.json.decode(outcome, type=OrderOutcome) if outcome else None
            if known is None or known.status == "unknown":
                out.append(msgspec.json.decode(request, type=OrderRequest))
        return out
