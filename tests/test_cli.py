"""The command line: help for every command, exit codes, and output a coordinator can read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailer.cli import build_parser, main
from mailer.shell.settings import Settings

COMMANDS = ["init", "check", "rehearse", "preview", "plan", "run", "status", "report", "invites", "inbox",
            "serve", "units"]  # the order a coordinator meets them


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "mailer.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120, check=False)


def test_every_command_has_help_with_an_example() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == COMMANDS  # type: ignore[arg-type]
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        text = p.format_help()
        assert "example:" in text and f"mentor-mailer {name}" in text, name


def test_check_sample_is_clean(settings: Settings) -> None:
    result = cli("-C", str(settings.program_dir), "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 2 cohort(s), 16 pair(s)")


def test_check_bad_program_exits_2_with_all_problems_and_no_traceback(settings: Settings) -> None:
    cohort = settings.program_dir / "cohorts/2019-2020/cohort.toml"
    cohort.write_text(cohort.read_text(encoding="utf-8").replace("send_hour = 9", "send_hour = 31"),
                      encoding="utf-8")
    with (settings.program_dir / "cohorts/2020-january/roster.csv").open("a", encoding="utf-8") as f:
        f.write("j05,Ed,ed@example,Flo,flo@example.org,,active,,,,,\n")
    result = cli("-C", str(settings.program_dir), "check")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cohorts/2019-2020/cohort.toml: send_hour expected an hour from 0 to 23, got 31" in result.stderr
    assert "cohorts/2020-january/roster.csv:6: mentor_email" in result.stderr


def test_run_now_and_rerun(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    env_args = ["-C", str(settings.program_dir)]
    os.environ["MENTOR_MAILER_DATABASE"] = str(settings.database_path)
    os.environ["MENTOR_MAILER_OUTBOX_DIR"] = str(settings.outbox_path)
    try:
        assert main([*env_args, "run", "--now", "2019-08-01T17:00:00Z"]) == 0
        assert capsys.readouterr().out.strip() == "sent 11, skipped 0, failed 0"
        assert main([*env_args, "run", "--now", "2019-08-01T17:00:00Z", "-q"]) == 0
        assert capsys.readouterr().out == ""
        assert main([*env_args, "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        welcome = next(s for s in status[0]["steps"] if s["step"] == "welcome")
        assert welcome["counts"]["outbox only"] == 11 and welcome["counts"]["sent"] == 0  # a trial, not people
    finally:
        del os.environ["MENTOR_MAILER_DATABASE"], os.environ["MENTOR_MAILER_OUTBOX_DIR"]


def test_run_naive_now_is_refused_clearly(settings: Settings) -> None:
    result = cli("-C", str(settings.program_dir), "run", "--now", "2019-08-01T15:00")
    assert result.returncode == 2
    assert "needs a time zone offset" in result.stderr and "Traceback" not in result.stderr


def test_plan_json_lists_recipients(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-C", str(settings.program_dir), "plan", "--from", "2020-01-30", "--to", "2020-02-02",
                 "--cohort", "2019-2020", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["step"] for r in rows} == {"midyear"}
    assert len(rows) == 22 and all(len(r["to"]) == 1 for r in rows)


def test_preview_formats(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["-C", str(settings.program_dir), "preview", "--pair", "p03", "--step", "readings"]
    assert main([*base, "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Subject: ") and "Margaret" in out
    assert main([*base, "--format", "html"]) == 0
    assert "<html" in capsys.readouterr().out
    assert main([*base, "--format", "eml"]) == 0
    assert "Message-ID: <" in capsys.readouterr().out


def test_preview_unknown_step_lists_the_steps(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-C", str(settings.program_dir), "preview", "--pair", "p01", "--step", "nope"]) == 2
    assert "steps are: day-in-the-life" in capsys.readouterr().err


def test_rehearse_prints_timeline(settings: Settings, tmp_path: Path) -> None:
    result = cli("-C", str(settings.program_dir), "rehearse", "--outbox", str(tmp_path / "year"))
    assert result.returncode == 0, result.stderr
    assert "2019-08-01" in result.stdout and "welcome" in result.stdout
    assert "message(s) written to" in result.stdout
    assert any((tmp_path / "year/new").iterdir())


def test_missing_program_folder_is_a_sentence(tmp_path: Path) -> None:
    result = cli("-C", str(tmp_path / "nowhere"), "check")
    assert result.returncode == 2
    assert "cohorts" in result.stderr and "is missing" in result.stderr and "Traceback" not in result.stderr


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    result = cli("check", env={"MENTOR_MAILER_LATE_WINDOW_DAYS": "soon"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "MENTOR_MAILER_LATE_WINDOW_DAYS" in result.stderr and "Traceback" not in result.stderr


def test_csv_exports_neutralise_formulas(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    program = settings.program_dir / "cohorts/program.toml"
    text = program.read_text(encoding="utf-8")
    program.write_text(text.replace('description = "Welcome and first conversation"',
                                    'description = "=HYPERLINK(\\"https://example.com\\")"'), encoding="utf-8")
    assert main(["-C", str(settings.program_dir), "status", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    welcome = next(r for r in rows if r["step"] == "welcome" and r["cohort"] == "2019-2020")
    assert welcome["description"] == "'=HYPERLINK(\"https://example.com\")"
    assert main(["-C", str(settings.program_dir), "plan", "--from", "2019-08-01", "--to", "2019-08-01",
                 "--csv"]) == 0
    plan = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(plan) == 11 and plan[0]["to"].count("@") == 2


def test_the_program_folders_env_file_is_read_from_anywhere(settings: Settings, tmp_path: Path) -> None:
    (settings.program_dir / ".env").write_text(f"MENTOR_MAILER_DATABASE={tmp_path / 'from-env.sqlite3'}\n"
                                               f"MENTOR_MAILER_OUTBOX_DIR={tmp_path / 'env-outbox'}\n"
                                               "MENTOR_MAILER_DIGEST=false\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("-C", str(settings.program_dir), "run", "--now", "2019-08-01T17:00:00Z", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-env.sqlite3").exists()
    assert len(list((tmp_path / "env-outbox/new").iterdir())) == 11
