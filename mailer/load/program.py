"""Loads and validates a program folder: cohorts/*/cohort.toml, rosters, the steps; no I/O beyond reading."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import itertools
import re
import tomllib
import unicodedata
import zoneinfo
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailer.core.model import (
    Audience,
    Cohort,
    Conference,
    Coordinator,
    LatePolicy,
    Meetup,
    Pair,
    PairStatus,
    Person,
    Program,
    Step,
    StepDef,
    days_before,
    month_day,
)
from mailer.errors import InputError, Problem, display_path
from mailer.load.templates import step_template_problems

# \Z, not $: "$" also matches before a final newline, and "welcome\n" must not pass for a key
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
STEP_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")
REQUIRED_COLUMNS = ("pair_id", "mentor_name", "mentor_email", "mentee_name", "mentee_email")
OPTIONAL_COLUMNS = (
    "joined", "status", "status_from", "status_until",
    "mentor_timezone", "mentee_timezone", "notes",
)
MAX_NAME = 200
# Dates outside these years are typing mistakes (0219 for 2019); inside them every date sum mentor-mailer
# makes (a step 400 days out, a send time in any zone, in UTC) stays a valid date.
MIN_YEAR, MAX_YEAR = 1900, 2999
# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: none belongs in a
# name or subject, and CR/LF in one could add a mail header.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# The keys each table may hold; any other is reported as a warning (a typo like `sendhour` would
# otherwise be dropped without a word, and the default used instead).
PROGRAM_KEYS = frozenset({"program", "readings", "steps"})
STEP_KEYS = frozenset({"key", "template", "to", "late", "description", "days_after_start", "month", "day",
                       "conference", "days_before"})
COHORT_KEYS = frozenset({"name", "start", "end", "timezone", "send_hour", "coordinator", "evaluations",
                         "conferences", "language"})
# a BCP 47 language tag as mail clients and screen readers read <html lang>: "en", "fr-CA", "zh-Hant"
LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
CONFERENCE_KEYS = frozenset({"key", "name", "city", "venue", "start", "end", "timezone", "status", "meetup"})
MEETUP_KEYS = frozenset({"day", "time", "minutes", "place"})


@dataclass
class _Collector:
    """Gathers every problem of one file so the coordinator sees them all at once."""

    file: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def add(self, field_: str | None, message: str, *, line: int | None = None, row: int | None = None) -> None:
        self.problems.append(Problem(self.file, line, field_, message, row))

    def unknown_keys(self, table: dict[str, Any], known: frozenset[str], where: str = "") -> None:
        for key in table:
            if key not in known:
                expected = ", ".join(sorted(known))
                self.warnings.append(Problem(self.file, None, f"{where}{key}",
                                             f"is not a known key and is ignored; expected one of: {expected}"))


def load_program(root: Path, *, cohort_ids: list[str] | None = None) -> Program:
    """Load every cohort under root/cohorts; raise InputError listing all file-level problems.

    Roster rows that are wrong do not raise: they are left out and listed in `skipped_rows`,
    so one bad row never stops the other pairs.
    """
    root = Path(root)
    cohorts_dir = root / "cohorts"
    program_file = cohorts_dir / "program.toml"
    problems: list[Problem] = []
    warnings: list[Problem] = []
    if not cohorts_dir.is_dir():
        raise InputError([Problem(display_path(cohorts_dir), None, None,
                                  "is missing: the program folder needs a cohorts/ folder "
                                  "(set MENTOR_MAILER_PROGRAM_DIR, or run from the program folder)")])
    default_doc = _read_toml(program_file, root, problems)
    name, readings, default_steps = _parse_program(default_doc, display_path(program_file, root), problems,
                                                   warnings, root)

    cohorts: list[Cohort] = []
    skipped: list[Problem] = []
    found = sorted(p.parent for p in cohorts_dir.glob("*/cohort.toml"))
    if cohort_ids:
        known = {p.name for p in found}
        for cid in cohort_ids:
            if cid not in known:
                problems.append(Problem(display_path(cohorts_dir, root), None, "cohort",
                                        f"'{cid}' not found; cohorts are: {', '.join(sorted(known)) or 'none'}"))
        found = [p for p in found if p.name in cohort_ids]
    elif not found:
        problems.append(Problem(display_path(cohorts_dir, root), None, None,
                                "holds no cohort: expected cohorts/<cohort-id>/cohort.toml"))
    for folder in found:
        steps = default_steps
        override = folder / "program.toml"
        if override.exists():
            doc = _read_toml(override, root, problems)
            _, _, steps = _parse_program(doc, display_path(override, root), problems, warnings, root,
                                         steps_only=True)
        cohort = _load_cohort(folder, root, steps, problems, skipped, warnings)
        if cohort is not None:
            cohorts.append(cohort)
    if problems:
        raise InputError([*problems, *skipped])  # all at once: the bad rows too
    return Program(root=root, name=name, readings=tuple(readings), cohorts=tuple(cohorts),
                   skipped_rows=tuple(skipped), warnings=tuple(warnings))


def _read_toml(path: Path, root: Path, problems: list[Problem]) -> dict[str, Any] | None:
    """The document, or None after reporting why it cannot be read ({} is a file with nothing in it)."""
    shown = display_path(path, root)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(Problem(shown, None, None, "is missing"))
        return None
    except OSError as exc:  # a folder by that name, no permission
        problems.append(Problem(shown, None, None, f"cannot be read: {exc.strerror or exc}"))
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(Problem(shown, raw.count(b"\n", 0, exc.start) + 1, None,
                                f"is not UTF-8: undecodable byte at offset {exc.start}; save it as UTF-8"))
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError has no lineno attribute yet; its message carries it
        at = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        if msg.startswith(("Cannot overwrite a value", "Cannot declare")):
            msg += " (a key or table given twice?)"
        problems.append(Problem(shown, int(at.group(1)) if at else None, None, f"is not valid TOML: {msg}"))
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        problems.append(Problem(shown, None, None, "is not valid TOML: arrays or tables nested too deeply"))
    except ValueError:  # tomllib lets int() refuse a number of more than 4300 digits
        long = re.search(r"\d{4300,}", text)
        problems.append(Problem(shown, text.count("\n", 0, long.start()) + 1 if long else None, None,
                                "is not valid TOML: a number has too many digits"))
    return None


# --- program.toml -------------------------------------------------------------------------

def _parse_program(
    doc: dict[str, Any] | None, shown: str, problems: list[Problem], warnings: list[Problem], root: Path, *,
    steps_only: bool = False,
) -> tuple[str, list[str], list[StepDef]]:
    col = _Collector(shown)
    name = "Mentoring program"
    readings: list[str] = []
    if doc is None:  # unreadable: already reported
        return name, readings, []
    if steps_only:
        col.unknown_keys(doc, frozenset({"steps"}))
    else:
        col.unknown_keys(doc, PROGRAM_KEYS)
        head = doc.get("program", {})
        if not isinstance(head, dict):
            col.add("program", "expected a [program] table with name = \"...\"")
        else:
            col.unknown_keys(head, frozenset({"name"}), "program.")
            if "name" in head:
                if not isinstance(head["name"], str) or not head["name"].strip():
                    col.add("program.name", f"expected the program's name as text, got {_kind(head['name'])}")
                else:
                    name = _clean_text(head["name"], col, "program.name") or name
        for i, item in enumerate(_table_list(doc, "readings", col), 1):
            col.unknown_keys(item, frozenset({"citation"}), f"readings[{i}].")
            cite = item.get("citation")
            if not isinstance(cite, str) or not cite.strip():
                col.add(f"readings[{i}].citation", "expected a non-empty text")
            else:
                readings.append(_clean_text(cite, col, f"readings[{i}].citation"))
    steps: list[StepDef] = []
    seen: set[str] = set()
    raw_steps = _table_list(doc, "steps", col)
    if "steps" not in doc:
        col.add("steps", "is missing: expected at least one [[steps]] table")
    elif isinstance(doc["steps"], list) and not doc["steps"]:
        col.add("steps", "expected at least one [[steps]] table")
    templates = root / "templates" / "email"
    for i, item in enumerate(raw_steps, 1):
        col.unknown_keys(item, STEP_KEYS, f"steps[{i}].")
        step = _parse_step(item, f"steps[{i}]", col, templates, shown)
        if step is None:
            continue
        if step.key in seen:
            col.add(f"steps[{i}].key", f"'{step.key}' is used by another step; keys must be unique")
            continue
        seen.add(step.key)
        steps.append(step)
    problems.extend(col.problems)
    warnings.extend(col.warnings)
    return name, readings, steps


def _parse_step(item: dict[str, Any], where: str, col: _Collector, templates: Path,
                source: str) -> StepDef | None:
    before = len(col.problems)
    key = item.get("key")
    if not isinstance(key, str) or not STEP_KEY_RE.match(key):
        col.add(f"{where}.key", f"expected lowercase letters, digits and '-' (at most 64), got {_kind(key)}")
        key = "?"
    template = item.get("template")
    if not isinstance(template, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", template):
        col.add(f"{where}.template", f"expected a template name such as 'welcome', got {_kind(template)}")
        template = "?"
    else:
        for message in step_template_problems(templates, template):
            col.add(f"{where}.template", message)
    to = item.get("to", "pair")
    if to not in get_args(Audience):
        col.add(f"{where}.to", f"expected 'pair' or 'each', got {_kind(to)}")
    late = item.get("late", "latest")
    if late not in get_args(LatePolicy):
        col.add(f"{where}.late", f"expected 'all', 'latest' or 'skip', got {_kind(late)}")
    description = item.get("description", key)
    if not isinstance(description, str):
        col.add(f"{where}.description", f"expected text, got {_kind(description)}")
        description = str(key)
    else:
        description = _clean_text(description, col, f"{where}.description")
    forms = [
        "days_after_start" in item,
        "month" in item or "day" in item,
        "conference" in item or "days_before" in item,
    ]
    if sum(forms) != 1:
        col.add(where, "expected exactly one of: days_after_start = N | month = M, day = D | "
                       "conference = \"*\" or a key, days_before = N")
    ints: dict[str, int | None] = {}
    for name, low, high in (("days_after_start", 0, 400), ("month", 1, 24), ("day", 1, 31),
                            ("days_before", 0, 400)):
        value = item.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not low <= value <= high):
            col.add(f"{where}.{name}", f"expected a whole number from {low} to {high}, got {_kind(value)}")
            value = None
        ints[name] = value
    if forms[1] and ("month" not in item or "day" not in item):
        col.add(where, "month and day go together")
    conference = item.get("conference")
    if forms[2] and (not isinstance(conference, str) or "days_before" not in item):
        col.add(where, "a conference step needs conference = \"*\" (or a conference key) and days_before = N")
    elif isinstance(conference, str) and conference != "*" and not STEP_KEY_RE.match(conference):
        col.add(f"{where}.conference", f"expected \"*\" or a conference key, got {_kind(conference)}")
    if len(col.problems) != before:
        return None
    return StepDef(key=key, template=template, to=cast(Audience, to), late=cast(LatePolicy, late),
                   description=description, days_after_start=ints["days_after_start"],
                   month=ints["month"], day=ints["day"], conference=conference,
                   days_before=ints["days_before"], source=source)


def _table_list(doc: dict[str, Any], name: str, col: _Collector) -> list[dict[str, Any]]:
    value = doc.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        col.add(name, f"expected [[{name}]] tables, got {_kind(value)}")
        return []
    return value


def _kind(value: Any) -> str:
    """What a TOML value is, in the coordinator's words (the value itself may be long)."""
    if isinstance(value, list):
        return "an array" if not value or not all(isinstance(v, dict) for v in value) else "tables"
    if isinstance(value, dict):
        return "a table"
    return repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."


# --- cohort.toml -----------------------------------------------------------------------------

def _load_cohort(
    folder: Path, root: Path, step_defs: list[StepDef], problems: list[Problem],
    skipped: list[Problem], warnings: list[Problem],
) -> Cohort | None:
    cohort_file = folder / "cohort.toml"
    shown = display_path(cohort_file, root)
    col = _Collector(shown)
    if not ID_RE.match(folder.name):
        col.add(None, f"the cohort folder name '{folder.name}' must be letters, digits, '.', '_' or '-'")
    doc = _read_toml(cohort_file, root, problems)
    if doc is None:  # unreadable, and reported; the roster is still checked, so all is listed at once
        _load_roster(folder / "roster.csv", root, skipped, warnings, problems, None)
        problems.extend(col.problems)
        return None
    col.unknown_keys(doc, COHORT_KEYS)
    name = _req_str(doc, "name", col)
    start = _req_date(doc, "start", col)
    end = _req_date(doc, "end", col)
    if start and end and end <= start:
        col.add("end", f"{end} is not after the year's start {start}")
        start = end = None
    tz = _zone(doc.get("timezone"), "timezone", col)
    send_hour = doc.get("send_hour", 9)
    if not isinstance(send_hour, int) or isinstance(send_hour, bool) or not 0 <= send_hour <= 23:
        col.add("send_hour", f"expected an hour from 0 to 23, got {_kind(send_hour)}")
        send_hour = 9
    language = doc.get("language", "en")
    if not isinstance(language, str) or not LANGUAGE_RE.fullmatch(language):
        col.add("language", f"expected a language tag such as 'en' or 'fr-CA', got {_kind(language)}")
        language = "en"
    coord = doc.get("coordinator")
    coordinator = None
    if not isinstance(coord, dict):
        col.add("coordinator", "expected a [coordinator] table with name and email")
    else:
        col.unknown_keys(coord, frozenset({"name", "email"}), "coordinator.")
        cname = _req_str(coord, "name", col, prefix="coordinator.")
        addr = _email(coord.get("email"), "coordinator.email", col)
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
                col.add(f"evaluations.{k}", f"expected an http(s) link, got {_kind(link)}")
            else:
                evaluations[k] = link.strip()
    conferences: list[Conference] = []
    for i, item in enumerate(_table_list(doc, "conferences", col), 1):
        col.unknown_keys(item, CONFERENCE_KEYS, f"conferences[{i}].")
        conf = _conference(item, f"conferences[{i}]", col, start, end)
        if conf is not None:
            if any(c.key == conf.key for c in conferences):
                col.add(f"conferences[{i}].key", f"'{conf.key}' is used by another conference; keys must be unique")
            else:
                conferences.append(conf)
    steps = _place_steps(step_defs, start, end, conferences, col) if start and end else []
    year = (start, end) if start and end else None
    pairs = _load_roster(folder / "roster.csv", root, skipped, warnings, problems, year)
    problems.extend(col.problems)
    warnings.extend(col.warnings)
    if col.problems or not (name and start and end and tz and coordinator):
        return None
    return Cohort(id=folder.name, name=name, start=start, end=end, timezone=tz, send_hour=send_hour,
                  coordinator=coordinator, evaluations=evaluations, conferences=tuple(conferences),
                  steps=tuple(steps), pairs=tuple(pairs), path=folder, language=language)


def _conference(item: dict[str, Any], where: str, col: _Collector,
                year_start: date | None, year_end: date | None) -> Conference | None:
    before = len(col.problems)
    key = item.get("key")
    if not isinstance(key, str) or not STEP_KEY_RE.match(key):
        col.add(f"{where}.key", f"expected lowercase letters, digits and '-' (at most 64), got {_kind(key)}")
    name = _req_str(item, "name", col, prefix=f"{where}.")
    city = _req_str(item, "city", col, prefix=f"{where}.")
    venue = item.get("venue", "")
    if not isinstance(venue, str):
        col.add(f"{where}.venue", f"expected text, got {_kind(venue)}")
    else:
        venue = _clean_text(venue, col, f"{where}.venue")
    start = _req_date(item, "start", col, prefix=f"{where}.")
    end = _req_date(item, "end", col, prefix=f"{where}.")
    tz = _zone(item.get("timezone"), f"{where}.timezone", col)
    status = item.get("status", "confirmed")
    if status not in ("confirmed", "cancelled"):
        col.add(f"{where}.status", f"expected 'confirmed' or 'cancelled', got {_kind(status)}")
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


def _meetup(raw: dict[str, Any], where: str, col: _Collector,
            start: date | None, end: date | None) -> Meetup | None:
    day = _req_date(raw, "day", col, prefix=f"{where}.")
    at = raw.get("time")
    if isinstance(at, str) and re.fullmatch(r"\d{1,2}:\d{2}", at.strip()):
        hh, mm = (int(x) for x in at.strip().split(":"))
        at = time(hh, mm) if hh < 24 and mm < 60 else None
    if not isinstance(at, time):
        col.add(f"{where}.time", f"expected a local time such as 12:30:00, got {_kind(raw.get('time'))}")
    minutes = raw.get("minutes", 60)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 5 <= minutes <= 24 * 60:
        col.add(f"{where}.minutes", f"expected a length in minutes from 5 to 1440, got {_kind(minutes)}")
    place = _req_str(raw, "place", col, prefix=f"{where}.")
    if day and start and end and not start <= day <= end:
        col.add(f"{where}.day", f"{day} is outside the conference's dates {start}–{end}")
    if not (day and isinstance(at, time) and place and isinstance(minutes, int)):
        return None
    return Meetup(day=day, start=at.replace(tzinfo=None), minutes=minutes, place=place)


def _place_steps(defs: list[StepDef], start: date, end: date, conferences: list[Conference],
                 col: _Collector) -> list[Step]:
    steps: list[Step] = []
    made: dict[str, str] = {}  # placed key -> the step definition that made it
    for d in defs:
        placed: list[tuple[str, date, Conference | None]] = []
        if d.days_after_start is not None:
            placed.append((d.key, days_before(start, -d.days_after_start), None))
        elif d.month is not None and d.day is not None:
            placed.append((d.key, month_day(start, d.month, d.day), None))
        elif d.conference is not None and d.days_before is not None:
            targets = conferences if d.conference == "*" else [c for c in conferences if c.key == d.conference]
            if d.conference != "*" and not targets:
                col.problems.append(Problem(
                    d.source, None, f"steps.{d.key}.conference",
                    f"names conference '{d.conference}', which {col.file} does not list"))
            for target in targets:
                key = f"{d.key}-{target.key}" if d.conference == "*" else d.key
                placed.append((key, days_before(target.start, d.days_before), target))
        for key, due, conf in placed:
            if key in made:
                col.problems.append(Problem(
                    d.source, None, f"steps.{d.key}",
                    f"makes step '{key}' for {col.file}, and so does step '{made[key]}'; rename one"))
                continue
            made[key] = d.key
            if not start <= due <= end:
                col.problems.append(Problem(
                    d.source, None, f"steps.{d.key}",
                    f"puts '{key}' on {due}, outside the program year {start}–{end} of {col.file}"))
                continue
            steps.append(Step(key=key, template=d.template, to=d.to, late=d.late,
                              description=d.description, due=due, conference=conf))
    steps.sort(key=lambda s: (s.due, s.key))
    return steps


# --- roster.csv ------------------------------------------------------------------------------

def _load_roster(path: Path, root: Path, skipped: list[Problem], warnings: list[Problem],
                 problems: list[Problem], year: tuple[date, date] | None) -> list[Pair]:
    shown = display_path(path, root)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(Problem(shown, None, None, "is missing: each cohort needs a roster.csv"))
        return []
    except OSError as exc:
        problems.append(Problem(shown, None, None, f"cannot be read: {exc.strerror or exc}"))
        return []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        hint = "it looks like UTF-16 ('Unicode text'); " if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        problems.append(Problem(shown, line, None,
                                f"is not UTF-8: undecodable byte at offset {exc.start}; "
                                f"{hint}save the roster as 'CSV UTF-8'"))
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    try:
        while not any(h.strip() for h in header):  # blank lines above the header are harmless
            header = next(reader)
    except StopIteration:
        problems.append(Problem(shown, 1, None, "is empty: expected a header row " + ",".join(REQUIRED_COLUMNS)))
        return []
    except csv.Error as exc:
        problems.append(Problem(shown, reader.line_num, None, f"cannot be read as CSV: {exc}"))
        return []
    header_line = reader.line_num
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        found = ", ".join(repr(h) for h in header[:20])
        problems.append(Problem(shown, header_line, ", ".join(missing),
                                f"column missing; the header must include {', '.join(REQUIRED_COLUMNS)} "
                                f"(it has {found})"))
        return []
    twice = [c for c, n in Counter(columns).items() if c and n > 1]
    if twice:
        problems.append(Problem(shown, header_line, ", ".join(twice),
                                "column appears more than once in the header; keep one"))
        return []
    for c in columns:
        if c and c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            warnings.append(Problem(shown, header_line, c, "is not a known column and is ignored"))
    pairs: list[Pair] = []
    first_line: dict[str, tuple[int, int]] = {}
    line = header_line + 1
    for n in itertools.count(1):
        start_line = line
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # this row is lost; the reader goes on with the next line
            line = reader.line_num + 1
            skipped.append(Problem(shown, start_line, None, f"cannot be read as CSV: {exc}", n))
            continue
        line = reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        row = dict(zip(columns, values, strict=False))
        col = _Collector(shown)
        pair = _pair(row, col, start_line, n, year)
        if pair is not None and pair.id in first_line:
            other_line, other_row = first_line[pair.id]
            col.add("pair_id", f"'{pair.id}' is already used on line {other_line} (row {other_row}); "
                               "each pair needs its own id", line=start_line, row=n)
        if col.problems:
            if line - 1 > start_line:  # a quote left open swallows the lines after it: say so first
                col.problems.insert(0, Problem(
                    shown, start_line, None, f"this row runs over lines {start_line}–{line - 1}: a cell that "
                    "opens a double quote (\") and never closes it takes in the lines after it", n))
            skipped.extend(col.problems)
            continue
        assert pair is not None
        extra = [v for v in values[len(columns):] if v.strip()]
        if extra:
            warnings.append(Problem(shown, start_line, None,
                                    f"has {len(values)} cells but the header has {len(columns)} columns; the extra "
                                    f"cells ({', '.join(repr(v[:40]) for v in extra[:3])}) are ignored. "
                                    "A cell holding a comma needs double quotes around it", n))
        first_line[pair.id] = (start_line, n)
        pairs.append(pair)
    return pairs


def _pair(row: dict[str, str], col: _Collector, line: int, n: int, year: tuple[date, date] | None) -> Pair | None:
    def field_(name: str) -> str:
        return (row.get(name) or "").strip()

    def bad(name: str | None, message: str) -> None:
        col.add(name, message, line=line, row=n)

    pid = field_("pair_id")
    if not ID_RE.match(pid):
        bad("pair_id", f"expected letters, digits, '.', '_' or '-' (at most 64), got {_short(pid)}")
    people: dict[str, Person] = {}
    for role in ("mentor", "mentee"):
        name = _clean_name(field_(f"{role}_name"), f"{role}_name", bad)
        tz_raw = field_(f"{role}_timezone")
        tz = None
        if tz_raw:
            tz, hint = _lookup_zone(tz_raw)
            if tz is None:
                bad(f"{role}_timezone", f"{_short(tz_raw)} is not an IANA time zone such as America/Chicago{hint}")
        local = _Collector(col.file)
        addr = _email(field_(f"{role}_email"), f"{role}_email", local)
        for p in local.problems:
            bad(p.field, p.message)
        if name and addr:
            people[role] = Person(name=name, email=addr[0], ascii_email=addr[1],
                                  role=cast(Any, role), timezone=tz)
    if len(people) == 2 and people["mentor"].ascii_email.lower() == people["mentee"].ascii_email.lower():
        bad("mentee_email", "is the same address as mentor_email; a pair needs two people")
    dates: dict[str, date | None] = {}
    for name in ("joined", "status_from", "status_until"):
        value = field_(name)
        dates[name] = None
        if value:
            try:
                dates[name] = _plausible(date.fromisoformat(value))
            except ValueError as exc:
                reason = f"{exc}" if str(exc).startswith("year") else "expected a date as YYYY-MM-DD"
                bad(name, f"{reason}, got {_short(value)}")
    joined = dates["joined"]
    if joined and year and joined > year[1]:
        bad("joined", f"{joined} is after the program year ends ({year[1]}); the pair would get no email")
    status = field_("status").lower() or "active"
    if status not in get_args(PairStatus):
        bad("status", f"expected active, paused or withdrawn, got {_short(status)}")
    sf, su = dates["status_from"], dates["status_until"]
    if sf and su and su <= sf:
        bad("status_until", f"{su} is not after status_from {sf}")
    if col.problems:
        return None
    return Pair(id=pid, mentor=people["mentor"], mentee=people["mentee"], joined=joined,
                status=cast(PairStatus, status), status_from=sf, status_until=su,
                notes=field_("notes"), line=line)


def _short(value: str, limit: int = 60) -> str:
    """A cell as the message quotes it: repr, so a stray control character shows; cut when long."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def _clean_name(value: str, name: str, bad: Callable[[str | None, str], None]) -> str | None:
    if not value:
        bad(name, "is empty")
        return None
    if _CONTROL_RE.search(value):
        bad(name, f"contains a line break or control character: {_short(value)}")
        return None
    value = unicodedata.normalize("NFC", value)
    if len(value) > MAX_NAME:
        bad(name, f"is {len(value)} characters long; at most {MAX_NAME} are allowed")
        return None
    return value


def _clean_text(value: str, col: _Collector, name: str) -> str:
    if _CONTROL_RE.search(value.replace("\n", " ")):
        col.add(name, f"contains a control character: {_short(value)}")
    return unicodedata.normalize("NFC", " ".join(value.split()))


# --- fields ----------------------------------------------------------------------------------

def _email(value: Any, name: str, col: _Collector) -> tuple[str, str] | None:
    """(normalised address, address for the wire) or None after reporting why not."""
    from email_validator import EmailNotValidError, validate_email

    if not isinstance(value, str) or not value.strip():
        col.add(name, "is empty: expected an email address")
        return None
    value = value.strip()
    if _CONTROL_RE.search(value):
        col.add(name, f"contains a line break or control character: {_short(value)}")
        return None
    fast = _plain_address(value)
    if fast is not None:
        return fast
    try:
        info = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        col.add(name, f"{_short(value)} is not a valid address: {exc}")
        return None
    return info.normalized, info.ascii_email or info.normalized


# RFC 5322 dot-atom, ASCII: a local part email-validator takes as it is
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


def _plain_address(value: str) -> tuple[str, str] | None:
    """The common address, an ASCII dot-atom local part at a domain email-validator has already
    accepted in this process, without running its whole check again: a roster of thousands of pairs
    at a handful of domains loads in a fraction of the time. Anything else goes the full way."""
    local, at, domain = value.rpartition("@")
    if not at or not local or len(local) > 64 or len(value) > 254 or not _DOT_ATOM.match(local):
        return None
    checked = _checked_domain(domain)
    if checked is None:
        return None
    normalized, ascii_domain = checked
    return f"{local}@{normalized}", f"{local}@{ascii_domain}"


@functools.lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> tuple[str, str] | None:
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(f"a@{domain}", check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return info.domain, info.ascii_domain


def _req_str(doc: dict[str, Any], key: str, col: _Collector, *, prefix: str = "") -> str | None:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        col.add(prefix + key, "is missing: expected text" if value is None or isinstance(value, str)
                else f"expected text, got {_kind(value)}")
        return None
    return _clean_text(value, col, prefix + key)


def _req_date(doc: dict[str, Any], key: str, col: _Collector, *, prefix: str = "") -> date | None:
    value = doc.get(key)
    if value is None:
        col.add(prefix + key, "is missing: expected a date such as 2020-01-24")
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = date.fromisoformat(value.strip())
    if not isinstance(value, date) or hasattr(value, "hour"):
        col.add(prefix + key, f"expected a date such as 2020-01-24, got {_kind(value)}")
        return None
    try:
        return _plausible(value)
    except ValueError as exc:
        col.add(prefix + key, str(exc))
        return None


def _plausible(day: date) -> date:
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise ValueError(f"year {day.year} is not plausible: expected a year from {MIN_YEAR} to {MAX_YEAR}")
    return day


@functools.cache
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def _lookup_zone(value: str) -> tuple[ZoneInfo | None, str]:
    """The zone, or None and a hint ("; did you mean 'America/New_York'?") when the case is off."""
    try:
        return ZoneInfo(value), ""
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a folder such as "America", a name too long
        pass
    near = _zone_names().get(value.strip().lower().replace(" ", "_"))
    return None, f"; did you mean '{near}'?" if near else ""


def _zone(value: Any, name: str, col: _Collector) -> ZoneInfo | None:
    if not isinstance(value, str) or not value:
        col.add(name, "is missing: expected an IANA time zone such as America/New_York" if value is None
                else f"expected an IANA time zone such as America/New_York, got {_kind(value)}")
        return None
    zone, hint = _lookup_zone(value)
    if zone is None:
        col.add(name, f"{_short(value)} is not an IANA time zone such as America/New_York{hint}")
    return zone
