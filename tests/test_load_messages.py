"""What the loader says about the mistakes a coordinator makes: legacy zones, misspellings, the wrong
separator, a time without seconds, a conference close to the start, spreadsheet rows, template typos."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from mailer.core import year as planner
from mailer.core.compose import context
from mailer.errors import InputError, Problem
from mailer.load.program import load_program
from mailer.load.templates import renderer_for

COHORT = "cohorts/2020-january/cohort.toml"
ROSTER = "cohorts/2020-january/roster.csv"
HEADER = "pair_id,mentor_name,mentor_email,mentee_name,mentee_email"


def edit(program_dir: Path, name: str, old: str, new: str) -> None:
    path = program_dir / name
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def said(program_dir: Path) -> tuple[list[str], list[str]]:
    """(problems, warnings) of loading the program, as check prints them."""
    try:
        program = load_program(program_dir)
    except InputError as exc:
        return [str(p) for p in exc.problems], []
    problems = [*program.skipped_rows, *(p for b in program.broken for p in b.problems)]
    return [str(p) for p in problems], [str(p) for p in program.warnings]


@pytest.mark.parametrize(("zone", "advice"), [
    ("EST", "write America/New_York"), ("MST", "America/Phoenix"), ("HST", "write Pacific/Honolulu"),
    ("EST5EDT", "write America/New_York"), ("Etc/GMT+5", "city zone"), ("US/Eastern", "America/New_York"),
])
def test_a_legacy_cohort_zone_is_warned_about_with_the_zone_to_use(program_dir: Path, zone: str,
                                                                   advice: str) -> None:
    edit(program_dir, COHORT, 'timezone = "America/Chicago"    #', f'timezone = "{zone}"    #')
    problems, warnings = said(program_dir)
    assert not problems
    assert any(w.startswith(f"{COHORT}: timezone '{zone}' is a fixed offset") and advice in w for w in warnings)


def test_a_city_zone_draws_no_warning(program_dir: Path) -> None:
    assert not [w for w in said(program_dir)[1] if "fixed offset" in w]


def test_a_legacy_participant_zone_is_warned_about_on_its_row(program_dir: Path) -> None:
    edit(program_dir, ROSTER, "j02,Noémie Girard,noemie.girard@example.org,Tomás Ortega,tomas.ortega@example.com,,"
                              "active,,,,,", "j02,Noémie Girard,noemie.girard@example.org,Tomás Ortega,"
                              "tomas.ortega@example.com,,active,,,EST,,")
    assert any(w.startswith(f"{ROSTER}:3: mentor_timezone 'EST'") for w in said(program_dir)[1])


def test_a_misspelt_zone_gets_a_did_you_mean(program_dir: Path) -> None:
    edit(program_dir, COHORT, 'timezone = "America/Chicago"    #', 'timezone = "America/Torronto"    #')
    assert any("'America/Torronto' is not an IANA time zone" in p and "did you mean 'America/Toronto'?" in p
               for p in said(program_dir)[0])


def test_a_spreadsheets_header_gets_a_did_you_mean(program_dir: Path) -> None:
    (program_dir / ROSTER).write_text("Pair ID,Mentor Name,Mentor Email,Mentee Name,Mentee Email\n"
                                      "j1,Ann Lee,ann@example.org,Bo Chen,bo@example.org\n", encoding="utf-8")
    (problem,) = said(program_dir)[0]
    assert problem.startswith(f"{ROSTER}:1: pair_id, mentor_name, mentor_email, mentee_name, mentee_email column")
    assert "'Mentor Email' -> mentor_email" in problem and "'Pair ID' -> pair_id" in problem


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolons"), ("\t", "tabs")])
def test_a_roster_with_another_separator_is_named(program_dir: Path, sep: str, name: str) -> None:
    (program_dir / ROSTER).write_text(HEADER.replace(",", sep) + "\n" + sep.join(
        ["j1", "Ann Lee", "ann@example.org", "Bo Chen", "bo@example.org"]) + "\n", encoding="utf-8")
    (problem,) = said(program_dir)[0]
    assert problem == f"{ROSTER}:1: is separated by {name}, not commas: save it again as 'CSV UTF-8 (comma delimited)'"


def test_a_misspelt_optional_column_is_an_error_naming_the_closest(program_dir: Path) -> None:
    (program_dir / ROSTER).write_text(f"{HEADER},mentee_time_zone\nj1,Ann Lee,ann@example.org,Bo Chen,"
                                      "bo@example.org,Asia/Tokyo\n", encoding="utf-8")
    (problem,) = said(program_dir)[0]
    assert problem.startswith(f"{ROSTER}:1: mentee_time_zone is not a known column; did you mean mentee_timezone?")


def test_an_unrelated_extra_column_stays_a_warning(program_dir: Path) -> None:
    (program_dir / ROSTER).write_text(f"{HEADER},affiliation\nj1,Ann Lee,ann@example.org,Bo Chen,bo@example.org,"
                                      "Riverside\n", encoding="utf-8")
    problems, warnings = said(program_dir)
    assert not problems and any("affiliation is not a known column and is ignored" in w for w in warnings)


def test_a_time_without_seconds_says_how_to_write_it(program_dir: Path) -> None:
    edit(program_dir, COHORT, "time = 08:00:00", "time = 08:00")
    (problem,) = said(program_dir)[0]
    assert problem.startswith(f"{COHORT}:33: is not valid TOML: write times as 08:00:00, with seconds")


def test_a_meetup_step_before_the_year_goes_on_its_first_day(program_dir: Path) -> None:
    """A conference three weeks into the year: its meetup step (35 days before) opens the year, with a warning."""
    edit(program_dir, COHORT, "start = 2020-06-25\nend = 2020-06-30", "start = 2020-01-27\nend = 2020-01-30")
    edit(program_dir, COHORT, "day = 2020-06-28", "day = 2020-01-28")
    problems, warnings = said(program_dir)
    assert not problems
    assert any(w.startswith(f"{COHORT}: conferences.annual-2020 starts 21 days into the year") and
               "goes out on the year's first day, 2020-01-06" in w for w in warnings)
    cohort = load_program(program_dir).cohort("2020-january")
    assert cohort is not None
    meetup = next(s for s in cohort.steps if s.key == "meetup-annual-2020")
    assert meetup.due == date(2020, 1, 6)


def test_rows_are_numbered_as_a_spreadsheet_shows_them(program_dir: Path) -> None:
    (program_dir / ROSTER).write_text(
        f"{HEADER},notes\n"
        'j1,Ann Lee,ann@example.org,Bo Chen,bo@example.org,"two\nlines"\n'  # row 2, lines 2-3
        "j2,Cy Day,cy@@example.org,Di Eng,di@example.org,\n", encoding="utf-8")  # row 3, line 4
    (problem,) = said(program_dir)[0]
    assert problem.startswith(f"{ROSTER}:4 (row 3): mentor_email")
    assert str(Problem(ROSTER, 6, "x", "y", 6)) == f"{ROSTER}:6: x y"  # line 6 is row 6: said once


def test_a_template_typo_names_the_variable_and_what_is_known(program_dir: Path) -> None:
    edit(program_dir, "templates/email/welcome.txt.j2", "{{ pair.mentee.first_name }}",
         "{{ pair.mentee.frist_name }}")
    program = load_program(program_dir)
    occ = next(o for o in planner.year_schedule(program) if o.step.key == "welcome")
    with pytest.raises(InputError) as err:
        renderer_for(program.templates_dir).render(context(program, occ), "welcome")
    message = str(err.value)
    assert "undefined variable pair.mentee.frist_name; known: email, first_name, name, role" in message
    assert "dict object" not in message and "attribute" not in message
