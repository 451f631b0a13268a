"""The year's rules a program sets: a late pair's pick-up delay, the days emails go out, and text parts
wrapped at 72 columns."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from mailer.core import year as planner
from mailer.core.compose import context
from mailer.core.wrap import wrap_text
from mailer.errors import InputError
from mailer.load.program import load_program
from mailer.load.templates import renderer_for


def set_rules(program_dir: Path, rules: str) -> None:
    path = program_dir / "cohorts/program.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('name = "ALCTS Mentoring Program"\n', f'name = "ALCTS Mentoring Program"\n{rules}\n'),
                    encoding="utf-8")


def days(program_dir: Path, pair: str) -> dict[str, date]:
    program = load_program(program_dir)
    cohort = program.cohort("2019-2020")
    assert cohort is not None
    found = next(p for p in cohort.pairs if p.id == pair)
    return {o.key.split("/", 2)[2]: o.due_at.astimezone(cohort.timezone).date()
            for o in planner.pair_schedule(cohort, found) if o.skip_reason is None}


@pytest.mark.parametrize(("rules", "pickup"), [("", date(2019, 11, 21)), ("late_pickup_days = 0", date(2019, 11, 18)),
                                               ("late_pickup_days = 7", date(2019, 11, 25))])
def test_a_late_pair_gets_the_welcome_first_and_the_rest_days_later(program_dir: Path, rules: str,
                                                                   pickup: date) -> None:
    set_rules(program_dir, rules)
    got = days(program_dir, "p05")  # joined 2019-11-18
    assert got["welcome"] == date(2019, 11, 18)
    assert got["resumes"] == pickup  # the current activity only: never two monthly activities at once
    assert "day-in-the-life" not in got and "readings" not in got


def test_send_days_move_a_weekend_step_to_the_next_allowed_day(program_dir: Path) -> None:
    before = days(program_dir, "p01")
    assert before["day-in-the-life"] == date(2019, 9, 1)  # a Sunday
    set_rules(program_dir, 'send_days = ["mon", "tue", "wed", "thu", "fri"]')
    after = days(program_dir, "p01")
    assert after["day-in-the-life"] == date(2019, 9, 2)
    assert after["welcome"] == date(2019, 8, 1)  # a Thursday: unchanged
    assert all(d.weekday() < 5 for d in after.values())


@pytest.mark.parametrize("rules", ['send_days = ["mon", "someday"]', "send_days = []", "late_pickup_days = -1"])
def test_bad_year_rules_are_named(program_dir: Path, rules: str) -> None:
    set_rules(program_dir, rules)
    with pytest.raises(InputError) as err:
        load_program(program_dir)
    assert f"cohorts/program.toml: program.{rules.split()[0]} expected" in str(err.value)


def test_wrap_keeps_words_urls_and_indents_whole() -> None:
    url = "https://example.org/" + "a" * 80
    text = wrap_text(f"See {url} for more. " + "word " * 30 + "\n  - " + "item " * 20 + "\n  Where: " + "x " * 40)
    lines = text.split("\n")
    assert url in lines  # a URL longer than a line stands alone, unbroken
    assert all(len(line) <= 72 for line in lines if url not in line)
    assert any(line.startswith("    item") for line in lines)  # under its bullet
    assert any(line.startswith("         x") for line in lines)  # under its label


def test_every_text_part_of_the_sample_is_wrapped_at_72(program_dir: Path) -> None:
    program = load_program(program_dir)
    renderer = renderer_for(program.templates_dir)
    for occ in planner.year_schedule(program):
        text = renderer.render(context(program, occ), occ.step.template).text
        assert all(len(line) <= 72 or "://" in line for line in text.splitlines()), occ.key
