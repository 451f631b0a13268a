"""How dates and times read in an email: "Friday, January 24, 2020", "12:30 PM", "January 24–28, 2020"."""

from __future__ import annotations

from datetime import date, datetime, time


def fmt_date(d: date) -> str:
    return f"{d:%B} {d.day}, {d.year}"


def fmt_day(d: date) -> str:
    return f"{d:%A}, {fmt_date(d)}"


def fmt_time(t: time | datetime) -> str:
    hour = t.hour % 12 or 12
    return f"{hour}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"


def fmt_range(a: date, b: date) -> str:
    if a.year != b.year:
        return f"{fmt_date(a)} – {fmt_date(b)}"
    if a.month != b.month:
        return f"{a:%B} {a.day} – {b:%B} {b.day}, {a.year}"
    return f"{a:%B} {a.day}–{b.day}, {a.year}"
