"""Wires a run together: loads the program, takes the lock, plans, renders, sends, records.

The one module that reads the clock; everything below it takes `now` as an argument.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from mailer import plan as planner
from mailer.compose import Renderer, build_message, context, envelope, message_id
from mailer.errors import EXIT_OK, EXIT_SEND_FAILED, ConfigError, InputError, LockBusy, Problem
from mailer.ledger import FAILED, SENT, SKIPPED, Ledger, Row
from mailer.model import Program
from mailer.plan import Occurrence
from mailer.program import load_program
from mailer.report import CohortStatus
from mailer.report import status as report_status
from mailer.settings import Settings
from mailer.transport import Outbox, Transport

REHEARSAL_MARK = ".mentor-mailer-rehearsal"


@dataclass(slots=True)
class RunReport:
    """What a run did, counted per cohort and step, with every failure and bad row named."""

    now: datetime
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    dry_run: bool = False
    by_step: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (cohort, step, state)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    bad_rows: list[Problem] = field(default_factory=list)
    planned: list[Occurrence] = field(default_factory=list)  # dry run: what would go
    planned_skips: list[Occurrence] = field(default_factory=list)
    pairs_sent: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (cohort, step) -> pairs

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_SEND_FAILED
        return EXIT_SEND_FAILED if self.bad_rows else EXIT_OK

    def summary(self) -> str:
        if self.dry_run:
            line = f"dry run: would send {len(self.planned)}, would skip {len(self.planned_skips)}"
        else:
            line = f"sent {self.sent}, skipped {self.skipped}, failed {self.failed}"
        if self.bad_rows:
            line += f"; {len(self.bad_rows)} roster problem(s) left pairs out"
        return line


@dataclass(slots=True)
class Rehearsal:
    """The year as it will go: every message written to the outbox, and a timeline of days."""

    outbox: Path
    messages: int = 0
    skipped: int = 0
    timeline: list[tuple[date, str, str, int, int]] = field(default_factory=list)  # day, cohort, step, pairs, msgs
    bad_rows: list[Problem] = field(default_factory=list)


def load(settings: Settings, cohorts: list[str] | None = None) -> Program:
    return load_program(settings.program_dir, cohort_ids=cohorts or None)


@contextmanager
def run_lock(db_path: Path) -> Iterator[None]:
    """An flock beside the ledger: one sending run at a time, released even if the process dies."""
    lock_path = db_path.with_name(db_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(f"another mentor-mailer run holds {lock_path}; this run sent nothing") from None
        yield
    finally:
        os.close(fd)


def run(
    settings: Settings,
    *,
    now: datetime | None = None,
    transport: Transport | None = None,
    dry_run: bool = False,
    catch_up: bool = False,
    limit: int | None = None,
    cohorts: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunReport:
    """Send everything due at `now` (the clock when not given), exactly once, and report."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise InputError(["--now must carry a time zone offset, e.g. 2020-01-15T14:00:00Z"])
    program = load(settings, cohorts)
    window = None if catch_up else timedelta(days=settings.late_window_days)
    if dry_run:
        settled: set[str] = set()
        if settings.database_path.exists():
            with Ledger.open(settings.database_path) as ledger:
                settled = ledger.settled_keys()
        todo = planner.due(planner.year_schedule(program), now=now, settled=settled, late_window=window)
        return RunReport(now=now, dry_run=True, planned=todo.send[:limit] if limit else todo.send,
                         planned_skips=todo.skip, bad_rows=list(program.skipped_rows))
    with run_lock(settings.database_path), Ledger.open(settings.database_path) as ledger:
        if transport is None:
            transport = open_transport(settings)
        try:
            return execute(program, ledger, transport, now=now, late_window=window, limit=limit,
                           progress=progress)
        finally:
            transport.close()


def open_transport(settings: Settings) -> Transport:
    if settings.transport == "smtp":
        raise ConfigError("MENTOR_MAILER_TRANSPORT=smtp is not available yet in this version; use outbox")
    return Outbox(settings.outbox_path)


def execute(
    program: Program,
    ledger: Ledger,
    transport: Transport,
    *,
    now: datetime,
    late_window: timedelta | None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    renderer: Renderer | None = None,
) -> RunReport:
    """One run over an open ledger and transport: record skips, then send what is due in order."""
    report = RunReport(now=now, bad_rows=list(program.skipped_rows))
    todo = planner.due(planner.year_schedule(program), now=now, settled=ledger.settled_keys(),
                       late_window=late_window)
    renderer = renderer or Renderer(program.templates_dir)
    send = todo.send[:limit] if limit is not None else todo.send
    preflight(program, renderer, send)
    run_id = ledger.start_run(now)
    for occ in todo.skip:
        ledger.record(key=occ.key, cohort=occ.cohort.id, pair=occ.pair.id, step=occ.step.key,
                      role=occ.role, state=SKIPPED, due_at=occ.due_at, now=now, reason=occ.skip_reason)
        report.skipped += 1
        report.by_step[(occ.cohort.id, occ.step.key, SKIPPED)] += 1
    secret = ledger.secret
    for done, occ in enumerate(send, 1):
        rendered = renderer.render(context(program, occ), occ.step.template)
        domain = occ.cohort.coordinator.ascii_email.rpartition("@")[2]
        mid = message_id(secret, occ.key, domain)
        data = build_message(occ, rendered, msg_id=mid, now=now)
        sender, rcpts = envelope(occ)
        result = transport.send(occ.key, occ.due_at, sender, rcpts, data)
        ledger.record(key=occ.key, cohort=occ.cohort.id, pair=occ.pair.id, step=occ.step.key,
                      role=occ.role, state=result.state, due_at=occ.due_at, now=now, message_id=mid,
                      recipients=rcpts, subject=rendered.subject,
                      reason=None if result.state == SENT else result.detail,
                      location=result.detail if result.state == SENT else None)
        if result.state == SENT:
            report.sent += 1
            report.pairs_sent.setdefault((occ.cohort.id, occ.step.key), set()).add(occ.pair.id)
        else:
            report.failed += result.state == FAILED
            report.failures.append((occ.key, result.detail or result.state))
        report.by_step[(occ.cohort.id, occ.step.key, result.state)] += 1
        if progress:
            progress(done, len(send))
    ledger.finish_run(run_id, now, sent=report.sent, skipped=report.skipped, failed=report.failed)
    return report


def preflight(program: Program, renderer: Renderer, send: list[Occurrence]) -> None:
    """Render one message of each template/audience before sending any: a broken template
    stops the run before the first email, never halfway through a step."""
    seen: set[tuple[str, str, bool]] = set()
    problems: list[Problem | str] = []
    for occ in send:
        sig = (occ.cohort.id, occ.step.template, occ.role is None)
        if sig in seen:
            continue
        seen.add(sig)
        try:
            renderer.render(context(program, occ), occ.step.template)
        except InputError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
    if problems:
        raise InputError(problems)


def rehearse(
    settings: Settings,
    *,
    outbox: Path | None = None,
    cohorts: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Rehearsal:
    """Run the whole year against a throwaway ledger, writing every message to `outbox`.

    The clock steps from one due time to the next: the same as running every day, since nothing
    becomes due between those instants.
    """
    program = load(settings, cohorts)
    target = Path(outbox or settings.program_dir / "rehearsal")
    _prepare_rehearsal_dir(target)
    result = Rehearsal(outbox=target, bad_rows=list(program.skipped_rows))
    occurrences = list(planner.year_schedule(program))
    instants = sorted({o.due_at for o in occurrences})
    total = sum(1 for o in occurrences if o.skip_reason is None)
    renderer = Renderer(program.templates_dir)
    transport = Outbox(target)
    counts: Counter[tuple[date, str, str]] = Counter()
    pairs: dict[tuple[date, str, str], set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="mentor-mailer-rehearsal-") as tmp, \
            Ledger.open(Path(tmp) / "ledger.sqlite3") as ledger:
        for now in instants:
            report = execute(program, ledger, transport, now=now,
                             late_window=timedelta(days=settings.late_window_days), renderer=renderer)
            result.messages += report.sent
            result.skipped += report.skipped
            for (cohort_id, step_key), sent_pairs in report.pairs_sent.items():
                day = now.astimezone(program.cohort(cohort_id).timezone).date()  # type: ignore[union-attr]
                slot = (day, cohort_id, step_key)
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


def upcoming(settings: Settings, *, start: datetime | None = None, end: datetime | None = None,
             cohorts: list[str] | None = None) -> list[Occurrence]:
    """Messages not yet sent whose time falls in [start, end): by default the next 30 days."""
    program = load(settings, cohorts)
    start = start or datetime.now(UTC)
    end = end or start + timedelta(days=30)
    settled: set[str] = set()
    if settings.database_path.exists():
        with Ledger.open(settings.database_path) as ledger:
            settled = ledger.settled_keys()
    return planner.upcoming(planner.year_schedule(program), start=start, end=end, settled=settled)


def status(settings: Settings, *, cohorts: list[str] | None = None,
           now: datetime | None = None) -> list[CohortStatus]:
    """The ledger's view per cohort and step, with each cohort's next step."""
    now = now or datetime.now(UTC)
    program = load(settings, cohorts)
    rows: list[Row] = []
    settled: set[str] = set()
    if settings.database_path.exists():
        with Ledger.open(settings.database_path) as ledger:
            rows = ledger.rows()
            settled = ledger.settled_keys()
    nxt = planner.upcoming(planner.year_schedule(program), start=now, end=now + timedelta(days=3660),
                           settled=settled)
    return report_status(program, rows, upcoming=nxt)


def preview(settings: Settings, *, pair: str, step: str, cohort: str | None = None,
            role: str | None = None, fmt: str = "text", now: datetime | None = None) -> str:
    """One message rendered as it would go out: text, HTML, or the whole .eml."""
    now = now or datetime.now(UTC)
    program = load(settings, [cohort] if cohort else None)
    matches = [o for o in planner.year_schedule(program)
               if o.pair.id == pair and o.step.key == step and (role is None or o.role in (role, None))]
    if not matches:
        known = sorted({s.key for c in program.cohorts for s in c.steps})
        raise InputError([f"no message for pair '{pair}' and step '{step}'; "
                          f"steps are: {', '.join(known)}"])
    if len({o.cohort.id for o in matches}) > 1:
        raise InputError([f"pair '{pair}' is in several cohorts; add --cohort"])
    occ = matches[0]
    rendered = Renderer(program.templates_dir).render(context(program, occ), occ.step.template)
    if fmt == "html":
        return rendered.html
    if fmt == "eml":
        domain = occ.cohort.coordinator.ascii_email.rpartition("@")[2]
        data = build_message(occ, rendered, msg_id=message_id(b"preview", occ.key, domain), now=now)
        return data.decode("ascii").replace("\r\n", "\n")
    return f"Subject: {rendered.subject}\n\n{rendered.text}"
