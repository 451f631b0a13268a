"""Builds the iCalendar invitation for a pair's conference meetup; pure: no clock, no I/O.

The output is one VCALENDAR (RFC 5545) carrying an iTIP method (RFC 5546) for an email part (RFC 6047):
METHOD:REQUEST to invite or update (a higher SEQUENCE, same UID), METHOD:CANCEL to cancel. It has one
VEVENT whose DTSTART and DTEND are local times with TZID=<the conference's zone key>, and one VTIMEZONE
for that zone in the rule form Outlook reads: a STANDARD and a DAYLIGHT observance, each with a yearly
RRULE derived from tzdata's actual transitions in the event's year.

icalendar 7 does the structure, the parameter quoting (RFC 6868 for a '"' in a CN) and the folding at
75 octets, which never splits a UTF-8 character. TEXT values are escaped here instead: icalendar's
escaper reads a literal backslash-N in the text as a line break, so "C:\\Notes" would lose its backslash.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import icalendar

PRODID = "-//mentor-mailer//mentor-mailer 0.1//EN"
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_RULE_BASE_YEAR = 1970  # the observances' DTSTART year, as Google Calendar and others write it
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # CTLs a TEXT value may not carry (TAB and LF may)
_NAME_SPACE = re.compile(r"[\x00-\x1f\x7f\s]+")


@dataclass(frozen=True, slots=True)
class Invite:
    """One meetup invitation, update or cancellation, with every value already decided."""

    uid: str
    sequence: int
    method: Literal["REQUEST", "CANCEL"]
    summary: str
    description: str
    location: str
    start: datetime  # aware, tzinfo is a zoneinfo.ZoneInfo (the conference's zone)
    end: datetime  # aware, same zone
    organizer: tuple[str, str]  # (name, email)
    attendees: tuple[tuple[str, str], ...]  # (name, email) for each partner
    dtstamp: datetime  # aware; written in UTC


def invite_uid(cohort_id: str, pair_id: str, conference_key: str, domain: str) -> str:
    """Stable per cohort, pair and conference; deterministic: a sha256-based token + '@' + domain.

    The three ids are hashed as a JSON list, so no choice of ids can collide with another by shifting
    a separator ("a/b", "c" against "a", "b/c").
    """
    if not domain or not domain.isascii() or "@" in domain or any(c.isspace() or not c.isprintable() for c in domain):
        raise ValueError(f"invite_uid: {domain!r} is not a domain name")
    key = json.dumps(["mentor-mailer meetup", cohort_id, pair_id, conference_key], ensure_ascii=True)
    return hashlib.sha256(key.encode("ascii")).hexdigest()[:32] + "@" + domain


_PERSONAL = (b"UID", b"SUMMARY", b"DESCRIPTION", b"ATTENDEE")  # what differs between the pairs of one meetup
# A cache for speed only (a meetup run at 10,000 pairs spends most of its time serialising the same VTIMEZONE):
# tests/test_invite.py proves the bytes equal icalendar's whole serialisation. It can go when icalendar
# serialises an event in well under a millisecond (benchmarks/run.py, case 3 against case 1, says when).
_skeletons: dict[tuple[object, ...], list[bytes]] = {}


def build_ics(invite: Invite) -> bytes:
    """The whole VCALENDAR as UTF-8 bytes with CRLF line ends, lines folded at 75 octets.

    A meetup's invitations differ between pairs only in UID, SUMMARY, DESCRIPTION and ATTENDEE, so the
    rest (the VTIMEZONE above all) is serialised once per meetup version and reused; only the pair's
    own properties are serialised per message, by the same icalendar code, into the same places.
    """
    _check(invite)
    # instants by timestamp: aware datetimes in one zone compare equal across a fold, these do not
    key = (invite.method, invite.sequence, invite.start.timestamp(), invite.end.timestamp(), invite.start.tzinfo,
           invite.start.fold, invite.end.fold, invite.location, invite.organizer, invite.dtstamp.timestamp(),
           len(invite.attendees))
    skeleton = _skeletons.get(key)
    if skeleton is None:
        if len(_skeletons) > 256:
            _skeletons.clear()
        skeleton = _skeletons[key] = _blocks(_full_ics(invite))
    event = icalendar.Event()
    event.add("uid", invite.uid)
    event.add("summary", _Text(invite.summary))
    event.add("description", _Text(invite.description))
    for name, email in invite.attendees:
        event.add("attendee", _attendee(name, email))
    personal: dict[bytes, list[bytes]] = {}
    for line in event.content_lines()[1:-1]:  # unfolded; BEGIN and END left out
        block = _fold(str(line)) + b"\r\n"
        personal.setdefault(_prop_name(block), []).append(block)
    out: list[bytes] = []
    for block in skeleton:
        prop = _prop_name(block)
        if prop in _PERSONAL:
            out += personal.pop(prop, [])  # all attendees at the first ATTENDEE's place
        else:
            out.append(block)
    return b"".join(out)


def _fold(line: str) -> bytes:
    """icalendar's folding (segments of at most 74 octets, never inside a UTF-8 character, and a
    trailing backslash or caret carried to the next segment so no escape is split), on bytes:
    its own character loop is most of the cost of an invitation."""
    data = line.encode("utf-8")
    if len(data) <= 74:
        return data
    parts = []
    start = 0
    while len(data) - start > 74:
        end = start + 74
        while data[end] & 0xC0 == 0x80:  # the first byte of the character that does not fit
            end -= 1
        if data[end - 1] in b"\\^" and end - 1 > start:
            end -= 1
        parts.append(data[start:end])
        start = end
    parts.append(data[start:])
    return b"\r\n ".join(parts)


def _blocks(data: bytes) -> list[bytes]:
    """Content lines with their folded continuations, each ending in CRLF."""
    blocks: list[bytes] = []
    for line in data.split(b"\r\n")[:-1]:
        if line[:1] == b" " and blocks:
            blocks[-1] += line + b"\r\n"
        else:
            blocks.append(line + b"\r\n")
    return blocks


def _prop_name(block: bytes) -> bytes:
    end = min((i for i in (block.find(b":"), block.find(b";")) if i >= 0), default=len(block))
    return block[:end]


def _attendee(name: str, email: str) -> icalendar.vCalAddress:
    attendee = _address(name, email)
    attendee.params["CUTYPE"] = "INDIVIDUAL"
    attendee.params["ROLE"] = "REQ-PARTICIPANT"
    attendee.params["PARTSTAT"] = "NEEDS-ACTION"
    attendee.params["RSVP"] = "TRUE"
    return attendee


def _full_ics(invite: Invite) -> bytes:
    """The calendar built and serialised whole by icalendar."""
    zone = _check(invite)
    tzid = _tzid(zone)

    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", invite.method)
    cal.add_component(vtimezone(zone, invite.start))

    event = icalendar.Event()
    event.add("uid", invite.uid)
    event.add("dtstamp", invite.dtstamp.astimezone(UTC))
    event.add("sequence", invite.sequence)
    event.add("dtstart", _local(invite.start, zone, tzid))
    event.add("dtend", _local(invite.end, zone, tzid))
    event.add("summary", _Text(invite.summary))
    event.add("location", _Text(invite.location))
    event.add("description", _Text(invite.description))
    event.add("status", "CONFIRMED" if invite.method == "REQUEST" else "CANCELLED")
    event.add("transp", "OPAQUE")
    event.add("organizer", _address(*invite.organizer))
    for name, email in invite.attendees:
        event.add("attendee", _attendee(name, email))
    cal.add_component(event)

    data: bytes = cal.to_ical()
    return data


def vtimezone(zone: ZoneInfo, around: datetime) -> icalendar.Timezone:
    """A VTIMEZONE for `zone` valid around `around`: one STANDARD and one DAYLIGHT, each with a yearly
    RRULE (FREQ=YEARLY;BYMONTH=..;BYDAY=..), the form Outlook reads correctly; a zone without DST in that
    year gets one STANDARD only (no RRULE).

    The rules come from tzdata's transitions in `around`'s local year: the month, the weekday and its
    occurrence in the month (-1 when the day is among the month's last seven, as the EU's last Sunday),
    at the local wall-clock time the transition happens (in the offset before it). Each observance's
    DTSTART is the rule's first occurrence in 1970, so the two always agree. The rule matches tzdata
    exactly in that year, and the offset before the year's first transition is the one the previous
    year's rule leaves in force, so the whole year is right even where the rule changes from year to year.

    A year that does not fit that form (one transition, as when a zone ends DST; or more than two) gets
    an observance in force from 1970, then one observance per transition of the year, without RRULEs.

    Why not icalendar's Timezone.from_tzinfo: in icalendar 7 it starts DAYLIGHT at 03:00 on a 02:00
    spring-forward (RFC 5545 wants the local time in the offset before the change) and writes no RRULE.
    tests/test_invite.py fails when icalendar no longer does, to say this writer can go.
    """
    year = around.astimezone(zone).year if around.tzinfo is not None else around.year
    base = min(_RULE_BASE_YEAR, year - 1)
    changes = _transitions(zone, year)
    tz = icalendar.Timezone()
    tz.add("tzid", _tzid(zone))

    if len(changes) == 2 and changes[0].before == changes[1].after and changes[0].after == changes[1].before:
        for change in sorted(changes, key=lambda c: c.after > c.before):  # STANDARD first, then DAYLIGHT
            kind = icalendar.TimezoneDaylight() if change.after > change.before else icalendar.TimezoneStandard()
            n, weekday = _occurrence(change.wall)
            first = _nth_weekday(base, change.wall.month, weekday, n)
            kind.add("dtstart", datetime.combine(first, change.wall.time()))
            kind.add("tzoffsetfrom", change.before)
            kind.add("tzoffsetto", change.after)
            kind.add("tzname", change.name)
            kind.add("rrule", {"FREQ": "YEARLY", "BYMONTH": change.wall.month,
                               "BYDAY": f"{n}{_WEEKDAYS[weekday]}"})
            tz.add_component(kind)
        return tz

    # in force from the base year: the offset the year starts with
    opening = datetime(year, 1, 1, tzinfo=zone)
    offset = changes[0].before if changes else _offset(opening)
    first_kind = _observance(opening)
    first_kind.add("dtstart", datetime.combine(date(base, 1, 1), time()))
    first_kind.add("tzoffsetfrom", offset)
    first_kind.add("tzoffsetto", offset)
    first_kind.add("tzname", opening.tzname() or _offset_name(offset))
    tz.add_component(first_kind)
    for change in changes:
        after = change.instant.astimezone(zone)
        kind = _observance(after)
        kind.add("dtstart", change.wall)
        kind.add("tzoffsetfrom", change.before)
        kind.add("tzoffsetto", change.after)
        kind.add("tzname", change.name)
        tz.add_component(kind)
    return tz


# --- the event -----------------------------------------------------------------------------------------


class _Text(icalendar.vText):
    """A TEXT value escaped per RFC 5545 3.3.11 here, not by icalendar (see the module docstring)."""

    def to_ical(self) -> bytes:
        text = _CONTROL.sub("", str(self).replace("\r\n", "\n").replace("\r", "\n"))
        escaped = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")
        return escaped.encode("utf-8")


def _address(name: str, email: str) -> icalendar.vCalAddress:
    """A mailto: CAL-ADDRESS with its CN; icalendar quotes the CN and applies RFC 6868 to it."""
    addr = email.strip()
    if not addr or "@" not in addr or any(c.isspace() or not c.isprintable() for c in addr):
        raise ValueError(f"invite: {email!r} is not an email address")
    value = icalendar.vCalAddress(f"mailto:{addr}")
    cn = _NAME_SPACE.sub(" ", name).strip()  # a parameter value can hold no control character
    if cn:
        value.params["CN"] = cn
    return value


def _check(invite: Invite) -> ZoneInfo:
    zone = invite.start.tzinfo
    if not isinstance(zone, ZoneInfo) or not zone.key:
        raise ValueError(f"invite {invite.uid}: start must carry a zoneinfo.ZoneInfo with a key, not {zone!r}")
    end_zone = invite.end.tzinfo
    if not isinstance(end_zone, ZoneInfo) or end_zone.key != zone.key:
        raise ValueError(f"invite {invite.uid}: end must be in {zone.key}, not {end_zone!r}")
    if invite.end <= invite.start:
        raise ValueError(f"invite {invite.uid}: end {invite.end} is not after start {invite.start}")
    if invite.dtstamp.tzinfo is None or invite.dtstamp.utcoffset() is None:
        raise ValueError(f"invite {invite.uid}: dtstamp must be aware")
    if invite.sequence < 0:
        raise ValueError(f"invite {invite.uid}: sequence {invite.sequence} is negative")
    if invite.method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"invite {invite.uid}: method {invite.method!r} is neither REQUEST nor CANCEL")
    if not invite.uid or any(c.isspace() or not c.isprintable() for c in invite.uid):
        raise ValueError(f"invite: uid {invite.uid!r} is empty or has spaces or control characters")
    if not invite.attendees:
        raise ValueError(f"invite {invite.uid}: no attendees")
    return zone


def _tzid(zone: ZoneInfo) -> str:
    # icalendar drops a TZID parameter whose value is "UTC", which would leave the time floating
    return "Etc/UTC" if zone.key == "UTC" else zone.key


def _local(moment: datetime, zone: ZoneInfo, tzid: str) -> icalendar.vDDDTypes:
    """A DATE-TIME in the zone's wall-clock time with an explicit TZID, whatever icalendar maps zones to.

    Going through UTC turns a wall time that does not exist (in a spring-forward gap) into the real one
    for the same instant. The second pass through a repeated hour cannot be written with a TZID at all:
    RFC 5545 (3.3.5) reads such a local time as the first pass, an hour early; so it is refused.
    """
    local = moment.astimezone(UTC).astimezone(zone)
    if local.fold and local.utcoffset() != local.replace(fold=0).utcoffset():
        raise ValueError(f"invite: {local.isoformat()} is the second pass through a repeated hour in "
                         f"{zone.key}; iCalendar would read it as the first (RFC 5545 3.3.5)")
    value = icalendar.vDDDTypes(local.replace(tzinfo=None))
    value.params["TZID"] = tzid
    return value


# --- the time zone -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Transition:
    instant: datetime  # UTC, the first second of the new offset
    wall: datetime  # naive local wall-clock time of that instant, in the offset before it
    before: timedelta
    after: timedelta
    name: str  # the abbreviation after it


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _transitions(zone: ZoneInfo, year: int) -> list[_Transition]:
    """The zone's UTC offset changes whose local wall-clock time falls in `year`, found day by day, then
    pinned to the second by bisection."""
    found: list[_Transition] = []
    day = timedelta(days=1)
    t = datetime(year, 1, 1, tzinfo=UTC) - 2 * day
    end = datetime(year + 1, 1, 1, tzinfo=UTC) + 2 * day
    before = _offset(t.astimezone(zone))
    while t < end:
        nxt = t + day
        after = _offset(nxt.astimezone(zone))
        if after != before:
            lo, hi = int(t.timestamp()), int(nxt.timestamp())  # offset(lo) == before, offset(hi) == after
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(datetime.fromtimestamp(mid, zone)) == before:
                    lo = mid
                else:
                    hi = mid
            instant = datetime.fromtimestamp(hi, UTC)
            wall = (instant + before).replace(tzinfo=None)
            if wall.year == year:
                local = instant.astimezone(zone)
                found.append(_Transition(instant, wall, before, after, local.tzname() or _offset_name(after)))
        t, before = nxt, after
    return found


def _occurrence(day: datetime) -> tuple[int, int]:
    """(n, weekday) such that `day` is the n-th such weekday of its month; -1 for the last seven days."""
    last = calendar.monthrange(day.year, day.month)[1]
    n = -1 if day.day > last - 7 else (day.day - 1) // 7 + 1
    return n, day.weekday()


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (or, for -1, the last) `weekday` of the month."""
    last = calendar.monthrange(year, month)[1]
    if n == -1:
        return date(year, month, last - (date(year, month, last).weekday() - weekday) % 7)
    return date(year, month, 1 + (weekday - date(year, month, 1).weekday()) % 7 + 7 * (n - 1))


def _observance(moment: datetime) -> icalendar.TimezoneStandard | icalendar.TimezoneDaylight:
    """DAYLIGHT where tzdata says the time is summer time; STANDARD otherwise (and for negative DST)."""
    dst = moment.dst()
    return icalendar.TimezoneDaylight() if dst is not None and dst > timedelta(0) else icalendar.TimezoneStandard()


def _offset_name(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
