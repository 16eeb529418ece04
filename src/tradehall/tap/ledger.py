"""The money path in SQL: users, bet batches, deposits, payouts, refunds, queries and audit.

Every function takes a ``sqlite3.Connection`` and runs synchronously: writers are called on the
single writer thread (:meth:`~tradehall.tap.db.Database.write`), readers on the reader thread.

:func:`place_batch` is the Part B §7 flush with the C-5/C-7/C-17 fixes: one ``BEGIN IMMEDIATE``
per batch and a ``SAVEPOINT`` per bet; a repeated ``(user, nonce)`` returns the stored result; the
debit is conditional (``balance >= amount``), so no interleaving can overdraw; a second bet on the
same ``(user, cell)`` violates the unique index and only that bet is rolled back.

Every balance change writes a ledger row in the same transaction carrying ``balance_after``
(ADR-010). :func:`integrity_check` is the daily drift query plus the chain check.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from enum import StrEnum

import msgspec

from tradehall.tap.ids import new_id

__all__ = [
    "BetRecord",
    "BetRequest",
    "BetResult",
    "Drift",
    "LedgerRow",
    "Placement",
    "Settlement",
    "UserRecord",
    "apply_resolution",
    "apply_resolutions",
    "deposit",
    "due_bets",
    "ensure_user",
    "get_bet",
    "get_user",
    "insert_ticks",
    "integrity_check",
    "list_bets",
    "list_ledger",
    "place_batch",
    "prune_ticks",
    "stored_result",
    "ticks_between",
    "withdraw",
]


class Placement(StrEnum):
    ACCEPTED = "accepted"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    DUPLICATE_BET = "duplicate_bet"
    ERROR = "error"


class BetRequest(msgspec.Struct, frozen=True):
    bet_id: str
    user_id: str
    cell_id: str
    nonce: str
    amount: int
    rate: str
    col_start: int
    col_end: int
    lower: int
    upper: int


class BetResult(msgspec.Struct, frozen=True):
    """What a placement came to; ``bet_id`` is the stored bet's id (the original on a replay)."""

    outcome: Placement
    bet_id: str
    new_balance: int | None
    replayed: bool = False


class UserRecord(msgspec.Struct, frozen=True):
    id: str
    wallet: str
    balance: int


class BetRecord(msgspec.Struct, frozen=True):
    bet_id: str
    user_id: str
    cell_id: str
    nonce: str
    amount: int
    rate: str
    status: str
    col_start: int
    col_end: int
    lower: int
    upper: int
    placed_at: int
    resolved_at: int | None
    payout: int | None
    resolution_price: int | None
    resolution_tick_ts: int | None
    ticks_examined: int | None


class LedgerRow(msgspec.Struct, frozen=True):
    id: str
    amount: int
    balance_after: int
    ref_type: str
    ref_id: str
    created_at: int


class Drift(msgspec.Struct, frozen=True):
    user_id: str
    balance: int
    ledger_sum: int
    drift: int
    chain_ok: bool


_BET_COLUMNS = (
    "id, user_id, cell_id, nonce, amount, reward_rate, status, col_start, col_end, price_lower,"
    " price_upper, placed_at, resolved_at, payout_amount, resolution_price, resolution_tick_ts,"
    " ticks_examined"
)


def ensure_user(conn: sqlite3.Connection, wallet: str, now_ms: int) -> UserRecord:
    """Fetch the user with ``wallet`` or create it with balance 0 (login, FR-10)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT OR IGNORE INTO users (id, wallet_address, balance, created_at, updated_at)"
            " VALUES (?, ?, 0, ?, ?)",
            (new_id(), wallet, now_ms, now_ms),
        )
        row = conn.execute(
            "SELECT id, wallet_address, balance FROM users WHERE wallet_address = ?", (wallet,)
        ).fetchone()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return UserRecord(row[0], row[1], row[2])


def deposit(
    conn: sqlite3.Connection, wallet: str, amount: int, now_ms: int, deposit_id: str
) -> UserRecord:
    """Credit ``amount`` to ``wallet`` (creating the user) with a DEPOSIT ledger row (C-12)."""
    if amount <= 0:
        raise ValueError("deposit amount must be positive")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT OR IGNORE INTO users (id, wallet_address, balance, created_at, updated_at)"
            " VALUES (?, ?, 0, ?, ?)",
            (new_id(), wallet, now_ms, now_ms),
        )
        user_id, balance = conn.execute(
            "UPDATE users SET balance = balance + ?, version = version + 1, updated_at = ?"
            " WHERE wallet_address = ? RETURNING id, balance",
            (amount, now_ms, wallet),
        ).fetchone()
        conn.execute(
            "INSERT INTO transaction_ledger"
            " (id, user_id, amount, balance_after, ref_type, ref_id, metadata, created_at)"
            " VALUES (?, ?, ?, ?, 'DEPOSIT', ?, NULL, ?)",
            (new_id(), user_id, amount, balance, deposit_id, now_ms),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return UserRecord(user_id, wallet, balance)


def withdraw(
    conn: sqlite3.Connection, wallet: str, amount: int, now_ms: int, withdrawal_id: str
) -> UserRecord | None:
    """Debit ``amount`` from ``wallet`` with a WITHDRAWAL ledger row (C-12).

    The debit is conditional like a bet's: ``None`` (and nothing written) when the balance is
    lower than ``amount``; :class:`LookupError` for an unknown wallet.
    """
    if amount <= 0:
        raise ValueError("withdrawal amount must be positive")
    conn.execute("BEGIN IMMEDIATE")
    try:
        user = conn.execute("SELECT id FROM users WHERE wallet_address = ?", (wallet,)).fetchone()
        if user is None:
            raise LookupError(wallet)
        row = conn.execute(
            "UPDATE users SET balance = balance - ?, version = version + 1, updated_at = ?"
            " WHERE id = ? AND balance >= ? RETURNING balance",
            (amount, now_ms, user[0], amount),
        ).fetchone()
        if row is not None:
            conn.execute(
                "INSERT INTO transaction_ledger"
                " (id, user_id, amount, balance_after, ref_type, ref_id, metadata, created_at)"
                " VALUES (?, ?, ?, ?, 'WITHDRAWAL', ?, NULL, ?)",
                (new_id(), user[0], -amount, row[0], withdrawal_id, now_ms),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return None if row is None else UserRecord(user[0], wallet, int(row[0]))


def stored_result(conn: sqlite3.Connection, user_id: str, nonce: str) -> BetResult | None:
    row = conn.execute(
        "SELECT b.id, b.status, l.balance_after FROM bets b LEFT JOIN transaction_ledger l"
        " ON l.ref_type = 'BET' AND l.ref_id = b.id WHERE b.user_id = ? AND b.nonce = ?",
        (user_id, nonce),
    ).fetchone()
    if row is None:
        return None
    bet_id, status, balance_after = row
    if status == "insufficient_funds":
        return BetResult(Placement.INSUFFICIENT_FUNDS, bet_id, None, replayed=True)
    return BetResult(Placement.ACCEPTED, bet_id, balance_after, replayed=True)


def _place_one(conn: sqlite3.Connection, bet: BetRequest, now_ms: int) -> BetResult:
    # A repeated nonce is caught by the unique (user, nonce) index on the bet insert; the
    # savepoint then undoes the debit and the caller answers with the stored result.
    row = conn.execute(
        "UPDATE users SET balance = balance - ?, version = version + 1, updated_at = ?"
        " WHERE id = ? AND balance >= ? RETURNING balance",
        (bet.amount, now_ms, bet.user_id, bet.amount),
    ).fetchone()
    status = "confirmed" if row is not None else "insufficient_funds"
    conn.execute(
        f"INSERT INTO bets ({_BET_COLUMNS}) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL)",
        (
            bet.bet_id,
            bet.user_id,
            bet.cell_id,
            bet.nonce,
            bet.amount,
            bet.rate,
            status,
            bet.col_start,
            bet.col_end,
            bet.lower,
            bet.upper,
            now_ms,
        ),
    )
    if row is None:
        return BetResult(Placement.INSUFFICIENT_FUNDS, bet.bet_id, None)
    new_balance = int(row[0])
    conn.execute(
        "INSERT INTO transaction_ledger"
        " (id, user_id, amount, balance_after, ref_type, ref_id, metadata, created_at)"
        " VALUES (?, ?, ?, ?, 'BET', ?, ?, ?)",
        (
            new_id(),
            bet.user_id,
            -bet.amount,
            new_balance,
            bet.bet_id,
            f'{{"cell_id": "{bet.cell_id}", "timestamp": {now_ms}}}',
            now_ms,
        ),
    )
    return BetResult(Placement.ACCEPTED, bet.bet_id, new_balance)


def place_batch(
    conn: sqlite3.Connection, bets: Sequence[BetRequest], now_ms: int
) -> list[BetResult]:
    """Place a batch in one transaction, a savepoint per bet; a failed commit fails them all."""
    results: list[BetResult] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for bet in bets:
            conn.execute("SAVEPOINT bet")
            try:
                result = _place_one(conn, bet, now_ms)
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK TO bet")
                dup = "bets.user_id, bets.cell_id" in str(exc)
                stored = stored_result(conn, bet.user_id, bet.nonce)
                if stored is not None:
                    result = stored
                else:
                    outcome = Placement.DUPLICATE_BET if dup else Placement.ERROR
                    result = BetResult(outcome, bet.bet_id, None)
            except sqlite3.Error:
                conn.execute("ROLLBACK TO bet")
                result = BetResult(Placement.ERROR, bet.bet_id, None)
            conn.execute("RELEASE bet")
            results.append(result)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


def due_bets(conn: sqlite3.Connection, before_col_end: int, limit: int) -> list[BetRecord]:
    """Confirmed bets whose column ended at or before ``before_col_end`` (unix s)."""
    rows = conn.execute(
        f"SELECT {_BET_COLUMNS} FROM bets WHERE status = 'confirmed' AND col_end <= ?"
        " ORDER BY col_end, id LIMIT ?",
        (before_col_end, limit),
    ).fetchall()
    return [BetRecord(*r) for r in rows]


class Settlement(msgspec.Struct, frozen=True):
    """How one confirmed bet resolves: its new status and what is credited (0: nothing)."""

    bet_id: str
    status: str
    credit: int
    credit_type: str
    resolution_price: int | None
    resolution_tick_ts: int | None
    ticks_examined: int


def apply_resolution(
    conn: sqlite3.Connection,
    bet_id: str,
    *,
    status: str,
    credit: int,
    credit_type: str,
    resolution_price: int | None,
    resolution_tick_ts: int | None,
    ticks_examined: int,
    now_ms: int,
) -> int | None:
    """Settle one confirmed bet at most once (C-20); return the new balance if credited."""
    settlement = Settlement(
        bet_id, status, credit, credit_type, resolution_price, resolution_tick_ts, ticks_examined
    )
    return apply_resolutions(conn, [settlement], now_ms)[0]


def apply_resolutions(
    conn: sqlite3.Connection, settlements: Sequence[Settlement], now_ms: int
) -> list[int | None]:
    """Settle confirmed bets, each at most once (C-20), in one transaction.

    One commit (one fsync) for the lot: the resolver settles a whole column's bets at once, and
    a transaction per bet made the single writer spend hundreds of milliseconds on fsyncs while
    bet batches waited behind it. A failure rolls all of them back; they stay confirmed and the
    next pass settles them. Returns each bet's new balance if credited, else ``None``.
    """
    balances: list[int | None] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for item in settlements:
            balances.append(_settle_one(conn, item, now_ms))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return balances


def _settle_one(conn: sqlite3.Connection, item: Settlement, now_ms: int) -> int | None:
    row = conn.execute(
        "UPDATE bets SET status = ?, resolved_at = ?, payout_amount = ?,"
        " resolution_price = ?, resolution_tick_ts = ?, ticks_examined = ?"
        " WHERE id = ? AND status = 'confirmed' RETURNING user_id",
        (
            item.status,
            now_ms,
            item.credit if item.status == "won" else 0,
            item.resolution_price,
            item.resolution_tick_ts,
            item.ticks_examined,
            item.bet_id,
        ),
    ).fetchone()
    if row is None or item.credit <= 0:
        return None
    user_id = row[0]
    new_balance: int = conn.execute(
        "UPDATE users SET balance = balance + ?, version = version + 1, updated_at = ?"
        " WHERE id = ? RETURNING balance",
        (item.credit, now_ms, user_id),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO transaction_ledger"
        " (id, user_id, amount, balance_after, ref_type, ref_id, metadata, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
        (new_id(), user_id, item.credit, new_balance, item.credit_type, item.bet_id, now_ms),
    )
    return new_balance


def get_user(conn: sqlite3.Connection, user_id: str) -> UserRecord | None:
    row = conn.execute(
        "SELECT id, wallet_address, balance FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    return None if row is None else UserRecord(row[0], row[1], row[2])


def get_bet(conn: sqlite3.Connection, bet_id: str) -> BetRecord | None:
    row = conn.execute(f"SELECT {_BET_COLUMNS} FROM bets WHERE id = ?", (bet_id,)).fetchone()
    return None if row is None else BetRecord(*row)


def list_bets(
    conn: sqlite3.Connection,
    user_id: str,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    limit: int = 100,
) -> list[BetRecord]:
    rows = conn.execute(
        f"SELECT {_BET_COLUMNS} FROM bets WHERE user_id = ? AND placed_at >= ? AND placed_at < ?"
        " ORDER BY placed_at DESC, id LIMIT ?",
        (user_id, from_ms or 0, to_ms or 2**62, limit),
    ).fetchall()
    return [BetRecord(*r) for r in rows]


def list_ledger(conn: sqlite3.Connection, user_id: str, limit: int = 50) -> list[LedgerRow]:
    rows = conn.execute(
        "SELECT id, amount, balance_after, ref_type, ref_id, created_at FROM transaction_ledger"
        " WHERE user_id = ? ORDER BY rowid DESC LIMIT ?",
        (user_id, limit),
    ).fetchall()
    return [LedgerRow(*r) for r in rows]


def integrity_check(conn: sqlite3.Connection) -> list[Drift]:
    """Users whose balance differs from their ledger sum, or whose balance_after chain breaks."""
    sums = {
        user_id: (balance, total)
        for user_id, balance, total in conn.execute(
            "SELECT u.id, u.balance, COALESCE(SUM(l.amount), 0) FROM users u"
            " LEFT JOIN transaction_ledger l ON l.user_id = u.id GROUP BY u.id"
        )
    }
    broken: set[str] = set()
    previous: dict[str, int] = {}
    for user_id, amount, balance_after, ref_type in conn.execute(
        "SELECT user_id, amount, balance_after, ref_type FROM transaction_ledger"
        " ORDER BY CASE ref_type WHEN 'OPENING_BALANCE' THEN 0 ELSE 1 END, rowid"
    ):
        before = 0 if ref_type == "OPENING_BALANCE" else previous.get(user_id, 0)
        if balance_after - amount != before:
            broken.add(user_id)
        previous[user_id] = balance_after
    return [
        Drift(user_id, balance, total, balance - total, user_id not in broken)
        for user_id, (balance, total) in sorted(sums.items())
        if balance != total or user_id in broken
    ]


def insert_ticks(conn: sqlite3.Connection, ticks: Sequence[tuple[int, int]]) -> None:
    """Append ``(ts_ms, price_cents)`` ticks in one transaction."""
    if not ticks:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("INSERT INTO prices (ts_ms, price) VALUES (?, ?)", ticks)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def prune_ticks(conn: sqlite3.Connection, before_ms: int) -> int:
    """Drop ticks older than ``before_ms`` (7-day retention); returns how many."""
    cursor = conn.execute("DELETE FROM prices WHERE ts_ms < ?", (before_ms,))
    conn.execute("PRAGMA incremental_vacuum(1000)")
    return cursor.rowcount


def ticks_between(
    conn: sqlite3.Connection, start_ms: int, end_ms: int
) -> tuple[list[tuple[int, int]], int | None]:
    """Ticks with ``start_ms <= ts < end_ms`` and the time of the last tick before ``start_ms``."""
    rows = conn.execute(
        "SELECT ts_ms, price FROM prices WHERE ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms",
        (start_ms, end_ms),
    ).fetchall()
    prev = conn.execute("SELECT MAX(ts_ms) FROM prices WHERE ts_ms < ?", (start_ms,)).fetchone()
    return [(int(t), int(p)) for t, p in rows], (None if prev[0] is None else int(prev[0]))
