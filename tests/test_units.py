"""Setup as the README writes it: the shipped systemd units, the .env files, the cron line and the settings."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from mailer.app import scaffold
from mailer.app.units import DEFAULT_PROGRAM, units
from mailer.cli import main
from mailer.daemon import cron_trigger
from mailer.shell.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
VENV_BIN = Path(sys.executable).parent


def systemd_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as systemd reads it: sections of (key, value), comments only on lines of their own."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        assert current is not None, line
        current.append((key.strip(), value.strip()))
    return sections


def systemd_env_file(text: str) -> dict[str, str]:
    """An EnvironmentFile= as systemd reads it: a trailing '# …' stays in the value, quotes are taken off."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def test_contrib_holds_the_units_the_command_makes() -> None:
    for unit in units():
        assert (REPO / "contrib/systemd" / unit.name).read_text(encoding="utf-8") == unit.text


def test_units_use_the_venv_and_folder_the_readme_creates() -> None:
    assert f"python3 -m venv {DEFAULT_PROGRAM}/.venv" in README
    for unit in units():
        service = systemd_sections(unit.text).get("Service", [])
        for key, value in service:
            if key == "ExecStart":
                assert value.startswith(f"{DEFAULT_PROGRAM}/.venv/bin/mentor-mailer ")
            if key == "WorkingDirectory":
                assert value == str(DEFAULT_PROGRAM)


def test_the_serve_schedule_reaches_the_daemon_whole() -> None:
    """systemd splits Environment= at unquoted spaces: the schedule must come through as five fields."""
    serve = {u.name: u for u in units()}["mentor-mailer-serve.service"]
    (env,) = [v for k, v in systemd_sections(serve.text)["Service"] if k == "Environment"]
    (assignment,) = shlex.split(env)
    name, _, schedule = assignment.partition("=")
    assert name == "MENTOR_MAILER_SCHEDULE" and len(schedule.split()) == 5
    from zoneinfo import ZoneInfo

    cron_trigger(Settings(schedule=schedule, _env_file=None).schedule,  # type: ignore[call-arg]
                 ZoneInfo("America/New_York"))


def test_the_timer_runs_hourly() -> None:
    timer = {u.name: u for u in units()}["mentor-mailer.timer"]
    (calendar,) = [v for k, v in systemd_sections(timer.text)["Timer"] if k == "OnCalendar"]
    assert calendar == "*-*-* *:05:00"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The units `mentor-mailer units` writes for this venv and a program folder pass systemd's own check."""
    program = tmp_path / "program"
    program.mkdir()
    assert main(["-C", str(program), "units", "--out", str(tmp_path / "units")]) == 0
    written = sorted((tmp_path / "units").iterdir())
    assert [p.name for p in written] == sorted(u.name for u in units())
    text = written[0].read_text(encoding="utf-8")
    assert f"ExecStart={VENV_BIN}/mentor-mailer" in text or f"WorkingDirectory={program}" in text
    result = subprocess.run(["systemd-analyze", "verify", *map(str, written)], capture_output=True, text=True,
                            check=False, timeout=120, cwd=tmp_path)
    # verify exits 0 on a mistyped value and only says so: any output at all is a finding
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_units_prints_them_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-C", "/srv/mentoring", "units"]) == 0
    out = capsys.readouterr().out
    assert out.count("[Service]") == 2 and "[Timer]" in out and "WorkingDirectory=/srv/mentoring" in out


def env_blocks() -> list[str]:
    """Every fenced block of the README that is a .env: only comments and MENTOR_MAILER_ assignments."""
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    return [b for b in blocks
            if any(line.startswith("MENTOR_MAILER_") for line in b.splitlines())
            and all(not line.strip() or line.startswith(("#", "MENTOR_MAILER_")) for line in b.splitlines())]


def uncommented(text: str) -> str:
    """The file with every example assignment (`# MENTOR_MAILER_X=…`) switched on, as a coordinator would."""
    return re.sub(r"^# (MENTOR_MAILER_)", r"\1", text, flags=re.M)


@pytest.mark.parametrize("source", ["env.example", "readme"])
def test_env_files_read_the_same_in_dotenv_and_systemd(source: str, tmp_path: Path) -> None:
    texts = ([uncommented((scaffold.DEFAULTS / "env.example").read_text(encoding="utf-8"))] if source == "env.example"
             else env_blocks())
    assert texts
    for text in texts:
        path = tmp_path / ".env"
        path.write_text(text, encoding="utf-8")
        from_dotenv = dotenv_values(path)
        assert from_dotenv == systemd_env_file(text), text
        assert all("#" not in (v or "") for v in from_dotenv.values())
        Settings(_env_file=path)  # type: ignore[call-arg]  # and mentor-mailer accepts every value


def test_settings_come_from_where_the_readme_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment, then the program folder's .env, then the current folder's; paths from the program folder."""
    assert "the first place that sets a variable wins" in README
    program = tmp_path / "program"
    program.mkdir()
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    (here / ".env").write_text("MENTOR_MAILER_SMTP_HOST=cwd.example.org\nMENTOR_MAILER_SMTP_PORT=2525\n"
                               f"MENTOR_MAILER_PROGRAM_DIR={program}\n", encoding="utf-8")
    (program / ".env").write_text("MENTOR_MAILER_SMTP_HOST=program.example.org\nMENTOR_MAILER_SMTP_RATE=7\n"
                                  "MENTOR_MAILER_DATABASE=ledger.sqlite3\n", encoding="utf-8")
    s = load_settings()
    assert (s.smtp_host, s.smtp_port, s.smtp_rate) == ("program.example.org", 2525, 7)
    assert s.database_path == program / "ledger.sqlite3"
    monkeypatch.setenv("MENTOR_MAILER_SMTP_HOST", "env.example.org")
    assert load_settings().smtp_host == "env.example.org"


def cron_line() -> str:
    (block,) = re.findall(r"```cron\n(.*?)```", README, flags=re.S)
    (line,) = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    return line


def test_the_cron_line_runs_hourly_logs_every_run_and_prints_only_trouble(tmp_path: Path) -> None:
    """Cron mails whatever a job prints: the line prints nothing on a good run and the log's end on trouble."""
    from datetime import UTC, datetime

    program_dir = tmp_path / "program"
    scaffold.init_program(program_dir, today=datetime.now(UTC).date())  # a year that starts next month: nothing late
    fields = cron_line().split(None, 5)
    assert fields[:5] == ["5", "*", "*", "*", "*"]
    command = fields[5]
    assert "%" not in command  # cron would cut the line there
    (program_dir / ".venv").mkdir()
    (program_dir / ".venv/bin").symlink_to(VENV_BIN)
    command = command.replace(str(DEFAULT_PROGRAM), str(program_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    env["MENTOR_MAILER_DIGEST"] = "false"

    def cron() -> str:
        done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env=env,
                              check=False, timeout=300)
        assert done.returncode == 0, done.stderr  # cron itself only sees the output
        return done.stdout + done.stderr

    assert cron() == ""  # a good run: logged, not mailed
    log = (program_dir / "mentor-mailer.log").read_text(encoding="utf-8")
    assert log.count("sent ") == 1
    (program_dir / "cohorts/example/cohort.toml").write_text("start = \n", encoding="utf-8")
    mailed = cron()
    assert "cohort.toml" in mailed  # trouble: the end of the log is printed, so cron mails it
    assert (program_dir / "mentor-mailer.log").read_text(encoding="utf-8").count("cohort.toml") >= 1
