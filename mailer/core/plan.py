"""What a run does at `now`: the one plan every command shares, built from the program and a ledger snapshot.

Pure: no clock, no I/O. A run, a dry run, `plan`, `status`, the report, the digest and the rehearsal all
call `build_plan`; they differ only in what they do with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mailer.core.meetups import invite_changes, orphans
from mailer.core.model import Program
from mailer.core.occurrence import Occurrence, with_reason
from mailer.core.records import LedgerView, SentInvite, Suppressed
from mailer.core.year import with_history, year_schedule

HORIZON = timedelta(days=31)  # how far ahead a plan lists what is coming, unless asked for more


@dataclass(slots=True)
class Plan:
    """A run's work at `now`, and what comes after it.

    `program` is the program as the ledger dates it (undated pauses and withdrawals placed on the day a run
    first saw them): every use of the plan sees the same roster.
    """

    program: Program
    now: datetime
    send: list[Occurrence] = field(default_factory=list)  # due now, in due order
    skip: list[Occurrence] = field(default_factory=list)  # due now, not sent by the year's rules
    upcoming: list[Occurrence] = field(default_factory=list)  # due after now, within the horizon, in order
    next_due: datetime | None = None  # the earliest unsettled message after now: when a run next has work
    next_by_cohort: dict[str, Occurrence] = field(default_factory=dict)  # each cohort's next message to send
    orphan_invites: list[SentInvite] = field(default_factory=list)  # held by pairs whose row is gone

    def notices(self) -> list[tuple[str, str]]:
        """(cohort, sentence) for what the coordinator should know about the plan itself."""
        return [(i.cohort, f"pair {i.pair} of cohort {i.cohort} holds the invitation to the {i.conference} meetup "
                           "but is no longer in the roster: the invitation still stands, and changes to the meetup "
                           "still reach them; to cancel it, put the row back with status withdrawn")
                for i in self.orphan_invites]

    def coming(self, start: datetime, end: datetime, *, due_now: bool = True) -> list[Occurrence]:
        """What is still to be sent with its time in [start, end), in time order; with `due_now`, a message
        due now and not yet sent counts as coming whenever `now` is in the range."""
        now = [o for o in self.send if start <= o.due_at < end or (due_now and start <= self.now < end)]
        return now + [o for o in self.upcoming if start <= o.due_at < end]


def occurrences(program: Program, view: LedgerView, now: datetime) -> Iterator[Occurrence]:
    """The year's messages plus the invitation updates and cancellations owed at `now`, streamed: a plan
    keeps only what is due or coming, never the whole year."""
    if view.invites:
        yield from invite_changes(program.cohorts, view.invites, now)
    if not view.suppressed:
        yield from year_schedule(program)
        return
    for occ in year_schedule(program):
        yield honour(occ, view.suppressed)


def honour(occ: Occurrence, suppressed: dict[str, Suppressed]) -> Occurrence:
    """The message without the partners who get no more prompts: the other partner still gets it, and one
    with nobody left is skipped with the reason. Changes to an invitation already held (an update, a
    cancellation) are not prompts: they still reach everyone who holds it. The key stays the same."""
    if occ.change is not None or occ.skip_reason is not None:
        return occ
    out = []
    for role in occ.recipients():
        person = occ.pair.person(role)
        found = suppressed.get(person.ascii_email.lower()) or suppressed.get(person.email.lower())
        if found is not None:
            out.append((role, found.why))
    if not out:
        return occ
    if len(out) == len(occ.recipients()):
        return with_reason(occ, "; ".join(f"{occ.pair.person(r).email} gets no more prompts: {why}" for r, why in out))
    return replace(occ, left_out=tuple(out))


def build_plan(program: Program, view: LedgerView, *, now: datetime, window: timedelta | None,
               horizon: timedelta = HORIZON) -> Plan:
    """Split the year at `now` into what to send, what to record as skipped, and what is coming.

    A message more than `window` past its time is skipped (a coordinator starting mid-year floods nobody);
    `window=None` is the catch-up that sends them anyway. Messages already attempted (deferred or
    uncertain) are never dropped by the window.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    dated = with_history(program, view.history)
    plan = Plan(program=dated, now=now, orphan_invites=orphans(dated.cohorts, view.invites, now))
    due(occurrences(dated, view, now), plan, settled=view.settled, retrying=view.retrying, window=window,
        horizon=horizon, trial=view.trial, held=view.held)
    return plan


def due(found: Iterable[Occurrence], plan: Plan, *, settled: frozenset[str] | set[str],
        retrying: frozenset[str] | set[str], window: timedelta | None, horizon: timedelta,
        trial: frozenset[str] = frozenset(), held: dict[str, str] | None = None) -> None:
    """Sort each message into the plan: due now (send or skip), or coming; settled ones drop out."""
    now, end = plan.now, plan.now + horizon
    for occ in found:
        if occ.key in settled:
            continue
        if occ.due_at > now:
            # a message the rules will skip still wakes a run: it is recorded as skipped on its day
            if plan.next_due is None or occ.due_at < plan.next_due:
                plan.next_due = occ.due_at
            if occ.skip_reason is not None:
                continue
            best = plan.next_by_cohort.get(occ.cohort.id)
            if best is None or (occ.due_at, occ.key) < (best.due_at, best.key):
                plan.next_by_cohort[occ.cohort.id] = occ
            if occ.due_at < end:
                plan.upcoming.append(occ)
        elif occ.skip_reason is not None:
            plan.skip.append(occ)
        elif window is not None and now - occ.due_at > window and occ.key not in retrying:
            days = (now - occ.due_at).days
            why = f"{days} days late, past the {window.days}-day window"
            if occ.key in trial:
                why = f"reached only the outbox (a trial run); {why} when it went live"
            elif held and occ.cohort.id in held:
                why = f"held back by a problem in the cohort's files since {held[occ.cohort.id][:10]}; {why}"
            plan.skip.append(with_reason(occ, why, late=True))
        else:
            plan.send.append(occ)
    plan.send.sort(key=lambda o: (o.due_at, o.key))
    plan.upcoming.sort(key=lambda o: (o.due_at, o.key))
