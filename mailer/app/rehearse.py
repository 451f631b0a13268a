"""`rehearse`: the whole year run against a throwaway ledger, every message written to a Maildir folder.

The clock steps from one due time to the next: the same as running every day, since nothing becomes due
between those instants. Each step is the same plan-and-execute as a real run; only the ledger and the
transport differ.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from mailer.app.outcome import RunReport
from mailer.app.send import execute, prepare
from mailer.core.records import SENT
from mailer.core.year import year_schedule
from mailer.errors import InputError, Problem
from mailer.load.program import load_program
from mailer.load.templates import renderer_for
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings
from mailer.shell.transport import Outbox

REHEARSAL_MARK = ".mentor-mailer-rehearsal"


@dataclass(slots=True)
class Rehearsal:
    """The year as it will go: every message written to the outbox, and a timeline of days."""

    outbox: Path
    messages: int = 0
    skipped: int = 0
    timeline: list[tuple[date, str, str, int, int]] = field(default_factory=list)  # day, cohort, step, pairs, msgs
    bad_rows: list[Problem] = field(default_factory=list)


def rehearse(settings: Settings, *, outbox: Path | None = None, cohorts: list[str] | None = None,
             progress: Callable[[int, int], None] | None = None) -> Rehearsal:
    """Run the whole year against a throwaway ledger, writing every message to `outbox`."""
    program = load_program(settings.program_dir, cohort_ids=cohorts or None)
    target = Path(outbox or settings.program_dir / "rehearsal")
    _prepare_rehearsal_dir(target)
    result = Rehearsal(outbox=target, bad_rows=list(program.skipped_rows))
    year = list(year_schedule(program))
    # withdrawals are instants too: an invitation the pair holds is cancelled that day
    withdrawals = {c.send_time(p.status_from) for c in program.cohorts for p in c.pairs
                   if p.status == "withdrawn" and p.status_from is not None}
    instants = sorted({o.due_at for o in year} | withdrawals)
    total = sum(1 for o in year if o.skip_reason is None)
    renderer = renderer_for(program.templates_dir)
    transport = Outbox(target)
    window = timedelta(days=settings.late_window_days)
    counts: Counter[tuple[date, str, str]] = Counter()
    pairs: dict[tuple[date, str, str], set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="mentor-mailer-rehearsal-") as tmp, \
            Ledger.open(Path(tmp) / "ledger.sqlite3") as ledger:
        for now in instants:
            report = RunReport(now=now)
            plan = prepare(program, ledger, now=now, window=window, report=report)
            execute(plan, ledger, transport, report, renderer=renderer)
            result.messages += report.sent
            result.skipped += report.skipped
            for (cohort_id, step_key), sent_pairs in report.pairs_sent.items():
                zone = next(c.timezone for c in program.cohorts if c.id == cohort_id)
                slot = (now.astimezone(zone).date(), cohort_id, step_key)
                counts[slot] += report.by_step[(cohort_id, step_key, SENT)]
                pairs.setdefault(slot, set()).update(sent_pairs)
            if progress:
                progress(result.messages, total)
    for (day, cohort_id, step_key), n in sorted(counts.items()):
        result.timeline.append((day, cohort_id, step_key, len(pairs.get((day, cohort_id, step_key), ())), n))
    return result


def _prepare_rehearsal_dir(target: Path) -> None:
    """A rehearsal owns its folder: empty it if a previous rehearsal made it, refuse otherwise."""
    if target.exists() and any(target.iterdir()):
        if not (target / REHEARSAL_MARK).exists():
            raise InputError([f"{target}: folder is not empty and was not made by a rehearsal; "
                              "choose another --outbox"])
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    (target / REHEARSAL_MARK).write_text("written by mentor-mailer rehearse; emptied on each rehearsal\n")
