"""The one error root, and the problems it carries, worded for a program coordinator."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_SEND_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: cron wrappers treat it as "try again later"


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the coordinator's files: where it is, which field, what was expected."""

    file: str
    line: int | None
    field: str | None
    message: str
    row: int | None = None  # the row a spreadsheet shows (the header is row 1), when the place is a roster row

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.row is not None and self.row != self.line:  # a cell holding line breaks: the row differs
            where += f" (row {self.row})"
        what = f"{self.field} " if self.field else ""
        return f"{where}: {what}{self.message}"


def display_path(path: Path, base: Path | None = None) -> str:
    """A path as the coordinator would type it: relative to the program folder when inside it."""
    if base is not None:
        try:
            # absolute(), not resolve(): cohorts/program.toml may be a link, and the coordinator
            # knows it by the name in their folder
            return str(path.absolute().relative_to(base.absolute()))
        except ValueError:
            pass
    return str(path)


class MailerError(Exception):
    """Root of every error mentor-mailer reports to a person; the message is the whole story."""

    exit_code = EXIT_BAD_INPUT


class InputError(MailerError):
    """The coordinator's files or settings are wrong; every problem found is listed at once."""

    def __init__(self, problems: Iterable[Problem | str]) -> None:
        self.problems = list(problems)
        super().__init__(self._message())

    def _message(self) -> str:
        lines = [str(p) for p in self.problems]
        count = len(lines)
        head = f"{count} problem{'s' if count != 1 else ''} found:"
        return "\n".join([head, *(f"  {line}" for line in lines)])


class ConfigError(MailerError):
    """A setting is missing or wrong."""


class LockBusy(MailerError):
    """Another run holds the ledger's lock."""

    exit_code = EXIT_LOCKED


class LedgerError(MailerError):
    """The ledger file cannot be opened or is not one of ours."""


class TransportError(MailerError):
    """The outbox or mail server cannot take messages at all (not a per-message failure).

    `deferred` means the trouble may pass (the server is down): what was not sent stays due.
    Otherwise it is a setup problem (no STARTTLS, refused login) for the coordinator to fix.
    """

    def __init__(self, message: str, *, deferred: bool = False) -> None:
        super().__init__(message)
        self.deferred = deferred
        self.exit_code = EXIT_SEND_FAILED if deferred else EXIT_BAD_INPUT
