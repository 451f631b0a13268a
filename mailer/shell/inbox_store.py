"""The ledger's inbox tables: which messages were read, and what each changed, written in one transaction.

A message is known by its place (mailbox, UIDVALIDITY, UID) and, once acted on, by its Message-ID and
a hash of its bytes: a rerun finds the place, a recreated folder or a second copy finds the content,
and neither applies an effect twice. Mail that was not the program's is recorded too ("left"), so it
is not fetched again, but its content never blocks anything.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from mailer.core import listen
from mailer.core.heard import RSVP_WORDS, Away, Heard
from mailer.core.inbound import Inbound
from mailer.core.listen import SentInvitation, SentMessage, SentView
from mailer.core.model import Program
from mailer.core.records import Suppressed
from mailer.shell.ledger import Ledger
from mailer.shell.ledger_errors import GuardedConnection
from mailer.shell.mailbox import MessageRef

Outcome = Literal["acted", "left", "duplicate", "seen"]
ACTED: Outcome = "acted"  # the program's mail: its effects recorded
LEFT: Outcome = "left"  # not the program's: never moved, never fetched again
DUPLICATE: Outcome = "duplicate"  # a copy of a message acted on already: only moved
SEEN: Outcome = "seen"  # another run recorded this place first


@dataclass(frozen=True, slots=True)
class Place:
    """What the ledger knows of one mailbox place: how it ended and whether it was moved yet."""

    outcome: str
    moved: bool


@dataclass(frozen=True, slots=True)
class SuppressedAddress:
    """An address that gets no more prompts, why, and since when."""

    address: str
    reason: str
    detail: str | None
    message_key: str | None
    since: str


def _iso(dt: datetime) -> str:
    """In UTC: the senders' clocks come with every offset, and the ledger compares these as text."""
    if dt.tzinfo is None:
        raise ValueError("ledger times must be aware")
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def places(ledger: Ledger, mailbox: str) -> dict[tuple[int, str], Place]:
    """Every place of this mailbox the ledger has recorded."""
    rows = ledger.conn.execute("SELECT uidvalidity, uid, outcome, moved FROM inbound WHERE mailbox = ?", (mailbox,))
    return {(r["uidvalidity"], r["uid"]): Place(r["outcome"], bool(r["moved"])) for r in rows}


def record(ledger: Ledger, ref: MessageRef, data: bytes, inbound: Inbound, effects: Sequence[listen.Effect],
           now: datetime) -> Outcome:
    """Records the message at `ref` and, unless it is a copy of one acted on already, its effects: all in one
    transaction, so a crash leaves either both or neither. Returns what became of it."""
    digest = content_hash(data)
    message_id = inbound.message_id or ""
    with ledger.transaction() as conn:
        if conn.execute("SELECT 1 FROM inbound WHERE mailbox=? AND uidvalidity=? AND uid=?",
                        (ref.mailbox, ref.uidvalidity, ref.uid)).fetchone():
            return SEEN  # another run recorded it between our listing and now
        outcome: Outcome = ACTED if listen.acts(tuple(effects)) else LEFT
        if outcome == ACTED and conn.execute(
                "SELECT 1 FROM inbound WHERE message_id=? AND content_hash=? AND outcome='acted'",
                (message_id, digest)).fetchone():
            outcome = DUPLICATE
        cursor = conn.execute(
            """INSERT INTO inbound (mailbox, uidvalidity, uid, message_id, content_hash, kind, outcome, sent_at,
                                    processed_at) VALUES (?,?,?,?,?,?,?,?,?)""",
            (ref.mailbox, ref.uidvalidity, ref.uid, message_id, digest, inbound.kind, outcome,
             _iso(inbound.date) if inbound.date else None, _iso(now)))
        if outcome == ACTED:
            inbound_id = cursor.lastrowid
            assert inbound_id is not None
            at = _iso(inbound.date or now)
            for effect in effects:
                _apply(conn, effect, inbound_id, at, _iso(now))
    return outcome


def _apply(conn: GuardedConnection, effect: listen.Effect, inbound_id: int, at: str, now: str) -> None:
    match effect:
        case listen.Suppression():
            # the first reason stays: a later bounce of an unsubscribed address changes nothing
            conn.execute("INSERT OR IGNORE INTO suppressions VALUES (?,?,?,?,?,?)",
                         (effect.address, effect.reason, effect.detail, effect.message_key, now, inbound_id))
        case listen.SoftBounce():
            conn.execute("INSERT INTO soft_bounces VALUES (?,?,?,?,?)",
                         (effect.address, now, effect.detail, effect.message_key, inbound_id))
        case listen.Rsvp():
            conn.execute("INSERT INTO rsvps VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         (effect.uid, effect.address, effect.cohort, effect.pair, effect.conference, effect.partstat,
                          effect.sequence, int(effect.stale), effect.comment, at, inbound_id))
        case listen.Contact():
            conn.execute("INSERT INTO contacts VALUES (?,?,?,?,?,?,?,?)",
                         (effect.cohort, effect.pair, effect.step, effect.address,
                          _iso(effect.at) if effect.at else at, int(effect.partner_addressed), effect.message_key,
                          inbound_id))
        case listen.CheckinAnswer():
            conn.execute("INSERT INTO checkins VALUES (?,?,?,?,?,?,?)",
                         (effect.cohort, effect.pair, effect.step, effect.answer, effect.address, at, inbound_id))
        case listen.OutOfOffice():
            conn.execute("INSERT INTO out_of_office VALUES (?,?,?,?,?,?)",
                         (effect.cohort, effect.pair, effect.address, effect.subject, at, inbound_id))
        case listen.Unmatched():
            pass


def mark_moved(ledger: Ledger, refs: Iterable[MessageRef]) -> None:
    with ledger.transaction() as conn:
        conn.executemany("UPDATE inbound SET moved=1 WHERE mailbox=? AND uidvalidity=? AND uid=?",
                         [(r.mailbox, r.uidvalidity, r.uid) for r in refs])


def soft_bounces(ledger: Ledger) -> dict[str, frozenset[str]]:
    """Per address, the messages that failed temporarily since its last sign of life (a reply, an RSVP,
    a check-in): what `listen.decide` counts towards the limit."""
    # inbound ids grow in the order messages were processed: one clock, no ties within a second
    rows = ledger.conn.execute(
        """SELECT s.address, COALESCE(s.message_key, 'report:' || i.message_id) AS what
           FROM soft_bounces s JOIN inbound i ON i.id = s.inbound_id
           WHERE s.inbound_id > COALESCE((SELECT MAX(x.inbound_id) FROM (
                     SELECT inbound_id FROM contacts WHERE address = s.address
                     UNION ALL SELECT inbound_id FROM rsvps WHERE address = s.address
                     UNION ALL SELECT inbound_id FROM checkins WHERE address = s.address) x), 0)""")
    found: dict[str, set[str]] = {}
    for r in rows:
        found.setdefault(r["address"], set()).add(r["what"])
    return {address: frozenset(keys) for address, keys in found.items()}


def suppressions(ledger: Ledger) -> list[SuppressedAddress]:
    """Every suppressed address, oldest first: what plans leave out and the digest lists."""
    rows = ledger.conn.execute("SELECT * FROM suppressions ORDER BY since, address")
    return [SuppressedAddress(r["address"], r["reason"], r["detail"], r["message_key"], r["since"]) for r in rows]


def _address(text: str) -> str:
    return email.utils.parseaddr(text)[1].lower() or text.lower()


def sent_view(ledger: Ledger, program: Program) -> SentView:
    """What the ledger says was sent and the roster says takes part, for `listen.decide`."""
    by_message_id: dict[str, SentMessage] = {}
    by_key: dict[str, SentMessage] = {}
    recent: dict[str, SentMessage] = {}
    for r in ledger.conn.execute(
            """SELECT key, cohort, pair, step, message_id, recipients FROM messages
               WHERE message_id IS NOT NULL AND state != 'skipped'
               ORDER BY COALESCE(sent_at, updated_at), key"""):
        sent = SentMessage(r["key"], r["cohort"], r["pair"], r["step"],
                           tuple(_address(a) for a in json.loads(r["recipients"] or "[]")))
        by_message_id[r["message_id"]] = sent
        by_key[sent.key] = sent
        for address in sent.recipients:
            recent[address] = sent  # ordered by sent_at: the last one wins
    pairs: dict[tuple[str, str], dict[str, str]] = {}
    coordinators: set[str] = set()
    for cohort in program.cohorts:
        coordinators |= {cohort.coordinator.ascii_email.lower(), cohort.coordinator.email.lower()}
        for pair in cohort.pairs:
            if pair.status != "withdrawn":
                pairs[(cohort.id, pair.id)] = {p.role: p.ascii_email.lower() for p in pair.people()}
    invitations: dict[str, SentInvitation] = {}
    for inv in ledger.sent_invites():
        if inv.method != "REQUEST":
            continue  # a cancelled meetup takes no answers
        cohort_ = program.cohort(inv.cohort)
        pair_ = cohort_.pair(inv.pair) if cohort_ else None
        attendees = tuple(a for p in (pair_.people() if pair_ else ()) for a in {p.ascii_email.lower(),
                                                                                 p.email.lower()})
        invitations[inv.uid] = SentInvitation(inv.uid, inv.cohort, inv.pair, inv.conference, attendees, inv.sequence)
    return SentView(secret=ledger.secret, by_message_id=by_message_id, by_key=by_key, invitations=invitations,
                    pairs=pairs, soft_bounces=soft_bounces(ledger), recent=recent,
                    coordinators=frozenset(coordinators))


def heard(ledger: Ledger) -> Heard:
    """What the inbox recorded, read once for the digest, the report and `status`: the latest answer wins."""
    conn = ledger.conn
    last: dict[tuple[str, str], str] = {}
    for r in conn.execute("""SELECT cohort, lower(pair) AS pair, MAX(at) AS at FROM (
                                 SELECT cohort, pair, at FROM contacts
                                 UNION ALL SELECT cohort, pair, at FROM rsvps
                                 UNION ALL SELECT cohort, pair, at FROM checkins) GROUP BY 1, 2"""):
        last[(r["cohort"], r["pair"])] = r["at"]
    welcomed = {(r["cohort"], r["pair"]): r["at"] for r in conn.execute(
        """SELECT cohort, lower(pair) AS pair, MIN(COALESCE(sent_at, updated_at)) AS at FROM messages
           WHERE state IN ('sent', 'uncertain') AND channel IS NOT NULL GROUP BY 1, 2""")}
    rsvps: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for r in conn.execute("SELECT * FROM rsvps WHERE stale = 0 ORDER BY inbound_id"):
        rsvps.setdefault((r["cohort"], r["pair"].lower()), {}).setdefault(r["conference"], {})[
            r["address"].lower()] = RSVP_WORDS.get(r["partstat"], r["partstat"].lower())
    invited: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}
    for inv in ledger.sent_invites():
        if inv.method == "REQUEST":
            invited.setdefault((inv.cohort, inv.pair.lower()), {})[inv.conference] = tuple(
                a.lower() for _, a in inv.attendees)
    checkins: dict[tuple[str, str], dict[str, str]] = {}
    for r in conn.execute("SELECT cohort, pair, step, answer FROM checkins ORDER BY inbound_id"):
        checkins.setdefault((r["cohort"], r["pair"].lower()), {})[r["step"]] = r["answer"]
    away = tuple(Away(r["cohort"], r["pair"], r["address"], r["subject"], r["at"])
                 for r in conn.execute("SELECT * FROM out_of_office ORDER BY at, inbound_id"))
    unmatched = conn.execute("SELECT COUNT(*) FROM inbound WHERE outcome = 'left' AND moved = 0").fetchone()[0]
    return Heard(last_contact=last, welcomed=welcomed, rsvps=rsvps, invited=invited, checkins=checkins,
                 suppressed=tuple(Suppressed(s.address.lower(), s.reason, s.since, s.detail)
                                  for s in suppressions(ledger)),
                 away=away, unmatched=unmatched)
