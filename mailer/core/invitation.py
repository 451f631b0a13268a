"""The calendar invitation a meetup message carries, decided from its occurrence: REQUEST, update or CANCEL.

Kept apart from meetups.py because it needs the iCalendar builder, and icalendar is slow to import: a run
imports this only when it has an invitation to send.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailer.core.ical import Invite, invite_uid
from mailer.core.meetups import meetup_start
from mailer.core.occurrence import Occurrence


def build_invite(occ: Occurrence, now: datetime) -> Invite:
    """The calendar invitation a meetup message carries: REQUEST at SEQUENCE 0, or its change."""
    conf = occ.step.conference
    assert conf is not None and conf.meetup is not None
    cohort, pair = occ.cohort, occ.pair
    coord = cohort.coordinator
    start = meetup_start(conf)
    end = (start.astimezone(UTC) + timedelta(minutes=conf.meetup.minutes)).astimezone(conf.timezone)
    change = occ.change
    method = change.method if change else "REQUEST"
    description = (f"Meetup of {pair.mentor.name} and {pair.mentee.name} at {conf.name}, {conf.city}, "
                   f"arranged by the {cohort.name}.")
    if method == "CANCEL":
        description = f"{change.change if change else ''}\n\n{description} The meetup is off.".strip()
    else:
        description += f" Reply to let {coord.name} know whether you can come."
        if change is not None:
            description = f"{change.change}\n\n{description}"
    return Invite(
        uid=(change.uid if change and change.uid else
             invite_uid(cohort.id, pair.id.lower(), conf.key, coord.ascii_email.rpartition("@")[2])),
        sequence=change.sequence if change else 0,
        method=method,
        summary=f"Mentoring meetup: {pair.mentor.first_name} & {pair.mentee.first_name} at {conf.name}",
        description=description,
        location=f"{conf.meetup.place}, {conf.city}" if conf.city not in conf.meetup.place else conf.meetup.place,
        start=start,
        end=end,
        organizer=(coord.name, coord.ascii_email),
        attendees=tuple((pair.person(r).name, pair.person(r).ascii_email) for r in occ.recipients()),
        dtstamp=now.astimezone(UTC),
    )
