"""The SQL money path on a real SQLite file: batches, savepoints, idempotency, settlement."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tradehall.tap import ledger
from tradehall.tap.db import connect
from tradehall.tap.ledger import BetRequest, Placement

NOW = 1_790_000_000_000


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return connect(tmp_path / "tap.db")


def bet(user_id: str, n: int, amount: int = 1_000, *, cell: int | None = None) -> BetRequest:
    c = n if cell is None else cell
    return BetRequest(
        bet_id=f"bet-{n}",
        user_id=user_id,
        cell_id=f"{1_000 + c * 10}_6000000_6001000",
        nonce=f"nonce-{n}",
        amount=amount,
        rate="2.50",
        col_start=1_000 + c * 10,
        col_end=1_010 + c * 10,
        lower=6_000_000,
        upper=6_001_000,
    )


def test_wal_and_full_sync(conn: sqlite3.Connection) -> None:
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_batch_debits_until_funds_run_out(conn: sqlite3.Connection) -> None:
    user = ledger.deposit(conn, "0xw", 10_000, NOW, "dep-1")
    results = ledger.place_batch(conn, [bet(user.id, i) for i in range(12)], NOW)
    outcomes = [r.outcome for r in results]
    assert outcomes == [Placement.ACCEPTED] * 10 + [Placement.INSUFFICIENT_FUNDS] * 2
    assert [r.new_balance for r in results[:10]] == [9_000 - 1_000 * i for i in range(10)]
    assert ledger.get_user(conn, user.id) == ledger.UserRecord(user.id, "0xw", 0)
    assert ledger.integrity_check(conn) == []
    statuses = conn.execute("SELECT status, COUNT(*) FROM bets GROUP BY status").fetchall()
    assert dict(statuses) == {"confirmed": 10, "insufficient_funds": 2}


def test_duplicate_cell_rolls_back_only_that_bet(conn: sqlite3.Connection) -> None:
    user = ledger.deposit(conn, "0xw", 10_000, NOW, "dep-1")
    results = ledger.place_batch(conn, [bet(user.id, 1), bet(user.id, 2, cell=1)], NOW)
    assert [r.outcome for r in results] == [Placement.ACCEPTED, Placement.DUPLICATE_BET]
    assert ledger.get_user(conn, user.id).balance == 9_000  # type: ignore[union-attr]
    assert ledger.integrity_check(conn) == []


def test_repeated_nonce_returns_original_result(conn: sqlite3.Connection) -> None:
    user = ledger.deposit(conn, "0xw", 10_000, NOW, "dep-1")
    first = ledger.place_batch(conn, [bet(user.id, 1)], NOW)[0]
    again = BetRequest(**{**ledger.msgspec.structs.asdict(bet(user.id, 1)), "bet_id": "other"})
    same_batch = ledger.place_batch(conn, [again, again], NOW)
    for result in same_batch:
        assert result.replayed and result.bet_id == first.bet_id
        assert result.new_balance == first.new_balance == 9_000
    assert ledger.get_user(conn, user.id).balance == 9_000  # type: ignore[union-attr]


def test_resolution_pays_once(conn: sqlite3.Connection) -> None:
    user = ledger.deposit(conn, "0xw", 1_000, NOW, "dep-1")
    ledger.place_batch(conn, [bet(user.id, 1)], NOW)
    kwargs = {
        "status": "won",
        "credit": 2_500,
        "credit_type": "PAYOUT",
        "resolution_price": 6_000_500,
        "resolution_tick_ts": 1_015_000,
        "ticks_examined": 3,
        "now_ms": NOW,
    }
    assert ledger.apply_resolution(conn, "bet-1", **kwargs) == 2_500  # type: ignore[arg-type]
    assert ledger.apply_resolution(conn, "bet-1", **kwargs) is None  # type: ignore[arg-type]
    assert ledger.get_user(conn, user.id).balance == 2_500  # type: ignore[union-attr]
    record = ledger.get_bet(conn, "bet-1")
    assert record is not None and record.status == "won" and record.payout == 2_500
    assert record.resolution_price == 6_000_500
    assert ledger.integrity_check(conn) == []
    types = [row.ref_type for row in ledger.list_ledger(conn, user.id)]
    assert types == ["PAYOUT", "BET", "DEPOSIT"]


def settlement(bet_id: str, status: str, credit: int, credit_type: str) -> ledger.Settlement:
    return ledger.Settlement(bet_id, status, credit, credit_type, 6_000_500, 1_015_000, 3)


def status(conn: sqlite3.Connection, n: int) -> str:
    record = ledger.get_bet(conn, f"bet-{n}")
    assert record is not None
    return record.status


def test_resolutions_settle_together_each_once(conn: sqlite3.Connection) -> None:
    user = ledger.deposit(conn, "0xw", 3_000, NOW, "dep-1")
    ledger.place_batch(conn, [bet(user.id, n) for n in (1, 2, 3)], NOW)
    balances = ledger.apply_resolutions(
        conn,
        [
            settlement("bet-1", "won", 2_500, "PAYOUT"),
            settlement("bet-2", "lost", 0, "PAYOUT"),
            settlement("bet-3", "void", 1_000, "REFUND"),
            settlement("bet-1", "won", 2_500, "PAYOUT"),  # already settled above: no second pay
        ],
        NOW,
    )
    assert balances == [2_500, None, 3_500, None]
    assert ledger.get_user(conn, user.id).balance == 3_500  # type: ignore[union-attr]
    assert [status(conn, n) for n in (1, 2, 3)] == ["won", "lost", "void"]
    assert ledger.integrity_check(conn) == []


def test_a_failed_resolution_rolls_back_the_lot(conn: sqlite3.Connection) -> None:
    user = ledger.deposit(conn, "0xw", 2_000, NOW, "dep-1")
    ledger.place_batch(conn, [bet(user.id, n) for n in (1, 2)], NOW)
    broken = ledger.Settlement("bet-2", "won", 2_500, None, None, None, 0)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):  # ref_type NOT NULL
        ledger.apply_resolutions(conn, [settlement("bet-1", "won", 2_500, "PAYOUT"), broken], NOW)
    assert not conn.in_transaction
    assert ledger.get_user(conn, user.id).balance == 0  # type: ignore[union-attr]
    assert [status(conn, n) for n in (1, 2)] == ["confirmed", "confirmed"]
    assert ledger.apply_resolutions(conn, [settlement("bet-1", "won", 2_500, "PAYOUT")], NOW) == [
        2_500
    ]


def test_integrity_check_reports_drift(conn: sqlite3.Connection) -> None:
    user = ledger.deposit(conn, "0xw", 1_000, NOW, "dep-1")
    conn.execute("UPDATE users SET balance = 1500 WHERE id = ?", (user.id,))
    drift = ledger.integrity_check(conn)
    assert len(drift) == 1 and drift[0].drift == 500 and drift[0].chain_ok


def test_negative_balance_impossible(conn: sqlite3.Connection) -> None:
    user = ledger.deposit(conn, "0xw", 1_000, NOW, "dep-1")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE users SET balance = -1 WHERE id = ?", (user.id,))
