"""The bet desk and the cashier: validating and placing bets, and the money routes.

A bet is checked here (breaker and disk open, the per-wallet limit unless admission counted
it, nonce, signature, cell, preset amount, placeable cell and unchanged rate, the balance
cache), then handed to :class:`~tradehall.tap.placement.Placements`, which queues it for the
single writer and answers. A refusal whose nonce already has a stored result answers that
result instead (a client's retry of a placed bet). ``me``, ``deposit`` and ``withdraw`` are
the account reads and the admin money movements (C-12).

The functions take the :class:`~tradehall.tap.service.TapService`: the database, the breaker,
the balance guard and the limits live there, and calls such as ``service.quote`` go through
it so that a replaced method is the one that runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradehall.tap import gate, ledger
from tradehall.tap.contract import (
    ApiError,
    BetBody,
    invalid_amount_error,
)
from tradehall.tap.grid import CellIdError, parse_cell_id
from tradehall.tap.ids import new_id
from tradehall.tap.ledger import BetRequest, BetResult
from tradehall.tap.log import LazyLogger
from tradehall.tap.placement import answer, check_bet_signature
from tradehall.tap.stores import Session

if TYPE_CHECKING:
    from tradehall.tap.service import TapService

__all__ = [
    "deposit",
    "flush",
    "me",
    "observe_flush",
    "place_bet",
    "withdraw",
]

_NONCE = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_log = LazyLogger("tap")


# ----------------------------------------------------------------- money


async def me(service: TapService, session: Session) -> ledger.UserRecord:
    """The session's user record; 401 if the user is gone."""
    user = await service.db.read(lambda c: ledger.get_user(c, session.user_id))
    if user is None:
        raise ApiError(401, "unauthorized", "invalid or expired session")
    return user


async def deposit(service: TapService, wallet: str, amount: int) -> ledger.UserRecord:
    """Admin deposit: credit ``wallet`` (created if new) with a DEPOSIT ledger row."""
    wallet = _admin_wallet(wallet, amount)
    now_ms = service.clock.time_ns() // 1_000_000
    dep_id = new_id()
    user = await service.db.write(
        functools.partial(
            ledger.deposit, wallet=wallet, amount=amount, now_ms=now_ms, deposit_id=dep_id
        )
    )
    service.balances.committed([(user.id, user.balance)])
    return user


async def withdraw(service: TapService, wallet: str, amount: int) -> ledger.UserRecord:
    """Admin withdrawal (C-12): conditional debit plus a WITHDRAWAL ledger row."""
    wallet = _admin_wallet(wallet, amount)
    now_ms = service.clock.time_ns() // 1_000_000
    try:
        user = await service.db.write(
            functools.partial(
                ledger.withdraw,
                wallet=wallet,
                amount=amount,
                now_ms=now_ms,
                withdrawal_id=new_id(),
            )
        )
    except LookupError:
        raise ApiError(404, "not_found", "no user with this wallet") from None
    if user is None:
        raise ApiError(400, "insufficient_funds", "balance too low")
    service.balances.committed([(user.id, user.balance)])
    _log.info("withdrawal", user_id=user.id, amount=amount, new_balance=user.balance)
    return user


# ----------------------------------------------------------------- bets


async def flush(service: TapService, bets: Sequence[BetRequest]) -> list[BetResult]:
    """The batcher's flush: one batch, one write transaction."""
    now_ms = service.clock.time_ns() // 1_000_000
    return await service.db.write(
        functools.partial(ledger.place_batch, bets=list(bets), now_ms=now_ms)
    )


def observe_flush(service: TapService, size: int, seconds: float) -> None:
    """The batcher's report of a finished flush (batch size and duration metrics)."""
    service.metrics.batch_size.observe(size)
    service.metrics.flush_seconds.observe(seconds)


async def _replay(service: TapService, session: Session, nonce: str) -> BetResult | None:
    def find(c: Any) -> BetResult | None:
        return ledger.stored_result(c, session.user_id, nonce)

    return await service.db.read(find)


async def place_bet(
    service: TapService, session: Session, body: BetBody, *, bet_counted: bool = False
) -> dict[str, Any]:
    """Validate, queue and await one bet; the 202 body, or :class:`ApiError`.

    ``bet_counted``: the per-wallet limit was already counted (and passed) by the bet
    route's admission.
    """
    try:
        return await _place_bet(service, session, body, bet_counted)
    except _Replayed as replayed:
        return replayed.answer


async def _place_bet(
    service: TapService, session: Session, body: BetBody, counted: bool
) -> dict[str, Any]:
    config = service.config
    gate.open_for_bets(service)
    if not counted:
        await gate.limit(
            service, f"bet:{session.wallet}", config.bet_rate_limit, config.bet_rate_window_s
        )
    if not _NONCE.match(body.nonce):
        raise ApiError(400, "validation_error", "nonce must be 8-64 of [A-Za-z0-9-]")
    if config.require_bet_signature:
        check_bet_signature(session, body, now_ns=service.clock.time_ns(), chain_id=config.chain_id)
    try:
        cell = parse_cell_id(body.cell_id, config.grid)
    except CellIdError:
        raise ApiError(400, "validation_error", "malformed cell_id") from None
    if body.amount not in config.grid.presets:
        await _raise_replay_or(service, session, body, invalid_amount_error(config.grid))
    placeable, rate = service.quote(cell)
    if not placeable:
        await _raise_replay_or(
            service, session, body, ApiError(400, "cell_unavailable", "cell is not open for bets")
        )
    if body.rate is not None and _as_decimal(body.rate) != rate:
        await _raise_replay_or(
            service,
            session,
            body,
            ApiError(409, "rate_changed", "the rate has changed", extra={"rate": str(rate)}),
        )
    if not await service.balances.enough(session.user_id, body.amount):
        # refused before the write queue; only the database's balance can refuse (balances.py)
        service.metrics.bets_placed.labels("rejected").inc()
        await _raise_replay_or(
            service, session, body, ApiError(400, "insufficient_funds", "balance too low")
        )
    bet = BetRequest(
        bet_id=new_id(),
        user_id=session.user_id,
        cell_id=cell.cell_id,
        nonce=body.nonce,
        amount=body.amount,
        rate=str(rate),
        col_start=cell.col_start,
        col_end=cell.col_end,
        lower=cell.lower,
        upper=cell.upper,
    )
    try:
        placed = await service.placements.submit(bet)
    except ApiError as exc:
        if exc.code == "insufficient_funds":
            service.balances.cache.forget(session.user_id)  # it let an unaffordable bet through
        raise
    service.balances.committed([(session.user_id, placed.get("new_balance"))])
    return placed


async def _raise_replay_or(
    service: TapService, session: Session, body: BetBody, error: ApiError
) -> None:
    stored = await _replay(service, session, body.nonce)
    if stored is not None:
        raise _Replayed(answer(stored))
    raise error


class _Replayed(Exception):
    """Internal: a repeated nonce whose stored result is the answer."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("replayed")
        self.answer = answer


def _as_decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except ArithmeticError:
        return None


def _admin_wallet(wallet: str, amount: int) -> str:
    """The lower-cased wallet of an admin deposit or withdrawal; bad input is a 400."""
    wallet = wallet.lower()
    if not re.fullmatch(r"0x[0-9a-f]{40}", wallet):
        raise ApiError(400, "validation_error", "wallet must be a 0x-prefixed address")
    if amount <= 0 or amount > 10**12:
        raise ApiError(400, "invalid_amount", "amount must be a positive number of cents")
    return wallet
