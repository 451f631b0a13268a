"""What an inbound message means for the program: the pure decision from a recognised message and what was sent.

`decide` never looks at a clock, a file or the ledger: the shell builds a `SentView` from the ledger
and the roster, and records the effects it returns in one transaction with the processed key.
An empty tuple never comes back: mail that is not the program's gives one `Unmatched`, and the shell
leaves that message where it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from mailer.core import tokens
from mailer.core.inbound import Inbound

SuppressionReason = Literal["hard-bounce", "soft-bounces", "complaint", "unsubscribed"]
SOFT_BOUNCES_LIMIT = 3  # this many temporary failures in a row count as a permanent one
RSVP_ANSWERS = ("ACCEPTED", "DECLINED", "TENTATIVE")
_STOP_WORDS = {"stop", "unsubscribe", "stop please", "please stop", "unsubscribe me", "please unsubscribe",
               "unsubscribe please", "remove me", "stop all", "opt out", "optout"}


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the program sent: its ledger key, the pair and step, and who it went to (lower case)."""

    key: str
    cohort: str
    pair: str
    step: str
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SentInvitation:
    """A meetup invitation as last sent: its UID, whom it invited and the SEQUENCE it carried."""

    uid: str
    cohort: str
    pair: str
    conference: str
    attendees: tuple[str, ...]  # lower case
    sequence: int


@dataclass(frozen=True, slots=True)
class SentView:
    """What the program sent and who takes part, as the ledger and the roster tell it; see the module docstring.

    `pairs` holds pairs not withdrawn: (cohort, pair) -> role -> address (lower case). `soft_bounces`
    names, per address, the messages (ledger keys) that failed temporarily since its last sign of life;
    several reports about one message count once.
    `recent` names, per address, the last message sent to it (for bounces that quote nothing of ours).
    """

    secret: bytes
    by_message_id: Mapping[str, SentMessage] = field(default_factory=dict)
    by_key: Mapping[str, SentMessage] = field(default_factory=dict)
    invitations: Mapping[str, SentInvitation] = field(default_factory=dict)
    pairs: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    soft_bounces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    recent: Mapping[str, SentMessage] = field(default_factory=dict)
    coordinators: frozenset[str] = frozenset()  # the coordinators' own addresses: their mail is never contact

    def pairs_of(self, address: str | None) -> list[tuple[str, str, str]]:
        """(cohort, pair, role) for every active pair this address takes part in."""
        if not address:
            return []
        return [(c, p, role) for (c, p), people in self.pairs.items() for role, a in people.items() if a == address]


@dataclass(frozen=True, slots=True)
class Rsvp:
    """An attendee's answer to a meetup invitation; `stale` when it answers an older SEQUENCE than the last sent."""

    uid: str
    cohort: str
    pair: str
    conference: str
    address: str
    partstat: str  # ACCEPTED, DECLINED or TENTATIVE
    sequence: int
    stale: bool
    comment: str | None


@dataclass(frozen=True, slots=True)
class Suppression:
    """No more prompts to this address (its partner still gets them); the coordinator is told why."""

    address: str
    reason: SuppressionReason
    detail: str | None  # the server's words, the complaint type, or how the person asked
    message_key: str | None  # the message it concerns, when known


@dataclass(frozen=True, slots=True)
class SoftBounce:
    """A temporary failure, counted; the `count`-th in a row for this address (below the limit)."""

    address: str
    count: int
    detail: str | None
    message_key: str | None


@dataclass(frozen=True, slots=True)
class Contact:
    """A sign of life from a pair: who wrote, to which step's message, when. Metadata only, never the body."""

    cohort: str
    pair: str
    step: str | None  # None when matched by the sender's address alone
    address: str
    at: datetime | None
    partner_addressed: bool  # the partner was among To/Cc
    message_key: str | None


@dataclass(frozen=True, slots=True)
class CheckinAnswer:
    """A pair's answer to a step's check-in question."""

    cohort: str
    pair: str
    step: str
    answer: tokens.CheckinAnswer
    address: str | None


@dataclass(frozen=True, slots=True)
class OutOfOffice:
    """A participant's auto-reply: not contact; the digest shows it with the subject."""

    cohort: str
    pair: str
    address: str
    subject: str
    at: datetime | None


@dataclass(frozen=True, slots=True)
class Unmatched:
    """Not the program's mail (or nothing to act on): left in the mailbox untouched."""

    reason: str


Effect = Rsvp | Suppression | SoftBounce | Contact | CheckinAnswer | OutOfOffice | Unmatched


def acts(effects: tuple[Effect, ...]) -> bool:
    """Whether the message is the program's: recorded and moved to the processed folder."""
    return any(not isinstance(e, Unmatched) for e in effects)


def decide(inbound: Inbound, view: SentView) -> tuple[Effect, ...]:
    """The effects of one recognised message; see the module docstring."""
    match inbound.kind:
        case "calendar_reply":
            return _calendar(inbound, view)
        case "complaint":
            return _complaint(inbound, view)
        case "bounce":
            return _bounce(inbound, view)
        case "auto_reply":
            return _auto_reply(inbound, view)
        case "human":
            return _human(inbound, view)
    return (Unmatched(inbound.problem or "unreadable"),)


def _calendar(inbound: Inbound, view: SentView) -> tuple[Effect, ...]:
    reply = inbound.calendar
    assert reply is not None
    invitation = view.invitations.get(reply.uid)
    if invitation is None:
        return (Unmatched(f"a calendar reply for {reply.uid}, which is not one of our invitations"),)
    # the attendee decides, not From: macOS sends from whichever account is set up, Outlook from a delegate
    out: list[Effect] = [
        Rsvp(uid=reply.uid, cohort=invitation.cohort, pair=invitation.pair, conference=invitation.conference,
             address=a.address, partstat=a.partstat, sequence=reply.sequence,
             stale=reply.sequence < invitation.sequence, comment=reply.comment)
        for a in reply.attendees if a.address in invitation.attendees and a.partstat in RSVP_ANSWERS]
    return tuple(out) or (Unmatched("a calendar reply from no one we invited"),)


def _concerned(inbound: Inbound, view: SentView) -> SentMessage | None:
    """Our message a report is about: by X-Mentor-Mailer-Key, then by any Message-ID it quotes."""
    for key in inbound.mailer_keys:
        if key in view.by_key:
            return view.by_key[key]
    for message_id in inbound.referenced:
        if message_id in view.by_message_id:
            return view.by_message_id[message_id]
    return None


def _known(address: str, view: SentView, sent: SentMessage | None) -> bool:
    return bool(view.pairs_of(address)) or (sent is not None and address in sent.recipients)


def _complaint(inbound: Inbound, view: SentView) -> tuple[Effect, ...]:
    report = inbound.complaint
    assert report is not None
    sent = _concerned(inbound, view)
    addresses = [a for a in report.addresses if _known(a, view, sent)]
    if not addresses and sent is not None and len(sent.recipients) == 1:
        addresses = list(sent.recipients)  # the report redacted the address, but the message had only one
    if not addresses:
        return (Unmatched("an abuse report naming no participant"),)
    key = sent.key if sent else None
    return tuple(Suppression(a, "complaint", report.feedback_type, key) for a in addresses)


def _bounce(inbound: Inbound, view: SentView) -> tuple[Effect, ...]:
    report = inbound.bounce
    assert report is not None
    sent = _concerned(inbound, view)
    out: list[Effect] = []
    for failure in report.failures:
        if not _known(failure.address, view, sent):
            continue
        concerns = sent or view.recent.get(failure.address)
        key = concerns.key if concerns else None
        words = " ".join(x for x in (failure.status, failure.diagnostic) if x) or None
        if failure.permanent:
            out.append(Suppression(failure.address, "hard-bounce", words, key))
            continue
        counted = view.soft_bounces.get(failure.address, frozenset())
        count = len(counted | {key or f"report:{inbound.message_id}"})
        if count >= SOFT_BOUNCES_LIMIT:
            out.append(Suppression(failure.address, "soft-bounces", words, key))
        else:
            out.append(SoftBounce(failure.address, count, words, key))
    return tuple(out) or (Unmatched("a bounce naming no participant"),)


def _auto_reply(inbound: Inbound, view: SentView) -> tuple[Effect, ...]:
    sender = inbound.from_address
    found = view.pairs_of(sender)
    if not found or sender is None:
        return (Unmatched("an automatic reply from someone outside the program"),)
    return tuple(OutOfOffice(c, p, sender, inbound.subject, inbound.date) for c, p, _ in found)


def is_stop(first_line: str) -> bool:
    """'STOP', 'Unsubscribe.', 'please stop!' as the whole first line of a reply."""
    words = " ".join("".join(ch if ch.isalnum() or ch.isspace() else " " for ch in first_line).lower().split())
    return words in _STOP_WORDS


def _human(inbound: Inbound, view: SentView) -> tuple[Effect, ...]:
    sender = inbound.from_address
    if sender is not None and sender in view.coordinators:
        return (Unmatched("the coordinator's own mail"),)
    if inbound.token is not None:
        meaning = tokens.parse(view.secret, inbound.token)
        if isinstance(meaning, tokens.Unsubscribe):
            people = view.pairs.get((meaning.cohort, meaning.pair), {})
            # a message to both partners carries a pair token: the partner who sent the request is the one
            address = people.get(meaning.role) or (sender if sender in people.values() else None)
            if address is not None:
                return (Suppression(address, "unsubscribed", "unsubscribe link", None),)
        elif isinstance(meaning, tokens.Checkin) and (meaning.cohort, meaning.pair) in view.pairs:
            return (CheckinAnswer(meaning.cohort, meaning.pair, meaning.step, meaning.answer, sender),)
    own_pairs = view.pairs_of(sender)
    if sender is not None and own_pairs and is_stop(inbound.first_line):
        return (Suppression(sender, "unsubscribed", f"replied {inbound.first_line!r}", None),)
    for message_id in (*inbound.in_reply_to, *inbound.references):
        sent = view.by_message_id.get(message_id)
        if sent is not None and sender is not None:
            return (_contact(inbound, view, sender, sent.cohort, sent.pair, sent.step, sent.key),)
    if sender is not None and len(own_pairs) == 1:
        cohort, pair, _ = own_pairs[0]
        return (_contact(inbound, view, sender, cohort, pair, None, None),)
    return (Unmatched("mail that answers none of our messages"),)


def _contact(inbound: Inbound, view: SentView, sender: str, cohort: str, pair: str, step: str | None,
             key: str | None) -> Contact:
    people = view.pairs.get((cohort, pair), {})
    partners = {a for a in people.values() if a != sender}
    return Contact(cohort=cohort, pair=pair, step=step, address=sender, at=inbound.date,
                   partner_addressed=bool(partners & set(inbound.to_addresses)), message_key=key)
