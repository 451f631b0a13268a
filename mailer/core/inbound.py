"""What one message arriving in the coordinator's mailbox is, as plain values (no parsing here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Kind = Literal["calendar_reply", "complaint", "bounce", "auto_reply", "human", "unreadable"]
KINDS: tuple[Kind, ...] = ("calendar_reply", "complaint", "bounce", "auto_reply", "human", "unreadable")

PartStat = Literal["ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED", "NEEDS-ACTION"]


@dataclass(frozen=True, slots=True)
class AttendeeReply:
    """One ATTENDEE line of a REPLY: the address (lower case, no mailto:) and what they answered."""

    address: str
    partstat: str  # upper case as sent; anything but the RFC 5545 values is kept and judged later


@dataclass(frozen=True, slots=True)
class CalendarReply:
    """The VEVENT of an iMIP REPLY (RFC 6047): which invitation, which version, who answered what."""

    uid: str
    sequence: int  # 0 when the client left SEQUENCE out, as RFC 5545 says it means
    attendees: tuple[AttendeeReply, ...]
    comment: str | None  # Outlook's "propose a note" text; the coordinator's to read, kept short
    method: str | None  # METHOD of the VCALENDAR, None when the client left it out (it happens)


@dataclass(frozen=True, slots=True)
class Failure:
    """One recipient a bounce names: the address, class 5 (permanent) or 4, and the server's words."""

    address: str
    permanent: bool
    status: str | None = None  # the enhanced status code, "5.1.1", when the report gave one
    diagnostic: str | None = None  # the remote server's text, one line, at most 300 characters


@dataclass(frozen=True, slots=True)
class Bounce:
    """A delivery report: every failed recipient found (RFC 3464 fields first, then flufl.bounce)."""

    failures: tuple[Failure, ...]
    structured: bool  # True when a message/delivery-status part was read, not heuristics alone


@dataclass(frozen=True, slots=True)
class Complaint:
    """An abuse report (ARF, RFC 5965): who complained, about which message, what kind of report."""

    addresses: tuple[str, ...]  # Original-Rcpt-To, else the returned message's To
    feedback_type: str | None  # "abuse", "fraud", ..., lower case
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as recognised: its kind, who sent it, and every id it points back to.

    `referenced` holds Message-IDs found anywhere except the message's own: In-Reply-To, References,
    the headers of a returned message and Message-ID lines quoted in a bounce's text. `in_reply_to` and
    `references` keep the threading headers apart, since a human reply is matched on those alone.
    """

    kind: Kind
    message_id: str | None = None
    from_address: str | None = None  # lower case
    from_name: str | None = None
    to_addresses: tuple[str, ...] = ()  # To and Cc, lower case
    subject: str = ""
    date: datetime | None = None  # aware; a date without a zone is read as UTC
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    referenced: tuple[str, ...] = ()
    mailer_keys: tuple[str, ...] = ()  # X-Mentor-Mailer-Key values, from returned headers too
    first_line: str = ""  # the first line of the reply's own text (quotes left out), at most 200 characters
    token: str | None = None  # a check-in or unsubscribe token found in the subject
    calendar: CalendarReply | None = None
    bounce: Bounce | None = None
    complaint: Complaint | None = None
    auto_reason: str | None = None  # why it counts as automatic: the header or subject that said so
    problem: str | None = None  # for `unreadable`: what was wrong, for the coordinator
    notes: tuple[str, ...] = field(default=())  # things seen on the way that did not change the kind
