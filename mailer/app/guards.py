"""What a run checks before it sends: a ledger that lost the year, a clock that is wrong.

A lost, emptied or misplaced ledger would resend the last weeks under new Message-IDs; a clock months ahead
would record the year as skipped. Each check stops or holds back the run with a sentence instead.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from mailer.app.outcome import RunReport
from mailer.core.model import Program
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
    late = [o for o in plan.skip if o.late and not (o.skip_reason or "").startswith("held back")]
    if confirmed or len(late) <= limit:
        return
    plan.skip = [o for o in plan.skip if o not in late]
    report.held_late = late


def track_broken(ledger: Ledger, program: Program, report: RunReport) -> dict[str, str]:
    """Keep the ledger's account of cohorts held back by bad files; return when each was first held back
    (including those that load again now: their late messages say why they were late)."""
    before: dict[str, str] = ledger.get_meta("broken") or {}
    recovered: dict[str, str] = ledger.get_meta("recovered") or {}
    now = report.now.isoformat(timespec="seconds")
    report.broken = list(program.broken)
    current = {b.id: before.get(b.id, now) for b in program.broken}
    if current != before:
        ledger.set_meta("broken", current)
        # kept: a message of the cohort that turns up late later still says why it was late
        ledger.set_meta("recovered", recovered | {c: since for c, since in before.items() if c not in current})
        recovered = recovered | before
    contacts: dict[str, list[str]] = ledger.get_meta("coordinators") or {}
    known = {c.id: [c.coordinator.name, c.coordinator.ascii_email] for c in program.cohorts}
    if {**contacts, **known} != contacts:
        ledger.set_meta("coordinators", {**contacts, **known})
    return {**recovered, **current}


def broken_notices(ledger: Ledger, program: Program, report: RunReport) -> list[tuple[str, str]]:
    """While a cohort is held back, a line for its coordinator: what, since when, and the problems."""
    since: dict[str, str] = ledger.get_meta("broken") or {}
    today = report.now.date().isoformat()
    notices = []
    for b in program.broken:
        problems = "; ".join(str(p) for p in b.problems[:10]) + ("; ..." if len(b.problems) > 10 else "")
        notices.append((b.id, f"{b.summary} since {since.get(b.id, today)[:10]}: {problems}. Put them right "
                              "(`mentor-mailer check` lists them all); what falls due meanwhile waits, and is "
                              "skipped only once it is past the late window."))
    return notices


def once_a_day(ledger: Ledger, report: RunReport, notices: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The notices not yet told today: an hourly cron run must not mail the same sentence every hour."""
    told: dict[str, str] = ledger.get_meta("told") or {}
    today = report.now.date().isoformat()
    fresh = [(c, text) for c, text in notices if told.get(_digest_of(text)) != today]
    if fresh:
        told = {k: day for k, day in told.items() if day == today} | {_digest_of(t): today for _, t in fresh}
        ledger.set_meta("told", told)
    return fresh


def _digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def coordinator_of(ledger: Ledger, program: Program, cohort: str) -> tuple[str, str] | None:
    """Who hears about a cohort: its own coordinator, as the last good load knew them, or else the
    coordinator of another cohort of the program."""
    for c in program.cohorts:
        if c.id == cohort:
            return c.coordinator.name, c.coordinator.ascii_email
    contacts: dict[str, list[str]] = ledger.get_meta("coordinators") or {}
    found = contacts.get(cohort) or next(iter(contacts.values()), None)
    if found is None and program.cohorts:
        return program.cohorts[0].coordinator.name, program.cohorts[0].coordinator.ascii_email
    return (found[0], found[1]) if found else None
