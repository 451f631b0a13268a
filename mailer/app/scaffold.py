"""`init`: a new program folder with one example cohort, the default program and templates."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

from mailer.core.placement import month_day
from mailer.errors import InputError
from mailer.load.roster import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

DEFAULTS = Path(__file__).parent.parent / "defaults"



def cohort_toml(start: date) -> str:
    """An example cohort whose year starts on `start`, with one conference mid-year."""
    end = month_day(start, 13, 1) - timedelta(days=1)
    conf = month_day(start, 8, 10)
    return f"""\
# One cohort of the program: its year, its coordinator and the conferences pairs may meet at.
name = "Mentoring Program {start.year}–{end.year}"
start = {start.isoformat()}
end = {end.isoformat()}
timezone = "America/New_York"   # IANA name; emails go out at send_hour in this zone
send_hour = 9

[coordinator]                   # From and Reply-To of every email
name = "Program Coordinator"
email = "coordinator@example.org"

[evaluations]                   # optional links for the mid-year and final evaluations
midyear = "https://example.org/mentoring/midyear"
final = "https://example.org/mentoring/final"

[[conferences]]                 # one [[conferences]] table per conference; delete if none
key = "annual-{conf.year}"
name = "Annual Conference {conf.year}"
city = "Chicago"
venue = "Convention Center"
start = {conf.isoformat()}
end = {(conf + timedelta(days=4)).isoformat()}
timezone = "America/Chicago"
status = "confirmed"            # set to "cancelled" and run: pairs holding the invitation get a cancellation

[conferences.meetup]            # the pair meetup the program proposes
day = {(conf + timedelta(days=1)).isoformat()}
time = 12:30:00
minutes = 60
place = "Convention Center, main lobby"
"""


def init_program(target: Path, *, today: date) -> list[Path]:
    """Create the folder; refuses to write into a folder that already holds a program."""
    if (target / "cohorts").exists() or (target / "templates").exists():
        raise InputError([f"{target}: already holds cohorts/ or templates/; choose an empty folder"])
    start = month_day(today, 2, 1)  # the first of next month
    cohort = target / "cohorts" / "example"
    cohort.mkdir(parents=True)
    (cohort / "cohort.toml").write_text(cohort_toml(start), encoding="utf-8")
    (cohort / "roster.csv").write_text(",".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS) + "\n", encoding="utf-8")
    shutil.copyfile(DEFAULTS / "program.toml", target / "cohorts" / "program.toml")
    shutil.copytree(DEFAULTS / "templates", target / "templates")
    shutil.copyfile(DEFAULTS / "env.example", target / ".env.example")
    return sorted(p for p in target.rglob("*") if p.is_file())
