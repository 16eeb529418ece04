"""Bet history across the hot database and the local weekly partitions (FR-17).

``GET /api/bets`` and ``GET /api/bets/{id}`` read the hot database and then the local read-only
weeks (:class:`~tradehall.tap.partitions.Partitions`), newest first. A range that starts before
the horizon (the end of the newest week no longer kept locally) is answered 410 ``archived``;
without ``from`` the range starts at the horizon, so the default query always works. A bet id that
is found nowhere and whose embedded time lies before the horizon is ``archived`` too, otherwise
404.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3

from tradehall.tap import ledger
from tradehall.tap.archive import archived_weeks
from tradehall.tap.contract import ApiError
from tradehall.tap.db import Database
from tradehall.tap.partitions import Partitions, archived_error, id_time_ms

__all__ = ["History"]


class History:
    """Read-only history queries; every read runs off the event loop."""

    def __init__(self, db: Database, partitions: Partitions) -> None:
        self.db = db
        self.partitions = partitions

    async def horizon_ms(self) -> int:
        weeks = await self.db.read(archived_weeks)
        return await asyncio.to_thread(self.partitions.horizon_ms, weeks)

    async def bets(
        self, user_id: str, from_ms: int | None, to_ms: int, limit: int
    ) -> list[ledger.BetRecord]:
        """The user's bets placed in ``[from_ms, to_ms)``, newest first, at most ``limit``."""
        horizon = await self.horizon_ms()
        if from_ms is None:
            from_ms = horizon
        elif from_ms < horizon:
            raise archived_error(horizon)
        read = functools.partial(
            ledger.list_bets, user_id=user_id, from_ms=from_ms, to_ms=to_ms, limit=limit
        )
        found: dict[str, ledger.BetRecord] = {b.bet_id: b for b in await self.db.read(read)}
        if self.partitions.labels():
            for week in await asyncio.to_thread(self.partitions.each, read):
                for bet in week:
                    found.setdefault(bet.bet_id, bet)  # the newer copy wins
        ordered = sorted(found.values(), key=lambda b: (-b.placed_at, b.bet_id))
        return ordered[:limit]

    async def bet(self, user_id: str, bet_id: str) -> ledger.BetRecord:
        """One of the user's bets; 404 ``not_found`` or 410 ``archived``."""
        read = functools.partial(_get_bet, bet_id=bet_id)
        bet = await self.db.read(read)
        if bet is None and self.partitions.labels():
            copies = await asyncio.to_thread(self.partitions.each, read)
            bet = next((b for b in copies if b is not None), None)
        if bet is not None and bet.user_id == user_id:
            return bet
        if bet is None:
            created = id_time_ms(bet_id)
            horizon = await self.horizon_ms()
            if created is not None and created < horizon:
                raise archived_error(horizon)
        raise ApiError(404, "not_found", "no such bet")


def _get_bet(conn: sqlite3.Connection, bet_id: str) -> ledger.BetRecord | None:
    return ledger.get_bet(conn, bet_id)
