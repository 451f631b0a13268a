"""The ledger's records as plain values: a message's states, a message row, an invitation a pair holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# A message's life: (due) -> sending -> sent | deferred | failed | uncertain; or skipped.
# `sending` is committed before the SMTP transaction starts, so a crash leaves a trace.
SENDING, SENT, SKIPPED, FAILED = "sending", "sent", "skipped", "failed"
DEFERRED, UNCERTAIN = "deferred", "uncertain"
FINAL = (SENT, SKIPPED, FAILED)
OUTBOX, SMTP = "outbox", "smtp"  # a message's channel: only SMTP reaches people
TRIAL = "trial"  # a claim's previous state when the message had only reached the outbox
INTERRUPTED = "the run sending it stopped after the body went out, before the server's reply"
INTERRUPTED_EARLY = "the run sending it stopped before the message body went out"
ENVELOPE, BODY = "envelope", "body"  # how far a `sending` message got: only BODY can have arrived


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
    attempts: int = 0
    delivered: tuple[str, ...] = ()
    refused: dict[str, str] = field(default_factory=dict)
    resends: int = 0
    channel: str | None = None  # where it went: "outbox" (a trial folder, not people) or "smtp"


@dataclass(frozen=True, slots=True)
class SentInvite:
    """An invitation as the ledger remembers it: the last version the pair was sent."""

    uid: str
    cohort: str
    pair: str
    conference: str
    step: str
    sequence: int
    method: str  # REQUEST or CANCEL
    details: dict[str, object]
    attendees: tuple[tuple[str, str], ...] = ()  # (name, address) of each person holding it; () if unknown


@dataclass(frozen=True, slots=True)
class Suppressed:
    """An address that gets no more prompts, as the inbox recorded it."""

    address: str  # lower case
    reason: str  # hard-bounce, soft-bounces, complaint or unsubscribed
    since: str  # ISO, UTC
    detail: str | None = None  # the server's words, or how the person asked

    @property
    def why(self) -> str:
        words = {"hard-bounce": "its mail bounces", "soft-bounces": "its mail failed three times in a row",
                 "complaint": "it marked our mail as spam", "unsubscribed": "it unsubscribed"}
        return f"{words.get(self.reason, self.reason)} (since {self.since[:10]})"


@dataclass(frozen=True, slots=True)
class LedgerView:
    """What planning needs of the ledger at one instant, read once: nothing in a plan goes back to SQLite."""

    settled: frozenset[str] = frozenset()  # keys not to send now: final, held back, or resent already
    retrying: frozenset[str] = frozenset()  # keys already attempted: never dropped by the late window
    invites: tuple[SentInvite, ...] = ()  # the latest invitation each pair holds
    history: dict[tuple[str, str], list[tuple[str, datetime]]] = field(default_factory=dict)  # statuses seen
    trial: frozenset[str] = frozenset()  # over SMTP: keys that only reached the outbox, owed to people
    held: dict[str, str] = field(default_factory=dict)  # cohort -> since when bad files held it back (ISO)
    suppressed: dict[str, Suppressed] = field(default_factory=dict)  # address (lower case) -> no more prompts


@dataclass(frozen=True, slots=True)
class Delivered:
    """A message that reached (or may have reached) an address: what renames are checked against."""

    key: str
    channel: str | None
    people: frozenset[str] | None  # the pair's two addresses, when it went to both partners
    due_at: datetime
