"""`serve`: APScheduler with an injected now over the sample year, and the real daemon on a real clock."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer.app import rehearse
from mailer.core.schedule import cron_trigger
from mailer.daemon import Daemon
from mailer.errors import ConfigError
from mailer.shell.lock import run_lock
from mailer.shell.settings import Settings
from tests.smtpd import SmtpServer

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("0 9 * * *", datetime(2019, 11, 2, 10, tzinfo=NY), datetime(2019, 11, 3, 9, tzinfo=NY)),  # DST ends
    ("0 9 * * 1", datetime(2019, 11, 2, 10, tzinfo=NY), datetime(2019, 11, 4, 9, tzinfo=NY)),  # 1 = Monday, as cron
    ("0 9 * * 0", datetime(2019, 11, 2, 10, tzinfo=NY), datetime(2019, 11, 3, 9, tzinfo=NY)),  # 0 = Sunday
    ("30 8 1 * *", datetime(2019, 11, 2, 10, tzinfo=NY), datetime(2019, 12, 1, 8, 30, tzinfo=NY)),
    ("*/2 * * * * *", datetime(2019, 11, 2, 10, 0, 1, tzinfo=NY), datetime(2019, 11, 2, 10, 0, 2, tzinfo=NY)),
])
def test_schedule_reads_crontab_as_cron_does(expr: str, after: datetime, expected: datetime) -> None:
    trigger = cron_trigger(expr, NY)
    fire = trigger.get_next_fire_time(None, after)
    assert fire == expected
    assert fire.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("expr", ["0 9 * *", "0 25 * * *", "every day"])
def test_bad_schedule_is_a_config_error(expr: str) -> None:
    with pytest.raises(ConfigError, match="MENTOR_MAILER_SCHEDULE"):
        cron_trigger(expr, NY)


def test_scheduled_job_with_injected_now_sends_the_year_once(settings: Settings, tmp_path: Path) -> None:
    """The daemon's job, fired at each of APScheduler's fire times over the year (09:00 New York)."""
    daemon = Daemon(settings)
    trigger = cron_trigger("0 9 * * *", NY)
    fire = trigger.get_next_fire_time(None, datetime(2019, 7, 31, tzinfo=NY))
    end = datetime(2020, 12, 20, tzinfo=NY)
    sent = 0
    while fire <= end:
        report = daemon.job(now=fire)
        sent += report.sent
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    conn = sqlite3.connect(settings.database_path)
    keys = [k for (k,) in conn.execute("SELECT key FROM messages WHERE state='sent'")]
    conn.close()
    assert len(keys) == len(set(keys)) == sent
    rehearsal = rehearse.rehearse(settings, outbox=tmp_path / "year")
    assert sent == rehearsal.messages  # exactly the year's messages, each once
    # a second instance while a run holds the lock: the job says so and sends nothing
    with run_lock(settings.database_path):
        assert daemon.job(now=end) is None


def _today_program(settings: Settings, pairs: int) -> None:
    """A cohort whose welcome is due today on the real clock (the sample year is long past)."""
    import shutil

    shutil.rmtree(settings.program_dir / "cohorts/2020-january")
    shutil.rmtree(settings.program_dir / "cohorts/2019-2020")
    cohort = settings.program_dir / "cohorts/today"
    cohort.mkdir()
    start = datetime.now(UTC).date()
    end = date(start.year + 1, start.month, 1) - timedelta(days=1)
    cohort.joinpath("cohort.toml").write_text(f"""
name = "Today"
start = {start.isoformat()}
end = {end.isoformat()}
timezone = "UTC"
send_hour = 0
[coordinator]
name = "Coordinator"
email = "coordinator@example.org"
""", encoding="utf-8")
    rows = "".join(f"t{i},Mentor {i},mentor{i}@example.org,Mentee {i},mentee{i}@example.org\n" for i in range(pairs))
    cohort.joinpath("roster.csv").write_text("pair_id,mentor_name,mentor_email,mentee_name,mentee_email\n" + rows,
                                             encoding="utf-8")


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    return env | {"MENTOR_MAILER_PROGRAM_DIR": str(settings.program_dir),
                  "MENTOR_MAILER_DATABASE": str(settings.database_path),
                  "MENTOR_MAILER_OUTBOX_DIR": str(settings.outbox_path),
                  "MENTOR_MAILER_SCHEDULE": "*/1 * * * * *", "MENTOR_MAILER_DIGEST": "false"} | extra


def _serve(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mailer.cli", "serve"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_serve_on_a_real_clock_sends_once_and_stops_cleanly(settings: Settings) -> None:
    _today_program(settings, pairs=3)
    env = _env(settings)
    daemon = _serve(env)
    try:
        outbox = settings.outbox_path / "new"
        _wait(lambda: outbox.exists() and len(list(outbox.iterdir())) >= 3)
        second = subprocess.run([sys.executable, "-m", "mailer.cli", "serve"], env=env, capture_output=True,
                                text=True, timeout=30, check=False)
        assert second.returncode == 75 and "another mentor-mailer serve holds" in second.stderr
        time.sleep(2.5)  # a few more fires: nothing more is due
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert len(list((settings.outbox_path / "new").iterdir())) == 3
    runs = [line for line in err.splitlines() if " run: " in line]
    assert len(runs) >= 3 and "sent 3," in runs[0] and all("sent 0," in r for r in runs[1:])
    assert "stopped after" in err and "Traceback" not in err


def test_sigterm_finishes_the_message_in_flight_and_releases_the_lock(
    settings: Settings, smtp_server: SmtpServer
) -> None:
    _today_program(settings, pairs=5)
    fault = smtp_server.add_fault("data", action="stall", seconds=1.5, times=1)
    env = _env(settings, MENTOR_MAILER_TRANSPORT="smtp", MENTOR_MAILER_SMTP_HOST=smtp_server.host,
               MENTOR_MAILER_SMTP_PORT=str(smtp_server.port), MENTOR_MAILER_SMTP_SECURITY="none",
               MENTOR_MAILER_SMTP_TIMEOUT="10")
    daemon = _serve(env)
    _wait(lambda: fault.fired)
    daemon.send_signal(signal.SIGTERM)
    _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    conn = sqlite3.connect(settings.database_path)
    states = dict(conn.execute("SELECT key, state FROM messages"))
    conn.close()
    assert list(states.values()) == ["sent"]  # the one in flight finished; none left half-done
    assert len(smtp_server.accepted()) == 1
    after = subprocess.run([sys.executable, "-m", "mailer.cli", "run", "-q"], env=env, capture_output=True,
                           text=True, timeout=60, check=False)
    assert after.returncode == 0, after.stderr  # the lock was released: the rest goes out
    assert len(smtp_server.accepted()) == 5
