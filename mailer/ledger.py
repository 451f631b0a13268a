"""The SQLite ledger: which message went out, when, to whom, and how each attempt ended."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mailer.errors import LedgerError

# States a message can be in. Settled ones are never sent again by a plain run.
SENT, SKIPPED, FAILED = "sent", "skipped", "failed"
SETTLED = (SENT, SKIPPED, FAILED)

_MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE messages (
        key         TEXT PRIMARY KEY,
        cohort      TEXT NOT NULL,
        pair        TEXT NOT NULL,
        step        TEXT NOT NULL,
        role        TEXT,
        state       TEXT NOT NULL,
        due_at      TEXT NOT NULL,
        message_id  TEXT,
        recipients  TEXT,
        subject     TEXT,
        reason      TEXT,
        location    TEXT,
        attempts    INTEGER NOT NULL DEFAULT 0,
        updated_at  TEXT NOT NULL,
        sent_at     TEXT
    );
    CREATE INDEX messages_cohort_step ON messages (cohort, step);
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        sent        INTEGER NOT NULL DEFAULT 0,
        skipped     INTEGER NOT NULL DEFAULT 0,
        failed      INTEGER NOT NULL DEFAULT 0
    );
    """,
]


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    cohort: str
    pair: str
    step: str
    role: str | None
    state: str
    due_at: str
    message_id: str | None
    recipients: list[str]
    subject: str | None
    reason: str | None
    updated_at: str
    sent_at: str | None


def _iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("ledger times must be aware")
    return dt.isoformat(timespec="seconds")


class Ledger:
    """One SQLite file, WAL mode, owner-only; schema changes are numbered migrations."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Ledger:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # create it owner-only before SQLite does, so no other user can ever read it
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            ledger = cls(conn, path)
            ledger._migrate()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{path}: cannot open the ledger: {exc}") from None
        except OSError as exc:
            raise LedgerError(f"{path}: cannot create the ledger: {exc.strerror}") from None
        return ledger

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise LedgerError(f"{self.path}: written by a newer mentor-mailer (schema {version}); upgrade first")
        for number, script in enumerate(_MIGRATIONS[version:], version + 1):
            with self.transaction():
                for statement in filter(str.strip, script.split(";")):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_hex(32),))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock is taken up front, so two runs never interleave."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @property
    def secret(self) -> bytes:
        row = self.conn.execute("SELECT value FROM meta WHERE name='secret'").fetchone()
        return bytes.fromhex(row[0])

    def settled_keys(self) -> set[str]:
        marks = ",".join("?" * len(SETTLED))
        return {r[0] for r in self.conn.execute(f"SELECT key FROM messages WHERE state IN ({marks})", SETTLED)}

    def record(self, *, key: str, cohort: str, pair: str, step: str, role: str | None, state: str,
               due_at: datetime, now: datetime, message_id: str | None = None,
               recipients: Iterable[str] = (), subject: str | None = None, reason: str | None = None,
               location: str | None = None) -> None:
        """Write a message's outcome; an existing row for the key is updated in place."""
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO messages (key, cohort, pair, step, role, state, due_at, message_id,
                       recipients, subject, reason, location, attempts, updated_at, sent_at)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1,?,?)
                   ON CONFLICT(key) DO UPDATE SET state=excluded.state, message_id=excluded.message_id,
                       recipients=excluded.recipients, subject=excluded.subject, reason=excluded.reason,
                       location=excluded.location, attempts=attempts+1, updated_at=excluded.updated_at,
                       sent_at=excluded.sent_at""",
                (key, cohort, pair, step, role, state, _iso(due_at), message_id,
                 json.dumps(list(recipients), ensure_ascii=False), subject, reason, location,
                 _iso(now), _iso(now) if state == SENT else None),
            )

    def start_run(self, now: datetime) -> int:
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO runs (started_at) VALUES (?)", (_iso(now),))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, now: datetime, *, sent: int, skipped: int, failed: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET finished_at=?, sent=?, skipped=?, failed=? WHERE id=?",
                         (_iso(now), sent, skipped, failed, run_id))

    def rows(self, cohort: str | None = None) -> list[Row]:
        sql = "SELECT * FROM messages" + (" WHERE cohort=?" if cohort else "") + " ORDER BY due_at, key"
        return [_row(r) for r in self.conn.execute(sql, (cohort,) if cohort else ())]

    def last_run(self) -> dict[str, Any] | None:
        r = self.conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return dict(r) if r else None


def _row(r: sqlite3.Row) -> Row:
    return Row(key=r["key"], cohort=r["cohort"], pair=r["pair"], step=r["step"], role=r["role"],
               state=r["state"], due_at=r["due_at"], message_id=r["message_id"],
               recipients=json.loads(r["recipients"] or "[]"), subject=r["subject"],
               reason=r["reason"], updated_at=r["updated_at"], sent_at=r["sent_at"])
