"""The ledger's message keys: the one module that builds, parses and labels them.

A key names one message for good: `cohort/pair/step`, plus `/mentor` or `/mentee` for a step sent to each
partner, plus `/update-N` or `/cancel-N` for the Nth change to a meetup invitation. Ids and step keys never
hold a `/` (the loader's patterns say so), so the parts are unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

ChangeKind = Literal["update", "cancel"]
_ROLES = ("mentor", "mentee")


@dataclass(frozen=True, slots=True)
class MessageKey:
    """A key taken apart."""

    cohort: str
    pair: str
    step: str
    role: Literal["mentor", "mentee"] | None = None
    change: ChangeKind | None = None
    sequence: int = 0

    def __str__(self) -> str:
        key = f"{self.cohort}/{self.pair}/{self.step}"
        if self.role:
            key += f"/{self.role}"
        if self.change:
            key += f"/{self.change}-{self.sequence}"
        return key

    @property
    def step_label(self) -> str:
        """The step as reports name it: a meetup's update or cancellation told apart from the invitation."""
        return step_label(self.step, self.change, self.sequence)

    @property
    def label(self) -> str:
        """The step, its change and its recipient, for a person: "midyear, to the mentor"."""
        return self.step_label + (f", to the {self.role}" if self.role else "")


def message_key(cohort: str, pair: str, step: str, role: str | None = None,
                change: tuple[ChangeKind, int] | None = None) -> str:
    """The ledger key of one message."""
    kind, sequence = change if change else (None, 0)
    return str(MessageKey(cohort, pair, step, cast(Literal["mentor", "mentee"] | None, role), kind, sequence))


def parse(key: str) -> MessageKey:
    """Take a message key apart; ValueError for anything that is not one (a digest's key, say)."""
    parts = key.split("/")
    if len(parts) < 3 or not all(parts[:3]):
        raise ValueError(f"not a message key: {key!r}")
    cohort, pair, step, rest = parts[0], parts[1], parts[2], parts[3:]
    role = rest.pop(0) if rest and rest[0] in _ROLES else None
    change: ChangeKind | None = None
    sequence = 0
    if rest:
        kind, _, number = rest.pop(0).partition("-")
        if kind not in ("update", "cancel") or not number.isdigit():
            raise ValueError(f"not a message key: {key!r}")
        change, sequence = cast(ChangeKind, kind), int(number)
    if rest:
        raise ValueError(f"not a message key: {key!r}")
    return MessageKey(cohort, pair, step, cast(Literal["mentor", "mentee"] | None, role), change, sequence)


def cohort_of(key: str) -> str:
    """The cohort a message key belongs to."""
    return parse(key).cohort


def step_label(step: str, change: ChangeKind | None = None, sequence: int = 0) -> str:
    """A step with its change, as reports show it: "meetup-midwinter (update 1)"."""
    return f"{step} ({change} {sequence})" if change else step
