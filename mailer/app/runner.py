"""Wires a run together: loads the program, takes the lock, plans, renders, sends, records.

The one module that reads the clock; everything below it takes `now` as an argument.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal

from mailer.core import plan as planner
from mailer.core.compose import build_message, context, envelope, message_id, template_name
from mailer.core.model import Program
from mailer.core.plan import Occurrence
from mailer.core.records import DEFERRED, FAILED, SENT, SKIPPED, UNCERTAIN, Row, SentInvite
from mailer.core.render import Renderer
from mailer.core.status import CohortStatus
from mailer.core.status import status as report_status
from mailer.errors import EXIT_OK, EXIT_SEND_FAILED, InputError, LockBusy, Problem, TransportError
from mailer.load.program import load_program
from mailer.load.templates import renderer_for
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings
from mailer.shell.transport import Delivery, Outbox, Outgoing, Transport

REHEARSAL_MARK = ".mentor-mailer-rehearsal"
_HOST = socket.gethostname()
_ACTIVE: set[str] = set()  # owners of the runs at work in this process (the daemon may hold several in turn)


@dataclass(slots=True)
class RunReport:
    """What a run did, counted per cohort and step, with every failure and bad row named."""

    now: datetime
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    deferred: int = 0
    uncertain: int = 0
    refused: int = 0  # recipients refused for good on messages that reached the others
    resent: int = 0  # uncertain messages sent again (same Message-ID)
    contended: int = 0
    recovered: list[str] = field(default_factory=list)  # keys a crashed run left `sending`
    stopped: bool = False  # asked to stop (a signal) before the end
    aborted: TransportError | None = None
    dry_run: bool = False
    by_step: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (cohort, step, state)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (key, state, the server's reply)
    bad_rows: list[Problem] = field(default_factory=list)
    planned: list[Occurrence] = field(default_factory=list)  # dry run: what would go
    planned_skips: list[Occurrence] = field(default_factory=list)
    pairs_sent: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (cohort, step) -> pairs
    invites: Counter[str] = field(default_factory=Counter)  # REQUEST, UPDATE, CANCEL sent
    digests: int = 0
    digest_errors: list[str] = field(default_factory=list)
    idle: bool = False  # nothing was due: the run stopped at the fast path
    next_due: datetime | None = None  # the next time a message of the year falls due
    pending: bool = False  # something due now was left (a limit, a signal, a retry): no idle fast path

    def count(self, occ: Occurrence, state: str) -> None:
        self.by_step[(occ.cohort.id, step_label(occ), state)] += 1
        if state == SENT:
            self.sent += 1
        elif state == SKIPPED:
            self.skipped += 1
        elif state == FAILED:
            self.failed += 1
        elif state == DEFERRED:
            self.deferred += 1
        elif state == UNCERTAIN:
            self.uncertain += 1

    @property
    def exit_code(self) -> int:
        if self.aborted is not None:
            return self.aborted.exit_code
        if self.failed or self.deferred or self.uncertain or self.refused or self.bad_rows:
            return EXIT_SEND_FAILED
        return EXIT_OK

    def summary(self) -> str:
        if self.dry_run:
            line = f"dry run: would send {len(self.planned)}, would skip {len(self.planned_skips)}"
        else:
            line = f"sent {self.sent}, skipped {self.skipped}, failed {self.failed}"
            extra = [f"{n} {what}" for n, what in ((self.deferred, "deferred"), (self.uncertain, "uncertain"),
                                                  (self.refused, "recipient(s) refused"),
                                                  (self.resent, "resent after an interruption")) if n]
            if extra:
                line += ", " + ", ".join(extra)
        if self.bad_rows:
            line += f"; {len(self.bad_rows)} roster problem(s) left pairs out"
        if self.stopped:
            line += "; stopped early by a signal"
        return line


@dataclass(slots=True)
class Rehearsal:
    """The year as it will go: every message written to the outbox, and a timeline of days."""

    outbox: Path
    messages: int = 0
    skipped: int = 0
    timeline: list[tuple[date, str, str, int, int]] = field(default_factory=list)  # day, cohort, step, pairs, msgs
    bad_rows: list[Problem] = field(default_factory=list)


def _meetups() -> Any:
    """The invitation code, imported when a run has an invitation to send: icalendar is slow to load,
    and a cron run with nothing due should not pay for it."""
    from mailer.core import meetups

    return meetups


def _load_seen(settings: Settings, cohorts: list[str] | None = None) -> Program:
    """The program as the last run saw it: undated status changes dated from the ledger (read only)."""
    program = load(settings, cohorts)
    if settings.database_path.exists():
        with Ledger.open(settings.database_path) as ledger:
            program = planner.with_history(program, ledger.status_history())
    return program


def step_label(occ: Occurrence) -> str:
    """The step as reports name it: a meetup's update or cancellation is told apart from the invitation."""
    if occ.change is None:
        return occ.step.key
    return f"{occ.step.key} ({'cancel' if occ.change.method == 'CANCEL' else 'update'} {occ.change.sequence})"


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
    stop: Callable[[], bool] | None = None,
) -> RunReport:
    """Send everything due at `now` (the clock when not given), exactly once, and report."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise InputError(["--now must carry a time zone offset, e.g. 2020-01-15T14:00:00Z"])
    plain = not (dry_run or catch_up or cohorts or limit is not None)
    if plain and settings.database_path.exists():
        idle = _idle_until(settings, now)
        if idle is not None:
            return idle
    program = load(settings, cohorts)
    window = None if catch_up else timedelta(days=settings.late_window_days)
    if dry_run:
        settled: set[str] = set()
        retrying: set[str] = set()
        changes: list[Occurrence] = []
        if settings.database_path.exists():
            with Ledger.open(settings.database_path) as ledger:
                settled, retrying = ledger.settled_keys(now), ledger.retrying_keys()
                program = planner.with_history(program, ledger.status_history())
                changes = _meetups().invite_changes(program.cohorts, ledger.sent_invites(), now)
        todo = planner.due([*planner.year_schedule(program), *changes], now=now, settled=settled,
                           late_window=window, retrying=retrying)
        return RunReport(now=now, dry_run=True, planned=todo.send[:limit] if limit else todo.send,
                         planned_skips=todo.skip, bad_rows=list(program.skipped_rows))
    with run_lock(settings.database_path), Ledger.open(settings.database_path) as ledger:
        if transport is None:
            transport = open_transport(settings)
        try:
            report = execute(program, ledger, transport, now=now, late_window=window, limit=limit,
                             progress=progress, retry_after=timedelta(minutes=settings.smtp_retry_minutes),
                             stop=stop, exclusive=True)
            if settings.digest:
                send_digests(program, ledger, transport, report)
            if plain:
                _remember_wake(settings, program, ledger, report)
            return report
        finally:
            transport.close()


def _inputs_fingerprint(settings: Settings) -> str:
    """What a plan depends on besides the clock and the ledger: the program's files (by name, size
    and mtime), the settings that shape the plan, and this version of the code."""
    import hashlib

    from mailer import __version__

    h = hashlib.sha256(f"{__version__}|{settings.late_window_days}".encode())
    for base in (settings.program_dir / "cohorts", settings.program_dir / "templates"):
        for folder, dirs, files in os.walk(base, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                st = os.stat(path)
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _idle_until(settings: Settings, now: datetime) -> RunReport | None:
    """The fast path of a cron run with nothing to do: unchanged files, and `now` before the next
    time anything is due. It reads a few stat()s and one ledger row; it never loads the year."""
    with run_lock(settings.database_path), Ledger.open(settings.database_path) as ledger:
        wake = ledger.get_meta("wake")
        if not wake or wake.get("fingerprint") != _inputs_fingerprint(settings) or ledger.has_unfinished():
            return None
        if wake.get("next") is not None and now >= datetime.fromisoformat(wake["next"]):
            return None
    return RunReport(now=now, idle=True)


def _remember_wake(settings: Settings, program: Program, ledger: Ledger, report: RunReport) -> None:
    """After a complete run: when the next run will have work, unless the files change first."""
    if report.bad_rows or report.stopped or report.aborted or report.contended or report.pending:
        ledger.set_meta("wake", None)  # the next run does the full work
        return
    candidates = [t for t in (report.next_due, ledger.next_retry()) if t is not None]
    # a withdrawal date cancels the invitation the pair holds: the run must wake for it
    candidates += [c.send_time(p.status_from) for c in program.cohorts for p in c.pairs
                   if p.status == "withdrawn" and p.status_from and c.send_time(p.status_from) > report.now]
    wake = min(candidates) if candidates else None
    ledger.set_meta("wake", {"fingerprint": _inputs_fingerprint(settings),
                             "next": wake.isoformat() if wake else None})


def send_digests(program: Program, ledger: Ledger, transport: Transport, report: RunReport) -> None:
    """One digest per coordinator whose cohorts the run touched; a failure to send it is reported,
    never fatal (the messages themselves are already recorded)."""
    from mailer.core import digest, mime
    from mailer.core.mime import header_safe
    from mailer.core.records import UNCERTAIN as UNCERTAIN_STATE

    facts = digest.RunFacts(now=report.now, summary=report.summary(), by_step=dict(report.by_step),
                            failures=report.failures, bad_rows=report.bad_rows)
    if not digest.needed(facts):
        return
    touched = {c for c, _, _ in report.by_step} | {k.split("/")[0] for k, _, _ in report.failures}
    by_coordinator: dict[str, list[str]] = {}
    for cohort in program.cohorts:
        if cohort.id in touched:
            by_coordinator.setdefault(cohort.coordinator.ascii_email, []).append(cohort.id)
    settled = ledger.settled_keys(report.now)
    upcoming_30 = planner.upcoming(occurrences(program, ledger, report.now), start=report.now,
                                   end=report.now + timedelta(days=30), settled=settled)
    uncertain = ledger.rows_in_state(UNCERTAIN_STATE)
    for address, cohort_ids in sorted(by_coordinator.items()):
        name = next(c.coordinator.name for c in program.cohorts if c.id == cohort_ids[0])
        rendered = digest.build(program, facts, cohorts=cohort_ids, uncertain=uncertain, upcoming=upcoming_30)
        key = f"digest/{report.now.isoformat()}/{address}"
        mid = message_id(ledger.secret, key, address.rpartition("@")[2])
        headers = [("From", mime.address(header_safe(name), address)), ("To", mime.address(header_safe(name), address)),
                   ("Subject", mime.unstructured("Subject", header_safe(rendered.subject))),
                   ("Date", format_datetime(report.now)), ("Message-ID", mid),
                   ("Auto-Submitted", "auto-generated"), ("X-Mentor-Mailer-Key", key)]
        body = mime.multipart("alternative", "=_mm_digest", [mime.text("plain", rendered.text),
                                                              mime.text("html", rendered.html)])
        try:
            result = transport.send(Outgoing(key.replace(":", "-"), report.now, address, [address],
                                             mime.message(headers, body)))
        except TransportError as exc:
            report.digest_errors.append(f"digest to {address}: {exc}")
            continue
        if result.state != SENT:
            report.digest_errors.append(f"digest to {address}: {result.state}: {result.detail}")
        else:
            report.digests += 1


def open_transport(settings: Settings) -> Transport:
    if settings.transport == "smtp":
        from mailer.shell.smtp import SmtpTransport  # imported only when used: smtplib and ssl are slow to load

        return SmtpTransport.from_settings(settings)
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
    retry_after: timedelta = timedelta(minutes=30),
    stop: Callable[[], bool] | None = None,
    exclusive: bool = False,
) -> RunReport:
    """One run over an open ledger and transport: recover, record skips, then send what is due.

    Each message is claimed (`sending`, committed) before its SMTP transaction starts and
    finished after the server's answer, so a crash anywhere leaves the ledger telling the truth.
    """
    report = RunReport(now=now, bad_rows=list(program.skipped_rows))
    owner = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    _ACTIVE.add(owner)
    try:
        return _execute(program, ledger, transport, report, owner=owner, now=now, late_window=late_window,
                        limit=limit, progress=progress, renderer=renderer, retry_after=retry_after, stop=stop,
                        exclusive=exclusive)
    finally:
        _ACTIVE.discard(owner)


def _claim_alive(owner: str | None, *, exclusive: bool) -> bool:
    """Is the run that claimed a message still at work? Holding the lock, only this process's runs can be."""
    if owner is None:
        return False
    host, _, rest = owner.partition(":")
    pid, _, _token = rest.partition(":")
    if owner in _ACTIVE:
        return True
    if exclusive or not pid.isdigit():
        return False
    if host != _HOST:
        return True  # another machine's run: without the lock we cannot tell, so leave it be
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return int(pid) != os.getpid()  # our own pid, but not one of our live runs: a run that died here


def _execute(program: Program, ledger: Ledger, transport: Transport, report: RunReport, *, owner: str,
             now: datetime, late_window: timedelta | None, limit: int | None,
             progress: Callable[[int, int], None] | None, renderer: Renderer | None, retry_after: timedelta,
             stop: Callable[[], bool] | None, exclusive: bool) -> RunReport:
    report.recovered = ledger.recover(now, alive=lambda o: _claim_alive(o, exclusive=exclusive))
    program = planner.with_history(program, ledger.observe_statuses(
        ((c.id, p.id, p.status) for c in program.cohorts for p in c.pairs), now))
    todo = planner.due(occurrences(program, ledger, now), now=now, settled=ledger.settled_keys(now),
                       late_window=late_window, retrying=ledger.retrying_keys())
    renderer = renderer or renderer_for(program.templates_dir)
    send = todo.send[:limit] if limit is not None else todo.send
    report.next_due = todo.next_due
    report.pending = len(send) < len(todo.send)
    preflight(program, renderer, send)
    run_id = ledger.start_run(now)
    for occ in todo.skip:
        ledger.skip(key=occ.key, cohort=occ.cohort.id, pair=occ.pair.id, step=occ.step.key, role=occ.role,
                    due_at=occ.due_at, now=now, reason=occ.skip_reason or "skipped")
        report.count(occ, SKIPPED)
    secret = ledger.secret
    try:
        for done, occ in enumerate(send, 1):
            if stop is not None and stop():
                report.stopped = True
                break
            _send_one(program, ledger, transport, renderer, occ, secret=secret, now=now,
                      retry_after=retry_after, report=report, owner=owner)
            if progress:
                progress(done, len(send))
    except TransportError as exc:
        report.aborted = exc
    finally:
        ledger.finish_run(run_id, now, sent=report.sent, skipped=report.skipped, failed=report.failed,
                          deferred=report.deferred, uncertain=report.uncertain)
    return report


def _send_one(program: Program, ledger: Ledger, transport: Transport, renderer: Renderer, occ: Occurrence, *,
              secret: bytes, now: datetime, retry_after: timedelta, report: RunReport, owner: str) -> None:
    rendered = renderer.render(context(program, occ), template_name(occ))
    domain = occ.cohort.coordinator.ascii_email.rpartition("@")[2]
    mid = message_id(secret, occ.key, domain)
    sender, rcpts = envelope(occ)
    invite = _meetups().build_invite(occ, now) if occ.has_invite else None
    claim = ledger.claim(key=occ.key, cohort=occ.cohort.id, pair=occ.pair.id, step=occ.step.key, role=occ.role,
                         due_at=occ.due_at, now=now, message_id=mid, recipients=rcpts, subject=rendered.subject,
                         owner=owner)
    if claim is None:
        report.contended += 1  # another runner took it between our plan and our claim
        return
    todo = [r for r in rcpts if r not in claim.delivered and r not in claim.refused]
    data = build_message(occ, rendered, msg_id=mid, now=now, ics=_meetups().build_ics(invite) if invite else None,
                         method=invite.method if invite else "REQUEST")
    try:
        result = transport.send(Outgoing(occ.key, occ.due_at, sender, todo, data),
                                lambda: ledger.mark_body(occ.key)) if todo else Delivery(SENT, attempts=0)
    except TransportError as exc:
        # nothing of this message reached the server: it stays due, not uncertain
        ledger.finish(claim, state=DEFERRED, now=now, attempts=1, reason=str(exc), next_attempt_at=now)
        report.count(occ, DEFERRED)
        raise
    next_at = None
    if result.state == DEFERRED:
        row_attempts = max(1, result.attempts)
        next_at = now + retry_after * min(2 ** (row_attempts - 1), 16)
    ledger.finish(claim, state=result.state, now=now, attempts=result.attempts, delivered=result.delivered,
                  refused=result.refused, reason=result.detail if result.state != SENT else None,
                  location=result.detail if result.state == SENT else None, next_attempt_at=next_at)
    if invite is not None and result.state in (SENT, UNCERTAIN):
        conf = occ.step.conference
        assert conf is not None and conf.meetup is not None
        ledger.record_invite(uid=invite.uid, cohort=occ.cohort.id, pair=occ.pair.id, conference=conf.key,
                             step=occ.step.key, sequence=invite.sequence, method=invite.method,
                             details=_meetups().details(conf.meetup), message_key=occ.key, now=now)
        report.invites[invite.method if invite.sequence == 0 or invite.method == "CANCEL" else "UPDATE"] += 1
    if claim.is_resend:
        report.resent += 1
    report.count(occ, result.state)
    if result.state == SENT:
        report.pairs_sent.setdefault((occ.cohort.id, step_label(occ)), set()).add(occ.pair.id)
    elif result.detail:
        report.failures.append((occ.key, result.state, result.detail))
    if result.state == SENT:  # a message that failed whole is one failure, not one per recipient
        for rcpt, reply in result.refused.items():
            report.failures.append((occ.key, "refused", f"{rcpt}: {reply}"))
            report.refused += 1


def occurrences(program: Program, ledger: Ledger, now: datetime) -> Iterator[Occurrence]:
    """The year's messages plus the invitation updates and cancellations owed at `now`, streamed:
    a run keeps only what is due, never the whole year."""
    sent = ledger.sent_invites()
    if sent:
        yield from _meetups().invite_changes(program.cohorts, sent, now)
    yield from planner.year_schedule(program)


def preflight(program: Program, renderer: Renderer, send: list[Occurrence]) -> None:
    """Render one message of each template/audience before sending any: a broken template
    stops the run before the first email, never halfway through a step."""
    seen: set[tuple[str, str, bool, bool]] = set()
    problems: list[Problem | str] = []
    for occ in send:
        sig = (occ.cohort.id, template_name(occ), occ.role is None, occ.change is None)
        if sig in seen:
            continue
        seen.add(sig)
        try:
            renderer.render(context(program, occ), template_name(occ))
            if occ.has_invite:
                _meetups().build_ics(_meetups().build_invite(occ, occ.due_at))
        except InputError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
        except ValueError as exc:  # the invitation cannot be written (say, a meetup in a repeated hour)
            problems.append(f"{occ.cohort.path.name}/cohort.toml: meetup for {occ.step.key}: {exc}")
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
    year = list(planner.year_schedule(program))
    # withdrawals are instants too: an invitation the pair holds is cancelled that day
    withdrawals = {c.send_time(p.status_from) for c in program.cohorts for p in c.pairs
                   if p.status == "withdrawn" and p.status_from is not None}
    instants = sorted({o.due_at for o in year} | withdrawals)
    total = sum(1 for o in year if o.skip_reason is None)
    renderer = renderer_for(program.templates_dir)
    transport = Outbox(target)
    counts: Counter[tuple[date, str, str]] = Counter()
    pairs: dict[tuple[date, str, str], set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="mentor-mailer-rehearsal-") as tmp, \
            Ledger.open(Path(tmp) / "ledger.sqlite3") as ledger:
        for now in instants:
            report = execute(program, ledger, transport, now=now, exclusive=True,
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
    program = _load_seen(settings, cohorts)
    start = start or datetime.now(UTC)
    end = end or start + timedelta(days=30)
    settled: set[str] = set()
    changes: list[Occurrence] = []
    if settings.database_path.exists():
        with Ledger.open(settings.database_path) as ledger:
            settled = ledger.settled_keys(start)
            changes = _meetups().invite_changes(program.cohorts, ledger.sent_invites(), start)
    return planner.upcoming([*changes, *planner.year_schedule(program)], start=start, end=end, settled=settled)


def status(settings: Settings, *, cohorts: list[str] | None = None,
           now: datetime | None = None) -> list[CohortStatus]:
    """The ledger's view per cohort and step, with each cohort's next step."""
    now = now or datetime.now(UTC)
    program = _load_seen(settings, cohorts)
    rows: list[Row] = []
    settled: set[str] = set()
    if settings.database_path.exists():
        with Ledger.open(settings.database_path) as ledger:
            rows = ledger.rows()
            settled = ledger.settled_keys(now)
    nxt = planner.upcoming(planner.year_schedule(program), start=now, end=now + timedelta(days=3660),
                           settled=settled)
    return report_status(program, rows, upcoming=nxt, now=now)


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
    rendered = renderer_for(program.templates_dir).render(context(program, occ), template_name(occ))
    if fmt == "html":
        return rendered.html
    if fmt == "eml":
        domain = occ.cohort.coordinator.ascii_email.rpartition("@")[2]
        invite = _meetups().build_invite(occ, now) if occ.has_invite else None
        data = build_message(occ, rendered, msg_id=message_id(b"preview", occ.key, domain), now=now,
                             ics=_meetups().build_ics(invite) if invite else None)
        return data.decode("ascii").replace("\r\n", "\n")
    return f"Subject: {rendered.subject}\n\n{rendered.text}"


def export_invites(settings: Settings, *, cohort: str, out: Path, now: datetime | None = None) -> list[Path]:
    """Write each pair's current invitation as an .ics file: as last sent, or as it will next go out."""
    now = now or datetime.now(UTC)
    program = _load_seen(settings, [cohort])
    sent: dict[str, SentInvite] = {}
    changes: dict[tuple[str, str], Occurrence] = {}
    if settings.database_path.exists():
        with Ledger.open(settings.database_path) as ledger:
            sent = {f"{i.pair}/{i.step}": i for i in ledger.sent_invites()}
            changes = {(o.pair.id, o.step.key): o
                       for o in _meetups().invite_changes(program.cohorts, ledger.sent_invites(), now)}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for occ in planner.year_schedule(program):
        if not occ.has_invite:
            continue
        current = changes.get((occ.pair.id, occ.step.key))
        held = sent.get(f"{occ.pair.id}/{occ.step.key}")
        if current is None and held is not None:
            method: Literal["REQUEST", "CANCEL"] = "CANCEL" if held.method == "CANCEL" else "REQUEST"
            current = replace(occ, change=planner.InviteChange(method, held.sequence, "")) if held.sequence else occ
        if current is None:
            if occ.skip_reason is not None:
                continue  # this pair will never be invited to this meetup
            current = occ
        path = out / f"{occ.pair.id}-{occ.step.conference.key}.ics"  # type: ignore[union-attr]
        path.write_bytes(_meetups().build_ics(_meetups().build_invite(current, now)))
        written.append(path)
    return written


def init(target: Path, *, today: date | None = None) -> list[Path]:
    """A new program folder whose example year starts next month."""
    from mailer.app.scaffold import init_program

    return init_program(target, today=today or datetime.now(UTC).date())


def serve(settings: Settings) -> int:
    """The scheduler daemon: validates the program, then runs on MENTOR_MAILER_SCHEDULE until a signal."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from mailer.daemon import Daemon
    from mailer.errors import ConfigError

    program = load(settings)
    if settings.timezone:
        try:
            zone = ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"MENTOR_MAILER_TIMEZONE '{settings.timezone}' is not an IANA time zone") from None
    else:
        zone = program.cohorts[0].timezone if program.cohorts else ZoneInfo("UTC")
    return Daemon(settings).serve(settings.schedule, zone)


def html_report(settings: Settings, out: Path, *, now: datetime | None = None) -> Path:
    """The coordinator's report page: timeline per cohort, failures, the next run's plan."""
    from mailer.core.htmlreport import render_report

    now = now or datetime.now(UTC)
    program = _load_seen(settings)
    rows: list[Row] = []
    nxt: list[Occurrence] = []
    if settings.database_path.exists():
        with Ledger.open(settings.database_path) as ledger:
            rows = ledger.rows()
            nxt = planner.upcoming(occurrences(program, ledger, now), start=now, end=now + timedelta(days=31),
                                   settled=ledger.settled_keys(now))
    else:
        nxt = planner.upcoming(planner.year_schedule(program), start=now, end=now + timedelta(days=31))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(program, rows, nxt, now=now), encoding="utf-8")
    return out
