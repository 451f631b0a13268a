"""cohort.toml: a cohort's year, time zone, send hour, coordinator, evaluation links and conferences."""

from __future__ import annotations

import re
from datetime import date, time
from pathlib import Path
from typing import Any

from mailer.core.model import Cohort, Conference, Coordinator, Meetup, Step, StepDef
from mailer.core.placement import place_steps
from mailer.errors import Problem, display_path
from mailer.load.fields import ID_RE, STEP_KEY_RE, Collector, clean_text, email_address, kind, req_date, req_str, zone
from mailer.load.files import read_toml
from mailer.load.program_file import table_list
from mailer.load.roster import load_roster

COHORT_KEYS = frozenset({"name", "start", "end", "timezone", "send_hour", "coordinator", "evaluations",
                         "conferences", "language"})
# a BCP 47 language tag as mail clients and screen readers read <html lang>: "en", "fr-CA", "zh-Hant"
LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
CONFERENCE_KEYS = frozenset({"key", "name", "city", "venue", "start", "end", "timezone", "status", "meetup"})
MEETUP_KEYS = frozenset({"day", "time", "minutes", "place"})


def load_cohort(
    folder: Path, root: Path, step_defs: list[StepDef], problems: list[Problem],
    skipped: list[Problem], warnings: list[Problem], rules: dict[str, Any] | None = None,
) -> Cohort | None:
    """The cohort in `folder`, or None after its problems are listed; `rules` are the program's year rules
    (send_days, late_pickup_days) as Cohort fields."""
    cohort_file = folder / "cohort.toml"
    shown = display_path(cohort_file, root)
    col = Collector(shown)
    if not ID_RE.match(folder.name):
        col.add(None, f"the cohort folder name '{folder.name}' must be letters, digits, '.', '_' or '-'")
    doc = read_toml(cohort_file, root, problems)
    if doc is None:  # unreadable, and reported; the roster is still checked, so all is listed at once
        load_roster(folder / "roster.csv", root, skipped, warnings, problems, None)
        problems.extend(col.problems)
        return None
    col.unknown_keys(doc, COHORT_KEYS)
    name = req_str(doc, "name", col)
    start = req_date(doc, "start", col)
    end = req_date(doc, "end", col)
    if start and end and end <= start:
        col.add("end", f"{end} is not after the year's start {start}")
        start = end = None
    tz = zone(doc.get("timezone"), "timezone", col)
    send_hour = doc.get("send_hour", 9)
    if not isinstance(send_hour, int) or isinstance(send_hour, bool) or not 0 <= send_hour <= 23:
        col.add("send_hour", f"expected an hour from 0 to 23, got {kind(send_hour)}")
        send_hour = 9
    language = doc.get("language", "en")
    if not isinstance(language, str) or not LANGUAGE_RE.fullmatch(language):
        col.add("language", f"expected a language tag such as 'en' or 'fr-CA', got {kind(language)}")
        language = "en"
    coord = doc.get("coordinator")
    coordinator = None
    if not isinstance(coord, dict):
        col.add("coordinator", "expected a [coordinator] table with name and email")
    else:
        col.unknown_keys(coord, frozenset({"name", "email"}), "coordinator.")
        cname = req_str(coord, "name", col, prefix="coordinator.")
        addr = email_address(coord.get("email"), "coordinator.email", col)
        if cname and addr:
            coordinator = Coordinator(cname, addr[0], addr[1])
    evaluations: dict[str, str | None] = {"midyear": None, "final": None}
    ev = doc.get("evaluations", {})
    if not isinstance(ev, dict):
        col.add("evaluations", "expected a table with midyear and final links")
    else:
        col.unknown_keys(ev, frozenset(evaluations), "evaluations.")
        for k in evaluations:
            link = ev.get(k)
            if link is None:
                continue
            if not isinstance(link, str) or not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f-\x9f]+", link.strip()):
                col.add(f"evaluations.{k}", f"expected an http(s) link, got {kind(link)}")
            else:
                evaluations[k] = link.strip()
    conferences: list[Conference] = []
    for i, item in enumerate(table_list(doc, "conferences", col), 1):
        col.unknown_keys(item, CONFERENCE_KEYS, f"conferences[{i}].")
        conf = _conference(item, f"conferences[{i}]", col, start, end)
        if conf is not None:
            if any(c.key == conf.key for c in conferences):
                col.add(f"conferences[{i}].key", f"'{conf.key}' is used by another conference; keys must be unique")
            else:
                conferences.append(conf)
    steps: list[Step] = []
    if start and end:
        steps, placing = place_steps(step_defs, start, end, conferences, col.file, col.warnings)
        col.problems.extend(placing)
    year = (start, end) if start and end else None
    pairs = load_roster(folder / "roster.csv", root, skipped, warnings, problems, year)
    problems.extend(col.problems)
    warnings.extend(col.warnings)
    if col.problems or not (name and start and end and tz and coordinator):
        return None
    return Cohort(id=folder.name, name=name, start=start, end=end, timezone=tz, send_hour=send_hour,
                  coordinator=coordinator, evaluations=evaluations, conferences=tuple(conferences),
                  steps=tuple(steps), pairs=tuple(pairs), path=folder, language=language, **(rules or {}))


def _conference(item: dict[str, Any], where: str, col: Collector,
                year_start: date | None, year_end: date | None) -> Conference | None:
    before = len(col.problems)
    key = item.get("key")
    if not isinstance(key, str) or not STEP_KEY_RE.match(key):
        col.add(f"{where}.key", f"expected lowercase letters, digits and '-' (at most 64), got {kind(key)}")
    name = req_str(item, "name", col, prefix=f"{where}.")
    city = req_str(item, "city", col, prefix=f"{where}.")
    venue = item.get("venue", "")
    if not isinstance(venue, str):
        col.add(f"{where}.venue", f"expected text, got {kind(venue)}")
    else:
        venue = clean_text(venue, col, f"{where}.venue")
    start = req_date(item, "start", col, prefix=f"{where}.")
    end = req_date(item, "end", col, prefix=f"{where}.")
    tz = zone(item.get("timezone"), f"{where}.timezone", col)
    status = item.get("status", "confirmed")
    if status not in ("confirmed", "cancelled"):
        col.add(f"{where}.status", f"expected 'confirmed' or 'cancelled', got {kind(status)}")
    if start and end and end < start:
        col.add(f"{where}.end", f"{end} is before the conference's start {start}")
        start = end = None  # the meetup's day is not checked against dates already reported wrong
    if start and end and year_start and year_end and not (year_start <= start and end <= year_end):
        col.add(f"{where}.start", f"{start}–{end} is outside the program year {year_start}–{year_end}")
    meetup = None
    raw = item.get("meetup")
    if raw is not None:
        if not isinstance(raw, dict):
            col.add(f"{where}.meetup", "expected a table with day, time, minutes and place")
        else:
            col.unknown_keys(raw, MEETUP_KEYS, f"{where}.meetup.")
            meetup = _meetup(raw, f"{where}.meetup", col, start, end)
    if len(col.problems) != before:
        return None
    assert isinstance(key, str) and name and city and start and end and tz
    return Conference(key=key, name=name, city=city, venue=str(venue).strip(), start=start, end=end,
                      timezone=tz, status=status, meetup=meetup)


def _meetup(raw: dict[str, Any], where: str, col: Collector,
            start: date | None, end: date | None) -> Meetup | None:
    day = req_date(raw, "day", col, prefix=f"{where}.")
    at = raw.get("time")
    if isinstance(at, str) and re.fullmatch(r"\d{1,2}:\d{2}", at.strip()):
        hh, mm = (int(x) for x in at.strip().split(":"))
        at = time(hh, mm) if hh < 24 and mm < 60 else None
    if not isinstance(at, time):
        col.add(f"{where}.time", f"expected a local time such as 12:30:00, got {kind(raw.get('time'))}")
    minutes = raw.get("minutes", 60)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 5 <= minutes <= 24 * 60:
        col.add(f"{where}.minutes", f"expected a length in minutes from 5 to 1440, got {kind(minutes)}")
    place = req_str(raw, "place", col, prefix=f"{where}.")
    if day and start and end and not start <= day <= end:
        col.add(f"{where}.day", f"{day} is outside the conference's dates {start}–{end}")
    if not (day and isinstance(at, time) and place and isinstance(minutes, int)):
        return None
    return Meetup(day=day, start=at.replace(tzinfo=None), minutes=minutes, place=place)
