"""The systemd units that run mentor-mailer: a oneshot service with its hourly timer, or the `serve` daemon."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailer.shell.files import private_dir, write_private

# The places the README creates; contrib/systemd/ holds the units rendered for them.
DEFAULT_PROGRAM = Path("/srv/mentoring")
DEFAULT_USER = "mentoring"
# Hourly, a few minutes past: a pair whose partner lives in a zone behind the cohort's gets its email
# within the hour of the send hour, not a day later; a run with nothing due stops at the fast path.
TIMER_CALENDAR = "*-*-* *:05:00"
SERVE_SCHEDULE = "5 * * * *"


@dataclass(frozen=True)
class Unit:
    """One unit file: its name and its text."""

    name: str
    text: str


def units(*, program_dir: Path = DEFAULT_PROGRAM, executable: Path | None = None,
          user: str = DEFAULT_USER) -> list[Unit]:
    """The three unit files for a program folder and the mentor-mailer executable that serves it."""
    exe = executable or program_dir / ".venv" / "bin" / "mentor-mailer"
    service = f"""\
# /etc/systemd/system/mentor-mailer.service: one run; mentor-mailer.timer starts it hourly.
# Enable with: systemctl enable --now mentor-mailer.timer
[Unit]
Description=mentor-mailer: send what is due
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
User={user}
WorkingDirectory={program_dir}
# settings: KEY=VALUE lines, comments on lines of their own (systemd keeps a trailing comment in the value)
EnvironmentFile=-{program_dir}/.env
ExecStart={exe} run -q
# exit 75 means another run held the lock: not a failure
SuccessExitStatus=75
"""
    timer = f"""\
# /etc/systemd/system/mentor-mailer.timer: starts mentor-mailer.service every hour at five past.
[Unit]
Description=Run mentor-mailer hourly

[Timer]
OnCalendar={TIMER_CALENDAR}
Persistent=true

[Install]
WantedBy=timers.target
"""
    serve = f"""\
# /etc/systemd/system/mentor-mailer-serve.service: the daemon. Use this or the timer, not both.
# Enable with: systemctl enable --now mentor-mailer-serve.service
[Unit]
Description=mentor-mailer daemon
After=network-online.target
Wants=network-online.target

[Service]
User={user}
WorkingDirectory={program_dir}
EnvironmentFile=-{program_dir}/.env
# quoted whole: unquoted, systemd would split the schedule at its spaces
Environment="MENTOR_MAILER_SCHEDULE={SERVE_SCHEDULE}"
ExecStart={exe} serve
Restart=on-failure
# SIGTERM: the message in flight is finished before it exits
TimeoutStopSec=120

[Install]
WantedBy=multi-user.target
"""
    return [Unit("mentor-mailer.service", service), Unit("mentor-mailer.timer", timer),
            Unit("mentor-mailer-serve.service", serve)]


def write_units(out: Path, found: list[Unit]) -> list[Path]:
    """Write the units into the folder `out` (created if missing)."""
    private_dir(out)
    return [write_private(out / u.name, u.text.encode("utf-8")) for u in found]
