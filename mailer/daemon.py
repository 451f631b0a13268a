"""`serve`: the scheduler daemon, one of the two edges. APScheduler fires the same run as cron mode, with the
fire time as `now`; signals end it cleanly.

One run at a time (`max_instances=1`), missed fires coalesced into one, and a misfire grace of hours,
so a machine that slept through 09:00 runs once when it wakes. SIGTERM or SIGINT lets the message in
flight finish, releases the lock and exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailer.app.outcome import RunReport
from mailer.app.send import run
from mailer.core.schedule import crontab_fields
from mailer.errors import ConfigError, LockBusy, MailerError
from mailer.load.program import load_program
from mailer.shell.lock import serve_lock
from mailer.shell.settings import Settings

log = logging.getLogger("mentor_mailer")
MISFIRE_GRACE = 6 * 3600  # seconds: a daemon suspended overnight still runs when it wakes
RETRY_MINUTES = 5  # a fire that found the run lock held tries again this soon


class Daemon:
    """Holds the schedule, the stop flag and the one job; `job` is what every fire calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.busy = threading.Lock()  # held while a run is in progress
        self.runs = 0

    def job(self, now: datetime | None = None) -> RunReport | None:
        """One scheduled run: the cron-mode run, logged in one line; never raises into the scheduler."""
        with self.busy:
            if self.stopping.is_set():
                return None
            now = now or datetime.now(UTC)
            stamp = now.isoformat(timespec="seconds")
            try:
                report = run(self.settings, now=now, stop=self.stopping.is_set)
            except LockBusy as exc:
                # a cron run (or another tool) has the ledger: try again soon, not at tomorrow's fire
                log.warning("%s run skipped: %s; trying again in %d minutes", stamp, exc, RETRY_MINUTES)
                self._wake(now + timedelta(minutes=RETRY_MINUTES))
                return None
            except MailerError as exc:
                log.error("%s run failed: %s", stamp, str(exc).replace("\n", "; "))
                return None
            self.runs += 1
            level = logging.INFO if report.exit_code == 0 else logging.WARNING
            log.log(level, "%s run: %s", stamp, report.summary())
            if report.next_due is not None:
                self._wake(report.next_due)  # a participant's own send hour may come before the next fire
            return report

    def _wake(self, at: datetime) -> None:
        """One extra run at `at`, unless the schedule fires first (the fast path keeps it cheap anyway)."""
        if self.scheduler is None or self.stopping.is_set():
            return
        fire = self.scheduler.get_job("run")
        nxt = fire.next_run_time if fire is not None else None
        if nxt is not None and nxt <= at:
            return
        self.scheduler.add_job(self.job, "date", run_date=at, id="wake", replace_existing=True,
                               misfire_grace_time=MISFIRE_GRACE)

    def stop(self, signum: int, _frame: FrameType | None = None) -> None:
        log.info("signal %s: finishing the message in flight, then stopping", signal.Signals(signum).name)
        self.stopping.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)

    scheduler: Any = None

    def serve(self, schedule: str, timezone: ZoneInfo) -> int:
        """Run until a signal; return the exit code."""
        # imported here, not at the top: APScheduler is slow to load and only `serve` needs it
        from apscheduler.schedulers.blocking import BlockingScheduler

        trigger = cron_trigger(schedule, timezone)
        with serve_lock(self.settings.database_path):
            self.scheduler = BlockingScheduler(timezone=timezone,
                                               executors={"default": {"type": "threadpool", "max_workers": 1}})
            self.scheduler.add_job(self.job, trigger, id="run", coalesce=True, max_instances=1,
                                   misfire_grace_time=MISFIRE_GRACE)
            # started (or restarted after a crash): run now rather than at the next fire; nothing due is cheap
            self.scheduler.add_job(self.job, "date", run_date=datetime.now(timezone), id="wake",
                                   misfire_grace_time=MISFIRE_GRACE)
            previous = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                log.info("serving: schedule '%s' (%s); next run %s", schedule, timezone.key,
                         self.scheduler.get_job("run").trigger.get_next_fire_time(None, datetime.now(timezone)))
                self.scheduler.start()  # blocks until stop() shuts it down
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
            with self.busy:  # the run in flight has finished its message and released the run lock
                pass
        log.info("stopped after %d run(s)", self.runs)
        return 0


def cron_trigger(expr: str, timezone: ZoneInfo) -> Any:
    """The APScheduler trigger for a crontab expression (see `mailer.core.schedule` for how it is read)."""
    # imported here: only `serve` needs APScheduler, and the other commands start faster without it
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger



    triggers = [CronTrigger(**fields, timezone=timezone) for fields in crontab_fields(expr)]
    return triggers[0] if len(triggers) == 1 else OrTrigger(triggers)


def serve(settings: Settings) -> int:
    """The scheduler daemon: validates the program, then runs on MENTOR_MAILER_SCHEDULE until a signal."""
    program = load_program(settings.program_dir)
    if settings.timezone:
        try:
            zone = ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"MENTOR_MAILER_TIMEZONE '{settings.timezone}' is not an IANA time zone") from None
    else:
        zone = program.cohorts[0].timezone if program.cohorts else ZoneInfo("UTC")
    return Daemon(settings).serve(settings.schedule, zone)
