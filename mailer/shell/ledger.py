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

from mailer.core.keys import parse
from mailer.core.records import (
    BODY,
    DEFERRED,
    ENVELOPE,
    INTERRUPTED,
    INTERRUPTED_EARLY,
    OUTBOX,
    SENDING,
    SENT,
    SKIPPED,
    SMTP,
    TRIAL,
    UNCERTAIN,
    LedgerView,
)
from mailer.errors import LedgerError
from mailer.shell.ledger_errors import GuardedConnection, explain
from mailer.shell.ledger_reads import Reads, iso
from mailer.shell.migrations import MIGRATIONS


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


_CLAIM_NEW = """INSERT INTO messages (key, cohort, pair, step, role, state, phase, due_at, message_id, recipients,
                   subject, attempts, updated_at, claimed_by)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?) ON CONFLICT(key) DO NOTHING"""


class Ledger(Reads):
    """One SQLite file, WAL mode, owner-only; schema changes are numbered migrations."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = GuardedConnection(conn, path)
        self.path = path

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> Ledger:
        """The ledger at `path`, created owner-only if missing; `readonly` opens it for reading only (mode=ro),
        so a query works on a ledger this user may not write, and writes nothing."""
        path = Path(path)
        try:
            if readonly:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
                conn.row_factory = sqlite3.Row
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == len(MIGRATIONS):
                    return cls(conn, path)
                conn.close()  # an older schema: it is brought up to date first (that writes)
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
        except sqlite3.Error as exc:
            raise explain(path, exc) from None
        except OSError as exc:
            raise LedgerError(f"ledger {path}: cannot create it: {exc.strerror}; its folder must be writable "
                              "by the user running mentor-mailer") from None
        return ledger

    @classmethod
    def view(cls, path: Path, now: datetime, *, channel: str = OUTBOX, catch_up: bool = False) -> LedgerView:
        """A snapshot for a command that only reads: an empty one when there is no ledger yet."""
        if not Path(path).exists():
            return LedgerView()
        with cls.open(path, readonly=True) as ledger:
            return ledger.snapshot(now, channel=channel, catch_up=catch_up)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise LedgerError(f"{self.path}: written by a newer mentor-mailer (schema {version}); upgrade first")
        for number, (_, statements) in enumerate(MIGRATIONS[version:], version + 1):
            with self.transaction():
                for statement in statements:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_hex(32),))

    @contextmanager
    def transaction(self) -> Iterator[GuardedConnection]:
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

    def snapshot(self, now: datetime, *, channel: str = OUTBOX, catch_up: bool = False) -> LedgerView:
        """Everything a plan needs of the ledger at `now`, read in one go, for a run over `channel`."""
        return LedgerView(settled=frozenset(self.settled_keys(now, channel=channel, catch_up=catch_up)),
                          retrying=frozenset(self.retrying_keys()), invites=tuple(self.sent_invites()),
                          history=self.status_history(),
                          trial=frozenset(self.trial_keys()) if channel == SMTP else frozenset(),
                          suppressed=self.suppressed())

    def move_invite(self, old_key: str, *, cohort: str, pair: str, step: str) -> None:
        """A held invitation follows its pair to a new id or cohort, keeping its UID."""
        k = parse(old_key)
        with self.transaction() as conn:
            conn.execute("UPDATE invites SET cohort = ?, pair = ?, step = ? WHERE cohort = ? AND pair = ? AND step = ?",
                         (cohort, pair, step, k.cohort, k.pair, k.step))

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the ledger file: a lost -wal then costs only what came after."""
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def recover(self, now: datetime) -> list[str]:
        """Messages a crashed run left `sending`: those whose body went out become `uncertain` (the
        server may have them); those stopped before the body are simply due again. Returns the former.

        Called only under the run lock, so every `sending` row belongs to a run that is gone.
        """
        uncertain: list[str] = []
        with self.transaction() as conn:
            rows = conn.execute("SELECT key, phase FROM messages WHERE state = ?", (SENDING,)).fetchall()
            for key, phase in rows:
                if phase == BODY:
                    uncertain.append(key)
                    conn.execute("UPDATE messages SET state = ?, reason = ?, updated_at = ? WHERE key = ?",
                                 (UNCERTAIN, INTERRUPTED, iso(now), key))
                else:
                    conn.execute("UPDATE messages SET state = ?, reason = ?, updated_at = ?, next_attempt_at = ? "
                                 "WHERE key = ?", (DEFERRED, INTERRUPTED_EARLY, iso(now), iso(now), key))
        return uncertain

    def mark_body(self, key: str) -> None:
        """Committed just before the message body goes out: from here on a crash is uncertain.
        (One statement: in autocommit mode it is its own transaction.)"""
        self.conn.execute("UPDATE messages SET phase = ? WHERE key = ?", (BODY, key))

    def claim(self, *, key: str, cohort: str, pair: str, step: str, role: str | None, due_at: datetime,
              now: datetime, message_id: str, recipients: Iterable[str], subject: str,
              owner: str | None = None, channel: str = OUTBOX, catch_up: bool = False) -> Claim | None:
        """Take a message for this run inside BEGIN IMMEDIATE; None when it is not ours to send.

        Besides a new message, a deferred one and an uncertain one not yet resent, a run over SMTP takes a
        message that only reached the outbox, and a catch-up run one skipped for lateness alone: neither
        reached anyone, so what they "delivered" starts afresh."""
        values = (key, cohort, pair, step, role, SENDING, ENVELOPE, iso(due_at), message_id,
                  json.dumps(list(recipients), ensure_ascii=False), subject, iso(now), owner)
        with self.transaction() as conn:
            # the common case, a message never tried: one INSERT that does nothing if the key exists
            if conn.execute(_CLAIM_NEW, values).rowcount == 1:
                return Claim(key, None, (), {})
            row = conn.execute("SELECT state, delivered, refused, resends, channel, late FROM messages WHERE key = ?",
                               (key,)).fetchone()
            state = row["state"]
            fresh = ((channel == SMTP and state == SENT and row["channel"] == OUTBOX)
                     or (catch_up and state == SKIPPED and row["late"]))
            if not (fresh or state == DEFERRED or (state == UNCERTAIN and row["resends"] == 0)):
                return None
            # an uncertain message's one resend is counted as it is claimed, so a crash during the
            # resend can never lead to a third copy
            conn.execute(
                """UPDATE messages SET state=?, phase=?, message_id=?, recipients=?, subject=?, updated_at=?,
                       claimed_by=?, resends=resends + (state = 'uncertain'), reason=CASE WHEN ? THEN NULL
                       ELSE reason END, delivered=CASE WHEN ? THEN '[]' ELSE delivered END,
                       refused=CASE WHEN ? THEN '{}' ELSE refused END, late=0 WHERE key=?""",
                (SENDING, ENVELOPE, message_id, values[9], subject, iso(now), owner, fresh, fresh, fresh, key))
        if fresh:
            return Claim(key, TRIAL if state == SENT else SKIPPED, (), {})
        return Claim(key, state, tuple(json.loads(row["delivered"])), json.loads(row["refused"]))

    def finish(self, claim: Claim, *, state: str, now: datetime, attempts: int, delivered: Iterable[str] = (),
               refused: dict[str, str] | None = None, reason: str | None = None, location: str | None = None,
               next_attempt_at: datetime | None = None, channel: str | None = None,
               people: Iterable[str] = ()) -> None:
        """Record how a claimed message ended; delivered and refused recipients accumulate."""
        all_delivered = [*claim.delivered, *(r for r in delivered if r not in claim.delivered)]
        all_refused = {**claim.refused, **(refused or {})}
        # one statement: in autocommit mode it is its own transaction
        self.conn.execute(
            """UPDATE messages SET state=?, phase=NULL, reason=?, location=?, attempts=attempts+?, delivered=?,
                   refused=?, next_attempt_at=?, updated_at=?, sent_at=CASE WHEN ? THEN ? ELSE sent_at END,
                   channel=COALESCE(?, channel)
               WHERE key=?""",
            (state, reason, location, attempts, json.dumps(all_delivered), json.dumps(all_refused),
             iso(next_attempt_at) if next_attempt_at else None,
             iso(now), state == SENT, iso(now), channel, claim.key))
        if state in (SENT, UNCERTAIN):  # who has (or may have) it, by address: renames cannot hide it
            self.conn.execute(
                """INSERT OR IGNORE INTO deliveries SELECT lower(j.value), m.step, m.key, ? FROM messages m,
                       json_each(CASE WHEN m.state = 'sent' THEN m.delivered ELSE m.recipients END) j
                   WHERE m.key = ?""", (",".join(sorted(p.lower() for p in people)) or None, claim.key))

    def skip(self, *, key: str, cohort: str, pair: str, step: str, role: str | None, due_at: datetime,
             now: datetime, reason: str, late: bool = False, live: bool = False) -> None:
        """Record a message the year's rules say is not sent; never overwrites an attempted one, except, in a
        `live` run (over SMTP), a trial that only reached the outbox: it reached nobody."""
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO messages (key, cohort, pair, step, role, state, due_at, reason, updated_at, late)
                   VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET state=excluded.state,
                       reason=excluded.reason, updated_at=excluded.updated_at, late=excluded.late
                   WHERE messages.state = 'sent' AND messages.channel = 'outbox' AND ?""",
                (key, cohort, pair, step, role, SKIPPED, iso(due_at), reason, iso(now), int(late), live))

    def record_invite(self, *, uid: str, cohort: str, pair: str, conference: str, step: str, sequence: int,
                      method: str, details: dict[str, Any], message_key: str, now: datetime,
                      attendees: Iterable[tuple[str, str]] = ()) -> None:
        """Remember the latest version of an invitation a pair was sent (never an older one), with the people
        who hold it: a later change reaches them even if their row has changed or gone."""
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO invites (uid, cohort, pair, conference, step, sequence, method, details,
                       message_key, updated_at, attendees) VALUES (?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(uid) DO UPDATE SET sequence=excluded.sequence, method=excluded.method,
                       details=excluded.details, message_key=excluded.message_key, updated_at=excluded.updated_at,
                       attendees=excluded.attendees, cohort=excluded.cohort, pair=excluded.pair,
                       step=excluded.step
                   WHERE excluded.sequence >= invites.sequence""",
                (uid, cohort, pair, conference, step, sequence, method, json.dumps(details, sort_keys=True),
                 message_key, iso(now), json.dumps([list(a) for a in attendees], ensure_ascii=False)))

    def observe_statuses(self, seen: Iterable[tuple[str, str, str]], now: datetime) -> dict[
            tuple[str, str], list[tuple[str, datetime]]]:
        """Record each pair's status where it differs from the last one seen; return every pair's
        history, oldest first. The roster says only how a pair is now; this says since when."""
        history = self.status_history()
        changed = [(c, p, s) for c, p, s in seen if not history.get((c, p)) or history[(c, p)][-1][0] != s]
        if changed:
            with self.transaction() as conn:
                conn.executemany("INSERT OR IGNORE INTO pair_status VALUES (?, ?, ?, ?)",
                                 [(c, p, s, iso(now)) for c, p, s in changed])
            for c, p, s in changed:
                history.setdefault((c, p), []).append((s, now))
        return history

    def set_meta(self, name: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                         (name, json.dumps(value)))

    def start_run(self, now: datetime) -> int:
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO runs (started_at) VALUES (?)", (iso(now),))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, now: datetime, *, sent: int, skipped: int, failed: int,
                   deferred: int = 0, uncertain: int = 0) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET finished_at=?, sent=?, skipped=?, failed=?, deferred=?, uncertain=? "
                         "WHERE id=?", (iso(now), sent, skipped, failed, deferred, uncertain, run_id))
