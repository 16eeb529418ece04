"""Schema versions: a new database, the migration of an old one, refusals and atomic steps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from tradehall.tap import db, ledger
from tradehall.tap.db import SCHEMA_VERSION, connect
from tradehall.tap.ledger import BetRequest, Placement

NOW = 1_790_000_000_000

# The version-1 schema's extra index, as databases created before versioning carry it.
OLD_INDEX = "CREATE INDEX idx_bets_user ON bets(user_id, placed_at)"


def bet(user_id: str, n: int) -> BetRequest:
    return BetRequest(
        bet_id=f"bet-{n}",
        user_id=user_id,
        cell_id=f"{1_000 + n * 10}_6000000_6001000",
        nonce=f"nonce-{n:04d}",
        amount=100,
        rate="2.50",
        col_start=1_000 + n * 10,
        col_end=1_010 + n * 10,
        lower=6_000_000,
        upper=6_001_000,
    )


def indexes(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bets'")
    return {str(r[0]) for r in rows}


def old_database(path: Path) -> str:
    """A version-1 database (user_version 0, idx_bets_user) holding one user's bets."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(db.SCHEMA)
    conn.execute(OLD_INDEX)
    assert "idx_bets_user" in indexes(conn)
    user = ledger.deposit(conn, "0xold", 10_000, NOW, "dep-1")
    for i in range(3):  # placed at three different times, so history order is observable
        ledger.place_batch(conn, [bet(user.id, i)], NOW + i * 1_000)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()
    return user.id


def test_a_new_database_is_created_at_the_current_version(tmp_path: Path) -> None:
    conn = connect(tmp_path / "tap.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "idx_bets_user" not in indexes(conn)
    assert {"idx_bets_user_cell", "idx_bets_user_nonce", "idx_bets_open"} <= indexes(conn)


def test_an_old_database_is_migrated_and_keeps_its_bets(tmp_path: Path) -> None:
    user_id = old_database(tmp_path / "tap.db")
    conn = connect(tmp_path / "tap.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "idx_bets_user" not in indexes(conn)
    history = ledger.list_bets(conn, user_id)
    assert [b.bet_id for b in history] == ["bet-2", "bet-1", "bet-0"]  # newest first
    assert [b.bet_id for b in ledger.list_bets(conn, user_id, from_ms=NOW + 1_000)] == [
        "bet-2",
        "bet-1",
    ]
    assert ledger.integrity_check(conn) == []
    assert ledger.get_user(conn, user_id).balance == 9_700  # type: ignore[union-attr]
    # the migrated database still takes bets, and still refuses a second bet on a cell
    results = ledger.place_batch(conn, [bet(user_id, 3), bet(user_id, 3)], NOW)
    assert [r.outcome for r in results] == [Placement.ACCEPTED, Placement.ACCEPTED]
    assert results[1].replayed  # same nonce: the stored result
    again = msgspec.structs.replace(bet(user_id, 3), nonce="other-1")
    assert ledger.place_batch(conn, [again], NOW)[0].outcome is Placement.DUPLICATE_BET


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    old_database(tmp_path / "tap.db")
    connect(tmp_path / "tap.db").close()
    conn = connect(tmp_path / "tap.db")
    assert db.migrate(conn) == SCHEMA_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    conn = connect(tmp_path / "tap.db")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        connect(tmp_path / "tap.db")


def test_a_failing_step_leaves_the_old_version_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_database(tmp_path / "tap.db")
    broken = {**db.MIGRATIONS, 2: db.MIGRATIONS[2] + " SELECT * FROM no_such_table;"}
    monkeypatch.setattr(db, "MIGRATIONS", broken)
    with pytest.raises(sqlite3.OperationalError):
        connect(tmp_path / "tap.db")
    conn = sqlite3.connect(str(tmp_path / "tap.db"))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert "idx_bets_user" in indexes(conn)  # the DROP of that step was rolled back


def test_history_and_placement_queries_use_indexes(tmp_path: Path) -> None:
    conn = connect(tmp_path / "tap.db")

    def plan(sql: str, params: tuple[object, ...]) -> str:
        return " | ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    history = plan(
        "SELECT id FROM bets WHERE user_id = ? AND placed_at >= ? AND placed_at < ?"
        " ORDER BY placed_at DESC, id LIMIT ?",
        ("u", 0, 1, 10),
    )
    assert "SEARCH bets USING INDEX idx_bets_user_nonce (user_id=?)" in history
    replay = plan("SELECT id FROM bets WHERE user_id = ? AND nonce = ?", ("u", "n"))
    assert "USING INDEX idx_bets_user_nonce (user_id=? AND nonce=?)" in replay
    due = plan(
        "SELECT id FROM bets WHERE status = 'confirmed' AND col_end <= ? ORDER BY col_end, id",
        (1,),
    )
    assert "idx_bets_open" in due
