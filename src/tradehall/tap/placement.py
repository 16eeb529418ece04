"""Submitting a validated bet to the batcher and turning the outcome into the API's answer.

:class:`Placements` enqueues a :class:`~tradehall.tap.ledger.BetRequest`, waits for its commit
and maps the :class:`~tradehall.tap.ledger.BetResult` to the 202 body or an :class:`ApiError`
(400 ``insufficient_funds``, 409 ``duplicate_bet``, 503 ``overloaded``, 504 ``timeout``, 500).
A sweeper on the timer clock answers 504 to requests waiting longer than ``bet_timeout_s``;
the bet stays queued and may still commit (the client looks it up by ``bet_id``, C-7). Every
placement is announced to its owner as ``bet:confirmed`` or ``bet:failed`` (C-19).

:func:`check_bet_signature` is the optional per-bet signature (``require_bet_signature``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tradehall.core.clock import Clock
from tradehall.tap.auth import AuthError, bet_text, verify_signed
from tradehall.tap.batcher import Batcher, Overloaded
from tradehall.tap.contract import ApiError, BetBody
from tradehall.tap.hub import user_channel
from tradehall.tap.ledger import BetRequest, BetResult, Placement
from tradehall.tap.log import LazyLogger
from tradehall.tap.metrics import TapMetrics
from tradehall.tap.stores import Session

__all__ = ["BetTimeout", "Placements", "answer", "check_bet_signature"]

_log = LazyLogger("tap")
Publish = Callable[[str, str, Any], None]


class BetTimeout(Exception):
    """A bet request waited ``bet_timeout_s`` without a commit (answered 504)."""


class Placements:
    def __init__(
        self,
        batcher: Batcher,
        timer_clock: Clock,
        timeout_s: float,
        metrics: TapMetrics,
        publish: Publish,
    ) -> None:
        self.batcher = batcher
        self.timer_clock = timer_clock
        self.timeout_s = timeout_s
        self.publish = publish
        self._waiting: dict[str, tuple[float, asyncio.Future[BetResult]]] = {}
        self._placed_ok = metrics.bets_placed.labels("confirmed")
        self._placed_rejected = metrics.bets_placed.labels("rejected")
        self._placed_timeout = metrics.bets_placed.labels("timeout")

    async def submit(self, bet: BetRequest) -> dict[str, Any]:
        """Queue ``bet``, wait for its commit, answer (or raise :class:`ApiError`)."""
        try:
            future = self.batcher.enqueue(bet)
        except Overloaded:
            self._placed_rejected.inc()
            raise ApiError(503, "overloaded", "batcher overloaded, retry shortly") from None
        deadline = self.timer_clock.monotonic() + self.timeout_s
        self._waiting[bet.bet_id] = (deadline, future)
        try:
            result = await future
        except BetTimeout:
            self._placed_timeout.inc()
            raise ApiError(
                504, "timeout", "Bet status unknown, check history", extra={"bet_id": bet.bet_id}
            ) from None
        except Exception:
            _log.exception("bet_write_failed", bet_id=bet.bet_id)
            self.notify(bet, BetResult(Placement.ERROR, bet.bet_id, None))
            raise ApiError(500, "internal_error", "the bet could not be stored") from None
        finally:
            self._waiting.pop(bet.bet_id, None)
        if not result.replayed:
            self.notify(bet, result)
        return answer(result)

    def expire_waiters(self) -> int:
        """Answer 504 to every bet request waiting longer than the timeout."""
        now = self.timer_clock.monotonic()
        expired = [f for deadline, f in self._waiting.values() if deadline <= now and not f.done()]
        for future in expired:
            future.set_exception(BetTimeout())
        return len(expired)

    async def timeout_loop(self) -> None:
        while True:
            await self.timer_clock.sleep(0.25)
            self.expire_waiters()

    def notify(self, bet: BetRequest, result: BetResult) -> None:
        ok = result.outcome is Placement.ACCEPTED
        (self._placed_ok if ok else self._placed_rejected).inc()
        self.publish(
            user_channel(bet.user_id),
            "bet:confirmed" if ok else "bet:failed",
            {
                "bet_id": result.bet_id,
                "user_id": bet.user_id,
                "cell_id": bet.cell_id,
                "status": "confirmed" if ok else result.outcome.value,
                "new_balance": result.new_balance,
            },
        )


def answer(result: BetResult) -> dict[str, Any]:
    """The 202 body for an accepted bet; :class:`ApiError` for the other outcomes."""
    if result.outcome is Placement.ACCEPTED:
        return {"status": "accepted", "bet_id": result.bet_id, "new_balance": result.new_balance}
    if result.outcome is Placement.INSUFFICIENT_FUNDS:
        raise ApiError(
            400, "insufficient_funds", "balance too low", extra={"bet_id": result.bet_id}
        )
    if result.outcome is Placement.DUPLICATE_BET:
        raise ApiError(409, "duplicate_bet", "one bet per cell")
    raise ApiError(500, "internal_error", "the bet could not be stored")


def check_bet_signature(session: Session, body: BetBody, *, now_ns: int, chain_id: int) -> None:
    """Verify a per-bet signature over the place_bet text; 401 ``invalid_signature`` if not."""
    if body.timestamp is None or body.chain_id is None or body.signature is None:
        raise ApiError(401, "invalid_signature", "timestamp, chain_id and signature required")
    try:
        verify_signed(
            wallet=session.wallet,
            text=bet_text(
                cell_id=body.cell_id,
                amount=body.amount,
                nonce=body.nonce,
                timestamp=body.timestamp,
                chain_id=body.chain_id,
            ),
            nonce=body.nonce,
            timestamp=body.timestamp,
            chain_id=body.chain_id,
            signature=body.signature,
            now_ns=now_ns,
            expected_chain_id=chain_id,
        )
    except AuthError as exc:
        _log.info("bet_signature_rejected", reason=exc.reason)
        raise ApiError(401, "invalid_signature", "signature verification failed") from None
