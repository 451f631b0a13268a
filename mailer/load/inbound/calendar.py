"""Finding an iMIP REPLY (RFC 6047) in any part of a message, in the shapes real calendar clients send."""

from __future__ import annotations

import re
from email.message import Message

from mailer.core.inbound import AttendeeReply, CalendarReply
from mailer.load.inbound import _mime

_ANSWERS = {"ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED"}
_MAX_COMMENT = 500


def is_calendar_part(part: Message) -> bool:
    """text/calendar with or without `method` (Apple leaves it out), application/ics, or a *.ics attachment."""
    ctype = _mime.content_type(part)
    if ctype in ("text/calendar", "application/ics", "text/x-vcalendar"):
        return True
    return not part.is_multipart() and _mime.filename(part).lower().endswith(".ics")


def find_reply(msg: Message) -> tuple[CalendarReply | None, list[str]]:
    """The first calendar part that is a REPLY, and notes on calendar parts that could not be read."""
    notes: list[str] = []
    for part in _mime.walk(msg):
        if not is_calendar_part(part):
            continue
        text = _mime.payload_text(part)
        reply = _read(text, _mime.param(part, "method"))
        if reply is None:
            if "BEGIN:VCALENDAR" not in text.upper():
                notes.append("a calendar part that is not iCalendar")
            continue
        return reply, notes
    return None, notes


def _read(text: str, method_param: str | None) -> CalendarReply | None:
    try:
        found = _with_icalendar(text)
    except Exception:  # Windows zones, bad dates, odd escaping: the few fields we need are read by hand
        found = None
    if found is None:
        found = _by_hand(text)
    if found is None:
        return None
    method, uid, sequence, attendees, comment = found
    method = method or (method_param.upper() if method_param else None)
    if method not in (None, "REPLY"):
        return None  # a forwarded REQUEST or a CANCEL is not an answer
    if method is None and not any(a.partstat in _ANSWERS for a in attendees):
        return None
    if not uid or not attendees:
        return None
    return CalendarReply(uid=uid, sequence=sequence, attendees=tuple(attendees),
                         comment=comment[:_MAX_COMMENT] if comment else None, method=method)


_Found = tuple[str | None, str, int, list[AttendeeReply], str | None]


def _with_icalendar(text: str) -> _Found | None:
    import icalendar  # imported here: only mail with a calendar part needs it

    cal = icalendar.Calendar.from_ical(text)
    method = str(cal.get("METHOD", "")).strip().upper() or None
    for event in cal.walk("VEVENT"):
        uid = str(event.get("UID", "")).strip()
        try:
            sequence = int(str(event.get("SEQUENCE", 0)).strip() or 0)
        except ValueError:
            sequence = 0
        raw = event.get("ATTENDEE", [])
        attendees = []
        for attendee in raw if isinstance(raw, list) else [raw]:
            address = _address(str(attendee))
            partstat = str(getattr(attendee, "params", {}).get("PARTSTAT", "NEEDS-ACTION")).upper()
            if address:
                attendees.append(AttendeeReply(address, partstat))
        comment = event.get("COMMENT")
        if isinstance(comment, list):
            comment = comment[0] if comment else None
        return method, uid, sequence, attendees, str(comment).strip() if comment is not None else None
    return None


_LINE_RE = re.compile(r"^([A-Za-z-]+)((?:;[^:]*)?):(.*)$")
_PARTSTAT_RE = re.compile(r';\s*PARTSTAT\s*=\s*"?([A-Za-z-]+)"?', re.IGNORECASE)


def _by_hand(text: str) -> _Found | None:
    """UID, SEQUENCE, ATTENDEE;PARTSTAT and COMMENT from unfolded content lines (RFC 5545 §3.1)."""
    lines = re.sub(r"\r?\n[ \t]", "", text).splitlines()
    method = None
    uid = ""
    sequence = 0
    attendees: list[AttendeeReply] = []
    comment = None
    in_event = False
    for line in lines:
        match = _LINE_RE.match(line.strip())
        if not match:
            continue
        name, params, value = match.group(1).upper(), match.group(2), match.group(3).strip()
        if name == "BEGIN" and value.upper() == "VEVENT":
            in_event = True
        elif name == "END" and value.upper() == "VEVENT":
            break
        elif name == "METHOD" and not in_event:
            method = value.upper() or None
        elif in_event and name == "UID":
            uid = value
        elif in_event and name == "SEQUENCE":
            sequence = int(value) if value.isdigit() else 0
        elif in_event and name == "ATTENDEE":
            partstat = _PARTSTAT_RE.search(params)
            address = _address(value)
            if address:
                attendees.append(AttendeeReply(address, partstat.group(1).upper() if partstat else "NEEDS-ACTION"))
        elif in_event and name == "COMMENT" and comment is None:
            comment = value.replace("\\n", "\n").replace("\\N", "\n").replace("\\,", ",").replace("\\;", ";")
    if not uid and not attendees:
        return None
    return method, uid, sequence, attendees, comment


def _address(value: str) -> str:
    value = value.strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    value = value.strip().lower()
    return value if "@" in value else ""
