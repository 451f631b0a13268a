"""What every command shares: the program's name, the clock (read here and in the daemon only), the console;
imports inside functions are there for start-up time only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailer.errors import MailerError

if TYPE_CHECKING:
    from mailer.shell.settings import Settings

PROG = "mentor-mailer"


def _now() -> datetime:
    """The clock, read here and in the daemon only; everything below takes `now`."""
    return datetime.now(UTC)


def _moment(settings: Settings, value: datetime | date | None) -> datetime:
    """--now as given; a date alone is midnight in the program's (first cohort's) time zone."""
    if value is None:
        return _now()
    if isinstance(value, datetime):
        return value
    from mailer.load.program import load_program

    cohorts = load_program(settings.program_dir).cohorts
    zone = cohorts[0].timezone if cohorts else UTC
    return datetime.combine(value, time(0), tzinfo=zone)


def _refuse_path(path: Path, *, folder: bool, what: str) -> None:
    """An ordinary path mistake, said in one sentence before anything is written."""
    if folder and path.exists() and not path.is_dir():
        raise MailerError(f"{what} {path} is a file; give a folder")
    if not folder:
        if path.is_dir():
            raise MailerError(f"{what} {path} is a folder; give a file name such as {path / 'report.html'}")
        if not path.parent.is_dir():
            raise MailerError(f"{what} {path}: the folder {path.parent} does not exist; create it first")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _print_problems(problems: Sequence[object], title: str) -> None:
    if problems:
        err = _console(stderr=True)
        err.print(f"{title}:", markup=False)
        for p in problems:
            err.print(f"  {p}", markup=False)


