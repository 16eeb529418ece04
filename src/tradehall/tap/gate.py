"""The gate: login, sessions, rate limits, and the bet route up to the bet desk.

``login`` verifies the signed login text (:mod:`tradehall.tap.auth`), claims its nonce once and
opens a session; ``bearer`` and ``session_for`` turn an ``Authorization`` header into a session;
``limit`` is one sliding-window check (429 with ``Retry-After``). ``bet_request`` is the whole
``POST /api/bets`` in front of :func:`tradehall.tap.desk.place_bet`: the per-IP limit, the
session and the per-wallet limit in one :class:`~tradehall.tap.admission.Admission` call;
``open_for_bets`` is the 503 of a closed breaker or a full disk, checked here and by the desk.

The functions take the :class:`~tradehall.tap.service.TapService`, where the stores, the
limits and the breaker live; calls to its public methods go through it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import msgspec

from tradehall.tap import ledger
from tradehall.tap.auth import AuthError, LoginRequest, verify_login
from tradehall.tap.contract import ApiError, BetBody, disk_error, stale_error
from tradehall.tap.log import LazyLogger
from tradehall.tap.stores import Session, StoreUnavailable

if TYPE_CHECKING:
    from tradehall.tap.service import TapService

__all__ = ["bearer", "bet_request", "limit", "login", "open_for_bets", "session_for"]

_log = LazyLogger("tap")
_bet_decoder = msgspec.json.Decoder(BetBody)


async def login(service: TapService, req: LoginRequest) -> tuple[Session, ledger.UserRecord]:
    """Verify a signed login, claim its nonce, ensure the user; a new session and the user."""
    try:
        wallet = verify_login(req, now_ns=service.clock.time_ns(), chain_id=service.config.chain_id)
    except AuthError as exc:
        _log.info("login_rejected", reason=exc.reason)
        raise ApiError(401, "invalid_signature", "signature verification failed") from None
    try:
        if not await service.nonces.claim(f"login:{req.nonce}", wallet):
            _log.info("login_rejected", reason="nonce reused")
            raise ApiError(401, "invalid_signature", "signature verification failed")
    except StoreUnavailable:
        raise ApiError(503, "unavailable", "session store unavailable") from None
    now_ms = service.clock.time_ns() // 1_000_000
    user = await service.db.write(
        functools.partial(ledger.ensure_user, wallet=wallet, now_ms=now_ms)
    )
    session = await service.sessions.create(user.id, wallet)
    return session, user


async def session_for(service: TapService, token: str) -> Session:
    """The session of ``token``; 401 if none, 503 if the store is down."""
    try:
        session = await service.sessions.get(token)
    except StoreUnavailable:
        raise ApiError(503, "unavailable", "session store unavailable") from None
    if session is None:
        raise ApiError(401, "unauthorized", "invalid or expired session")
    return session


async def limit(service: TapService, key: str, limit: int, window: float) -> None:
    """Count one hit on ``key``; 429 if over ``limit`` per ``window`` s, 503 if unavailable."""
    try:
        retry = await service.limiter.hit(key, limit, window)
    except StoreUnavailable:
        raise ApiError(503, "unavailable", "rate limiter unavailable") from None
    if retry is not None:
        raise _rate_limited(retry)


async def bet_request(
    service: TapService, ip: str, authorization: str | None, raw: bytes | ApiError
) -> dict[str, Any]:
    """The whole ``POST /api/bets`` (``raw``: the body, or the error reading it gave).

    The per-IP limit, the session and the per-wallet bet limit are one
    :class:`~tradehall.tap.admission.Admission` call (one round trip on Redis); the answers
    and their order are those of the separate checks: 429 (IP), 401, 400 (body), 503
    (breaker, disk), 429 (bet limit), then ``place_bet``'s own checks.
    """
    token: str | None = None
    denied: ApiError | None = None
    try:
        token = bearer(authorization)
    except ApiError as exc:
        denied = exc
    body: BetBody | ApiError
    if isinstance(raw, ApiError):
        body = raw
    else:
        try:
            body = _bet_decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            body = ApiError(400, "validation_error", str(exc))
    counts = (
        not isinstance(body, ApiError) and service.breaker.allows_bets and not service.disk_full
    )
    try:
        admitted = await service.admission.admit(ip, token, service._limits, count_bet=counts)
    except StoreUnavailable:
        raise ApiError(503, "unavailable", "session store unavailable") from None
    if admitted.ip_retry is not None:
        raise _rate_limited(admitted.ip_retry)
    if denied is not None:
        raise denied
    session = admitted.session
    if session is None:
        raise ApiError(401, "unauthorized", "invalid or expired session")
    if isinstance(body, ApiError):
        raise body
    if admitted.bet_retry is not None:
        # the breaker or the disk may have closed meanwhile: their 503 goes first
        open_for_bets(service)
        raise _rate_limited(admitted.bet_retry)
    return await service.place_bet(session, body, bet_counted=admitted.bet_counted)


def open_for_bets(service: TapService) -> None:
    """503 if the breaker or the disk guard has closed betting."""
    if not service.breaker.allows_bets:
        raise stale_error()
    if service.disk_full:
        raise disk_error()


def bearer(authorization: str | None) -> str:
    """The session id of an ``Authorization: Bearer`` header, or 401."""
    if not authorization:
        raise ApiError(401, "unauthorized", "missing authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "invalid authorization format")
    return token.strip()


def _rate_limited(retry: float) -> ApiError:
    seconds = max(1, int(retry + 0.999))
    return ApiError(
        429,
        "rate_limited",
        "too many requests",
        extra={"retry_after": seconds},
        headers={"Retry-After": str(seconds)},
    )
