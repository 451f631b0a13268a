"""The SQLite ledger: which message went out, when, to whom, and how each attempt ended."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mailer.core.records import (
    BODY,
    DEFERRED,
    ENVELOPE,
    FINAL,
    INTERRUPTED,
    INTERRUPTED_EARLY,
    SENDING,
    SENT,
    SKIPPED,
    UNCERTAIN,
    Row,
    SentInvite,
)
from mailer.errors import LedgerError

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
    # 2: delivery state for SMTP: which recipients took it, which refused it, when to try again
    """
    ALTER TABLE messages ADD COLUMN delivered TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE messages ADD COLUMN refused TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE messages ADD COLUMN next_attempt_at TEXT;
    ALTER TABLE messages ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN phase TEXT;
    ALTER TABLE messages ADD COLUMN claimed_by TEXT;
    ALTER TABLE runs ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX messages_state ON messages (state)
    """,
    # 3: the meetup invitations each pair holds, so changes can be sent as updates or cancellations
    """
    CREATE TABLE invites (
        uid         TEXT PRIMARY KEY,
        cohort      TEXT NOT NULL,
        pair        TEXT NOT NULL,
        conference  TEXT NOT NULL,
        step        TEXT NOT NULL,
        sequence    INTEGER NOT NULL,
        method      TEXT NOT NULL,
        details     TEXT NOT NULL,
        message_key TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    )
    """,
    # 4: each pair's roster status as runs saw it, so an undated pause or withdrawal has a date
    """
    CREATE TABLE pair_status (
        cohort  TEXT NOT NULL,
        pair    TEXT NOT NULL,
        status  TEXT NOT NULL,
        since   TEXT NOT NULL,
        PRIMARY KEY (cohort, pair, since)
    )
    """,
    # 5: the inbox: each message read (by place, and by Message-ID and content for what was acted on), and
    # what it changed: suppressed addresses, soft bounces, RSVPs, signs of contact, check-ins, out-of-office notes
    """
    CREATE TABLE inbound (
        id           INTEGER PRIMARY KEY,
        mailbox      TEXT NOT NULL,
        uidvalidity  INTEGER NOT NULL,
        uid          TEXT NOT NULL,
        message_id   TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        kind         TEXT NOT NULL,
        outcome      TEXT NOT NULL,
        sent_at      TEXT,
        processed_at TEXT NOT NULL,
        moved        INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX inbound_place ON inbound (mailbox, uidvalidity, uid);
    CREATE UNIQUE INDEX inbound_content ON inbound (message_id, content_hash) WHERE outcome = 'acted';
    CREATE TABLE suppressions (
        address     TEXT PRIMARY KEY,
        reason      TEXT NOT NULL,
        detail      TEXT,
        message_key TEXT,
        since       TEXT NOT NULL,
        inbound_id  INTEGER NOT NULL
    );
    CREATE TABLE soft_bounces (
        address     TEXT NOT NULL,
        at          TEXT NOT NULL,
        detail      TEXT,
        message_key TEXT,
        inbound_id  INTEGER NOT NULL
    );
    CREATE INDEX soft_bounces_address ON soft_bounces (address);
    CREATE TABLE rsvps (
        uid         TEXT NOT NULL,
        address     TEXT NOT NULL,
        cohort      TEXT NOT NULL,
        pair        TEXT NOT NULL,
        conference  TEXT NOT NULL,
        partstat    TEXT NOT NULL,
        sequence    INTEGER NOT NULL,
        stale       INTEGER NOT NULL,
        comment     TEXT,
        at          TEXT NOT NULL,
        inbound_id  INTEGER NOT NULL
    );
    CREATE INDEX rsvps_uid ON rsvps (uid, address);
    CREATE TABLE contacts (
        cohort            TEXT NOT NULL,
        pair              TEXT NOT NULL,
        step              TEXT,
        address           TEXT NOT NULL,
        at                TEXT NOT NULL,
        partner_addressed INTEGER NOT NULL,
        message_key       TEXT,
        inbound_id        INTEGER NOT NULL
    );
    CREATE INDEX contacts_pair ON contacts (cohort, pair);
    CREATE TABLE checkins (
        cohort      TEXT NOT NULL,
        pair        TEXT NOT NULL,
        step        TEXT NOT NULL,
        answer      TEXT NOT NULL,
        address     TEXT,
        at          TEXT NOT NULL,
        inbound_id  INTEGER NOT NULL
    );
    CREATE TABLE out_of_office (
        cohort      TEXT NOT NULL,
        pair        TEXT NOT NULL,
        address     TEXT NOT NULL,
        subject     TEXT NOT NULL,
        at          TEXT NOT NULL,
        inbound_id  INTEGER NOT NULL
    )
    """,
]


@dataclass(frozen=True, slots=True)
class Claim:
    """A message this run now owns (state `sending`), with what earlier attempts already achieved."""

    key: str
    previous: str | None  # the state before the claim: None (new), deferred or uncertain
    delivered: tuple[str, ...]
    refused: dict[str, str]

    @property
    def is_resend(self) -> bool:
        return self.previous == UNCERTAIN


def _iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("ledger times must be aware")
    return dt.isoformat(timespec="seconds")


_CLAIM_NEW = """INSERT INTO messages (key, cohort, pair, step, role, state, phase, due_at, message_id, recipients,
                   subject, attempts, updated_at, claimed_by)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?) ON CONFLICT(key) DO NOTHING"""


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

    def settled_keys(self, now: datetime) -> set[str]:
        """Keys a run must not send now: final ones, deferred ones not yet due for another try,
        and uncertain ones already resent once."""
        rows = self.conn.execute(
            f"""SELECT key FROM messages WHERE state IN ({",".join("?" * len(FINAL))})
                OR state = ? OR (state = ? AND next_attempt_at > ?) OR (state = ? AND resends > 0)""",
            (*FINAL, SENDING, DEFERRED, _iso(now), UNCERTAIN))
        return {r[0] for r in rows}

    def retrying_keys(self) -> set[str]:
        """Messages already attempted: a retry is never dropped by the late window."""
        rows = self.conn.execute("SELECT key FROM messages WHERE state IN (?, ?)", (DEFERRED, UNCERTAIN))
        return {r[0] for r in rows}

    def recover(self, now: datetime, *, alive: Callable[[str | None], bool] = lambda owner: False) -> list[str]:
        """Messages a crashed run left `sending`: those whose body went out become `uncertain` (the
        server may have them); those stopped before the body are simply due again. Returns the former.

        `alive(owner)` tells a run still at work from a dead one; rows of live runs are left alone.
        """
        uncertain: list[str] = []
        with self.transaction() as conn:
            rows = conn.execute("SELECT key, phase, claimed_by FROM messages WHERE state = ?", (SENDING,)).fetchall()
            for key, phase, owner in rows:
                if alive(owner):
                    continue
                if phase == BODY:
                    uncertain.append(key)
                    conn.execute("UPDATE messages SET state = ?, reason = ?, updated_at = ? WHERE key = ?",
                                 (UNCERTAIN, INTERRUPTED, _iso(now), key))
                else:
                    conn.execute("UPDATE messages SET state = ?, reason = ?, updated_at = ?, next_attempt_at = ? "
                                 "WHERE key = ?", (DEFERRED, INTERRUPTED_EARLY, _iso(now), _iso(now), key))
        return uncertain

    def mark_body(self, key: str) -> None:
        """Committed just before the message body goes out: from here on a crash is uncertain.
        (One statement: in autocommit mode it is its own transaction.)"""
        self.conn.execute("UPDATE messages SET phase = ? WHERE key = ?", (BODY, key))

    def claim(self, *, key: str, cohort: str, pair: str, step: str, role: str | None, due_at: datetime,
              now: datetime, message_id: str, recipients: Iterable[str], subject: str,
              owner: str | None = None) -> Claim | None:
        """Take a message for this run inside BEGIN IMMEDIATE; None when it is not ours to send."""
        values = (key, cohort, pair, step, role, SENDING, ENVELOPE, _iso(due_at), message_id,
                  json.dumps(list(recipients), ensure_ascii=False), subject, _iso(now), owner)
        with self.transaction() as conn:
            # the common case, a message never tried: one INSERT that does nothing if the key exists
            if conn.execute(_CLAIM_NEW, values).rowcount == 1:
                return Claim(key, None, (), {})
            row = conn.execute("SELECT state, delivered, refused, resends FROM messages WHERE key = ?",
                               (key,)).fetchone()
            if not (row["state"] == DEFERRED or (row["state"] == UNCERTAIN and row["resends"] == 0)):
                return None
            # an uncertain message's one resend is counted as it is claimed, so a crash during the
            # resend can never lead to a third copy
            conn.execute(
                """UPDATE messages SET state=?, phase=?, message_id=?, recipients=?, subject=?, updated_at=?,
                       claimed_by=?, resends=resends + (state = 'uncertain') WHERE key=?""",
                (SENDING, ENVELOPE, message_id, values[9], subject, _iso(now), owner, key))
        return Claim(key, row["state"], tuple(json.loads(row["delivered"])), json.loads(row["refused"]))

    def finish(self, claim: Claim, *, state: str, now: datetime, attempts: int, delivered: Iterable[str] = (),
               refused: dict[str, str] | None = None, reason: str | None = None, location: str | None = None,
               next_attempt_at: datetime | None = None) -> None:
        """Record how a claimed message ended; delivered and refused recipients accumulate."""
        all_delivered = [*claim.delivered, *(r for r in delivered if r not in claim.delivered)]
        all_refused = {**claim.refused, **(refused or {})}
        # one statement: in autocommit mode it is its own transaction
        self.conn.execute(
            """UPDATE messages SET state=?, phase=NULL, reason=?, location=?, attempts=attempts+?, delivered=?,
                   refused=?, next_attempt_at=?, updated_at=?, sent_at=CASE WHEN ? THEN ? ELSE sent_at END
               WHERE key=?""",
            (state, reason, location, attempts, json.dumps(all_delivered), json.dumps(all_refused),
             _iso(next_attempt_at) if next_attempt_at else None,
             _iso(now), state == SENT, _iso(now), claim.key))

    def skip(self, *, key: str, cohort: str, pair: str, step: str, role: str | None, due_at: datetime,
             now: datetime, reason: str) -> None:
        """Record a message the year's rules say is not sent; never overwrites an attempted one."""
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO messages (key, cohort, pair, step, role, state, due_at, reason, updated_at)
                   VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO NOTHING""",
                (key, cohort, pair, step, role, SKIPPED, _iso(due_at), reason, _iso(now)))

    def record_invite(self, *, uid: str, cohort: str, pair: str, conference: str, step: str, sequence: int,
                      method: str, details: dict[str, Any], message_key: str, now: datetime) -> None:
        """Remember the latest version of an invitation a pair was sent (never an older one)."""
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO invites VALUES (?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(uid) DO UPDATE SET sequence=excluded.sequence, method=excluded.method,
                       details=excluded.details, message_key=excluded.message_key, updated_at=excluded.updated_at
                   WHERE excluded.sequence >= invites.sequence""",
                (uid, cohort, pair, conference, step, sequence, method, json.dumps(details, sort_keys=True),
                 message_key, _iso(now)))

    def sent_invites(self) -> list[SentInvite]:
        return [SentInvite(uid=r["uid"], cohort=r["cohort"], pair=r["pair"], conference=r["conference"],
                           step=r["step"], sequence=r["sequence"], method=r["method"],
                           details=json.loads(r["details"]))
                for r in self.conn.execute("SELECT * FROM invites ORDER BY uid")]

    def observe_statuses(self, seen: Iterable[tuple[str, str, str]], now: datetime) -> dict[
            tuple[str, str], list[tuple[str, datetime]]]:
        """Record each pair's status where it differs from the last one seen; return every pair's
        history, oldest first. The roster says only how a pair is now; this says since when."""
        history = self.status_history()
        changed = [(c, p, s) for c, p, s in seen if not history.get((c, p)) or history[(c, p)][-1][0] != s]
        if changed:
            with self.transaction() as conn:
                conn.executemany("INSERT OR IGNORE INTO pair_status VALUES (?, ?, ?, ?)",
                                 [(c, p, s, _iso(now)) for c, p, s in changed])
            for c, p, s in changed:
                history.setdefault((c, p), []).append((s, now))
        return history

    def status_history(self) -> dict[tuple[str, str], list[tuple[str, datetime]]]:
        history: dict[tuple[str, str], list[tuple[str, datetime]]] = {}
        for c, p, s, since in self.conn.execute("SELECT cohort, pair, status, since FROM pair_status ORDER BY since"):
            history.setdefault((c, p), []).append((s, datetime.fromisoformat(since)))
        return history

    def get_meta(self, name: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, name: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                         (name, json.dumps(value)))

    def next_retry(self) -> datetime | None:
        """The earliest time a deferred message may be tried again."""
        row = self.conn.execute("SELECT MIN(next_attempt_at) FROM messages WHERE state = ?", (DEFERRED,)).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def has_unfinished(self) -> bool:
        """A `sending` row left by a crash, or an uncertain message still owed its one resend."""
        row = self.conn.execute("SELECT 1 FROM messages WHERE state = ? OR (state = ? AND resends = 0) LIMIT 1",
                                (SENDING, UNCERTAIN)).fetchone()
        return row is not None

    def start_run(self, now: datetime) -> int:
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO runs (started_at) VALUES (?)", (_iso(now),))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, now: datetime, *, sent: int, skipped: int, failed: int,
                   deferred: int = 0, uncertain: int = 0) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET finished_at=?, sent=?, skipped=?, failed=?, deferred=?, uncertain=? "
                         "WHERE id=?", (_iso(now), sent, skipped, failed, deferred, uncertain, run_id))

    def rows_in_state(self, state: str) -> list[Row]:
        """Only the rows in one state (the digest's uncertain messages), not the whole ledger."""
        return [_row(r) for r in self.conn.execute("SELECT * FROM messages WHERE state = ? ORDER BY due_at, key",
                                                   (state,))]

    def rows(self, cohort: str | None = None) -> list[Row]:
        sql = "SELECT * FROM messages" + (" WHERE cohort=?" if cohort else "") + " ORDER BY due_at, key"
        return [_row(r) for r in self.conn.execute(sql, (cohort,) if cohort else ())]


def _row(r: sqlite3.Row) -> Row:
    return Row(key=r["key"], cohort=r["cohort"], pair=r["pair"], step=r["step"], role=r["role"],
               state=r["state"], due_at=r["due_at"], message_id=r["message_id"],
               recipients=json.loads(r["recipients"] or "[]"), subject=r["subject"],
               reason=r["reason"], updated_at=r["updated_at"], sent_at=r["sent_at"], attempts=r["attempts"],
               delivered=tuple(json.loads(r["delivered"])), refused=json.loads(r["refused"]), resends=r["resends"])
