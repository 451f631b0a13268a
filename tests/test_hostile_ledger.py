"""Damaged storage: a full disk, a damaged page, a lock that cannot be made, a ledger only to be read.

Each ends in one sentence naming the ledger file and what to do, exit 2, with nothing half-recorded; the
read-only commands open the ledger read-only and write nothing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mailer.cli import main

WELCOME = "2019-08-01T17:00:00Z"


@pytest.fixture
def program(program_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MENTOR_MAILER_DIGEST", "false")
    return program_dir


def cli(program: Path, *args: str) -> int:
    return main(["-C", str(program), *args])


def welcomed(program: Path) -> Path:
    """The sample's welcome run, its write-ahead log folded into the ledger file: the file says it all."""
    assert cli(program, "run", "--now", WELCOME) == 0
    db = program / "mentor-mailer.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db


def digest_of(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.exists()}


def test_read_only_commands_write_nothing_to_the_ledger(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    welcomed(program)
    files = sorted(program.glob("mentor-mailer.sqlite3*"))
    before = digest_of(files)
    for args in (["status", "--json"], ["plan"], ["run", "--dry-run", "--now", WELCOME],
                 ["report", "--out", str(program / "r.html")], ["invites", "--cohort", "2019-2020", "--out",
                                                              str(program / "ics")]):
        assert cli(program, *args) == 0, args
    assert digest_of(files) == before
    capsys.readouterr()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode; the test above covers mode=ro")
def test_read_only_commands_work_on_a_ledger_this_user_cannot_write(program: Path) -> None:
    assert cli(program, "run", "--now", WELCOME) == 0
    for f in program.glob("mentor-mailer.sqlite3*"):
        f.chmod(0o400)
    program.chmod(0o500)
    try:
        assert cli(program, "status", "--json") == 0
    finally:
        program.chmod(0o700)


def test_a_damaged_ledger_is_one_sentence(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = welcomed(program)
    data = bytearray(db.read_bytes())
    data[100:4096 * 2] = b"\xff" * (4096 * 2 - 100)  # the header's tail and the schema page
    db.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli(program, "run", "--now", "2019-08-02T17:00:00Z") == 2
    err = capsys.readouterr().err
    assert f"ledger {db}: the file is damaged; restore it from a backup" in err
    assert "Traceback" not in err


def test_a_full_disk_mid_run_is_one_sentence_and_nothing_half_recorded(program: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE stands in for a full disk: SQLite's write fails with EFBIG, which it reports as full."""
    assert cli(program, "run", "--now", WELCOME) == 0
    db = program / "mentor-mailer.sqlite3"
    size = sum(f.stat().st_size for f in program.glob("mentor-mailer.sqlite3*"))
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 8192}, {size + 8192})); "
              "from mailer.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")} | {
        "MENTOR_MAILER_DIGEST": "false"}
    result = subprocess.run([sys.executable, "-c", script, "-C", str(program), "run", "--now",
                             "2020-01-06T15:00:00Z", "--skip-late"], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"ledger {db}: " in result.stderr and "free some space and run again" in result.stderr
    assert "Traceback" not in result.stderr
    # with room again, the next run recovers whatever the full disk interrupted: nothing stays claimed
    assert cli(program, "run", "--now", "2020-01-06T15:00:00Z", "--skip-late") == 0
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM messages WHERE state = 'sending'").fetchone()[0] == 0
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_a_lock_that_cannot_be_made_is_one_sentence(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (program / "mentor-mailer.sqlite3.lock").mkdir()  # not a file: the lock cannot be opened
    assert cli(program, "run", "--now", WELCOME) == 2
    err = capsys.readouterr().err
    assert "mentor-mailer.sqlite3.lock: cannot create the lock file" in err and "Traceback" not in err


@pytest.mark.parametrize(("loop", "expected"), [
    ("{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxx{% endfor %}{% endfor %}",
     "trend.txt.j2:4: renders more than 262144 characters (a loop that runs away?)"),
    ("{% for i in range(200000) %}x{% endfor %}", "trend.txt.j2:4: template error: OverflowError: Range too big"),
    ("{{ 1 // 0 }}", "trend.txt.j2:4: template error: ZeroDivisionError"),
])
def test_a_template_that_runs_away_is_a_problem_with_file_and_line(
        program: Path, loop: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    template = program / "templates" / "email" / "trend.txt.j2"
    lines = template.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) > 3
    lines.insert(3, loop + "\n")  # inside the body block, as line 4
    template.unlink()
    template.write_text("".join(lines), encoding="utf-8")
    assert cli(program, "check") == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
