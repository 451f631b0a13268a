"""`serve`: APScheduler with an injected now over the sample year, and the real daemon on a real clock."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer.app import rehearse
from mailer.daemon import Daemon, cron_trigger
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


@pytest.mark.parametrize(("dow", "weekdays"), [  # Python's weekday(): Monday = 0 ... Sunday = 6
    ("*/2", {6, 1, 3, 5}),
    ("0-6", {0, 1, 2, 3, 4, 5, 6}),
    ("1-5/2", {0, 2, 4}),
    ("7", {6}),
    ("0", {6}),
    ("1", {0}),
    ("mon-fri", {0, 1, 2, 3, 4}),
    ("sat,sun", {5, 6}),
    ("1,3,5", {0, 2, 4}),
    ("mon-fri/2", {0, 2, 4}),
    ("0,6", {5, 6}),
])
def test_fire_times_fall_on_the_weekdays_cron_means(dow: str, weekdays: set[int]) -> None:
    """Through APScheduler itself, which alone would read 1 as Tuesday (its issue 286)."""
    trigger = cron_trigger(f"0 9 * * {dow}", NY)
    fires = [trigger.get_next_fire_time(None, datetime(2019, 11, 1, tzinfo=NY))]
    while len(fires) < 21:  # three weeks
        fires.append(trigger.get_next_fire_time(fires[-1], fires[-1] + timedelta(seconds=1)))
    assert {f.weekday() for f in fires} == weekdays
    assert all((f.hour, f.minute) == (9, 0) for f in fires)


def test_both_day_fields_fire_on_either_day() -> None:
    """crontab(5)'s example: '30 4 1,15 * 5' runs on the 1st and 15th of each month, plus every Friday."""
    trigger = cron_trigger("30 4 1,15 * 5", NY)
    fire = trigger.get_next_fire_time(None, datetime(2019, 10, 31, tzinfo=NY))
    days = []
    while fire < datetime(2019, 12, 1, tzinfo=NY):
        days.append(fire.day)
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    assert days == [1, 8, 15, 22, 29]  # November 2019: Fridays 1, 8, 15, 22, 29 and the 1st and 15th


@pytest.mark.parametrize("expr", ["0 9 * *", "0 25 * * *", "every day", "0 9 * * 8", "0 9 * * 5-1"])
def test_bad_schedule_is_a_config_error(expr: str) -> None:
    with pytest.raises(ConfigError, match="MENTOR_MAILER_SCHEDULE"):
        cron_trigger(expr, NY)


def test_scheduled_job_with_injected_now_sends_the_year_once(settings: Settings, tmp_path: Path) -> None:
    """The daemon's job, fired at every 10th of APScheduler's fire times over the year (09:00 New York).

    Ten days apart is inside the late window (14 days), so the sample must send everything the daily
    fires would, each message once; tests/test_runner.py runs every day of the year.
    """
    daemon = Daemon(settings)
    trigger = cron_trigger("0 9 * * *", NY)
    fire = trigger.get_next_fire_time(None, datetime(2019, 7, 31, tzinfo=NY))
    end = datetime(2020, 12, 20, tzinfo=NY)
    sent = fired = 0
    while fire <= end:
        if fired % 10 == 0:
            report = daemon.job(now=fire)
            sent += report.sent
        fired += 1
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


@contextmanager
def _serving(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`serve` in a subprocess logging to `log`; SIGKILLed and reaped at the end if a test left it running."""
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mailer.cli", "serve"], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def _wait(predicate: Callable[[], object], proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Polls for a state the daemon reaches on its own; the deadline only stops a hung test."""
    deadline = time.monotonic() + 120
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {what} (exit {proc.poll()}); the daemon said:\n{log.read_text()}")
        time.sleep(0.02)


def _runs(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if " run: " in line]


def test_serve_on_a_real_clock_sends_once_and_stops_cleanly(settings: Settings, tmp_path: Path) -> None:
    _today_program(settings, pairs=3)
    env = _env(settings)
    log = tmp_path / "serve.log"
    outbox = settings.outbox_path / "new"
    with _serving(env, log) as daemon:
        _wait(lambda: outbox.exists() and len(list(outbox.iterdir())) >= 3, daemon, log, "three messages")
        second = subprocess.run([sys.executable, "-m", "mailer.cli", "serve"], env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        assert second.returncode == 75 and "another mentor-mailer serve holds" in second.stderr
        _wait(lambda: len(_runs(log)) >= 3, daemon, log, "two more fires")  # nothing more is due in them
        assert _stop(daemon) == 0, log.read_text()
    err = log.read_text()
    assert len(list(outbox.iterdir())) == 3
    runs = _runs(log)
    assert "sent 3," in runs[0] and all("sent 0," in r for r in runs[1:])
    assert "stopped after" in err and "Traceback" not in err
    assert "Running job" not in err and "executed successfully" not in err  # one line per run, ours


def test_sigterm_finishes_the_message_in_flight_and_releases_the_lock(
    settings: Settings, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    _today_program(settings, pairs=5)
    fault = smtp_server.add_fault("data", "hold")  # the first body waits for the reply until released
    env = _env(settings, MENTOR_MAILER_TRANSPORT="smtp", MENTOR_MAILER_SMTP_HOST=smtp_server.host,
               MENTOR_MAILER_SMTP_PORT=str(smtp_server.port), MENTOR_MAILER_SMTP_SECURITY="none",
               MENTOR_MAILER_SMTP_TIMEOUT="60")
    log = tmp_path / "serve.log"
    with _serving(env, log) as daemon:
        try:
            _wait(lambda: fault.fired, daemon, log, "first message body")
            daemon.send_signal(signal.SIGTERM)
            _wait(lambda: "signal SIGTERM" in log.read_text(), daemon, log, "word of the signal")
        finally:
            fault.release()  # the reply goes out: the message in flight finishes
        assert daemon.wait(timeout=60) == 0, log.read_text()
    conn = sqlite3.connect(settings.database_path)
    states = dict(conn.execute("SELECT key, state FROM messages"))
    conn.close()
    assert list(states.values()) == ["sent"]  # the one in flight finished; none left half-done
    assert len(smtp_server.accepted()) == 1
    after = subprocess.run([sys.executable, "-m", "mailer.cli", "run", "-q"], env=env, capture_output=True,
                           text=True, timeout=60, check=False)
    assert after.returncode == 0, after.stderr  # the lock was released: the rest goes out
    assert len(smtp_server.accepted()) == 5


def test_a_restarted_serve_runs_at_once_not_at_the_next_fire(settings: Settings, tmp_path: Path) -> None:
    """After a crash or a reboot, `serve` does not wait for tomorrow's fire while something is due."""
    _today_program(settings, pairs=3)
    env = _env(settings, MENTOR_MAILER_SCHEDULE="0 0 1 1 *")  # the next fire is months away
    log = tmp_path / "serve.log"
    outbox = settings.outbox_path / "new"
    with _serving(env, log) as daemon:
        _wait(lambda: outbox.exists() and len(list(outbox.iterdir())) >= 3, daemon, log, "the start-up run")
        assert _stop(daemon) == 0, log.read_text()
    assert "sent 3," in _runs(log)[0]


def test_a_fire_that_finds_the_lock_held_tries_again_in_minutes(settings: Settings) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    zone = ZoneInfo("America/New_York")
    daemon = Daemon(settings)
    daemon.scheduler = BackgroundScheduler(timezone=zone)
    daemon.scheduler.add_job(daemon.job, cron_trigger("0 9 * * *", zone), id="run")
    daemon.scheduler.start(paused=True)  # jobs are computed, none runs
    try:
        now = datetime(2019, 8, 1, 13, 5, tzinfo=UTC)
        with run_lock(settings.database_path):
            assert daemon.job(now=now) is None  # a cron run holds the ledger
        wake = daemon.scheduler.get_job("wake")
        assert wake is not None and wake.next_run_time == now + timedelta(minutes=5)
        report = daemon.job(now=now + timedelta(minutes=5))
        assert report is not None and report.sent == 9  # the others wait for 09:00 in their own zones
        # ... and the daemon wakes for them then, not at tomorrow's fire
        assert report.next_due is not None and daemon.scheduler.get_job("wake").next_run_time == report.next_due
    finally:
        daemon.scheduler.shutdown(wait=False)
