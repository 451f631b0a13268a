"""`init`: a neutral program folder for any association that `check` accepts once it is named, and that
refuses to overwrite one; the sample program keeps its own files."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from mailer.app import rehearse, scaffold
from mailer.app.check import check_program
from mailer.errors import InputError
from mailer.load.program import load_program
from mailer.shell.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def check(program: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    return subprocess.run([sys.executable, "-m", "mailer.cli", "-C", str(program), "check"],
                          capture_output=True, text=True, env=env, check=False, timeout=60)


def name_it(program: Path, name: str = "Riverside Nurses' Mentoring Circle") -> None:
    path = program / "cohorts/program.toml"
    path.write_text(path.read_text(encoding="utf-8").replace(scaffold.PLACEHOLDER_NAME, name), encoding="utf-8")


def test_init_creates_a_program_check_accepts_once_named(tmp_path: Path) -> None:
    files = scaffold.init_program(tmp_path / "new", today=date(2026, 11, 28))
    names = {str(p.relative_to(tmp_path / "new")) for p in files}
    assert {"cohorts/example/cohort.toml", "cohorts/example/roster.csv", "cohorts/program.toml",
            "templates/email/welcome.md.j2", "templates/email/base.txt.j2", ".env.example", ".env",
            ".gitignore"} <= names
    program = load_program(tmp_path / "new")
    cohort = program.cohorts[0]
    assert cohort.start == date(2026, 12, 1) and cohort.end == date(2027, 11, 30)
    assert cohort.name == "Mentoring Program 2026–2027"
    assert cohort.pairs == ()
    header = (tmp_path / "new/cohorts/example/roster.csv").read_text(encoding="utf-8").strip()
    assert header.startswith("pair_id,mentor_name,mentor_email,mentee_name,mentee_email")
    refused = check(tmp_path / "new")
    assert refused.returncode == 2 and "program.name is still init's placeholder" in refused.stderr
    assert "readings is init's example list" in refused.stderr  # a warning, not a refusal
    name_it(tmp_path / "new")
    result = check(tmp_path / "new")
    assert result.returncode == 0, result.stderr
    with pytest.raises(InputError, match="already holds"):
        scaffold.init_program(tmp_path / "new", today=date(2026, 11, 28))


def test_a_year_within_one_calendar_year_is_named_once(tmp_path: Path) -> None:
    scaffold.init_program(tmp_path / "p", today=date(2026, 12, 10))  # starts 2027-01-01, ends 2027-12-31
    assert load_program(tmp_path / "p").cohorts[0].name == "Mentoring Program 2027"


def test_init_keeps_secrets_private_and_out_of_git(tmp_path: Path) -> None:
    scaffold.init_program(tmp_path / "p", today=date(2026, 11, 28))
    assert stat.S_IMODE((tmp_path / "p/.env").stat().st_mode) == 0o600
    ignored = (tmp_path / "p/.gitignore").read_text(encoding="utf-8").split()
    assert {".env", "/outbox/", "/mentor-mailer.sqlite3*", "/rehearsal/"} <= set(ignored)


def test_check_warns_about_a_password_others_can_read(tmp_path: Path) -> None:
    scaffold.init_program(tmp_path / "p", today=date(2026, 11, 28))
    name_it(tmp_path / "p")
    env = tmp_path / "p/.env"
    s = Settings(program_dir=tmp_path / "p", _env_file=None)  # type: ignore[call-arg]
    env.write_text("MENTOR_MAILER_SMTP_PASSWORD=hunter2\n", encoding="utf-8")
    env.chmod(0o600)
    assert not [w for w in check_program(s).warnings if w.file == ".env"]
    env.chmod(0o644)
    (warning,) = [w for w in check_program(s).warnings if w.file == ".env"]
    assert "readable by others" in str(warning) and "chmod 600" in str(warning)
    assert "hunter2" not in str(warning)
    env.write_text("# MENTOR_MAILER_SMTP_PASSWORD=hunter2\nMENTOR_MAILER_SMTP_PASSWORD=\n", encoding="utf-8")
    assert not [w for w in check_program(s).warnings if w.file == ".env"]  # no password, nothing to guard


def test_the_defaults_fit_any_profession() -> None:
    """What init copies names no association and no library; the sample program keeps the ALCTS year."""
    for path in sorted(scaffold.DEFAULTS.rglob("*")):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"ALCTS|librar|catalog|Oregon", text, flags=re.I), path
    steps = {p.name.removesuffix(".md.j2") for p in (scaffold.DEFAULTS / "templates/email").glob("*.md.j2")}
    assert {"welcome", "day_in_the_life", "readings", "resumes", "project_plan", "midyear", "trend", "webinar",
            "wrap_up", "meetup", "meetup_cancel"} == steps  # every step in one Markdown file
    assert not list((scaffold.DEFAULTS / "templates/email").glob("[!b]*.txt.j2"))
    assert "ALCTS" in (REPO / "cohorts/program.toml").read_text(encoding="utf-8")
    assert "# AN EXAMPLE READING LIST" in (scaffold.DEFAULTS / "program.toml").read_text(encoding="utf-8")


def test_the_sample_program_is_files_of_its_own() -> None:
    for path in (REPO / "templates", REPO / "templates/email", REPO / "cohorts/program.toml"):
        assert not path.is_symlink(), path
    for path in (REPO / "templates/email").iterdir():
        assert not path.is_symlink(), path


@pytest.mark.parametrize("layout", ["base.txt.j2", "base.html.j2"])
def test_the_sample_shares_the_default_layouts(layout: str) -> None:
    """One greeting and signature for both: an edit to one layout must be copied to the other."""
    assert (REPO / "templates/email" / layout).read_bytes() == \
        (scaffold.DEFAULTS / "templates/email" / layout).read_bytes()


def test_init_then_add_a_pair_and_rehearse(tmp_path: Path) -> None:
    scaffold.init_program(tmp_path / "p", today=date(2026, 11, 28))
    roster = tmp_path / "p/cohorts/example/roster.csv"
    with roster.open("a", encoding="utf-8") as f:
        f.write("a1,Ada Mentor,ada@example.org,Bea Mentee,bea@example.org\n")
    s = Settings(program_dir=tmp_path / "p", _env_file=None)  # type: ignore[call-arg]
    result = rehearse.rehearse(s, outbox=tmp_path / "year")
    assert result.messages >= 10  # every step, the meetup and the mid-year pair of emails
    texts = [p.read_text(encoding="utf-8") for p in (tmp_path / "year/new").iterdir()]
    meetup = next(t for t in texts if "Subject: Meet up at" in t)
    assert "calendar invitation attached" in meetup.replace("=\n", "")
    assert "home time zones" not in meetup
