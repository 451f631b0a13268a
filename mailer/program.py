"""Loads and validates a program folder: cohorts/*/cohort.toml, rosters, the steps; no I/O beyond reading."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailer.errors import InputError, Problem, display_path
from mailer.model import (
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

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STEP_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
REQUIRED_COLUMNS = ("pair_id", "mentor_name", "mentor_email", "mentee_name", "mentee_email")
OPTIONAL_COLUMNS = (
    "joined", "status", "status_from", "status_until",
    "mentor_timezone", "mentee_timezone", "notes",
)
MAX_NAME = 200
# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: none belongs in a
# name or subject, and CR/LF in one could add a mail header.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass
class _Collector:
    """Gathers every problem of one file so the coordinator sees them all at once."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, field_: str | None, message: str, *, line: int | None = None, row: int | None = None) -> None:
        self.problems.append(Problem(self.file, line, field_, message, row))


def load_program(root: Path, *, cohort_ids: list[str] | None = None) -> Program:
    """Load every cohort under root/cohorts; raise InputError listing all file-level problems.

    Roster rows that are wrong do not raise: they are left out and listed in `skipped_rows`,
    so one bad row never stops the other pairs.
    """
    root = Path(root)
    cohorts_dir = root / "cohorts"
    program_file = cohorts_dir / "program.toml"
    problems: list[Problem] = []
    if not cohorts_dir.is_dir():
        raise InputError([Problem(display_path(cohorts_dir), None, None,
                                  "is missing: the program folder needs a cohorts/ folder "
                                  "(set MENTOR_MAILER_PROGRAM_DIR, or run from the program folder)")])
    default_doc = _read_toml(program_file, root, problems)
    name, readings, default_steps = _parse_program(default_doc, display_path(program_file, root), problems, root)

    cohorts: list[Cohort] = []
    skipped: list[Problem] = []
    warnings: list[Problem] = []
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
            _, _, steps = _parse_program(doc, display_path(override, root), problems, root, steps_only=True)
        cohort = _load_cohort(folder, root, steps, problems, skipped, warnings)
        if cohort is not None:
            cohorts.append(cohort)
    if problems:
        raise InputError([*problems, *skipped])  # all at once: the bad rows too
    return Program(root=root, name=name, readings=tuple(readings), cohorts=tuple(cohorts),
                   skipped_rows=tuple(skipped), warnings=tuple(warnings))


def _read_toml(path: Path, root: Path, problems: list[Problem]) -> dict[str, Any]:
    shown = display_path(path, root)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        problems.append(Problem(shown, None, None, "is missing"))
        return {}
    except UnicodeDecodeError as exc:
        problems.append(Problem(shown, None, None, f"is not UTF-8 (byte offset {exc.start})"))
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError has no lineno attribute yet; its message carries it
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(found.group(1)) if found else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        problems.append(Problem(shown, line, None, f"is not valid TOML: {msg}"))
        return {}


# --- program.toml -------------------------------------------------------------------------

def _parse_program(
    doc: dict[str, Any], shown: str, problems: list[Problem], root: Path, *, steps_only: bool = False
) -> tuple[str, list[str], list[StepDef]]:
    col = _Collector(shown)
    name = "Mentoring program"
    readings: list[str] = []
    if not steps_only:
        head = doc.get("program", {})
        if isinstance(head, dict) and isinstance(head.get("name"), str):
            name = _clean_text(head["name"], col, "program.name") or name
        for i, item in enumerate(_table_list(doc, "readings", col), 1):
            cite = item.get("citation")
            if not isinstance(cite, str) or not cite.strip():
                col.add(f"readings[{i}].citation", "expected a non-empty text")
            else:
                readings.append(_clean_text(cite, col, f"readings[{i}].citation"))
    steps: list[StepDef] = []
    seen: set[str] = set()
    raw_steps = _table_list(doc, "steps", col)
    if doc and not raw_steps:
        col.add("steps", "expected at least one [[steps]] table")
    templates = root / "templates" / "email"
    for i, item in enumerate(raw_steps, 1):
        step = _parse_step(item, f"steps[{i}]", col, templates, shown)
        if step is None:
            continue
        if step.key in seen:
            col.add(f"steps[{i}].key", f"'{step.key}' is used by another step; keys must be unique")
        seen.add(step.key)
        steps.append(step)
    problems.extend(col.problems)
    return name, readings, steps


def _parse_step(item: dict[str, Any], where: str, col: _Collector, templates: Path,
                source: str) -> StepDef | None:
    before = len(col.problems)
    key = item.get("key")
    if not isinstance(key, str) or not STEP_KEY_RE.match(key):
        col.add(f"{where}.key", f"expected lowercase letters, digits and '-', got {key!r}")
        key = "?"
    template = item.get("template")
    if not isinstance(template, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", template):
        col.add(f"{where}.template", f"expected a template name such as 'welcome', got {template!r}")
        template = "?"
    else:
        for ext in ("txt.j2", "html.j2"):
            if not (templates / f"{template}.{ext}").is_file():
                col.add(f"{where}.template", f"templates/email/{template}.{ext} does not exist")
    to = item.get("to", "pair")
    if to not in get_args(Audience):
        col.add(f"{where}.to", f"expected 'pair' or 'each', got {to!r}")
    late = item.get("late", "latest")
    if late not in get_args(LatePolicy):
        col.add(f"{where}.late", f"expected 'all', 'latest' or 'skip', got {late!r}")
    description = item.get("description", key)
    if not isinstance(description, str):
        col.add(f"{where}.description", "expected text")
        description = str(key)
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
            col.add(f"{where}.{name}", f"expected a whole number from {low} to {high}, got {value!r}")
            value = None
        ints[name] = value
    if forms[1] and (ints["month"] is None or ints["day"] is None) and "month" in item and "day" in item:
        pass  # already reported above
    elif forms[1] and ("month" not in item or "day" not in item):
        col.add(where, "month and day go together")
    conference = item.get("conference")
    if forms[2] and (not isinstance(conference, str) or "days_before" not in item):
        col.add(where, "a conference step needs conference = \"*\" (or a conference key) and days_before = N")
    if len(col.problems) != before:
        return None
    return StepDef(key=key, template=template, to=cast(Audience, to), late=cast(LatePolicy, late),
                   description=description, days_after_start=ints["days_after_start"],
                   month=ints["month"], day=ints["day"], conference=conference,
                   days_before=ints["days_before"], source=source)


def _table_list(doc: dict[str, Any], name: str, col: _Collector) -> list[dict[str, Any]]:
    value = doc.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        col.add(name, f"expected [[{name}]] tables")
        return []
    return value


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
    if not doc:
        return None
    name = _req_str(doc, "name", col)
    start = _req_date(doc, "start", col)
    end = _req_date(doc, "end", col)
    if start and end and end <= start:
        col.add("end", f"{end} is not after the year's start {start}")
    tz = _zone(doc.get("timezone"), "timezone", col)
    send_hour = doc.get("send_hour", 9)
    if not isinstance(send_hour, int) or isinstance(send_hour, bool) or not 0 <= send_hour <= 23:
        col.add("send_hour", f"expected an hour from 0 to 23, got {send_hour!r}")
        send_hour = 9
    coord = doc.get("coordinator")
    coordinator = None
    if not isinstance(coord, dict):
        col.add("coordinator", "expected a [coordinator] table with name and email")
    else:
        cname = _req_str(coord, "name", col, prefix="coordinator.")
        addr = _email(coord.get("email"), "coordinator.email", col)
        if cname and addr:
            coordinator = Coordinator(cname, addr[0], addr[1])
    evaluations: dict[str, str | None] = {"midyear": None, "final": None}
    ev = doc.get("evaluations", {})
    if not isinstance(ev, dict):
        col.add("evaluations", "expected a table with midyear and final links")
    else:
        for k in evaluations:
            link = ev.get(k)
            if link is None:
                continue
            if not isinstance(link, str) or not re.match(r"^https?://\S+$", link):
                col.add(f"evaluations.{k}", f"expected an http(s) link, got {link!r}")
            else:
                evaluations[k] = link
    conferences: list[Conference] = []
    for i, item in enumerate(_table_list(doc, "conferences", col), 1):
        conf = _conference(item, f"conferences[{i}]", col, start, end)
        if conf is not None:
            if any(c.key == conf.key for c in conferences):
                col.add(f"conferences[{i}].key", f"'{conf.key}' is used twice")
            conferences.append(conf)
    steps = _place_steps(step_defs, start, end, conferences, col) if start and end else []
    pairs = _load_roster(folder / "roster.csv", root, skipped, warnings, problems)
    problems.extend(col.problems)
    if col.problems or not (name and start and end and tz and coordinator):
        return None
    return Cohort(id=folder.name, name=name, start=start, end=end, timezone=tz, send_hour=send_hour,
                  coordinator=coordinator, evaluations=evaluations, conferences=tuple(conferences),
                  steps=tuple(steps), pairs=tuple(pairs), path=folder)


def _conference(item: dict[str, Any], where: str, col: _Collector,
                year_start: date | None, year_end: date | None) -> Conference | None:
    before = len(col.problems)
    key = item.get("key")
    if not isinstance(key, str) or not STEP_KEY_RE.match(key):
        col.add(f"{where}.key", f"expected lowercase letters, digits and '-', got {key!r}")
    name = _req_str(item, "name", col, prefix=f"{where}.")
    city = _req_str(item, "city", col, prefix=f"{where}.")
    venue = item.get("venue", "")
    if not isinstance(venue, str):
        col.add(f"{where}.venue", "expected text")
    start = _req_date(item, "start", col, prefix=f"{where}.")
    end = _req_date(item, "end", col, prefix=f"{where}.")
    tz = _zone(item.get("timezone"), f"{where}.timezone", col)
    status = item.get("status", "confirmed")
    if status not in ("confirmed", "cancelled"):
        col.add(f"{where}.status", f"expected 'confirmed' or 'cancelled', got {status!r}")
    if start and end:
        if end < start:
            col.add(f"{where}.end", f"{end} is before the conference's start {start}")
        if year_start and year_end and not (year_start <= start and end <= year_end):
            col.add(f"{where}.start", f"{start}–{end} is outside the program year {year_start}–{year_end}")
    meetup = None
    raw = item.get("meetup")
    if raw is not None:
        if not isinstance(raw, dict):
            col.add(f"{where}.meetup", "expected a table with day, time, minutes and place")
        else:
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
    if isinstance(at, str) and re.fullmatch(r"\d{1,2}:\d{2}", at):
        hh, mm = (int(x) for x in at.split(":"))
        at = time(hh, mm) if hh < 24 and mm < 60 else None
    if not isinstance(at, time):
        col.add(f"{where}.time", f"expected a local time such as 12:30:00, got {raw.get('time')!r}")
    minutes = raw.get("minutes", 60)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 5 <= minutes <= 24 * 60:
        col.add(f"{where}.minutes", f"expected a length in minutes from 5 to 1440, got {minutes!r}")
    place = _req_str(raw, "place", col, prefix=f"{where}.")
    if day and start and end and not start <= day <= end:
        col.add(f"{where}.day", f"{day} is outside the conference's dates {start}–{end}")
    if not (day and isinstance(at, time) and place and isinstance(minutes, int)):
        return None
    return Meetup(day=day, start=at, minutes=minutes, place=place)


def _place_steps(defs: list[StepDef], start: date, end: date, conferences: list[Conference],
                 col: _Collector) -> list[Step]:
    steps: list[Step] = []
    for d in defs:
        placed: list[tuple[str, date, Conference | None]] = []
        if d.days_after_start is not None:
            placed.append((d.key, days_before(start, -d.days_after_start), None))
        elif d.month is not None and d.day is not None:
            placed.append((d.key, month_day(start, d.month, d.day), None))
        elif d.conference is not None and d.days_before is not None:
            targets = conferences if d.conference == "*" else [c for c in conferences if c.key == d.conference]
            if d.conference != "*" and not targets:
                col.add(f"steps.{d.key}.conference", f"no conference with key '{d.conference}' in this cohort")
            for target in targets:
                key = f"{d.key}-{target.key}" if d.conference == "*" else d.key
                placed.append((key, days_before(target.start, d.days_before), target))
        for key, due, conf in placed:
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
                 problems: list[Problem]) -> list[Pair]:
    shown = display_path(path, root)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(Problem(shown, None, None, "is missing: each cohort needs a roster.csv"))
        return []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problems.append(Problem(shown, line, None,
                                f"is not UTF-8: undecodable byte at offset {exc.start}; "
                                "save the roster as 'CSV UTF-8'"))
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        problems.append(Problem(shown, 1, None, "is empty: expected a header row " + ",".join(REQUIRED_COLUMNS)))
        return []
    except csv.Error as exc:
        problems.append(Problem(shown, 1, None, f"cannot be read as CSV: {exc}"))
        return []
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        problems.append(Problem(shown, 1, ", ".join(missing),
                                f"column missing; the header must include {', '.join(REQUIRED_COLUMNS)}"))
        return []
    for c in columns:
        if c and c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            warnings.append(Problem(shown, 1, c, "is not a known column and is ignored"))
    pairs: list[Pair] = []
    first_line: dict[str, int] = {}
    line = 2
    try:
        for n, values in enumerate(reader, 1):
            start_line = line
            line = reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            row = dict(zip(columns, values, strict=False))
            col = _Collector(shown)
            pair = _pair(row, col, start_line, n)
            if pair is not None and pair.id in first_line:
                col.add("pair_id", f"'{pair.id}' is already used on line {first_line[pair.id]}",
                        line=start_line, row=n)
            if col.problems:
                skipped.extend(col.problems)
                continue
            assert pair is not None
            first_line[pair.id] = start_line
            pairs.append(pair)
    except csv.Error as exc:
        problems.append(Problem(shown, reader.line_num, None, f"cannot be read as CSV: {exc}"))
    return pairs


def _pair(row: dict[str, str], col: _Collector, line: int, n: int) -> Pair | None:
    def field_(name: str) -> str:
        return (row.get(name) or "").strip()

    def bad(name: str, message: str) -> None:
        col.add(name, message, line=line, row=n)

    pid = field_("pair_id")
    if not ID_RE.match(pid):
        bad("pair_id", f"expected letters, digits, '.', '_' or '-', got {pid!r}")
    people: dict[str, Person] = {}
    for role in ("mentor", "mentee"):
        name = _clean_name(field_(f"{role}_name"), f"{role}_name", bad)
        tz_raw = field_(f"{role}_timezone")
        tz = None
        if tz_raw:
            try:
                tz = ZoneInfo(tz_raw)
            except (ZoneInfoNotFoundError, ValueError):
                bad(f"{role}_timezone", f"'{tz_raw}' is not an IANA time zone such as America/Chicago")
        local = _Collector(col.file)
        addr = _email(field_(f"{role}_email"), f"{role}_email", local)
        for p in local.problems:
            bad(p.field or "", p.message)
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
                dates[name] = date.fromisoformat(value)
            except ValueError:
                bad(name, f"expected a date as YYYY-MM-DD, got {value!r}")
    status = field_("status").lower() or "active"
    if status not in get_args(PairStatus):
        bad("status", f"expected active, paused or withdrawn, got {status!r}")
    sf, su = dates["status_from"], dates["status_until"]
    if sf and su and su <= sf:
        bad("status_until", f"{su} is not after status_from {sf}")
    if col.problems:
        return None
    return Pair(id=pid, mentor=people["mentor"], mentee=people["mentee"], joined=dates["joined"],
                status=cast(PairStatus, status), status_from=sf, status_until=su,
                notes=field_("notes"), line=line)


def _clean_name(value: str, name: str, bad: Any) -> str | None:
    if not value:
        bad(name, "is empty")
        return None
    if _CONTROL_RE.search(value):
        bad(name, "contains a line break or control character")
        return None
    value = unicodedata.normalize("NFC", value)
    if len(value) > MAX_NAME:
        bad(name, f"is {len(value)} characters long; at most {MAX_NAME} are allowed")
        return None
    return value


def _clean_text(value: str, col: _Collector, name: str) -> str:
    if _CONTROL_RE.search(value.replace("\n", " ")):
        col.add(name, "contains a control character")
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
        col.add(name, "contains a line break or control character")
        return None
    try:
        info = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        col.add(name, f"{value!r} is not a valid address: {exc}")
        return None
    return info.normalized, info.ascii_email or info.normalized


def _req_str(doc: dict[str, Any], key: str, col: _Collector, *, prefix: str = "") -> str | None:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        col.add(prefix + key, "is missing: expected text")
        return None
    return _clean_text(value, col, prefix + key)


def _req_date(doc: dict[str, Any], key: str, col: _Collector, *, prefix: str = "") -> date | None:
    value = doc.get(key)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = date.fromisoformat(value)
    if not isinstance(value, date) or hasattr(value, "hour"):
        col.add(prefix + key, f"expected a date such as 2020-01-24, got {value!r}")
        return None
    return value


def _zone(value: Any, name: str, col: _Collector) -> ZoneInfo | None:
    if not isinstance(value, str) or not value:
        col.add(name, "is missing: expected an IANA time zone such as America/New_York")
        return None
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        col.add(name, f"'{value}' is not an IANA time zone such as America/New_York")
        return None
