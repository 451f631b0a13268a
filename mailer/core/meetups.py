"""Meetup invitations over time: what each pair holds, and the updates and cancellations owed to it.

Pure: the ledger's record of sent invitations comes in as values, `now` as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, time
from typing import Any

from mailer.core.dates import fmt_day, fmt_time
from mailer.core.model import Cohort, Conference, Pair, Person, Role, Step
from mailer.core.occurrence import InviteChange, Occurrence
from mailer.core.records import SentInvite


def details(conf: Conference) -> dict[str, Any]:
    """What an invitation says, as the ledger keeps it: when, how long, where, in which zone, at what."""
    assert conf.meetup is not None
    m = conf.meetup
    return {"day": m.day.isoformat(), "start": m.start.strftime("%H:%M"), "minutes": m.minutes, "place": m.place,
            "tz": conf.timezone.key, "city": conf.city, "venue": conf.venue, "name": conf.name}


def changed(held: dict[str, Any], now: dict[str, Any]) -> bool:
    """Does the invitation say something else now? Only what the held record knows is compared: one sent
    by an older mentor-mailer kept day, time, length and place alone."""
    return any(held[k] != now[k] for k in now if k in held)


def describe_change(old: dict[str, Any], conf: Conference) -> str:
    """One line for the email: what changed since the invitation the pair holds, with the zone."""
    assert conf.meetup is not None
    new = conf.meetup
    zone = meetup_start(conf).tzname() or conf.timezone.key
    parts = []
    was_day, was_start = old.get("day"), old.get("start")
    if was_day != new.day.isoformat():
        old_time = fmt_time(time.fromisoformat(str(was_start)))
        parts.append(f"moved from {fmt_day(date.fromisoformat(str(was_day)))} at {old_time} to "
                     f"{fmt_day(new.day)} at {fmt_time(new.start)} {zone}")
    elif was_start != new.start.strftime("%H:%M"):
        parts.append(f"now starts at {fmt_time(new.start)} {zone} instead of "
                     f"{fmt_time(time.fromisoformat(str(was_start)))}")
    if old.get("minutes") != new.minutes:
        parts.append(f"now lasts {new.minutes} minutes instead of {old.get('minutes')}")
    if old.get("place") != new.place or old.get("venue", conf.venue) != conf.venue:
        parts.append(f"is now at {new.place}")
    if old.get("city", conf.city) != conf.city:
        parts.append(f"is now in {conf.city}")
    if old.get("tz", conf.timezone.key) != conf.timezone.key:
        parts.append(f"is now in the {conf.timezone.key} time zone ({fmt_time(new.start)} {zone})")
    if old.get("name", conf.name) != conf.name and not parts:
        parts.append(f"is now at {conf.name}")
    return "The meetup " + "; it ".join(parts) + "." if parts else "The meetup details were re-sent."


def meetup_start(conf: Conference) -> datetime:
    assert conf.meetup is not None
    return datetime.combine(conf.meetup.day, conf.meetup.start, tzinfo=conf.timezone)


def withdrawn_at(cohort: Cohort, pair: Pair, now: datetime) -> bool:
    if pair.status != "withdrawn":
        return False
    return pair.status_from is None or pair.status_from <= now.astimezone(cohort.timezone).date()


def invite_changes(cohorts: Iterable[Cohort], sent: Iterable[SentInvite], now: datetime) -> list[Occurrence]:
    """Updates and cancellations owed to the people who hold an invitation, as messages due `now`.

    Only explicit changes count: a pair withdrawn in the roster, a conference marked cancelled, details that
    say something else, an attendee's address that changed. A pair whose row is gone (deleted, or bad) keeps
    its invitation: a change of the meetup still reaches the people holding it, from the addresses the
    ledger kept; a withdrawal needs the row, marked withdrawn. A meetup already begun is left alone.
    """
    by_id = {c.id: c for c in cohorts}
    # indexed once: a scan per held invitation made a run at 40,000 pairs cost seconds
    pairs = {(c.id, p.id.lower()): p for c in cohorts for p in c.pairs}
    steps = {(c.id, s.key): s for c in cohorts for s in c.steps}
    out: list[Occurrence] = []
    for inv in sent:
        cohort = by_id.get(inv.cohort)
        step = steps.get((inv.cohort, inv.step))
        if cohort is None or step is None or step.conference is None or step.conference.meetup is None:
            continue
        conf = step.conference
        if meetup_start(conf) <= now:
            continue
        pair = pairs.get((inv.cohort, inv.pair.lower()))
        gone = pair is None
        if pair is None:
            pair = holders(inv)
            if pair is None:
                continue  # sent before the ledger kept who holds it: nobody to write to
        change = _change(inv, cohort, pair, conf, now, gone=gone)
        if change is not None:
            out.append(Occurrence(cohort, pair, step, None, now, None, change))
        if not gone and inv.method == "REQUEST" and change is not None and change.method == "REQUEST":
            out += _drops(inv, cohort, pair, step, now, change.sequence)
    out.sort(key=lambda o: o.key)
    return out


def _change(inv: SentInvite, cohort: Cohort, pair: Pair, conf: Conference, now: datetime, *,
            gone: bool) -> InviteChange | None:
    now_says = details(conf)
    people = [list(a) for a in _attendees(pair)]
    moved = inv.attendees and sorted(e.lower() for _, e in inv.attendees) != sorted(e.lower() for _, e in people)
    seq = inv.sequence + 1
    if inv.method == "REQUEST":
        if conf.cancelled:
            return InviteChange("CANCEL", seq, f"{conf.name} has been cancelled, and the meetup with it.", inv.uid)
        if not gone and withdrawn_at(cohort, pair, now):
            return InviteChange("CANCEL", seq, "Your pair has left the program, so this meetup invitation is "
                                               "withdrawn.", inv.uid)
        if changed(inv.details, now_says):
            return InviteChange("REQUEST", seq, describe_change(inv.details, conf), inv.uid)
        if moved:
            return InviteChange("REQUEST", seq, "The invitation now goes to the address the program has for "
                                                "you.", inv.uid)
        return None
    if not gone and not conf.cancelled and not withdrawn_at(cohort, pair, now) and pair.status == "active":
        return InviteChange("REQUEST", seq, f"Good news: the meetup at {conf.name} is on again.", inv.uid)
    return None


def _drops(inv: SentInvite, cohort: Cohort, pair: Pair, step: Step, now: datetime, sequence: int) -> list[Occurrence]:
    """A CANCEL for each attendee no longer invited (RFC 5546: the removed attendee is told, same UID)."""
    current = {p.ascii_email.lower() for p in pair.people()}
    out = []
    roles: tuple[Role, Role] = ("mentor", "mentee")  # the ledger keeps attendees in the pair's order
    for role, (name, address) in zip(roles, inv.attendees, strict=False):
        if address.lower() in current:
            continue
        gone = Person(name=name, email=address, ascii_email=address, role=role)
        holder = replace(pair, mentor=gone) if role == "mentor" else replace(pair, mentee=gone)
        out.append(Occurrence(cohort, holder, step, role, now, None, InviteChange(
            "CANCEL", sequence, "The program now writes to you at another address; this copy of the meetup "
                                "invitation is withdrawn.", inv.uid, drop=True)))
    return out


def holders(inv: SentInvite) -> Pair | None:
    """The people who hold an invitation whose pair is no longer in the roster, from what the ledger kept."""
    if len(inv.attendees) != 2:
        return None
    (mentor_name, mentor), (mentee_name, mentee) = inv.attendees
    return Pair(inv.pair, Person(mentor_name, mentor, mentor, "mentor"), Person(mentee_name, mentee, mentee, "mentee"))


def orphans(cohorts: Iterable[Cohort], sent: Iterable[SentInvite], now: datetime) -> list[SentInvite]:
    """Invitations still standing whose pair is no longer in the roster (a deleted row): the coordinator hears."""
    by_id = {c.id: c for c in cohorts}
    pairs = {(c.id, p.id.lower()) for c in cohorts for p in c.pairs}
    out = []
    for inv in sent:
        cohort = by_id.get(inv.cohort)
        step = cohort.step(inv.step) if cohort else None
        if (inv.method == "REQUEST" and step is not None and step.conference is not None
                and step.conference.meetup is not None and meetup_start(step.conference) > now
                and (inv.cohort, inv.pair.lower()) not in pairs):
            out.append(inv)
    return out


def _attendees(pair: Pair) -> tuple[tuple[str, str], ...]:
    return tuple((p.name, p.ascii_email) for p in pair.people())
