"""The no-op fast path: a cron run with nothing due stops after a few stat() calls and one ledger row.

After a complete run the ledger keeps a fingerprint of the program's files and the next instant anything
falls due; a later run with the same files, before that instant, has nothing to do and never loads the year.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from mailer import __version__
from mailer.app.outcome import RunReport
from mailer.core.plan import Plan
from mailer.errors import InputError
from mailer.load.files import program_files
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings


def fingerprint(settings: Settings) -> str:
    """What a plan depends on besides the clock and the ledger: the program's files (by name, size
    and mtime), the settings that shape the plan (the transport too: going live owes people the trial's
    messages), and this version of the code."""
    h = hashlib.sha256(f"{__version__}|{settings.late_window_days}|{settings.transport}".encode())
    files, problems = program_files(settings.program_dir)
    if problems:
        raise InputError(problems)
    for path, st in files:
        h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def idle(ledger: Ledger, fingerprint: str, now: datetime) -> bool:
    """Unchanged files, nothing left unfinished, a clock that has not gone back, and `now` before the next
    time anything is due."""
    wake = ledger.get_meta("wake")
    if not wake or wake.get("fingerprint") != fingerprint or ledger.has_unfinished():
        return False
    if wake.get("at") is not None and now < datetime.fromisoformat(wake["at"]):
        return False  # the clock went back: the full run says so
    return wake.get("next") is None or now < datetime.fromisoformat(wake["next"])


def remember(ledger: Ledger, plan: Plan, report: RunReport, fingerprint: str) -> None:
    """After a complete run: when the next run will have work, unless the files change first."""
    if (report.bad_rows or report.broken or report.held_late or report.stopped or report.aborted
            or report.contended or report.pending):
        ledger.set_meta("wake", None)  # the next run does the full work
        return
    candidates = [t for t in (report.next_due, ledger.next_retry()) if t is not None]
    # a withdrawal date cancels the invitation the pair holds: the run must wake for it
    candidates += [c.send_time(p.status_from) for c in plan.program.cohorts for p in c.pairs
                   if p.status == "withdrawn" and p.status_from and c.send_time(p.status_from) > report.now]
    wake = min(candidates) if candidates else None
    ledger.set_meta("wake", {"fingerprint": fingerprint, "next": wake.isoformat() if wake else None,
                             "at": report.now.isoformat()})
