"""`init`: a new program folder that `check` accepts, and that refuses to overwrite one."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from mailer.app import rehearse, scaffold
from mailer.errors import InputError
from mailer.load.program import load_program


def test_init_creates_a_program_check_accepts(tmp_path: Path) -> None:
    files = scaffold.init_program(tmp_path / "new", today=date(2026, 11, 28))
    names = {str(p.relative_to(tmp_path / "new")) for p in files}
    assert {"cohorts/example/cohort.toml", "cohorts/example/roster.csv", "cohorts/program.toml",
            "templates/email/welcome.txt.j2", ".env.example"} <= names
    program = load_program(tmp_path / "new")
    cohort = program.cohorts[0]
    assert cohort.start == date(2026, 12, 1) and cohort.end == date(2027, 11, 30)
    assert cohort.pairs == ()
    header = (tmp_path / "new/cohorts/example/roster.csv").read_text(encoding="utf-8").strip()
    assert header.startswith("pair_id,mentor_name,mentor_email,mentee_name,mentee_email")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    result = subprocess.run([sys.executable, "-m", "mailer.cli", "-C", str(tmp_path / "new"), "check"],
                            capture_output=True, text=True, env=env, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    with pytest.raises(InputError, match="already holds"):
        scaffold.init_program(tmp_path / "new", today=date(2026, 11, 28))


def test_init_then_add_a_pair_and_rehearse(tmp_path: Path) -> None:
    scaffold.init_program(tmp_path / "p", today=date(2026, 11, 28))
    roster = tmp_path / "p/cohorts/example/roster.csv"
    with roster.open("a", encoding="utf-8") as f:
        f.write("a1,Ada Mentor,ada@example.org,Bea Mentee,bea@example.org,,,,,,,\n")
    from mailer.shell.settings import Settings

    s = Settings(program_dir=tmp_path / "p", _env_file=None)  # type: ignore[call-arg]
    result = rehearse.rehearse(s, outbox=tmp_path / "year")
    assert result.messages >= 10  # every step, the meetup and the mid-year pair of emails
