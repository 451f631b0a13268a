"""`init`: a new program folder with one example cohort, the neutral default program and its templates."""

from __future__ import annotations

import shutil
import tomllib
from datetime import date, timedelta
from functools import cache
from pathlib import Path

from mailer.core.placement import month_day
from mailer.errors import InputError
from mailer.load.roster import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from mailer.shell.files import write_private

DEFAULTS = Path(__file__).parent.parent / "defaults"
# the name the default program.toml carries until the coordinator writes their own; `check` refuses it
PLACEHOLDER_NAME = "CHANGE ME Mentoring Program"

GITIGNORE = """\
# what runs write into the program folder, and the settings with the SMTP password
/mentor-mailer.sqlite3*
/outbox/
/rehearsal/
/mentor-mailer.log
/units/
.env
"""

# every file a coordinator edits before the first run, with what to change in it
TO_EDIT = (
    ("cohorts/program.toml", "the program's name (check refuses the placeholder), the reading list, the steps"),
    ("cohorts/example/cohort.toml", "the year's dates, time zone, send hour, coordinator, evaluations, conferences"),
    ("cohorts/example/roster.csv", "one row per pair (rename the folder example/ to your cohort's id)"),
    ("templates/email/*.md.j2", "the wording of each step's email (base.txt.j2 and base.html.j2: greeting, "
                                "signature)"),
    (".env", "the SMTP server and login, when you are ready to send (readable by you only)"),
)


@cache
def example_readings() -> tuple[str, ...]:
    """The default program's example reading list, which `check` asks the coordinator to replace."""
    doc = tomllib.loads((DEFAULTS / "program.toml").read_text(encoding="utf-8"))
    return tuple(r["citation"] for r in doc.get("readings", []))


def cohort_toml(start: date) -> str:
    """An example cohort whose year starts on `start`, with one conference mid-year."""
    end = month_day(start, 13, 1) - timedelta(days=1)
    conf = month_day(start, 8, 10)
    years = str(start.year) if start.year == end.year else f"{start.year}–{end.year}"
    return f"""\
# One cohort of the program: its year, its coordinator and the conferences pairs may meet at.
name = "Mentoring Program {years}"
start = {start.isoformat()}
end = {end.isoformat()}
# an IANA zone name (such as Europe/Berlin): emails go out at send_hour in this zone
timezone = "America/New_York"
send_hour = 9

# From and Reply-To of every email
[coordinator]
name = "Program Coordinator"
email = "coordinator@example.org"

# optional links for the mid-year and final evaluations; delete a line to leave it out
[evaluations]
midyear = "https://example.org/mentoring/midyear"
final = "https://example.org/mentoring/final"

# one [[conferences]] table per conference; delete it and its meetup if there is none
[[conferences]]
key = "annual-{conf.year}"
name = "Annual Conference {conf.year}"
city = "Chicago"
venue = "Convention Center"
start = {conf.isoformat()}
end = {(conf + timedelta(days=4)).isoformat()}
timezone = "America/Chicago"
# set to "cancelled" and run: pairs holding the invitation get a cancellation
status = "confirmed"

# the pair meetup the program proposes; times are written with seconds, as 12:30:00
[conferences.meetup]
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
    example = (DEFAULTS / "env.example").read_bytes()
    (target / ".env.example").write_bytes(example)
    if not (target / ".env").exists():
        write_private(target / ".env", example)  # it will hold the SMTP password: owner-only from the start
    if not (target / ".gitignore").exists():
        (target / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    return sorted(p for p in target.rglob("*") if p.is_file())
