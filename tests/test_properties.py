"""Property-based tests: no roster, cohort or program file crashes the loader, and no name injects a header.

Each property writes one generated file into a copy of the sample program (made once per test, not per
example) and loads it. The loader must either load it, listing bad roster rows in `skipped_rows`, or raise
InputError listing the problems, each naming the file; any other exception is a bug. What loads must be
clean: ids that match their pattern, names without control characters, steps inside their year, and a
year schedule that can be computed.
"""

from __future__ import annotations

import base64
import copy
import csv
import email
import email.policy
import email.utils
import io
import quopri
import re
import shutil
import string
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from mailer.core import year as planner
from mailer.core.compose import build_message, context
from mailer.core.csvout import safe_cell, write_csv
from mailer.core.mime import header_safe
from mailer.core.model import Program
from mailer.core.occurrence import Occurrence
from mailer.core.render import Rendered
from mailer.errors import InputError, Problem
from mailer.load.program import load_program
from mailer.load.templates import renderer_for
from tests.conftest import REPO, examples

ROSTER = "cohorts/2019-2020/roster.csv"
COHORT = "cohorts/2019-2020/cohort.toml"
PROGRAM = "cohorts/program.toml"
OTHER_COHORT = "cohorts/2020-january/cohort.toml"
EXAMPLES = examples(1000)  # 10,000 under the fuzz profile (tests/conftest.py)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example])
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEY = re.compile(r"[a-z0-9][a-z0-9-]*")


def sample_copy(base: Path) -> Path:
    root = base / "program"
    shutil.copytree(REPO / "cohorts", root / "cohorts")
    shutil.copytree(REPO / "templates", root / "templates")
    return root


# --- what every generated file must lead to ----------------------------------------------------

def load_or_problems(root: Path) -> tuple[Program | None, list[Problem]]:
    """Load; any exception but InputError fails the test (hypothesis shows the file that caused it)."""
    error: InputError | None = None
    try:
        program = load_program(root)
    except InputError as exc:
        error = exc
    if error is not None:
        assert error.problems, "an InputError must list at least one problem"
        assert all(isinstance(p, Problem) for p in error.problems), error.problems
        event("InputError")
        return None, list(error.problems)  # type: ignore[arg-type]
    assert_clean(program)
    event("loaded, some rows left out" if program.skipped_rows else "loaded, every row")
    return program, list(program.skipped_rows)


def assert_clean(program: Program) -> None:
    """What loads is what the rest of mentor-mailer may rely on."""
    for cohort in program.cohorts:
        assert _ID.fullmatch(cohort.id)
        assert cohort.start < cohort.end
        assert 0 <= cohort.send_hour <= 23
        for text in (cohort.name, cohort.coordinator.name):
            assert text.strip() and not _CONTROL.search(text)
        assert cohort.coordinator.ascii_email.isascii()
        for link in cohort.evaluations.values():
            assert link is None or (link.startswith(("http://", "https://")) and not _CONTROL.search(link)
                                    and " " not in link)
        keys = [s.key for s in cohort.steps]
        assert len(keys) == len(set(keys)), f"step keys made twice: {keys}"
        for step in cohort.steps:
            assert _KEY.fullmatch(step.key), step.key
            assert cohort.start <= step.due <= cohort.end
        for conf in cohort.conferences:
            assert _KEY.fullmatch(conf.key), conf.key
            assert cohort.start <= conf.start <= conf.end <= cohort.end
            for text in (conf.name, conf.city, conf.venue):
                assert not _CONTROL.search(text)
            if conf.meetup is not None:
                assert conf.start <= conf.meetup.day <= conf.end
                assert not _CONTROL.search(conf.meetup.place)
        ids = [p.id for p in cohort.pairs]
        assert len(ids) == len(set(ids))
        for pair in cohort.pairs:
            assert _ID.fullmatch(pair.id), pair.id
            assert pair.mentor.ascii_email.lower() != pair.mentee.ascii_email.lower()
            for person in pair.people():
                assert person.name and len(person.name) <= 200 and not _CONTROL.search(person.name)
                assert person.ascii_email.isascii() and "@" in person.ascii_email
                assert not _CONTROL.search(person.email)
            assert pair.joined is None or pair.joined <= cohort.end
    for occ in planner.year_schedule(program):  # the schedule of what loaded can be computed, in UTC too
        occ.due_at.astimezone(UTC)


def assert_problems_in(problems: list[Problem], files: set[str]) -> None:
    for p in problems:
        assert p.file in files, f"problem names {p.file!r}, expected one of {sorted(files)}: {p}"
        assert p.message.strip(), p
        assert "Traceback" not in p.message
        if p.row is not None:
            assert p.line is not None and p.line >= 2, p


# --- roster.csv --------------------------------------------------------------------------------

HEADER = ["pair_id", "mentor_name", "mentor_email", "mentee_name", "mentee_email", "joined", "status",
          "status_from", "status_until", "mentor_timezone", "mentee_timezone", "notes"]
GOOD_ROWS = list(csv.reader(io.StringIO((REPO / ROSTER).read_text(encoding="utf-8"))))[1:]

EMAILS = [
    "ann@example.org", "ann@@example.org", "ann@bücher.example", "zoë@example.org", "Ann <ann@example.org>",
    "ann@example", "a" * 65 + "@example.org", "ann@[127.0.0.1]", '"a b"@example.org', "ann@example.org\n",
    "ann@xn--bcher-kva.example", "ann@-bad-.example", "ann@例え.テスト", "ann@localhost", "ann@example..org",
    "renee.cote@example.org", "RENEE.COTE@EXAMPLE.ORG", "ann@example.org, bo@example.org", "@example.org",
    "ann@", "ann@exa mple.org", "ann@xn--.example", "ann@" + "a" * 64 + ".example", "ann@" + "b." * 130 + "org",
    "ann@ex\u200bample.org", "ann@ＥＸＡＭＰＬＥ.org", "ann@example.invalid", "ann@ex\x00ample.org",
    "ann@1.2.3.4", "ann+tag@example.org", "=HYPERLINK(\"http://evil\")@example.org",
]
NAMES = [
    "Renée Côté", "X" * 201, "X" * 200, "=?utf-8?q?x=0D=0ABcc:_evil@example.org?=", "Ann\r\nBcc: evil@example.org",
    "\u202eevil", "Ann, Bo", '"Quoted" Name', "\\", "<ann@example.org>", "Ann\tTab", "  ", "Ann\u2028Bo",
    "Ann\x85Bo", "=cmd|' /C calc'!A0", "e\u0301" * 150, "\ufeffAnn", "ﷺ" * 70, "Ann (Bo)", "Ann; Bo: <x>",
]
DATES = ["2019-08-01", "2019-02-30", "0001-01-01", "9999-12-31", "2019-13-01", "01/08/2019", "2019-W01-1",
         "20190801", "2020-07-31", "2020-08-01", "2109-08-01", "1900-01-01", "2019-08-01T10:00", " 2019-11-18 ",
         "2019-8-1", "２０１９-０８-０１"]
ZONES = ["America/New_York", "America", "Mars/Olympus", "../../etc/passwd", "/etc/passwd", "UTC",
         "america/new_york", "x" * 300, "Factory", "zone.tab", "Europe/Warsaw ", "Etc/GMT+14", "Pacific/Kiritimati",
         "America//Chicago", "EST5EDT", "right/UTC", "posixrules", "localtime", "tzdata.zi", "a\x00b", "Asia"]
STATUSES = ["active", "paused", "withdrawn", "ACTIVE", " Paused ", "sleeping", "", "withdrawn\n"]
SPECIAL = ["", " ", '"', '""', "a,b", "line\nbreak", "\r", "\x00", "\x1b[31m", "\u2028", "\ufeff", "p01", "p02",
           "p01 ", "p01\n", "p 01", "-p", "é", "\x1a", ";", "\t", "'", "a\"b", "#", "=1+1", "\r\n", "\n\n"]


def _huge(n: int) -> str:
    return "x" * n


cell = st.one_of(
    st.sampled_from(EMAILS + NAMES + DATES + ZONES + STATUSES + SPECIAL),
    st.text(max_size=20),
    st.text(alphabet=string.printable, max_size=40),
    st.emails().map(str),
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat),
    st.dates(min_value=date(2019, 6, 1), max_value=date(2020, 10, 1)).map(date.isoformat),
    # now and then past the csv module's field limit (131072 characters), otherwise a plain name
    st.integers(0, 15).flatmap(lambda n: st.integers(131_000, 140_000).map(_huge) if n == 0
                               else st.sampled_from(["Ann Example", "Bo", "p99", "x@example.org"])),
)


@st.composite
def roster_row(draw: st.DrawFn) -> list[str]:
    if draw(st.booleans()):
        row = list(draw(st.sampled_from(GOOD_ROWS)))
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, len(row)))
            if i == len(row):
                row.append(draw(cell))  # an extra cell
            else:
                row[i] = draw(cell)
        if draw(st.integers(0, 9)) == 0:
            row = row[:draw(st.integers(0, len(row)))]  # too few cells
        return row
    return draw(st.lists(cell, max_size=14))


@st.composite
def roster_header(draw: st.DrawFn) -> list[str]:
    choice = draw(st.integers(0, 6))
    header = list(HEADER)
    if choice == 1:
        header = draw(st.permutations(HEADER))
    elif choice == 2:
        del header[draw(st.integers(0, len(header) - 1))]
    elif choice == 3:
        header.insert(draw(st.integers(0, len(header))), draw(st.sampled_from([*HEADER, "extra", "", "Email"])))
    elif choice == 4:
        header = [draw(st.sampled_from([h, h.upper(), f" {h} ", h.replace("_", " ")])) for h in header]
    elif choice == 5:
        header = draw(st.lists(st.one_of(st.sampled_from(HEADER), cell), max_size=14))
    return header


@st.composite
def roster_bytes(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2000))  # whatever a broken export or a wrong file holds
    rows = [draw(roster_header()), *draw(st.lists(roster_row(), max_size=8))]
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if draw(st.booleans()):
        out = io.StringIO(newline="")
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
        csv.writer(out, lineterminator=end, quoting=quoting).writerows(rows)
        text = out.getvalue()
    else:  # written by hand: quotes and commas as they come
        text = "".join(",".join(r) + end for r in rows)
    if draw(st.integers(0, 4)) == 0:
        lines = text.split(end)
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", ",,,,", '"', '"open,quote'])))
        text = end.join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-8"]))
    data = text.encode(encoding, errors="replace")
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 5)) == 0 else 0):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    if draw(st.integers(0, 19)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return data


def test_any_roster_loads_or_lists_its_problems(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = sample_copy(tmp_path_factory.mktemp("roster"))
    path = root / ROSTER

    @FUZZ
    @given(roster_bytes())
    def prop(data: bytes) -> None:
        path.write_bytes(data)
        program, problems = load_or_problems(root)
        assert_problems_in(problems, {ROSTER})
        for p in problems:
            assert p.line is not None, f"a roster problem names its line: {p}"
        if program is not None:
            for w in program.warnings:  # unknown columns (header line), extra cells (their row)
                assert w.file == ROSTER and w.line is not None, w

    prop()


# --- TOML writing, for the generated cohort and program files -----------------------------------------

def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_str(key)


def toml_str(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def toml_dumps(doc: dict[str, Any]) -> str:
    """Top-level scalars, then tables and arrays of tables in the usual layout ([t], [[a]], [a.sub])."""
    lines: list[str] = []
    later: list[str] = []
    for k, v in doc.items():
        if isinstance(v, dict) and v:
            later += ["", f"[{toml_key(k)}]", *(f"{toml_key(a)} = {toml_value(b)}" for a, b in v.items())]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                later += ["", f"[[{toml_key(k)}]]"]
                sub = []
                for a, b in item.items():
                    if isinstance(b, dict) and b:
                        sub += [f"[{toml_key(k)}.{toml_key(a)}]", *(f"{toml_key(c)} = {toml_value(d)}"
                                                                    for c, d in b.items())]
                    else:
                        later.append(f"{toml_key(a)} = {toml_value(b)}")
                later += sub
        else:
            lines.append(f"{toml_key(k)} = {toml_value(v)}")
    return "\n".join(lines + later) + "\n"


def test_toml_writer_round_trips_the_samples() -> None:
    for name in (COHORT, PROGRAM, OTHER_COHORT):
        doc = tomllib.loads((REPO / name).read_text(encoding="utf-8"))
        assert tomllib.loads(toml_dumps(doc)) == doc


scalar = st.one_of(
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
    st.dates(min_value=date(2019, 1, 1), max_value=date(2021, 1, 1)),
    st.dates(min_value=date(2019, 1, 1), max_value=date(2021, 1, 1)).map(date.isoformat),
    st.datetimes(min_value=datetime(2019, 1, 1), max_value=datetime(2021, 1, 1)),  # noqa: DTZ001
    st.datetimes(min_value=datetime(2019, 1, 1), max_value=datetime(2021, 1, 1),  # noqa: DTZ001
                 timezones=st.just(UTC)),
    st.times(), st.times().map(lambda t: t.strftime("%H:%M")),
    st.integers(-10, 1500), st.integers(), st.sampled_from([2**63 - 1, -(2**63)]),
    st.floats(), st.booleans(),
    st.sampled_from(ZONES + NAMES + SPECIAL + EMAILS[:12]),
    st.sampled_from(["welcome\n", "midwinter-2020\n", "annual-2020", "midwinter-2020", "cancelled", "confirmed",
                     "https://example.org/x", "https://example.org/x\n", "https://exa mple.org", "javascript:x",
                     "ftp://example.org", "12:30", "25:00", "12:60", "9:05", "*", "meetup-annual-2020"]),
    st.text(max_size=30),
)
toml_value_st = st.one_of(
    scalar, scalar, scalar,
    st.lists(scalar, max_size=3),
    st.dictionaries(st.sampled_from(["name", "email", "day", "time", "key", "x"]), scalar, max_size=3),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def perturbed_doc(draw: st.DrawFn, base: dict[str, Any], extra: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        op = draw(st.integers(0, 9))
        if not paths or op == 9:
            doc[draw(st.sampled_from(["extra", "sendhour", "name", "steps", "conferences", "readings"]))] = \
                draw(toml_value_st)
            continue
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        if op <= 4:  # a new value, of any type
            parent[path[-1]] = draw(toml_value_st)
        elif op <= 6:  # a key or an item left out
            del parent[path[-1]]
        elif op == 7 and isinstance(parent, list):  # an item twice
            parent.append(copy.deepcopy(parent[path[-1]]))
        elif op == 7 and isinstance(parent, dict):  # an unknown key beside it
            parent[draw(st.sampled_from(["x", "sendhour", "minute", "citation", "when"]))] = draw(scalar)
        else:
            extra(doc)
    return doc


@st.composite
def garbled(draw: st.DrawFn, text: str) -> bytes:
    """The TOML text, sometimes with a syntax mistake, a stray byte, a BOM or a duplicated line."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        kind = draw(st.integers(0, 4))
        if kind == 0:
            lines.insert(i, lines[i])  # a key given twice
        elif kind == 1:
            lines.insert(i, draw(st.sampled_from(["this is not toml", "[", "[[conferences]", "x = ", "= 3",
                                                  'x = "unterminated', "a = [" * 600, "a = " + "9" * 5000,
                                                  "a = {" * 400, "[coordinator]", "[[steps]]", "x = 0000-00-00"])))
        elif kind == 2:
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        elif kind == 3:
            lines.insert(i, draw(st.text(max_size=20)))
        else:
            del lines[i]
    data = "\n".join(lines).encode("utf-8")
    if draw(st.integers(0, 9)) == 0:
        data = b"\xef\xbb\xbf" + data
    if draw(st.integers(0, 19)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xe9", b"\x00", b"\xc3"])) + data[at:]
    return data


# --- cohort.toml -------------------------------------------------------------------------------

COHORT_DOC = tomllib.loads((REPO / COHORT).read_text(encoding="utf-8"))
COHORT_TEXT = (REPO / COHORT).read_text(encoding="utf-8")


def _new_conference(draw: st.DrawFn) -> Callable[[dict[str, Any]], None]:
    def add(doc: dict[str, Any]) -> None:
        confs = doc.setdefault("conferences", [])
        if not isinstance(confs, list):
            return
        first = draw(st.dates(min_value=date(2018, 6, 1), max_value=date(2021, 3, 1)))
        last = first + timedelta(days=draw(st.integers(-3, 10)))
        conf: dict[str, Any] = {
            "key": draw(st.sampled_from(["new-conf", "midwinter-2020", "Bad Key", "x" * 70, "new\n"])),
            "name": "New", "city": "Denver", "start": first, "end": last,
            "timezone": draw(st.sampled_from(ZONES)),
            "status": draw(st.sampled_from(["confirmed", "cancelled", "maybe"])),
        }
        if draw(st.booleans()):
            conf["meetup"] = {"day": first + timedelta(days=draw(st.integers(-2, 12))),
                              "time": draw(st.one_of(st.times(), st.sampled_from(["12:30", "24:00", "noon"]))),
                              "minutes": draw(st.integers(-5, 2000)), "place": draw(st.sampled_from(NAMES))}
        confs.append(conf)
    return add


@st.composite
def cohort_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=500))
    if kind == 1:
        return draw(garbled(COHORT_TEXT))  # the file as the coordinator has it, comments and all
    doc = draw(perturbed_doc(COHORT_DOC, _new_conference(draw)))
    if draw(st.integers(0, 3)) == 0:  # the year and its conferences moved together or apart
        year_start = draw(st.dates(min_value=date(1, 1, 10), max_value=date(9998, 1, 1)))
        doc["start"] = year_start
        doc["end"] = year_start + timedelta(days=draw(st.integers(-5, 400)))
    return draw(garbled(toml_dumps(doc)))


def test_any_cohort_file_loads_or_lists_its_problems(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = sample_copy(tmp_path_factory.mktemp("cohort"))
    path = root / COHORT

    @FUZZ
    @given(cohort_bytes())
    def prop(data: bytes) -> None:
        path.write_bytes(data)
        _, problems = load_or_problems(root)
        # a step placed outside the year is the program's step, named in program.toml with this file;
        # a roster row may no longer fit a year that moved
        assert_problems_in(problems, {COHORT, PROGRAM, ROSTER})
        for p in problems:
            if p.file == PROGRAM:
                assert COHORT in p.message, p

    prop()


# --- program.toml ------------------------------------------------------------------------------

PROGRAM_DOC = tomllib.loads((REPO / PROGRAM).read_text(encoding="utf-8"))
PROGRAM_TEXT = (REPO / PROGRAM).read_text(encoding="utf-8")
step_value = st.one_of(
    st.integers(-3, 420), st.sampled_from(["*", "midwinter-2020", "annual-2020", "nope", "pair", "each", "all",
                                           "latest", "skip", "welcome", "no_such", "../base", "welcome\n",
                                           "Welcome", "meetup-annual-2020", "base"]),
    scalar,
)


def _new_step(draw: st.DrawFn) -> Callable[[dict[str, Any]], None]:
    def add(doc: dict[str, Any]) -> None:
        steps = doc.setdefault("steps", [])
        if not isinstance(steps, list):
            return
        step: dict[str, Any] = {"key": draw(st.sampled_from(["extra", "welcome", "meetup-annual-2020", "X", "a" * 70])),
                                "template": draw(st.sampled_from(["welcome", "no_such", "base", "midyear", "a b"]))}
        when = draw(st.integers(0, 3))
        if when == 0:
            step["days_after_start"] = draw(st.integers(-1, 401))
        elif when == 1:
            step["month"], step["day"] = draw(st.integers(0, 25)), draw(st.integers(0, 32))
        elif when == 2:
            step["conference"] = draw(st.sampled_from(["*", "annual-2020", "nope"]))
            step["days_before"] = draw(st.integers(-1, 401))
        for name in draw(st.lists(st.sampled_from(["to", "late", "description", "month", "days_before"]),
                                  max_size=2)):
            step[name] = draw(step_value)
        steps.insert(draw(st.integers(0, len(steps))), step)
    return add


@st.composite
def program_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=500))
    if kind == 1:
        return draw(garbled(PROGRAM_TEXT))
    if kind == 2:
        return draw(st.sampled_from([b"", b"# only a comment\n", b"[program]\nname = \"x\"\n", b"steps = []\n",
                                     b"[[steps]]\n", b"steps = 3\n"]))
    doc = draw(perturbed_doc(PROGRAM_DOC, _new_step(draw)))
    for _ in range(draw(st.integers(0, 2))):  # a step's field set to something a step field might hold
        steps = doc.get("steps")
        if isinstance(steps, list) and steps and isinstance(steps[0], dict):
            item = draw(st.sampled_from(steps))
            if isinstance(item, dict):
                item[draw(st.sampled_from(["key", "template", "to", "late", "days_after_start", "month", "day",
                                           "conference", "days_before"]))] = draw(step_value)
    return draw(garbled(toml_dumps(doc)))


def test_any_program_file_loads_or_lists_its_problems(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = sample_copy(tmp_path_factory.mktemp("program"))
    path = root / PROGRAM

    @FUZZ
    @given(program_bytes())
    def prop(data: bytes) -> None:
        path.write_bytes(data)
        _, problems = load_or_problems(root)
        assert_problems_in(problems, {PROGRAM})
        for p in problems:
            if "outside the program year" in p.message:
                assert COHORT in p.message or OTHER_COHORT in p.message, p

    prop()


# --- no display name or subject adds a header --------------------------------------------------------

FRAGMENTS = ["\r\n", "\n", "\r", "Bcc: evil@example.org", "=?utf-8?q?", "=?utf-8?b?", "?=", "=0D=0A", '"', "\\",
             ",", "<", ">", "@", ":", ";", "(", ")", "Renée", "é", "\u2028", "\x85", " ", "\t", "x" * 80, "日本語",
             "\U0001f600", "=?", "?", "\x00", "\x0b", "\x0c", "\u2029", "From: a@b", "\r\n\r\n", "To: x@y", "'",
             "-->", "MIME-Version: 1.0", "\u0301", "\ufeff", "\u202e", " " * 90, "a\u00a0b"]
header_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=string.printable, max_size=300),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=12).map("".join),
)
EXPECTED_HEADERS = sorted(["From", "To", "Reply-To", "Subject", "Date", "Message-ID", "Auto-Submitted",
                           "X-Mentor-Mailer-Key", "MIME-Version", "Content-Type"])


@pytest.fixture(scope="module")
def welcome() -> tuple[Occurrence, Rendered]:
    program = load_program(REPO)
    occ = next(o for o in planner.year_schedule(program) if o.key == "2019-2020/p01/welcome")
    rendered = renderer_for(program.templates_dir).render(context(program, occ), occ.step.template)
    return occ, rendered


_ENCODED_WORD = re.compile(rb"=\?utf-8\?([bq])\?([^?]*)\?=", re.IGNORECASE)


def parse(data: bytes) -> EmailMessage:
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert line.isascii() and len(line) <= 998, line  # RFC 5322: 7-bit header lines, at most 998 octets
    for kind, payload in _ENCODED_WORD.findall(head):  # RFC 2047: no character split across encoded words
        raw = (base64.b64decode(payload) if kind.lower() == b"b"
               else quopri.decodestring(payload.replace(b"_", b" "), header=True))
        raw.decode("utf-8")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects, msg.defects
    return msg


def assert_headers(msg: EmailMessage, to: list[str], sender: str) -> None:
    assert sorted(msg.keys()) == EXPECTED_HEADERS
    assert len(msg.get_all("Subject") or []) == 1
    addresses = msg["To"].addresses
    assert [a.addr_spec for a in addresses] == to, addresses
    assert [a.addr_spec for a in msg["From"].addresses] == [sender]
    assert [a.addr_spec for a in msg["Reply-To"].addresses] == [sender]
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def display_names(data: bytes, header: str) -> list[tuple[str, str]]:
    """(name, address) pairs decoded as RFC 2047 says: whitespace between two encoded words is dropped.

    Python's policy.default parser keeps that whitespace inside a display name (it shows "Côt é" for a
    long name split over two encoded words), so the names are read with the legacy parser instead.
    """
    legacy = email.message_from_bytes(data, policy=email.policy.compat32)
    pairs = email.utils.getaddresses(legacy.get_all(header) or [])
    return [(str(make_header(decode_header(name))), addr) for name, addr in pairs]


def test_no_display_name_adds_a_header(welcome: tuple[Occurrence, Rendered]) -> None:
    occ, rendered = welcome
    to = [occ.pair.mentor.ascii_email, occ.pair.mentee.ascii_email]
    sender = occ.cohort.coordinator.ascii_email
    now = datetime(2019, 8, 1, 13, tzinfo=UTC)

    @FUZZ
    @given(header_text, header_text, header_text)
    def prop(mentor: str, mentee: str, coordinator: str) -> None:
        pair = replace(occ.pair, mentor=replace(occ.pair.mentor, name=mentor),
                       mentee=replace(occ.pair.mentee, name=header_safe(mentee)))
        cohort = replace(occ.cohort, coordinator=replace(occ.cohort.coordinator, name=coordinator))
        data = build_message(replace(occ, pair=pair, cohort=cohort), rendered, msg_id="<x.mm@example.org>", now=now)
        assert_headers(parse(data), to, sender)
        # and each partner is named as written, control characters folded to spaces
        assert display_names(data, "To") == [(header_safe(mentor), to[0]), (header_safe(mentee), to[1])]
        assert display_names(data, "From") == [(header_safe(coordinator), sender)]

    prop()


def test_no_subject_adds_a_header(welcome: tuple[Occurrence, Rendered]) -> None:
    occ, rendered = welcome
    to = [occ.pair.mentor.ascii_email, occ.pair.mentee.ascii_email]
    now = datetime(2019, 8, 1, 13, tzinfo=timezone(timedelta(hours=-4)))

    @FUZZ
    @given(header_text)
    def prop(subject: str) -> None:
        assume(header_safe(subject))
        data = build_message(occ, replace(rendered, subject=subject), msg_id="<y.mm@example.org>", now=now)
        msg = parse(data)
        assert_headers(msg, to, occ.cohort.coordinator.ascii_email)
        # compared with whitespace runs as one space: folding may turn a space into a line break
        assert " ".join(str(msg["Subject"]).split()) == header_safe(subject)

    prop()


@pytest.mark.parametrize("subject", ["0" * 70, "0" * 200, "a " + "b" * 90 + " c", "x" * 990])
def test_a_long_word_subject_has_no_leading_space(welcome: tuple[Occurrence, Rendered], subject: str) -> None:
    occ, rendered = welcome
    data = build_message(occ, replace(rendered, subject=subject), msg_id="<z.mm@example.org>",
                         now=datetime(2019, 8, 1, 13, tzinfo=UTC))
    assert str(parse(data)["Subject"]) == subject


# --- csvout --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=x", "'\t=x"),
    ("\rx", "'\rx"), ("  =HYPERLINK(\"http://evil\")", "'  =HYPERLINK(\"http://evil\")"), ("\n-2", "'\n-2"),
    ("Renée", "Renée"), ("a=b", "a=b"), ("", ""), (None, ""), (3, "3"), (-3, "'-3"),
    (["a", "=b"], "a; =b"), (["=a", "b"], "'=a; b"), (("x",), "x"), (date(2020, 1, 2), "2020-01-02"),
])
def test_safe_cell(value: object, expected: str) -> None:
    assert safe_cell(value) == expected


def test_write_csv_quotes_and_neutralises_every_cell() -> None:
    out = io.StringIO(newline="")
    rows = [{"pair": "p01", "to": ["ann@example.org", "=cmd|' /C calc'!A0"], "note": 'He said "hi",\nthen left'},
            {"pair": "=HYPERLINK(\"http://evil\",\"x\")", "note": None}]
    write_csv(rows, ["pair", "to", "note"], out)
    assert out.getvalue().endswith("\r\n")
    back = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert back == [["pair", "to", "note"],
                    ["p01", "ann@example.org; =cmd|' /C calc'!A0", 'He said "hi",\nthen left'],
                    ["'=HYPERLINK(\"http://evil\",\"x\")", "", ""]]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                                st.one_of(st.none(), st.integers(), st.text(), st.lists(st.text(), max_size=3))),
                max_size=5))
def test_write_csv_reads_back_safe(rows: list[dict[str, object]]) -> None:
    out = io.StringIO(newline="")
    write_csv(rows, ["a", "b", "c"], out)
    back = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert back[0] == ["a", "b", "c"] and len(back) == len(rows) + 1
    for row, cells in zip(rows, back[1:], strict=True):
        for name, got in zip(["a", "b", "c"], cells, strict=True):
            value = row.get(name)
            plain = "; ".join(map(str, value)) if isinstance(value, list) else "" if value is None else str(value)
            assert got in (plain, "'" + plain)
            assert not got.lstrip().startswith(("=", "+", "-", "@")) and not got.startswith(("\t", "\r"))
