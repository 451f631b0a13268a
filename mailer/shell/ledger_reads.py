"""What the ledger is asked: settled keys, who received what, counts, rows for a person to read; reads only."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from mailer.core.records import (
    DEFERRED,
    FINAL,
    OUTBOX,
    SENDING,
    SENT,
    SKIPPED,
    SMTP,
    UNCERTAIN,
    Delivered,
    Row,
    SentInvite,
    Suppressed,
)
from mailer.shell.ledger_errors import GuardedConnection


def iso(dt: datetime) -> str:
    """A ledger time: aware, to the second."""
    if dt.tzinfo is None:
        raise ValueError("ledger times must be aware")
    return dt.isoformat(timespec="seconds")


class Reads:
    """The ledger's queries; `Ledger` adds opening, migrating and every write."""

    conn: GuardedConnection

    def settled_keys(self, now: datetime, *, channel: str = OUTBOX, catch_up: bool = False) -> set[str]:
        """Keys a run must not send now: final ones, deferred ones not yet due for another try, and uncertain
        ones already resent once. Over SMTP, a message that only reached the outbox (a trial) is not settled:
        it has not reached its people. With `catch_up`, neither is one skipped for lateness alone."""
        rows = self.conn.execute(
            f"""SELECT key FROM messages WHERE (state IN ({",".join("?" * len(FINAL))})
                    AND NOT (? AND state = ? AND channel = ?) AND NOT (? AND state = ? AND late = 1))
                OR state = ? OR (state = ? AND next_attempt_at > ?) OR (state = ? AND resends > 0)""",
            (*FINAL, channel == SMTP, SENT, OUTBOX, catch_up, SKIPPED, SENDING, DEFERRED, iso(now), UNCERTAIN))
        return {r[0] for r in rows}

    def trial_keys(self) -> set[str]:
        """Messages delivered to the outbox folder only: tried, not yet sent to people."""
        rows = self.conn.execute("SELECT key FROM messages WHERE state = ? AND channel = ?", (SENT, OUTBOX))
        return {r[0] for r in rows}

    def retrying_keys(self) -> set[str]:
        """Messages already attempted: a retry is never dropped by the late window."""
        rows = self.conn.execute("SELECT key FROM messages WHERE state IN (?, ?)", (DEFERRED, UNCERTAIN))
        return {r[0] for r in rows}

    def knows(self, cohorts: set[str], addresses: set[str]) -> bool:
        """Does the ledger hold any message of these cohorts, or to any of these addresses (a renamed cohort)?"""
        if not cohorts:
            return False
        marks = ",".join("?" * len(cohorts))
        if self.conn.execute(f"SELECT 1 FROM messages WHERE cohort IN ({marks}) LIMIT 1", tuple(cohorts)).fetchone():
            return True
        for (recipients,) in self.conn.execute("SELECT recipients FROM messages WHERE recipients IS NOT NULL"):
            if {r.lower() for r in json.loads(recipients)} & addresses:
                return True
        return False

    def first_run(self) -> datetime | None:
        """When the first run on this ledger started."""
        row = self.conn.execute("SELECT MIN(started_at) FROM runs").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def received(self, addresses: Iterable[str]) -> dict[tuple[str, str], list[Delivered]]:
        """For each (address, step) these people received: the messages that took it there."""
        found: dict[tuple[str, str], list[Delivered]] = {}
        wanted = sorted({a.lower() for a in addresses})
        for i in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            chunk = wanted[i:i + 500]
            for address, step, key, channel, people, due_at in self.conn.execute(
                    f"""SELECT d.address, d.step, d.key, m.channel, d.people, m.due_at FROM deliveries d
                        JOIN messages m ON m.key = d.key
                        WHERE d.address IN ({",".join("?" * len(chunk))}) AND m.state IN ('sent', 'uncertain')""",
                    chunk):
                found.setdefault((address, step), []).append(
                    Delivered(key, channel, frozenset(people.split(",")) if people else None,
                              datetime.fromisoformat(due_at)))
        return found

    def steps_sent(self) -> dict[str, dict[str, str]]:
        """Each cohort's steps that reached (or may have reached) someone, with the day they were due."""
        out: dict[str, dict[str, str]] = {}
        for cohort, step, due in self.conn.execute(
                "SELECT cohort, step, MIN(due_at) FROM messages WHERE state IN ('sent', 'uncertain') "
                "GROUP BY cohort, step"):
            out.setdefault(cohort, {})[step] = due
        return out

    def sent_invites(self) -> list[SentInvite]:
        return [SentInvite(uid=r["uid"], cohort=r["cohort"], pair=r["pair"], conference=r["conference"],
                           step=r["step"], sequence=r["sequence"], method=r["method"],
                           details=json.loads(r["details"]),
                           attendees=tuple((n, e) for n, e in json.loads(r["attendees"] or "[]")))
                for r in self.conn.execute("SELECT * FROM invites ORDER BY uid")]

    def status_history(self) -> dict[tuple[str, str], list[tuple[str, datetime]]]:
        history: dict[tuple[str, str], list[tuple[str, datetime]]] = {}
        for c, p, s, since in self.conn.execute("SELECT cohort, pair, status, since FROM pair_status ORDER BY since"):
            history.setdefault((c, p), []).append((s, datetime.fromisoformat(since)))
        return history

    def get_meta(self, name: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def next_retry(self) -> datetime | None:
        """The earliest time a deferred message may be tried again."""
        row = self.conn.execute("SELECT MIN(next_attempt_at) FROM messages WHERE state = ?", (DEFERRED,)).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def has_unfinished(self) -> bool:
        """A `sending` row left by a crash, or an uncertain message still owed its one resend."""
        row = self.conn.execute("SELECT 1 FROM messages WHERE state = ? OR (state = ? AND resends = 0) LIMIT 1",
                                (SENDING, UNCERTAIN)).fetchone()
        return row is not None

    def rows_in_state(self, state: str) -> list[Row]:
        """Only the rows in one state (the digest's uncertain messages), not the whole ledger."""
        return [_row(r) for r in self.conn.execute("SELECT * FROM messages WHERE state = ? ORDER BY due_at, key",
                                                   (state,))]

    def counts(self) -> dict[tuple[str, str, str], int]:
        """(cohort, step, state) -> messages, counted by SQLite: memory stays flat as the ledger grows. A message
        that only reached the outbox counts as "outbox only"."""
        rows = self.conn.execute(
            """SELECT cohort, step, CASE WHEN state = 'sent' AND channel = 'outbox' THEN 'outbox only' ELSE state
                   END, count(*) FROM messages GROUP BY 1, 2, 3""")
        return {(c, s, st): n for c, s, st, n in rows}

    def report_counts(self) -> dict[tuple[str, str, str, str], int]:
        """(cohort, step, "" | "update" | "cancel", state) -> messages, for the report page, counted in SQL."""
        rows = self.conn.execute(
            """SELECT cohort, step, CASE WHEN key GLOB '*/update-[0-9]*' THEN 'update'
                   WHEN key GLOB '*/cancel-[0-9]*' THEN 'cancel' ELSE '' END, state, count(*)
               FROM messages GROUP BY 1, 2, 3, 4""")
        return {(c, s, k, st): n for c, s, k, st, n in rows}

    def trouble(self) -> list[Row]:
        """The rows a coordinator should look at: failed, deferred, uncertain, refused, held back by bad files."""
        return [_row(r) for r in self.conn.execute(
            """SELECT * FROM messages WHERE state IN ('failed', 'deferred', 'uncertain') OR refused <> '{}'
               OR reason LIKE 'held back%' ORDER BY due_at, key""")]

    def rows(self) -> list[Row]:
        return [_row(r) for r in self.conn.execute("SELECT * FROM messages ORDER BY due_at, key")]

    def suppressed(self) -> dict[str, Suppressed]:
        """The addresses the inbox stopped prompts to (shell/inbox_store.py writes them), by lower-case address."""
        return {r["address"].lower(): Suppressed(r["address"].lower(), r["reason"], r["since"], r["detail"])
                for r in self.conn.execute("SELECT address, reason, since, detail FROM suppressions")}


def _row(r: sqlite3.Row) -> Row:
    return Row(key=r["key"], cohort=r["cohort"], pair=r["pair"], step=r["step"], role=r["role"],
               state=r["state"], due_at=r["due_at"], message_id=r["message_id"],
               recipients=json.loads(r["recipients"] or "[]"), subject=r["subject"],
               reason=r["reason"], updated_at=r["updated_at"], sent_at=r["sent_at"], attempts=r["attempts"],
               delivered=tuple(json.loads(r["delivered"])), refused=json.loads(r["refused"]), resends=r["resends"],
               channel=r["channel"])
