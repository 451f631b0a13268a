"""The ledger's schema as numbered migrations, each a list of statements, applied in order on open.

The number reached is kept in `PRAGMA user_version`; a migration never changes once released.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("the first schema", [
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE messages (
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
            )""",
        "CREATE INDEX messages_cohort_step ON messages (cohort, step)",
        """CREATE TABLE runs (
                id          INTEGER PRIMARY KEY,
                started_at  TEXT NOT NULL,
                finished_at TEXT,
                sent        INTEGER NOT NULL DEFAULT 0,
                skipped     INTEGER NOT NULL DEFAULT 0,
                failed      INTEGER NOT NULL DEFAULT 0
            )""",
    ]),
    ("delivery state for SMTP: which recipients took it, which refused it, when to try again", [
        "ALTER TABLE messages ADD COLUMN delivered TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE messages ADD COLUMN refused TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE messages ADD COLUMN next_attempt_at TEXT",
        "ALTER TABLE messages ADD COLUMN resends INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN phase TEXT",
        "ALTER TABLE messages ADD COLUMN claimed_by TEXT",
        "ALTER TABLE runs ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX messages_state ON messages (state)",
    ]),
    ("the meetup invitations each pair holds, so changes can be sent as updates or cancellations", [
        """CREATE TABLE invites (
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
            )""",
    ]),
    ("each pair's roster status as runs saw it, so an undated pause or withdrawal has a date", [
        """CREATE TABLE pair_status (
                cohort  TEXT NOT NULL,
                pair    TEXT NOT NULL,
                status  TEXT NOT NULL,
                since   TEXT NOT NULL,
                PRIMARY KEY (cohort, pair, since)
            )""",
    ]),
    ("where each message went (an outbox is a trial, not people), why a skip was a skip, who holds an invitation", [
        "ALTER TABLE messages ADD COLUMN channel TEXT",
        "UPDATE messages SET channel = 'outbox' WHERE state IN ('sent', 'uncertain') AND location LIKE 'new/%'",
        "UPDATE messages SET channel = 'smtp' WHERE channel IS NULL AND state IN ('sent', 'uncertain', 'deferred', "
        "'failed')",
        "ALTER TABLE messages ADD COLUMN late INTEGER NOT NULL DEFAULT 0",
        "UPDATE messages SET late = 1 WHERE state = 'skipped' AND reason LIKE '% days late, past the %-day window'",
        "ALTER TABLE invites ADD COLUMN attendees TEXT",
    ]),
    ("pair ids compare without case (spreadsheets capitalise them); who received which step, by address", [
        "UPDATE OR IGNORE messages SET key = cohort || '/' || lower(pair) || substr(key, length(cohort) + "
        "length(pair) + 2), pair = lower(pair) WHERE pair <> lower(pair)",
        "UPDATE invites SET pair = lower(pair) WHERE pair <> lower(pair)",
        "UPDATE OR IGNORE pair_status SET pair = lower(pair) WHERE pair <> lower(pair)",
        """CREATE TABLE deliveries (
                address TEXT NOT NULL,
                step    TEXT NOT NULL,
                key     TEXT NOT NULL,
                people  TEXT,
                PRIMARY KEY (address, step, key)
            )""",
        # people: the pair's two addresses (sorted, comma-joined), known for a message to both partners
        """INSERT OR IGNORE INTO deliveries
               SELECT lower(j.value), m.step, m.key, CASE WHEN m.role IS NULL AND json_array_length(m.recipients) = 2
                   THEN (SELECT group_concat(a, ',') FROM (SELECT lower(value) AS a FROM json_each(m.recipients)
                         ORDER BY a)) END
               FROM messages m, json_each(m.recipients) j WHERE m.state IN ('sent', 'uncertain')""",
    ]),
    ("the inbox: each message read (by place, and by Message-ID and content for what was acted on), and "
     "what it changed: suppressions, soft bounces, RSVPs, contacts, check-ins, out-of-office notes", [
        """CREATE TABLE inbound (
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
        )""",
        "CREATE UNIQUE INDEX inbound_place ON inbound (mailbox, uidvalidity, uid)",
        "CREATE UNIQUE INDEX inbound_content ON inbound (message_id, content_hash) WHERE outcome = 'acted'",
        """CREATE TABLE suppressions (
            address     TEXT PRIMARY KEY,
            reason      TEXT NOT NULL,
            detail      TEXT,
            message_key TEXT,
            since       TEXT NOT NULL,
            inbound_id  INTEGER NOT NULL
        )""",
        """CREATE TABLE soft_bounces (
            address     TEXT NOT NULL,
            at          TEXT NOT NULL,
            detail      TEXT,
            message_key TEXT,
            inbound_id  INTEGER NOT NULL
        )""",
        "CREATE INDEX soft_bounces_address ON soft_bounces (address)",
        """CREATE TABLE rsvps (
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
        )""",
        "CREATE INDEX rsvps_uid ON rsvps (uid, address)",
        """CREATE TABLE contacts (
            cohort            TEXT NOT NULL,
            pair              TEXT NOT NULL,
            step              TEXT,
            address           TEXT NOT NULL,
            at                TEXT NOT NULL,
            partner_addressed INTEGER NOT NULL,
            message_key       TEXT,
            inbound_id        INTEGER NOT NULL
        )""",
        "CREATE INDEX contacts_pair ON contacts (cohort, pair)",
        """CREATE TABLE checkins (
            cohort      TEXT NOT NULL,
            pair        TEXT NOT NULL,
            step        TEXT NOT NULL,
            answer      TEXT NOT NULL,
            address     TEXT,
            at          TEXT NOT NULL,
            inbound_id  INTEGER NOT NULL
        )""",
        """CREATE TABLE out_of_office (
            cohort      TEXT NOT NULL,
            pair        TEXT NOT NULL,
            address     TEXT NOT NULL,
            subject     TEXT NOT NULL,
            at          TEXT NOT NULL,
            inbound_id  INTEGER NOT NULL
        )""",
    ]),
]
