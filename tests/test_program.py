"""Loading and validating cohorts, rosters and the program."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.core.placement import month_day
from mailer.errors import InputError, Problem
from mailer.load.program import load_program
from tests.conftest import examples


def test_sample_loads_with_both_cohorts(program_dir: Path) -> None:
    program = load_program(program_dir)
    assert [c.id for c in program.cohorts] == ["2019-2020", "2020-january"]
    assert not program.skipped_rows and not program.warnings
    big = program.cohort("2019-2020")
    assert big is not None and len(big.pairs) == 12
    assert {c.key for c in big.conferences} == {"midwinter-2020", "annual-2020"}
    assert len(program.readings) == 5  # the seed's uncitable first reading is left out


def test_seed_activities_and_frame_steps_all_present(program_dir: Path) -> None:
    cohort = load_program(program_dir).cohort("2019-2020")
    assert cohort is not None
    keys = [s.key for s in cohort.steps]
    for key in ("welcome", "day-in-the-life", "readings", "resumes", "project-plan", "trend",
                "webinar", "meetup-midwinter-2020", "meetup-annual-2020", "midyear", "wrap-up"):
        assert key in keys
    due = {s.key: s.due for s in cohort.steps}
    assert due["welcome"] == cohort.start
    assert due["meetup-midwinter-2020"] < date(2020, 1, 24)
    assert due["meetup-annual-2020"] < date(2020, 6, 25)
    assert keys == sorted(keys, key=lambda k: (due[k], k))


def load_problems(program_dir: Path) -> list[Problem | str]:
    """Every problem loading finds: the program's own (raised) or its broken cohorts' (left out)."""
    try:
        program = load_program(program_dir)
    except InputError as exc:
        return exc.problems
    return [p for b in program.broken for p in b.problems]


@pytest.mark.parametrize(("start", "month", "day", "expected"), [
    (date(2019, 8, 1), 1, 1, date(2019, 8, 1)),
    (date(2019, 8, 1), 6, 15, date(2020, 1, 15)),
    (date(2020, 1, 6), 2, 31, date(2020, 2, 29)),  # clamped to the month's end (leap year)
    (date(2019, 11, 1), 3, 1, date(2020, 1, 1)),
])
def test_month_day_counts_months_of_the_program_year(start: date, month: int, day: int, expected: date) -> None:
    assert month_day(start, month, day) == expected


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"fixture text {old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(("file", "old", "new", "expect"), [
    ("2019-2020/cohort.toml", "end = 2020-07-31", "end = 2019-07-31", "end 2019-07-31 is not after"),
    ("2019-2020/cohort.toml", 'timezone = "America/New_York"', 'timezone = "Mars/Olympus"', "timezone 'Mars/Olympus'"),
    ("2019-2020/cohort.toml", "day = 2020-01-25", "day = 2020-02-25", "meetup.day 2020-02-25 is outside"),
    ("2019-2020/cohort.toml", "start = 2020-06-25\nend = 2020-06-30", "start = 2020-08-25\nend = 2020-08-30",
     "conferences[2].start 2020-08-25–2020-08-30 is outside the program year"),
    ("2019-2020/cohort.toml", "send_hour = 9", "send_hour = 25", "send_hour expected an hour"),
    ("2019-2020/cohort.toml", 'name = "ALCTS', 'name = = "ALCTS', "is not valid TOML"),
    ("program.toml", 'template = "readings"', 'template = "no_such"', "templates/email/no_such.txt.j2 does not exist"),
    ("program.toml", 'key = "readings"', 'key = "welcome"', "'welcome' is used by another step"),
    ("program.toml", "month = 7", "month = 14",
     "steps.midyear puts 'midyear' on 2020-09-01, outside the program year"),
])
def test_bad_cohort_and_program_files_name_file_and_field(
    program_dir: Path, file: str, old: str, new: str, expect: str
) -> None:
    _edit(program_dir / "cohorts" / file, old, new)
    text = "\n".join(str(p) for p in load_problems(program_dir))
    assert expect in text
    assert f"cohorts/{file}" in text


def test_toml_error_gives_the_line(program_dir: Path) -> None:
    path = program_dir / "cohorts/2019-2020/cohort.toml"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(3, "this is not toml")
    path.write_text("\n".join(lines), encoding="utf-8")
    assert load_problems(program_dir)[0].line == 4


def test_all_problems_reported_at_once(program_dir: Path) -> None:
    _edit(program_dir / "cohorts/2019-2020/cohort.toml", "send_hour = 9", "send_hour = 99")
    _edit(program_dir / "cohorts/2020-january/cohort.toml", 'timezone = "America/Chicago"', 'timezone = "Nowhere"')
    text = "\n".join(str(p) for p in load_problems(program_dir))
    assert "2019-2020/cohort.toml: send_hour" in text and "2020-january/cohort.toml: timezone" in text


def test_bad_roster_rows_are_skipped_and_named_others_load(program_dir: Path) -> None:
    roster = program_dir / "cohorts/2019-2020/roster.csv"
    with roster.open("a", encoding="utf-8") as f:
        f.write("p13,Ann Example,ann@@example.org,Bo Example,bo@example.org,,active,,,,,\n")
        f.write("p01,Dup Licate,dup@example.org,Dup Two,dup2@example.org,,active,,,,,\n")
        f.write("p14,Same Person,same@example.org,Same Again,same@example.org,,active,,,,,\n")
        f.write("p15,Cy Example,cy@example.org,Di Example,di@example.org,,sleeping,,,,,\n")
    program = load_program(program_dir)
    cohort = program.cohort("2019-2020")
    assert cohort is not None and len(cohort.pairs) == 12  # every good pair is still there
    text = "\n".join(str(p) for p in program.skipped_rows)
    assert "roster.csv:14: mentor_email 'ann@@example.org' is not a valid address" in text
    assert "roster.csv:15: pair_id 'p01' is already used on line 2" in text
    assert "roster.csv:16: mentee_email is the same address as mentor_email" in text
    assert "roster.csv:17: status expected active, paused or withdrawn" in text


def test_roster_missing_column_is_a_file_error(program_dir: Path) -> None:
    roster = program_dir / "cohorts/2020-january/roster.csv"
    text = roster.read_text(encoding="utf-8").replace("mentee_email", "mentee_mail", 1)
    roster.write_text(text, encoding="utf-8")
    program = load_program(program_dir)
    assert [b.id for b in program.broken] == ["2020-january"]  # that cohort only: the other still loads
    assert [c.id for c in program.cohorts] == ["2019-2020"]
    assert "cohorts/2020-january/roster.csv:1: mentee_email column missing" in str(program.broken[0].problems[0])


def test_roster_with_bom_blank_lines_and_quoted_newline(program_dir: Path) -> None:
    roster = program_dir / "cohorts/2020-january/roster.csv"
    text = roster.read_text(encoding="utf-8")
    text += '\n\nj05,Ed Example,ed@example.org,Flo Example,flo@example.org,,active,,,,,"two\nlines, and a comma"\n'
    roster.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    cohort = load_program(program_dir).cohort("2020-january")
    assert cohort is not None
    j05 = cohort.pair("j05")
    assert j05 is not None and j05.notes == "two\nlines, and a comma"


def test_roster_not_utf8_names_line_and_offset(program_dir: Path) -> None:
    roster = program_dir / "cohorts/2020-january/roster.csv"
    roster.write_bytes(roster.read_bytes() + "j05,Zoë,z@example.org,Y,y@example.org\n".encode("latin-1"))
    assert "roster.csv:6: is not UTF-8: undecodable byte at offset" in "\n".join(map(str, load_problems(program_dir)))


def test_idn_domain_kept_and_sent_as_punycode(program_dir: Path) -> None:
    roster = program_dir / "cohorts/2020-january/roster.csv"
    with roster.open("a", encoding="utf-8") as f:
        f.write("j05,Ed Example,ed@bücher.example,Flo Example,flo@example.org,,active,,,,,\n")
    cohort = load_program(program_dir).cohort("2020-january")
    assert cohort is not None
    ed = cohort.pair("j05").mentor  # type: ignore[union-attr]
    assert ed.email == "ed@bücher.example" and ed.ascii_email == "ed@xn--bcher-kva.example"


@pytest.mark.parametrize("address", [
    "ann@example.org", "Ann.Lee+mentoring@Example.ORG", "o'brien@example.com", "a@bücher.example",
    "x@xn--bcher-kva.example", "first.last@sub.domain.example.org", "a..b@example.org", ".a@example.org",
    "a.@example.org", "ann@localhost", "ann@example", "ann@-example.org", "ann@exa_mple.org",
    "ann@example.test", "ann@[192.0.2.1]", "\"quoted\"@example.org", "zoë@example.org", "a" * 65 + "@example.org",
    "ann@" + "x" * 250 + ".org", "ann@example.invalid", "UPPER@EXAMPLE.ORG",
])
def test_the_fast_address_check_agrees_with_email_validator(address: str) -> None:
    """A roster of thousands validates common addresses by a cached domain check; it must give what
    email-validator gives, or defer to it."""
    from email_validator import EmailNotValidError, validate_email

    from mailer.load.fields import Collector, email_address

    col = Collector("roster.csv")
    got = email_address(address, "mentor_email", col)
    try:
        info = validate_email(address, check_deliverability=False, allow_smtputf8=False)
        expected: tuple[str, str] | None = (info.normalized, info.ascii_email or info.normalized)
    except EmailNotValidError:
        expected = None
    assert got == expected
    assert bool(col.problems) == (expected is None)


@settings(max_examples=examples(500), deadline=None)
@given(st.one_of(st.emails(), st.builds(lambda a, b: f"{a}@{b}", st.text(max_size=20), st.text(max_size=30)),
                 st.builds(lambda a, d: f"{a}@{d}", st.from_regex(r"[A-Za-z0-9.!#'+_-]{1,12}", fullmatch=True),
                           st.sampled_from(["example.org", "Example.ORG", "localhost", "example.test",
                                            "bücher.example", "a-.example", "x.invalid", "ex ample.org"]))))
def test_the_fast_address_check_agrees_on_generated_addresses(address: str) -> None:
    test_the_fast_address_check_agrees_with_email_validator(address)


def test_an_overlong_template_name_is_a_problem_not_a_crash(program_dir: Path) -> None:
    """Found by the property test: a 300-character template name made the file check raise ENAMETOOLONG."""
    program_file = program_dir / "cohorts" / "program.toml"
    text = program_file.read_text(encoding="utf-8").replace('template = "welcome"', f'template = "{"x" * 300}"', 1)
    program_file.unlink()  # a link into the package's defaults: replace it, never write through it
    program_file.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_program(program_dir)
    assert "steps[1].template expected a template name such as 'welcome'" in str(err.value)
    assert "at most 64" in str(err.value)
