"""Wallet login: the signed text (Part B §6, C-2) and EIP-191 signature checks (eth-account).

The client signs, with ``personal_sign``, this UTF-8 text (lines joined by ``\\n``, no trailing
newline)::

    Tap Trading Bet
    Action: login
    Cell: -
    Amount: 0
    Nonce: {nonce}
    Timestamp: {unix seconds}
    Chain: {chain_id}
    Version: 1

The server never trusts a client-sent message: it rebuilds the text from the typed fields, so a
tampered field changes the digest and the recovered signer. Checks, all failing as
:class:`AuthError` (401 ``invalid_signature``): the nonce shape, the timestamp window
[now - 30 s, now + 5 s], the chain id, a 65-byte signature with v in {0, 1, 27, 28}, and the
recovered address equal to the claimed wallet. Single use of the nonce is the caller's second
step (a :class:`~tradehall.tap.stores.NonceStore` claim), done only after the signature verifies
so a forged request cannot burn someone's nonce.

With ``require_bet_signature`` (Part A §3, C-1; off by default) each bet also carries a signature
over the same template with ``Action: place_bet``, the cell id and the amount in cents; its
single use is the bet's ``(user, nonce)`` uniqueness in the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec
from eth_account import Account
from eth_account.messages import encode_defunct

__all__ = [
    "AuthError",
    "LoginRequest",
    "LoginWindow",
    "bet_text",
    "signed_text",
    "verify_login",
    "verify_signed",
]

NS = 1_000_000_000
_NONCE = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_WALLET = re.compile(r"^0x[0-9a-fA-F]{40}$")
_SIGNATURE = re.compile(r"^0x[0-9a-fA-F]{130}$")


class AuthError(Exception):
    """A login that must be refused; ``reason`` is for logs only, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LoginRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    wallet: str
    nonce: str
    timestamp: int
    chain_id: int
    signature: str


@dataclass(frozen=True)
class LoginWindow:
    past_s: int = 30
    future_s: int = 5


def signed_text(
    *, action: str, cell: str, amount: str, nonce: str, timestamp: int, chain_id: int
) -> str:
    """The Part B §6 template, filled in."""
    return "\n".join(
        (
            "Tap Trading Bet",
            f"Action: {action}",
            f"Cell: {cell}",
            f"Amount: {amount}",
            f"Nonce: {nonce}",
            f"Timestamp: {timestamp}",
            f"Chain: {chain_id}",
            "Version: 1",
        )
    )


def login_text(req: LoginRequest) -> str:
    return signed_text(
        action="login",
        cell="-",
        amount="0",
        nonce=req.nonce,
        timestamp=req.timestamp,
        chain_id=req.chain_id,
    )


def verify_login(
    req: LoginRequest, *, now_ns: int, chain_id: int, window: LoginWindow | None = None
) -> str:
    """Check everything but nonce reuse; return the lowercase wallet address."""
    if not _WALLET.match(req.wallet):
        raise AuthError("malformed wallet")
    return verify_signed(
        wallet=req.wallet,
        text=login_text(req),
        nonce=req.nonce,
        timestamp=req.timestamp,
        chain_id=req.chain_id,
        signature=req.signature,
        now_ns=now_ns,
        expected_chain_id=chain_id,
        window=window,
    )


def bet_text(*, cell_id: str, amount: int, nonce: str, timestamp: int, chain_id: int) -> str:
    """The per-bet text (``Action: place_bet``; the amount in cents as a decimal string, C-13)."""
    return signed_text(
        action="place_bet",
        cell=cell_id,
        amount=str(amount),
        nonce=nonce,
        timestamp=timestamp,
        chain_id=chain_id,
    )


def verify_signed(
    *,
    wallet: str,
    text: str,
    nonce: str,
    timestamp: int,
    chain_id: int,
    signature: str,
    now_ns: int,
    expected_chain_id: int,
    window: LoginWindow | None = None,
) -> str:
    """The shared checks: nonce shape, window, chain, 65-byte signature, signer == wallet."""
    win = window or LoginWindow()
    if not _NONCE.match(nonce):
        raise AuthError("malformed nonce")
    now_s = now_ns // NS
    if timestamp < now_s - win.past_s:
        raise AuthError("timestamp expired")
    if timestamp > now_s + win.future_s:
        raise AuthError("timestamp in the future")
    if chain_id != expected_chain_id:
        raise AuthError("wrong chain")
    if not _SIGNATURE.match(signature):
        raise AuthError("signature must be 65 bytes of hex")
    raw = bytes.fromhex(signature[2:])
    v = raw[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise AuthError("bad recovery id")
    try:
        signer: str = Account.recover_message(
            encode_defunct(text=text), signature=raw[:64] + bytes([v])
        )
    except Exception as exc:  # eth-keys raises several types for unrecoverable points
        raise AuthError(f"unrecoverable signature: {type(exc).__name__}") from None
    if signer.lower() != wallet.lower():
        raise AuthError("signer does not match wallet")
    return wallet.lower()
