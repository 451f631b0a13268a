"""What is due: from the program, `now` and the ledger's settled keys, the messages to send or skip.

Pure: no clock, no I/O. The year's schedule for a pair is computed from its dates alone, so a run on
any day, a rerun, or a rehearsal of the whole year all see the same schedule.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Literal

from mailer.core.model import Cohort, Pair, Program, Role, Step


def message_key(cohort_id: str, pair_id: str, step_key: str, role: Role | None = None) -> str:
    """The ledger key: stable for a cohort, pair, step and (for per-partner steps) recipient."""
    key = f"{cohort_id}/{pair_id}/{step_key}"
    return f"{key}/{role}" if role else key


@dataclass(frozen=True, slots=True)
class InviteChange:
    """A change to a meetup invitation already sent: an update (REQUEST) or a cancellation."""

    method: Literal["REQUEST", "CANCEL"]
    sequence: int
    change: str  # one line for the email: what changed, or why it is cancelled


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

    @property
    def key(self) -> str:
        key = message_key(self.cohort.id, self.pair.id, self.step.key, self.role)
        if self.change is not None:
            kind = "cancel" if self.change.method == "CANCEL" else "update"
            key += f"/{kind}-{self.change.sequence}"
        return key

    @property
    def has_invite(self) -> bool:
        """Meetup steps carry a calendar invitation when the conference proposes a meetup."""
        return self.step.conference is not None and self.step.conference.meetup is not None

    def recipients(self) -> tuple[Role, ...]:
        return (self.role,) if self.role else ("mentor", "mentee")


@dataclass(slots=True)
class Plan:
    """A run's work: messages to send now, and messages to record as skipped with their reason."""

    send: list[Occurrence] = field(default_factory=list)
    skip: list[Occurrence] = field(default_factory=list)
    next_due: datetime | None = None  # the earliest unsettled message after `now`: when a run next has work


def _away_spans(cohort: Cohort, pair: Pair) -> list[tuple[date, date | None, str]]:
    """Spans when the pair gets nothing: (from, until or None for good, why), in date order."""
    spans: list[tuple[date, date | None, str]] = []
    if pair.joined and pair.joined > cohort.start:
        spans.append((cohort.start, pair.joined, "joined late"))
    if pair.status == "paused":
        spans.append((pair.status_from or cohort.start, pair.status_until, "paused"))
    elif pair.status == "withdrawn":
        spans.append((pair.status_from or cohort.start, None, "withdrawn"))
    return spans


def pair_schedule(cohort: Cohort, pair: Pair) -> Iterator[Occurrence]:
    """Every message of the year for one pair, in due order, with the absence rules applied.

    A step that fell due while the pair was away (not yet joined, paused) follows its `late`
    policy when they come back: `all` is sent on return, `latest` only for the most recent such
    step, `skip` never. Nothing is scheduled after a withdrawal. Each message goes at the send hour
    of its recipients' time zones (see Cohort.send_time).
    """
    spans = _away_spans(cohort, pair)
    timed = pair.mentor.timezone is not None or pair.mentee.timezone is not None
    if not spans and not timed:  # the common case: an active pair, the cohort's clock
        for step in cohort.steps:
            due_at = cohort.send_time(step.due)
            reason = _conference_reason(step, due_at)
            if step.to == "each":
                yield Occurrence(cohort, pair, step, "mentor", due_at, reason)
                yield Occurrence(cohort, pair, step, "mentee", due_at, reason)
            else:
                yield Occurrence(cohort, pair, step, None, due_at, reason)
        return
    latest_in_span: dict[int, Step] = {}
    placed: list[tuple[Step, date, str | None]] = []
    for step in cohort.steps:
        day = step.due
        reason = None
        span_index = next((i for i, (a, b, _) in enumerate(spans)
                           if a <= step.due and (b is None or step.due < b)), None)
        if span_index is not None:
            _, until, why = spans[span_index]
            if until is None:
                continue  # withdrawn, or paused with no end: nothing to schedule
            day = until
            if step.late == "skip":
                reason = why
            elif step.late == "latest":
                latest_in_span[span_index] = step  # steps are in due order: the last one wins
        if reason is None:
            reason = _conference_reason(step, cohort.send_time(day))
        placed.append((step, day, reason))
    superseded = {
        step.key for step, _, _ in placed
        if step.late == "latest"
        and any(step is not last and _in_span(step, spans[i]) for i, last in latest_in_span.items())
    }
    for step, day, reason in placed:
        if step.key in superseded and reason is None:
            reason = "superseded by a later step while the pair was away"
        roles: tuple[Role | None, ...] = ("mentor", "mentee") if step.to == "each" else (None,)
        for role in roles:
            people = (pair.person(role),) if role else pair.people()
            yield Occurrence(cohort, pair, step, role, cohort.send_time(day, people), reason)


def _conference_reason(step: Step, due_at: datetime) -> str | None:
    if step.conference is None:
        return None
    if step.conference.cancelled:
        return "conference cancelled"
    if due_at.date() >= step.conference.start:
        return "conference already begun"
    return None


def _in_span(step: Step, span: tuple[date, date | None, str]) -> bool:
    a, b, _ = span
    return a <= step.due and (b is None or step.due < b)


def with_history(program: Program, history: Mapping[tuple[str, str], list[tuple[str, datetime]]]) -> Program:
    """Date the roster's undated status changes by when runs first saw them.

    A pair marked `paused` or `withdrawn` without dates is taken to be so since a run first saw that
    status; a pair active again after such a pause resumes from the day a run saw it active, with the
    `late` rules for what it missed. Dates in the roster always win.
    """
    cohorts = []
    for cohort in program.cohorts:
        pairs = []
        for pair in cohort.pairs:
            seen = history.get((cohort.id, pair.id), [])
            if pair.status_from is None and pair.status_until is None and seen:
                pair = _dated(pair, seen, cohort)
            pairs.append(pair)
        cohorts.append(replace(cohort, pairs=tuple(pairs)))
    return replace(program, cohorts=tuple(cohorts))


def _dated(pair: Pair, seen: list[tuple[str, datetime]], cohort: Cohort) -> Pair:
    def day(at: datetime) -> date:
        return at.astimezone(cohort.timezone).date()

    status, since = seen[-1]
    if pair.status != status:  # not recorded for this status (a dry run): nothing to date it by
        return pair
    if status in ("paused", "withdrawn"):
        return replace(pair, status_from=day(since))
    if len(seen) >= 2 and seen[-2][0] == "paused":
        # active again after a pause: the pause becomes a dated one that ended when it was lifted
        return replace(pair, status="paused", status_from=day(seen[-2][1]), status_until=day(since))
    return pair


def year_schedule(program: Program) -> Iterator[Occurrence]:
    """Every occurrence of every pair of every cohort (unordered across pairs)."""
    for cohort in program.cohorts:
        for pair in cohort.pairs:
            yield from pair_schedule(cohort, pair)


def due(
    occurrences: Iterable[Occurrence],
    *,
    now: datetime,
    settled: Container[str],
    late_window: timedelta | None,
    retrying: Container[str] = (),
) -> Plan:
    """Split what has come due by `now` and is not settled in the ledger into send and skip.

    A message more than `late_window` past its time is skipped (a coordinator starting mid-year
    floods nobody); `late_window=None` is the catch-up that sends them anyway. Messages already
    attempted (`retrying`: deferred or uncertain) are never dropped by the window.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    plan = Plan()
    for occ in occurrences:
        if occ.due_at > now:
            if (plan.next_due is None or occ.due_at < plan.next_due) and occ.key not in settled:
                plan.next_due = occ.due_at
            continue
        if occ.key in settled:
            continue
        if occ.skip_reason is not None:
            plan.skip.append(occ)
        elif late_window is not None and now - occ.due_at > late_window and occ.key not in retrying:
            days = (now - occ.due_at).days
            plan.skip.append(_with_reason(occ, f"{days} days late, past the {late_window.days}-day window"))
        else:
            plan.send.append(occ)
    plan.send.sort(key=lambda o: (o.due_at, o.key))
    return plan


def upcoming(occurrences: Iterable[Occurrence], *, start: datetime, end: datetime,
             settled: Container[str] = ()) -> list[Occurrence]:
    """Messages to be sent with due time in [start, end), not yet settled, in time order."""
    found = [o for o in occurrences
             if start <= o.due_at < end and o.skip_reason is None and o.key not in settled]
    found.sort(key=lambda o: (o.due_at, o.key))
    return found


def _with_reason(occ: Occurrence, reason: str) -> Occurrence:
    return Occurrence(occ.cohort, occ.pair, occ.step, occ.role, occ.due_at, reason, occ.change)
