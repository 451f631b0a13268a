"""Broken programs: `check` names file, place, field and expectation; `run` serves the rest.

tests/data/broken/ holds one file per mistake a coordinator makes, each standing in for one file of the
sample program; tests/data/broken/expected.toml says where `check` must report it. Every case runs the
check use case in-process on its own copy of the sample program; a few also run `mentor-mailer check`
as a subprocess, to show the CLI prints the same list, exits 2 and shows no traceback.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mailer.app.check import check_program
from mailer.shell.settings import Settings
from tests.conftest import REPO

BROKEN = REPO / "tests" / "data" / "broken"
EXPECTED: dict[str, dict[str, str]] = tomllib.loads((BROKEN / "expected.toml").read_text(encoding="utf-8"))
CASES = sorted(EXPECTED)
# one of each kind of file, through the real CLI
CLI_CASES = ["roster_bad_email.csv", "cohort_toml_syntax.toml", "template_undefined_variable.html.j2"]


def make_program(root: Path) -> Path:
    """A copy of the sample program, every file a regular file (cohorts/program.toml is a link in the repo)."""
    shutil.copytree(REPO / "cohorts", root / "cohorts")
    shutil.copytree(REPO / "templates", root / "templates")
    return root


def cli_env(**extra: str) -> dict[str, str]:
    """The environment without the developer's MENTOR_MAILER_* settings, running this checkout's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env | extra


def cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailer.cli", "-C", str(root), *args], cwd=root.parent,
                          env=cli_env(**env), capture_output=True, text=True, timeout=120, check=False)


def settings_for(root: Path) -> Settings:
    return Settings(program_dir=root, database=root.parent / "ledger.sqlite3", outbox_dir=root.parent / "outbox",
                    digest=False, _env_file=None)  # type: ignore[call-arg]


def broken_program(base: Path, name: str) -> Path:
    """The sample program with `name` in place of the file it stands in for."""
    root = make_program(base / "program")
    target = root / EXPECTED[name]["replaces"]
    assert target.is_file() and not target.is_symlink(), target
    target.unlink()
    shutil.copyfile(BROKEN / name, target)
    return root


def reported(name: str, lines: list[str]) -> bool:
    case = EXPECTED[name]
    start = f"{case['where']}: {case['field']} " if "field" in case else f"{case['where']}: "
    return any(line.startswith(start) and case["message"] in line for line in lines)


def test_every_broken_file_has_its_expectation() -> None:
    files = {p.name for p in BROKEN.iterdir() if p.name != "expected.toml"}
    assert files == set(EXPECTED)
    for name, case in EXPECTED.items():
        assert {"replaces", "where", "message"} <= set(case), name
        assert set(case) <= {"replaces", "where", "field", "message", "mistake"}, name
        assert case["where"].startswith(case["replaces"]), name
    assert set(CLI_CASES) <= set(EXPECTED)


@pytest.mark.parametrize("name", CASES)
def test_check_names_file_place_field_and_expectation(name: str, tmp_path: Path) -> None:
    result = check_program(settings_for(broken_program(tmp_path, name)))  # any exception but these fails
    lines = [str(p) for p in result.problems]
    assert reported(name, lines), f"expected {EXPECTED[name]}, got:\n" + "\n".join(lines)


@pytest.mark.parametrize("name", CLI_CASES)
def test_the_cli_lists_the_problems_and_exits_2(name: str, tmp_path: Path) -> None:
    result = cli(broken_program(tmp_path, name), "check")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert reported(name, lines), result.stderr
    assert "problems:" in lines  # one list, all problems at once


def test_unknown_keys_and_extra_cells_are_warnings_not_problems(program_dir: Path) -> None:
    cohort = program_dir / "cohorts/2019-2020/cohort.toml"
    cohort.write_text(cohort.read_text(encoding="utf-8").replace("send_hour = 9", "sendhour = 10"), encoding="utf-8")
    roster = program_dir / "cohorts/2020-january/roster.csv"
    with roster.open("a", encoding="utf-8") as f:
        f.write("j05,Ed Example,ed@example.org,Flo Example,flo@example.org,,active,,,,,met at Annual, 2019\n")
    result = check_program(settings_for(program_dir))
    assert result.problems == []
    warnings = "\n".join(str(w) for w in result.warnings)
    assert "cohorts/2019-2020/cohort.toml: sendhour is not a known key and is ignored" in warnings
    assert ("cohorts/2020-january/roster.csv:6: has 13 cells but the header has 12 columns; "
            "the extra cells (' 2019') are ignored") in warnings


BAD_ROWS = {  # line in the roster file, which a spreadsheet shows as the same row: (field, what the message says)
    14: ("mentor_email", "'ann@@example.org' is not a valid address"),
    16: ("pair_id", "'p01' is already used on line 2"),
    17: ("mentee_name", "contains a line break or control character"),
}


def test_run_serves_every_good_pair_and_reports_every_bad_row(tmp_path: Path) -> None:
    root = make_program(tmp_path / "program")
    roster = root / "cohorts/2019-2020/roster.csv"
    with roster.open("a", encoding="utf-8", newline="") as f:
        f.write("p13,Ann Example,ann@@example.org,Bo Example,bo@example.org,,active,,,,,\n")  # line 14
        f.write("p14,Cy Example,cy@example.org,Di Example,di@example.org,,active,,,,,\n")  # line 15: good
        f.write("p01,Dup Licate,dup@example.org,Dup Two,dup2@example.org,,active,,,,,\n")  # line 16
        f.write("p15,Ed Example,ed@example.org,Flo\x1b Example,flo@example.org,,active,,,,,\n")  # line 17
    outbox = tmp_path / "outbox"
    result = cli(root, "run", "--now", "2019-08-01T17:00:00Z",
                 MENTOR_MAILER_DATABASE=str(tmp_path / "ledger.sqlite3"), MENTOR_MAILER_OUTBOX_DIR=str(outbox))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr  # pairs were left out; the others were served
    for line, (field, message) in BAD_ROWS.items():
        where = f"cohorts/2019-2020/roster.csv:{line}: {field} "
        assert any(where in out and message in out for out in result.stderr.splitlines()), result.stderr

    # the welcome goes to every good pair active on the year's first day: p05 joins in November
    good = [f"p{i:02d}" for i in range(1, 13) if i != 5] + ["p14"]
    keys = []
    for path in sorted((outbox / "new").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        key = str(msg["X-Mentor-Mailer-Key"])
        if not key.startswith("digest/"):  # the coordinator's digest of the run, if one is sent
            keys.append(key)
    assert sorted(keys) == sorted(f"2019-2020/{p}/welcome" for p in good)
    assert f"sent {len(good)}," in result.stdout
