"""The year of each pair: every message placed on its send time, with joins, pauses and withdrawals applied.

Pure: no clock, no I/O. A pair's year is computed from its dates alone, so a run on any day, a rerun, or a
rehearsal of the whole year all see the same schedule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import date, datetime

from mailer.core.model import Cohort, Pair, Program, Role, Step
from mailer.core.occurrence import Occurrence


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
            due_at = cohort.send_time(send_day(cohort, step.due))
            reason = _conference_reason(step, due_at)
            if step.to == "each":
                yield Occurrence(cohort, pair, step, "mentor", due_at, reason)
                yield Occurrence(cohort, pair, step, "mentee", due_at, reason)
            else:
                yield Occurrence(cohort, pair, step, None, due_at, reason)
        return
    latest_in_span: dict[int, Step] = {}
    placed: list[tuple[Step, date, str | None]] = []
    first_due = min((s.due for s in cohort.steps), default=cohort.start)
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
            if why == "joined late" and step.due > first_due:
                # the welcome on the day they join, the rest a few days on: not all in the same second
                day = min(date.fromordinal(until.toordinal() + cohort.late_pickup_days), cohort.end)
            if step.late == "skip":
                reason = why
            elif step.late == "latest":
                latest_in_span[span_index] = step  # steps are in due order: the last one wins
        if reason is None:
            reason = _conference_reason(step, cohort.send_time(day))
        placed.append((step, send_day(cohort, day), reason))
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


def send_day(cohort: Cohort, day: date) -> date:
    """`day`, or the next day of the week the program sends on (`send_days`)."""
    while day.weekday() not in cohort.send_days and cohort.send_days:
        day = date.fromordinal(day.toordinal() + 1)
    return day


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
            seen = history.get((cohort.id, pair.id.lower()), [])
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
