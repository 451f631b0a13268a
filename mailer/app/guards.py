"""What a run checks before it sends: a ledger that lost the year, a clock that is wrong.

A lost, emptied or misplaced ledger would resend the last weeks under new Message-IDs; a clock months ahead
would record the year as skipped. Each check stops or holds back the run with a sentence instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from mailer.app.outcome import RunReport
from mailer.core.plan import Plan
from mailer.errors import LedgerError
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings

# a message due this long before a run on a ledger that knows nothing is a sign the ledger was lost
_FRESH_GRACE = timedelta(days=1)


def check_fresh_start(ledger: Ledger, plan: Plan, settings: Settings, *, confirmed: bool) -> None:
    """Stop a run whose ledger knows nothing of a program year already under way, unless `confirmed`."""
    if confirmed:
        return
    program = plan.program
    addresses = {p.ascii_email.lower() for c in program.cohorts for pair in c.pairs for p in pair.people()}
    if ledger.knows({c.id for c in program.cohorts}, addresses):
        return
    overdue = [o for o in plan.send if o.due_at < plan.now - _FRESH_GRACE]
    first_run = ledger.first_run()
    if first_run is not None and overdue and first_run <= min(o.due_at for o in overdue):
        overdue = []  # the ledger was there before these fell due: runs simply missed them, it lost nothing
    outbox = settings.outbox_path / "new"
    written = outbox.is_dir() and any(outbox.iterdir())
    if not overdue and not written:
        return
    evidence = []
    if overdue:
        first = min(o.due_at for o in overdue)
        evidence.append(f"{len(overdue)} message(s) fell due before today, the first on {first.date().isoformat()}")
    if written:
        evidence.append(f"the outbox {outbox} holds messages")
    raise LedgerError(
        f"{ledger.path} knows nothing of this program, but its year is under way ({'; '.join(evidence)}). "
        "If the ledger was lost or moved, restore it (see the README's \"Backing up the ledger\") or point "
        "MENTOR_MAILER_DATABASE at it; nothing was sent. If this really is a fresh start, run again with "
        "--new-ledger: what is due within the late window goes out, older steps are recorded as skipped.")


def note_clock(ledger: Ledger, report: RunReport) -> None:
    """Say so when the clock reads earlier than the last run's: only what is due by this clock is sent."""
    last = ledger.get_meta("last_run")
    if last is not None and report.now < datetime.fromisoformat(last):
        report.notes.append(f"the clock reads {report.now.isoformat(timespec='minutes')}, earlier than the last "
                            f"run at {last[:16]}; sending only what is due by this clock")
    else:
        ledger.set_meta("last_run", report.now.isoformat(timespec="seconds"))


def hold_late(plan: Plan, report: RunReport, *, limit: int, confirmed: bool) -> None:
    """More than `limit` messages to skip for lateness looks like a wrong clock or a long outage, not a plan:
    hold them back (unrecorded) and tell the coordinator, unless a fresh start was `confirmed`."""
    late = [o for o in plan.skip if o.late]
    if confirmed or len(late) <= limit:
        return
    plan.skip = [o for o in plan.skip if not o.late]
    report.held_late = late
