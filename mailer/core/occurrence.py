"""One message of the year as a value: who, which step, when it is due, why it may not go, what it changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mailer.core.keys import ChangeKind, message_key, step_label
from mailer.core.model import Cohort, Pair, Role, Step


@dataclass(frozen=True, slots=True)
class InviteChange:
    """A change to a meetup invitation already sent: an update (REQUEST) or a cancellation."""

    method: Literal["REQUEST", "CANCEL"]
    sequence: int
    change: str  # one line for the email: what changed, or why it is cancelled
    uid: str | None = None  # the UID the people hold (it never changes, whatever was renamed)
    drop: bool = False  # a CANCEL to an attendee who is no longer invited (an address that changed)

    @property
    def kind(self) -> ChangeKind:
        return "cancel" if self.method == "CANCEL" else "update"


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One message of the year: who, which step, when it is due, and why it may not be sent."""

    cohort: Cohort
    pair: Pair
    step: Step
    role: Role | None  # None: one email to both partners
    due_at: datetime  # when it goes out (moved to the join or resume date for pairs who were away)
    skip_reason: str | None = None  # set when the year's rules say this one is not sent
    change: InviteChange | None = None  # set for a meetup invitation's update or cancellation
    late: bool = False  # skipped for lateness alone: `run --catch-up` may still send it
    left_out: tuple[tuple[Role, str], ...] = ()  # (role, why) of a partner who gets no more prompts

    @property
    def key(self) -> str:
        change = None if self.change is None else (self.change.kind, self.change.sequence)
        # pair ids compare without case: a spreadsheet that capitalises p02 must not make a new pair of it
        return message_key(self.cohort.id, self.pair.id.lower(), self.step.key, self.role, change)

    @property
    def step_label(self) -> str:
        """The step as reports name it: a meetup's update or cancellation told apart from the invitation."""
        if self.change is None:
            return self.step.key
        return step_label(self.step.key, self.change.kind, self.change.sequence)

    @property
    def has_invite(self) -> bool:
        """Meetup steps carry a calendar invitation when the conference proposes a meetup."""
        return self.step.conference is not None and self.step.conference.meetup is not None

    def recipients(self) -> tuple[Role, ...]:
        """The roles the message is for (an invitation lists them all as attendees)."""
        return (self.role,) if self.role else ("mentor", "mentee")

    def addressed(self) -> tuple[Role, ...]:
        """The roles it is sent to: the recipients without a partner left out (a suppressed address)."""
        out = {role for role, _ in self.left_out}
        return tuple(r for r in self.recipients() if r not in out)

    @property
    def left_out_note(self) -> str:
        """For people: who is left out of this message and why, or ''."""
        return "".join(f" (left out: {self.pair.person(r).email}: {why})" for r, why in self.left_out)


def with_reason(occ: Occurrence, reason: str, *, late: bool = False) -> Occurrence:
    """The same message, marked as not to be sent, with why."""
    return Occurrence(occ.cohort, occ.pair, occ.step, occ.role, occ.due_at, reason, occ.change, late, occ.left_out)
