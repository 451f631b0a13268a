"""Meetup invitations over time: what each pair holds, and the updates and cancellations owed to it.

Pure: the ledger's record of sent invitations comes in as values, `now` as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any

from mailer.core.dates import fmt_day, fmt_time
from mailer.core.model import Cohort, Conference, Meetup, Pair
from mailer.core.occurrence import InviteChange, Occurrence
from mailer.core.records import SentInvite


def details(meetup: Meetup) -> dict[str, Any]:
    """What an update is about: day, time, length and place."""
    return {"day": meetup.day.isoformat(), "start": meetup.start.strftime("%H:%M"),
            "minutes": meetup.minutes, "place": meetup.place}


def describe_change(old: dict[str, Any], new: Meetup) -> str:
    """One line for the email: what changed since the invitation the pair holds."""
    parts = []
    was_day, was_start = old.get("day"), old.get("start")
    if was_day != new.day.isoformat() or was_start != new.start.strftime("%H:%M"):
        old_day = fmt_day(date.fromisoformat(str(was_day)))
        old_time = fmt_time(time.fromisoformat(str(was_start)))
        parts.append(f"moved from {old_day} at {old_time} to {fmt_day(new.day)} at {fmt_time(new.start)}")
    if old.get("minutes") != new.minutes:
        parts.append(f"now lasts {new.minutes} minutes instead of {old.get('minutes')}")
    if old.get("place") != new.place:
        parts.append(f"is now at {new.place}")
    return "The meetup " + "; it ".join(parts) + "." if parts else "The meetup details were re-sent."


def meetup_start(conf: Conference) -> datetime:
    assert conf.meetup is not None
    return datetime.combine(conf.meetup.day, conf.meetup.start, tzinfo=conf.timezone)


def withdrawn_at(cohort: Cohort, pair: Pair, now: datetime) -> bool:
    if pair.status != "withdrawn":
        return False
    return pair.status_from is None or pair.status_from <= now.astimezone(cohort.timezone).date()


def invite_changes(cohorts: Iterable[Cohort], sent: Iterable[SentInvite], now: datetime) -> list[Occurrence]:
    """Updates and cancellations owed to pairs that hold an invitation, as messages due `now`.

    Only explicit changes count: a pair withdrawn in the roster, a conference marked cancelled, or
    new meetup details. A pair or conference missing from the files (a bad row, an edit in progress)
    changes nothing, and a meetup already begun is left alone.
    """
    by_id = {c.id: c for c in cohorts}
    # indexed once: a scan per held invitation made a run at 40,000 pairs cost seconds
    pairs = {(c.id, p.id.lower()): p for c in cohorts for p in c.pairs}
    steps = {(c.id, s.key): s for c in cohorts for s in c.steps}
    out: list[Occurrence] = []
    for inv in sent:
        cohort = by_id.get(inv.cohort)
        if cohort is None:
            continue
        pair = pairs.get((inv.cohort, inv.pair.lower()))
        step = steps.get((inv.cohort, inv.step))
        if pair is None or step is None or step.conference is None or step.conference.meetup is None:
            continue
        conf, meetup = step.conference, step.conference.meetup
        if meetup_start(conf) <= now:
            continue
        change: InviteChange | None = None
        if inv.method == "REQUEST":
            if conf.cancelled:
                change = InviteChange("CANCEL", inv.sequence + 1, f"{conf.name} has been cancelled, and the "
                                                                  "meetup with it.")
            elif withdrawn_at(cohort, pair, now):
                change = InviteChange("CANCEL", inv.sequence + 1, "Your pair has left the program, so this "
                                                                  "meetup invitation is withdrawn.")
            elif inv.details != details(meetup):
                change = InviteChange("REQUEST", inv.sequence + 1, describe_change(inv.details, meetup))
        elif not conf.cancelled and not withdrawn_at(cohort, pair, now) and pair.status == "active":
            change = InviteChange("REQUEST", inv.sequence + 1, f"Good news: the meetup at {conf.name} is on again.")
        if change is not None:
            out.append(Occurrence(cohort, pair, step, None, now, None, change))
    out.sort(key=lambda o: o.key)
    return out
