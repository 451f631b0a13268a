"""Names and greetings: the roster's first-name columns, a warning for titles, and a person in several pairs
told apart by subject and calendar summary."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailer.core import year as planner
from mailer.core.compose import context
from mailer.core.invitation import build_invite
from mailer.load.program import load_program
from mailer.load.templates import renderer_for

HEADER = "pair_id,mentor_name,mentor_email,mentee_name,mentee_email"


def write_roster(program_dir: Path, text: str) -> None:
    (program_dir / "cohorts/2020-january/roster.csv").write_text(text, encoding="utf-8")


def welcome_text(program_dir: Path, pair_id: str) -> str:
    program = load_program(program_dir)
    occ = next(o for o in planner.year_schedule(program) if o.pair.id == pair_id and o.step.key == "welcome")
    return renderer_for(program.templates_dir).render(context(program, occ), "welcome").text


def test_a_first_name_column_sets_the_greeting(program_dir: Path) -> None:
    write_roster(program_dir, f"{HEADER},mentor_first_name,mentee_first_name\n"
                              "t1,Dr. Priya Venkataraman,priya@example.org,Nguyen Thanh,thanh@example.org,"
                              "Priya,Thanh\n")
    program = load_program(program_dir)
    assert not [w for w in program.warnings if "title" in w.message]
    text = welcome_text(program_dir, "t1")
    assert "Hi Priya and Thanh," in text
    assert "Dr." not in text and "Nguyen and" not in text


def test_an_empty_first_name_keeps_todays_rule(program_dir: Path) -> None:
    write_roster(program_dir, f"{HEADER},mentor_first_name\nt1,Ann Lee,ann@example.org,Bo Chen,bo@example.org,\n")
    (pair,) = load_program(program_dir).cohort("2020-january").pairs  # type: ignore[union-attr]
    assert (pair.mentor.first_name, pair.mentee.first_name) == ("Ann", "Bo")


@pytest.mark.parametrize("name", ["Dr. Priya Venkataraman", "Prof Ada Byron", "Mx. Sam Doe", "MRS. Jo March"])
def test_check_warns_about_a_leading_title(program_dir: Path, name: str) -> None:
    write_roster(program_dir, f"{HEADER}\nt1,{name},priya@example.org,Mika Berg,mika@example.org\n")
    (warning,) = [w for w in load_program(program_dir).warnings if "title" in w.message]
    assert warning.field == "mentor_name" and warning.line == 2
    assert "mentor_first_name" in warning.message


def test_a_name_like_a_title_is_no_title(program_dir: Path) -> None:
    write_roster(program_dir, f"{HEADER}\nt1,Drew Barry,d@example.org,Msimang Thabo,t@example.org\n")
    assert not [w for w in load_program(program_dir).warnings if "title" in w.message]


def test_a_person_in_two_pairs_gets_subjects_naming_the_pair(program_dir: Path) -> None:
    """Margaret Okafor mentors p03 and p09: her two emails of a day no longer share a subject."""
    program = load_program(program_dir)
    renderer = renderer_for(program.templates_dir)
    subjects: dict[tuple[str, str, str | None], str] = {}
    for occ in planner.year_schedule(program):
        if occ.cohort.id == "2019-2020" and occ.pair.id in ("p01", "p03", "p09"):
            rendered = renderer.render(context(program, occ), occ.step.template)
            subjects[occ.pair.id, occ.step.key, occ.role] = rendered.subject
    assert subjects["p03", "readings", None].endswith(" (Margaret & Łukasz)")
    assert subjects["p09", "readings", None].endswith(" (Margaret & Grace)")
    assert "(" not in subjects["p01", "readings", None]  # a pair of people in one pair each: unchanged
    assert subjects["p03", "midyear", "mentor"].endswith("(Margaret & Łukasz)")
    assert "(" not in subjects["p03", "midyear", "mentee"]  # Łukasz has one pair
    days = {}
    for (pair, step, role), subject in subjects.items():
        if pair != "p01" and role != "mentee":
            days.setdefault((step, role), set()).add(subject)
    assert all(len(found) == 2 for found in days.values()), days


def test_a_person_in_two_pairs_gets_two_calendar_events_told_apart(program_dir: Path) -> None:
    program = load_program(program_dir)
    now = datetime(2019, 12, 1, tzinfo=UTC)
    summaries = {build_invite(o, now).summary for o in planner.year_schedule(program)
                 if o.has_invite and o.pair.id in ("p03", "p09") and o.cohort.id == "2019-2020"
                 and o.step.conference is not None and o.step.conference.key.startswith("annual")}
    assert len(summaries) == 2 and all("Margaret" in s for s in summaries)
