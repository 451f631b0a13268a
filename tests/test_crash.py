"""The real `mentor-mailer run` as a subprocess: SIGKILL at several points, two runs at once, a canary.

Every due message must arrive; a duplicate is allowed only where a kill fell between the body and
the server's reply, and it must carry the same Message-ID.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mailer.shell.settings import Settings
from tests.smtpd import SmtpServer

PAIRS = 240
NOW = "2019-08-01T15:00:00Z"
HEADER = "pair_id,mentor_name,mentor_email,mentee_name,mentee_email\n"


@pytest.fixture
def big_program(settings: Settings) -> Settings:
    """The sample cohort with a generated roster of PAIRS pairs (the second cohort removed)."""
    import shutil

    shutil.rmtree(settings.program_dir / "cohorts/2020-january")
    lines = [f"x{i:03d},Mentor {i},mentor{i}@example.org,Mentee Zoë {i},mentee{i}@example.com\n"
             for i in range(PAIRS)]
    (settings.program_dir / "cohorts/2019-2020/roster.csv").write_text(HEADER + "".join(lines), encoding="utf-8")
    return settings


def env_for(s: Settings, server: SmtpServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    env.update({
        "MENTOR_MAILER_PROGRAM_DIR": str(s.program_dir), "MENTOR_MAILER_DATABASE": str(s.database_path),
        "MENTOR_MAILER_TRANSPORT": "smtp", "MENTOR_MAILER_SMTP_HOST": server.host,
        "MENTOR_MAILER_SMTP_PORT": str(server.port), "MENTOR_MAILER_SMTP_SECURITY": "none",
        "MENTOR_MAILER_SMTP_TIMEOUT": "10", "MENTOR_MAILER_SMTP_BACKOFF": "0.01", "MENTOR_MAILER_DIGEST": "false",
    } | extra)
    return env


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mailer.cli", "run", "--now", NOW, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reaps it and closes the pipes


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the run to reach the kill point")
        time.sleep(0.005)


def ledger(s: Settings) -> dict[str, tuple[str, str, int]]:
    conn = sqlite3.connect(s.database_path)
    try:
        return {k: (st, mid, rs) for k, st, mid, rs in
                conn.execute("SELECT key, state, message_id, resends FROM messages")}
    finally:
        conn.close()


def test_sigkill_at_several_points_loses_nothing(big_program: Settings, smtp_server: SmtpServer) -> None:
    env = env_for(big_program, smtp_server)
    kills: list[str] = []
    # 1. during RCPT of one pair: before DATA, nothing of it can have arrived
    fault = smtp_server.add_fault("rcpt", action="stall", seconds=3, match="mentor40@")
    proc = start(env)
    wait_for(lambda: fault.fired)
    kill(proc)
    kills.append("rcpt stall, pair x040")
    # 2. after the body, before the reply: the one window SMTP cannot close
    fault = smtp_server.add_fault("data", action="stall", seconds=3)
    proc = start(env)
    wait_for(lambda: fault.fired)
    kill(proc)
    kills.append("data stall (after body)")
    # 3.-5. at arbitrary moments while messages flow
    for delay in (0.05, 0.25, 0.6):
        before = len(smtp_server.received)
        proc = start(env)
        wait_for(lambda b=before: len(smtp_server.received) > b + 3)
        time.sleep(delay)
        kill(proc)
        kills.append(f"timed, {delay}s into sending")
    time.sleep(3.2)  # let the stalled server handlers finish
    done = start(env)
    _out, err = done.communicate(timeout=120)
    assert done.returncode in (0, 1), err
    assert "Traceback" not in err

    rows = ledger(big_program)
    assert len(rows) == PAIRS
    assert {st for st, _, _ in rows.values()} <= {"sent", "uncertain"}
    accepted: Counter[tuple[str | None, str]] = Counter(
        (r.message_id, rcpt) for r in smtp_server.accepted() for rcpt in r.rcpt_tos)
    by_id = {mid: (key, rs) for key, (_, mid, rs) in rows.items()}
    for key, (_state, mid, _) in rows.items():
        i = int(key.split("/")[1][1:])
        for rcpt in (f"mentor{i}@example.org", f"mentee{i}@example.com"):
            assert accepted[(mid, rcpt)] >= 1, f"lost: {key} to {rcpt}"
    dups = {k: v for k, v in accepted.items() if v > 1}
    for (mid, _rcpt), n in dups.items():
        assert n == 2 and by_id[mid][1] == 1, f"duplicate outside the uncertain rule: {by_id.get(mid)}"
    assert len(kills) == 5
    print(f"\nkill points: {kills}; messages {PAIRS}; lost 0; duplicates {len(dups)} (all resends of uncertain)")


def test_two_runs_at_once_send_each_message_once(big_program: Settings, smtp_server: SmtpServer) -> None:
    env = env_for(big_program, smtp_server)
    procs = [start(env), start(env)]
    results = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert len(smtp_server.accepted()) == PAIRS
    mids = Counter(r.message_id for r in smtp_server.accepted())
    assert max(mids.values()) == 1
    if codes == [0, 75]:  # the usual case: the second found the lock held
        loser = next(r for p, r in zip(procs, results, strict=True) if p.returncode == 75)
        assert "another mentor-mailer run holds" in loser[1] and "sent nothing" in loser[1]
    else:  # the first finished before the second started: it found nothing to do
        assert codes == [0, 0]


def test_canary_password_never_appears(big_program: Settings, smtp_server: SmtpServer, smtp_ca_file: Path,
                                       tmp_path: Path) -> None:
    canary = "canary-9f3b7c1e-correct-horse"
    env = env_for(big_program, smtp_server, MENTOR_MAILER_SMTP_HOST="localhost",
                  MENTOR_MAILER_SMTP_SECURITY="starttls", MENTOR_MAILER_SMTP_CA_FILE=str(smtp_ca_file),
                  MENTOR_MAILER_SMTP_USERNAME="mailer", MENTOR_MAILER_SMTP_PASSWORD=canary)
    outputs = []
    for args in (["run", "--now", NOW], ["run", "--now", NOW, "--dry-run"], ["status", "--json"], ["check"]):
        r = subprocess.run([sys.executable, "-m", "mailer.cli", *args], env=env, capture_output=True, text=True,
                           timeout=120, check=False)
        outputs += [r.stdout, r.stderr]
    assert "refused the login for mailer" in outputs[1]
    bad = env | {"MENTOR_MAILER_SMTP_TIMEOUT": "-1"}  # a settings error must not echo the other settings
    r = subprocess.run([sys.executable, "-m", "mailer.cli", "run"], env=bad, capture_output=True, text=True,
                       timeout=60, check=False)
    outputs += [r.stdout, r.stderr]
    conn = sqlite3.connect(big_program.database_path)
    dump = "\n".join(conn.iterdump())
    conn.close()
    files = b"".join(p.read_bytes() for p in big_program.database_path.parent.glob("*") if p.is_file())
    assert canary not in "".join(outputs)
    assert canary not in dump
    assert canary.encode() not in files
