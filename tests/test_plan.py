"""The pure planner: the year's schedule per pair, and what a run at `now` sends or skips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer.core import year as planner
from mailer.core.model import Program
from mailer.core.occurrence import Occurrence
from mailer.core.plan import HORIZON, Plan, build_plan
from mailer.core.plan import due as plan_due
from mailer.core.records import LedgerView
from mailer.load.program import load_program

WINDOW = timedelta(days=14)
NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")


@pytest.fixture
def program(program_dir: Path) -> Program:
    """The sample program, loaded."""
    return load_program(program_dir)


def due(year: list[Occurrence], *, now: datetime, settled: set[str], late_window: timedelta | None) -> Plan:
    """Sort `year` into a plan at `now`, as build_plan does with the ledger's settled keys."""
    plan = Plan(program=Program(Path("."), "", (), ()), now=now)
    plan_due(year, plan, settled=frozenset(settled), retrying=frozenset(), window=late_window, horizon=HORIZON)
    return plan


def schedule(program: Program, cohort: str, pair: str) -> dict[str, Occurrence]:
    c = program.cohort(cohort)
    assert c is not None
    p = c.pair(pair)
    assert p is not None
    return {o.key.split("/", 2)[2]: o for o in planner.pair_schedule(c, p)}


def sent_steps(program: Program, cohort: str, pair: str) -> set[str]:
    return {k for k, o in schedule(program, cohort, pair).items() if o.skip_reason is None}


def test_active_pair_gets_every_step_once_on_its_day(program: Program) -> None:
    occ = schedule(program, "2019-2020", "p01")
    assert set(occ) == {"welcome", "day-in-the-life", "readings", "resumes", "project-plan",
                        "meetup-midwinter-2020", "midyear/mentor", "midyear/mentee", "trend", "webinar",
                        "meetup-annual-2020", "wrap-up"}
    assert all(o.skip_reason is None for o in occ.values())
    assert occ["welcome"].due_at == datetime(2019, 8, 1, 9, tzinfo=NY)
    assert occ["midyear/mentor"].role == "mentor" and occ["midyear/mentor"].recipients() == ("mentor",)
    assert occ["readings"].recipients() == ("mentor", "mentee")


def test_late_joiner_gets_welcome_on_joining_and_current_step_days_later(program: Program) -> None:
    occ = schedule(program, "2019-2020", "p05")  # joined 2019-11-18
    joined = datetime(2019, 11, 18, 9, tzinfo=NY)
    assert occ["welcome"].due_at == joined and occ["welcome"].skip_reason is None
    # the current step, three days on (late_pickup_days): not in the same second as the welcome
    assert occ["resumes"].due_at == datetime(2019, 11, 21, 9, tzinfo=NY) and occ["resumes"].skip_reason is None
    for older in ("day-in-the-life", "readings"):
        assert occ[older].skip_reason is not None  # not sent in a burst
    assert occ["project-plan"].due_at == datetime(2019, 12, 1, 9, tzinfo=NY)  # then the normal year


def test_paused_pair_gets_nothing_then_resumes_with_current_step(program: Program) -> None:
    occ = schedule(program, "2019-2020", "p06")  # paused 2019-12-01 .. 2020-02-15
    back = datetime(2020, 2, 15, 9, tzinfo=NY)
    assert occ["project-plan"].skip_reason is not None
    assert occ["midyear/mentor"].due_at == back and occ["midyear/mentor"].skip_reason is None
    assert occ["meetup-midwinter-2020"].skip_reason == "conference already begun"
    assert occ["trend"].skip_reason is None and occ["trend"].due_at.date().isoformat() == "2020-03-01"


def test_withdrawn_pair_gets_nothing_after_withdrawal(program: Program) -> None:
    assert sent_steps(program, "2019-2020", "p08") == {
        "welcome", "day-in-the-life", "readings", "resumes", "project-plan", "meetup-midwinter-2020",
        "midyear/mentor", "midyear/mentee", "trend"}


def test_paused_without_end_gets_nothing(program_dir: Path) -> None:
    roster = program_dir / "cohorts/2020-january/roster.csv"
    roster.write_text(roster.read_text(encoding="utf-8").replace(
        "j02,Noémie Girard,noemie.girard@example.org,Tomás Ortega,tomas.ortega@example.com,,active",
        "j02,Noémie Girard,noemie.girard@example.org,Tomás Ortega,tomas.ortega@example.com,,paused"),
        encoding="utf-8")
    assert sent_steps(load_program(program_dir), "2020-january", "j02") == set()


def test_due_sends_at_or_after_time_and_never_twice(program: Program) -> None:
    year = list(planner.year_schedule(program))
    at = datetime(2019, 8, 1, 9, tzinfo=NY)
    before = due(year, now=at - timedelta(seconds=1), settled=set(), late_window=WINDOW)
    assert before.send == []
    now = due(year, now=at, settled=set(), late_window=WINDOW)
    welcome = {o.key for o in now.send}
    # p02's mentee is in Los Angeles and p07's mentor in Chicago: theirs wait for 09:00 there
    assert welcome == {f"2019-2020/{p}/welcome" for p in
                       ("p01", "p03", "p04", "p06", "p08", "p09", "p10", "p11", "p12")}
    later = due(year, now=at + timedelta(hours=3), settled=welcome, late_window=WINDOW)
    assert {o.key for o in later.send} == {"2019-2020/p02/welcome", "2019-2020/p07/welcome"}
    assert next(o for o in later.send if o.pair.id == "p02").due_at == datetime(2019, 8, 1, 9, tzinfo=LA)
    welcome |= {o.key for o in later.send}
    again = due(year, now=at + timedelta(days=1), settled=welcome, late_window=WINDOW)
    assert again.send == []


def test_each_partner_gets_a_per_partner_step_at_their_own_hour(program: Program) -> None:
    occ = schedule(program, "2019-2020", "p03")  # the mentee is in Warsaw, the mentor in New York
    assert occ["midyear/mentee"].due_at == datetime(2020, 2, 1, 9, tzinfo=ZoneInfo("Europe/Warsaw"))
    assert occ["midyear/mentor"].due_at == datetime(2020, 2, 1, 9, tzinfo=NY)
    assert occ["readings"].due_at == datetime(2019, 10, 1, 9, tzinfo=NY)  # the later of the two


def test_missed_window_skips_and_catch_up_sends(program: Program) -> None:
    year = list(planner.year_schedule(program))
    now = datetime(2019, 10, 20, 12, tzinfo=UTC)  # readings (Oct 1) is 18 days 23 hours late; day-in-the-life 49
    windowed = due(year, now=now, settled=set(), late_window=WINDOW)
    assert windowed.send == []
    reasons = {o.key: o.skip_reason for o in windowed.skip}
    assert "18 days late, past the 14-day window" in reasons["2019-2020/p01/readings"]
    caught = due(year, now=now, settled=set(), late_window=None)
    assert {o.step.key for o in caught.send} == {"welcome", "day-in-the-life", "readings"}
    inside = due(year, now=datetime(2019, 10, 10, 14, tzinfo=UTC), settled=set(), late_window=WINDOW)
    assert {o.step.key for o in inside.send} == {"readings"}  # 9 days late is within the window


@pytest.mark.parametrize(("utc_hour", "expected"), [(12, False), (13, False), (14, True)])
def test_send_hour_is_local_across_the_dst_change(program_dir: Path, utc_hour: int, expected: bool) -> None:
    """2019-11-03 is the day New York leaves daylight time: 09:00 local is 14:00 UTC, not 13:00."""
    toml = program_dir / "cohorts/program.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace(
        'key = "resumes"\ntemplate = "resumes"\nto = "pair"\nmonth = 4\nday = 1',
        'key = "resumes"\ntemplate = "resumes"\nto = "pair"\nmonth = 4\nday = 3'), encoding="utf-8")
    program = load_program(program_dir)
    year = [o for o in planner.year_schedule(program) if o.step.key == "resumes" and o.cohort.id == "2019-2020"]
    assert year[0].due_at.utcoffset() == timedelta(hours=-5)
    now = datetime(2019, 11, 3, utc_hour, tzinfo=UTC)
    plan = due(year, now=now, settled=set(), late_window=WINDOW)
    assert bool(plan.send) is expected


def test_cancelled_conference_meetup_is_not_sent(program_dir: Path) -> None:
    cohort = program_dir / "cohorts/2019-2020/cohort.toml"
    text = cohort.read_text(encoding="utf-8")
    i = text.index('key = "annual-2020"')
    cohort.write_text(text[:i] + text[i:].replace('status = "confirmed"', 'status = "cancelled"', 1),
                      encoding="utf-8")
    occ = schedule(load_program(program_dir), "2019-2020", "p01")
    assert occ["meetup-annual-2020"].skip_reason == "conference cancelled"
    assert occ["meetup-midwinter-2020"].skip_reason is None


def test_naive_now_is_refused(program: Program) -> None:
    with pytest.raises(ValueError, match="aware"):
        build_plan(program, LedgerView(), now=datetime(2020, 1, 1), window=WINDOW)  # noqa: DTZ001
