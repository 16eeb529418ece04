"""Login verification: the signed text, the window, the chain, v values and tampering."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tradehall.tap.auth import AuthError, LoginRequest, login_text, signed_text, verify_login

NS = 1_000_000_000
NOW = 1_790_000_000
ACCOUNT = Account.from_key("0x" + "11" * 32)
OTHER = Account.from_key("0x" + "22" * 32)


def signed(
    *, nonce: str = "nonce-0001", ts: int = NOW, chain: int = 1, signer: object = ACCOUNT
) -> LoginRequest:
    req = LoginRequest(ACCOUNT.address, nonce, ts, chain, "0x")
    sig = signer.sign_message(encode_defunct(text=login_text(req)))  # type: ignore[attr-defined]
    return LoginRequest(ACCOUNT.address, nonce, ts, chain, "0x" + bytes(sig.signature).hex())


def check(req: LoginRequest) -> str:
    return verify_login(req, now_ns=NOW * NS, chain_id=1)


def test_template_text() -> None:
    text = signed_text(action="login", cell="-", amount="0", nonce="abc", timestamp=5, chain_id=1)
    assert text == (
        "Tap Trading Bet\nAction: login\nCell: -\nAmount: 0\nNonce: abc\n"
        "Timestamp: 5\nChain: 1\nVersion: 1"
    )


def test_valid_login_with_v_27_28_and_0_1() -> None:
    seen_v = set()
    for i in range(8):
        req = signed(nonce=f"nonce-{i:04d}")
        raw = bytes.fromhex(req.signature[2:])
        seen_v.add(raw[64])
        assert check(req) == ACCOUNT.address.lower()
        low_v = raw[:64] + bytes([raw[64] - 27])
        low = LoginRequest(req.wallet, req.nonce, req.timestamp, req.chain_id, "0x" + low_v.hex())
        assert check(low) == ACCOUNT.address.lower()
    assert seen_v == {27, 28}


def test_window_bounds() -> None:
    assert check(signed(ts=NOW - 30))
    assert check(signed(ts=NOW + 5))
    with pytest.raises(AuthError):
        check(signed(ts=NOW - 31))
    with pytest.raises(AuthError):
        check(signed(ts=NOW + 6))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: LoginRequest(r.wallet, r.nonce, r.timestamp, 5, r.signature),
        lambda r: LoginRequest(r.wallet, "nonce-9999", r.timestamp, r.chain_id, r.signature),
        lambda r: LoginRequest(r.wallet, r.nonce, r.timestamp - 1, r.chain_id, r.signature),
        lambda r: LoginRequest(OTHER.address, r.nonce, r.timestamp, r.chain_id, r.signature),
        lambda r: LoginRequest(r.wallet, r.nonce, r.timestamp, r.chain_id, r.signature[:-2]),
        lambda r: LoginRequest(r.wallet, r.nonce, r.timestamp, r.chain_id, r.signature + "00"),
        lambda r: LoginRequest(r.wallet, r.nonce, r.timestamp, r.chain_id, r.signature[:-2] + "1d"),
        lambda r: LoginRequest(r.wallet, r.nonce, r.timestamp, r.chain_id, "0x" + "00" * 65),
        lambda r: LoginRequest(r.wallet, "bad\nnonce", r.timestamp, r.chain_id, r.signature),
        lambda r: LoginRequest("0x1234", r.nonce, r.timestamp, r.chain_id, r.signature),
    ],
    ids=[
        "other-chain",
        "tampered-nonce",
        "tampered-ts",
        "other-wallet",
        "64-bytes",
        "66-bytes",
        "v-29",
        "zero-sig",
        "newline",
        "bad-wallet",
    ],
)
def test_rejections(mutate: object) -> None:
    req = signed()
    with pytest.raises(AuthError):
        check(mutate(req))  # type: ignore[operator]


def test_wrong_signer() -> None:
    with pytest.raises(AuthError, match="signer"):
        check(signed(signer=OTHER))


def test_wrong_chain_even_if_signed_for_it() -> None:
    with pytest.raises(AuthError, match="chain"):
        check(signed(chain=137))
