"""roster.csv: one row per pair; a bad row is listed and left out, never stopping the other pairs."""

from __future__ import annotations

import csv
import difflib
import io
import itertools
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any, cast, get_args

from mailer.core.model import Pair, PairStatus, Person
from mailer.errors import Problem, display_path
from mailer.load.fields import ID_RE, Collector, clean_name, email_address, legacy_zone, lookup_zone, plausible, short
from mailer.load.files import read_text

REQUIRED_COLUMNS = ("pair_id", "mentor_name", "mentor_email", "mentee_name", "mentee_email")
OPTIONAL_COLUMNS = (
    "joined", "status", "status_from", "status_until",
    "mentor_timezone", "mentee_timezone", "notes", "mentor_first_name", "mentee_first_name",
)
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
# a name opening with one of these is greeted by the title ("Hi Dr.") unless a first-name column says otherwise
TITLES = frozenset({"dr", "prof", "mr", "ms", "mrs", "mx"})


def load_roster(path: Path, root: Path, skipped: list[Problem], warnings: list[Problem],
                 problems: list[Problem], year: tuple[date, date] | None) -> list[Pair]:
    shown = display_path(path, root)
    text = read_text(path, root, problems, missing="is missing: each cohort needs a roster.csv",
                     advice="save the roster as 'CSV UTF-8'")
    if text is None:
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
    if (problem := _header_problem(header, columns, shown, header_line)) is not None:
        problems.append(problem)
        return []
    for c in columns:
        if c and c not in KNOWN_COLUMNS:
            warnings.append(Problem(shown, header_line, c, "is not a known column and is ignored"))
    pairs: list[Pair] = []
    first_line: dict[str, tuple[int, int]] = {}
    line = header_line + 1
    for n in itertools.count(header_line + 1):  # the row a spreadsheet shows: one per record, blank ones too
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
        col = Collector(shown)
        pair = _pair(row, col, start_line, n, year)
        if pair is not None:
            warnings.extend(_person_warnings(pair, shown, start_line, n))
        if pair is not None and pair.id.lower() in first_line:  # ids compare without case
            other_line, other_row = first_line[pair.id.lower()]
            where = f"line {other_line}" if other_line == other_row else f"line {other_line} (row {other_row})"
            col.add("pair_id", f"'{pair.id}' is already used on {where}; each pair needs its own id",
                    line=start_line, row=n)
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
        first_line[pair.id.lower()] = (start_line, n)
        pairs.append(pair)
    return pairs


def _pair(row: dict[str, str], col: Collector, line: int, n: int, year: tuple[date, date] | None) -> Pair | None:
    def field_(name: str) -> str:
        return (row.get(name) or "").strip()

    def bad(name: str | None, message: str) -> None:
        col.add(name, message, line=line, row=n)

    pid = field_("pair_id")
    if not ID_RE.match(pid):
        bad("pair_id", f"expected letters, digits, '.', '_' or '-' (at most 64), got {short(pid)}")
    people: dict[str, Person] = {}
    for role in ("mentor", "mentee"):
        name = clean_name(field_(f"{role}_name"), f"{role}_name", bad)
        tz_raw = field_(f"{role}_timezone")
        tz = None
        if tz_raw:
            tz, hint = lookup_zone(tz_raw)
            if tz is None:
                bad(f"{role}_timezone", f"{short(tz_raw)} is not an IANA time zone such as America/Chicago{hint}")
        local = Collector(col.file)
        addr = email_address(field_(f"{role}_email"), f"{role}_email", local)
        for p in local.problems:
            bad(p.field, p.message)
        given = clean_name(field_(f"{role}_first_name"), f"{role}_first_name", bad) if field_(
            f"{role}_first_name") else None
        if name and addr:
            people[role] = Person(name=name, email=addr[0], ascii_email=addr[1],
                                  role=cast(Any, role), timezone=tz, given_name=given or None)
    if len(people) == 2 and people["mentor"].ascii_email.lower() == people["mentee"].ascii_email.lower():
        bad("mentee_email", "is the same address as mentor_email; a pair needs two people")
    dates: dict[str, date | None] = {}
    for name in ("joined", "status_from", "status_until"):
        value = field_(name)
        dates[name] = None
        if value:
            try:
                dates[name] = plausible(date.fromisoformat(value))
            except ValueError as exc:
                reason = f"{exc}" if str(exc).startswith("year") else "expected a date as YYYY-MM-DD"
                bad(name, f"{reason}, got {short(value)}")
    joined = dates["joined"]
    if joined and year and joined > year[1]:
        bad("joined", f"{joined} is after the program year ends ({year[1]}); the pair would get no email")
    status = field_("status").lower() or "active"
    if status not in get_args(PairStatus):
        bad("status", f"expected active, paused or withdrawn, got {short(status)}")
    sf, su = dates["status_from"], dates["status_until"]
    if sf and su and su <= sf:
        bad("status_until", f"{su} is not after status_from {sf}")
    if col.problems:
        return None
    return Pair(id=pid, mentor=people["mentor"], mentee=people["mentee"], joined=joined,
                status=cast(PairStatus, status), status_from=sf, status_until=su,
                notes=field_("notes"))


def _person_warnings(pair: Pair, shown: str, line: int, n: int) -> list[Problem]:
    """A name that opens with a title and has no first name given (the greeting would be "Hi Dr."), and a
    fixed-offset or legacy time zone (summer mail an hour off)."""
    found = []
    for person in pair.people():
        legacy = legacy_zone(person.timezone) if person.timezone is not None else None
        if legacy is not None:
            found.append(Problem(shown, line, f"{person.role}_timezone", legacy, n))
        words = person.name.split()
        if person.given_name is None and len(words) > 1 and words[0].rstrip(".").lower() in TITLES:
            found.append(Problem(shown, line, f"{person.role}_name",
                                 f"'{person.name}' opens with a title, so emails would greet '{words[0]}': add "
                                 f"a {person.role}_first_name column with the name to greet", n))
    return found


def _header_problem(header: list[str], columns: list[str], shown: str, line: int) -> Problem | None:
    """What is wrong with the header row as a whole: another separator, a required column missing (with the
    header that was probably meant), a column twice, or a misspelt optional column whose data would be lost."""
    if len(header) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs")):
            if header[0].count(sep) >= 2:
                return Problem(shown, line, None, f"is separated by {name}, not commas: save it again as "
                                                  "'CSV UTF-8 (comma delimited)'")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        found = ", ".join(repr(h) for h in header[:20])
        meant = [f"'{h.strip()}' -> {c}" for c in missing for h in header if _closest(h) == c]
        hint = f"; did you mean {', '.join(meant)}?" if meant else ""
        return Problem(shown, line, ", ".join(missing),
                       f"column missing; the header must include {', '.join(REQUIRED_COLUMNS)} (it has {found})"
                       f"{hint}")
    twice = [c for c, n in Counter(columns).items() if c and n > 1]
    if twice:
        return Problem(shown, line, ", ".join(twice), "column appears more than once in the header; keep one")
    for h, c in zip(header, columns, strict=True):
        if c and c not in KNOWN_COLUMNS and (meant_column := _closest(h)) is not None:
            return Problem(shown, line, h.strip(), f"is not a known column; did you mean {meant_column}? (its "
                                                   "data would be lost otherwise)")
    return None


def _closest(header: str) -> str | None:
    """The known column a header was probably meant to be: "Mentor Email" or "mentee_time_zone"."""
    plain = "".join(ch for ch in header.lower() if ch.isalnum())
    by_plain = {c.replace("_", ""): c for c in KNOWN_COLUMNS}
    if plain in by_plain:
        return by_plain[plain]
    close = difflib.get_close_matches(plain, list(by_plain), n=1, cutoff=0.85)
    return by_plain[close[0]] if close else None
