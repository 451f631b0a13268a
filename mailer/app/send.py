"""A run: take a snapshot of the ledger, build the plan, execute it (render, claim, send, record), report.

Each message is claimed (`sending`, committed) before its SMTP transaction starts and finished after the
server's answer, so a crash anywhere leaves the ledger telling the truth.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from mailer.app import digests, fastpath, guards, inbox
from mailer.app.outcome import RunReport
from mailer.core.compose import build_message, context, envelope, links, message_id, template_name
from mailer.core.meetups import details
from mailer.core.model import Program
from mailer.core.occurrence import Occurrence
from mailer.core.plan import Plan, build_plan
from mailer.core.records import DEFERRED, OUTBOX, SENT, SKIPPED, SMTP, TRIAL, UNCERTAIN
from mailer.core.renames import resolve
from mailer.core.render import Renderer
from mailer.errors import InputError, Problem, TransportError
from mailer.load.program import load_program
from mailer.load.templates import renderer_for
from mailer.shell import inbox_store
from mailer.shell.ledger import Ledger
from mailer.shell.lock import run_lock
from mailer.shell.settings import Settings
from mailer.shell.transport import Delivery, Outbox, Outgoing, Transport

if TYPE_CHECKING:
    from mailer.core.ical import Invite

_HOST = socket.gethostname()
# the write-ahead log is folded into the ledger this often: a lost -wal after a crash then costs at most
# this many uncertain resends, each with its first Message-ID
CHECKPOINT_EVERY = 200


def run(settings: Settings, *, now: datetime, transport: Transport | None = None, dry_run: bool = False,
        catch_up: bool = False, limit: int | None = None, cohorts: list[str] | None = None,
        progress: Callable[[int, int], None] | None = None, stop: Callable[[], bool] | None = None,
        new_ledger: bool = False, skip_late: bool = False) -> RunReport:
    """Send everything due at `now`, exactly once, and report.

    `new_ledger` confirms a fresh start on a ledger that knows nothing of a year under way; `skip_late`
    confirms that more than MENTOR_MAILER_LATE_SKIP_LIMIT messages are to be recorded as skipped for lateness.
    """
    if now.tzinfo is None:
        raise InputError(["--now must carry a time zone offset, e.g. 2020-01-15T14:00:00Z"])
    plain = not (dry_run or catch_up or cohorts or limit is not None or new_ledger or skip_late)
    window = None if catch_up else timedelta(days=settings.late_window_days)
    if dry_run:
        return dry(settings, now=now, window=window, limit=limit, cohorts=cohorts, skip_late=skip_late or new_ledger)
    with run_lock(settings.database_path), Ledger.open(settings.database_path) as ledger:
        inbox_report, inbox_trouble = inbox.before_run(settings, ledger, now=now) if settings.inbox else (None, None)
        # the files are fingerprinted before they are read: an edit saved during the run is seen by the next
        fingerprint = fastpath.fingerprint(settings)
        news = inbox_report is not None and inbox_report.outcomes[inbox_store.ACTED] > 0
        if plain and not news and fastpath.idle(ledger, fingerprint, now):
            return RunReport(now=now, idle=True, inbox=inbox_report, notes=[inbox_trouble] if inbox_trouble else [])
        program = load_program(settings.program_dir, cohort_ids=cohorts or None)
        report = RunReport(now=now, bad_rows=list(program.skipped_rows), inbox=inbox_report,
                           notes=[inbox_trouble] if inbox_trouble else [])
        held = guards.track_broken(ledger, program, report)
        transport = transport or open_transport(settings)
        try:
            plan = prepare(program, ledger, now=now, window=window, report=report, channel=transport.channel,
                           catch_up=catch_up, held=held)
            guards.check_fresh_start(ledger, plan, settings, confirmed=new_ledger)
            guards.note_clock(ledger, report)
            guards.hold_late(plan, report, limit=settings.late_skip_limit, confirmed=new_ledger or skip_late)
            check_renames(plan, ledger, report, live=transport.channel == SMTP)
            report.notices = guards.once_a_day(ledger, report,
                                               guards.broken_notices(ledger, program, report) + plan.notices())
            execute(plan, ledger, transport, report, limit=limit, progress=progress, stop=stop,
                    retry_after=timedelta(minutes=settings.smtp_retry_minutes), catch_up=catch_up,
                    checkins=settings.checkins, unsubscribe_url=settings.unsubscribe_url)
            if settings.digest:
                digests.send_digests(plan, ledger, transport, report, listening=settings.inbox is not None,
                                     no_contact_days=settings.no_contact_days)
            if plain:
                fastpath.remember(ledger, plan, report, fingerprint)
        finally:
            transport.close()
        return report


def dry(settings: Settings, *, now: datetime, window: timedelta | None, limit: int | None,
        cohorts: list[str] | None, skip_late: bool = False) -> RunReport:
    """What a run would do now, from the same plan, recording nothing."""
    program = load_program(settings.program_dir, cohort_ids=cohorts or None)
    view = Ledger.view(settings.database_path, now, channel=settings.transport, catch_up=window is None)
    plan = build_plan(program, view, now=now, window=window)
    report = RunReport(now=now, dry_run=True, bad_rows=list(program.skipped_rows))
    guards.hold_late(plan, report, limit=settings.late_skip_limit, confirmed=skip_late)
    report.planned, report.planned_skips = plan.send[:limit] if limit else plan.send, plan.skip
    return report


def prepare(program: Program, ledger: Ledger, *, now: datetime, window: timedelta | None,
            report: RunReport, channel: str = OUTBOX, catch_up: bool = False,
            held: dict[str, str] | None = None) -> Plan:
    """Under the run lock: recover what a crashed run left, note the roster's statuses, plan from a snapshot."""
    report.recovered = ledger.recover(now)
    ledger.observe_statuses(((c.id, p.id.lower(), p.status) for c in program.cohorts for p in c.pairs), now)
    view = replace(ledger.snapshot(now, channel=channel, catch_up=catch_up), held=held or {})
    return build_plan(program, view, now=now, window=window)


def check_renames(plan: Plan, ledger: Ledger, report: RunReport, *, live: bool) -> None:
    """Take out of the plan what its people already have under an old key (a rename), and hold back what
    cannot be told from a renamed step; the ledger is asked only about the people due a message now."""
    if not plan.send:
        return
    addresses = {p.ascii_email for o in plan.send for p in o.pair.people()}
    found = resolve(plan, ledger.received(addresses), live=live, steps_sent=ledger.steps_sent())
    report.already = found.received
    report.held_renames = found.held


def open_transport(settings: Settings) -> Transport:
    if settings.transport == "smtp":
        from mailer.shell.smtp import SmtpTransport  # imported only when used: smtplib and ssl are slow to load

        return SmtpTransport.from_settings(settings)
    return Outbox(settings.outbox_path)


def execute(plan: Plan, ledger: Ledger, transport: Transport, report: RunReport, *, limit: int | None = None,
            progress: Callable[[int, int], None] | None = None, renderer: Renderer | None = None,
            retry_after: timedelta = timedelta(minutes=30), stop: Callable[[], bool] | None = None,
            catch_up: bool = False, checkins: bool = True, unsubscribe_url: str | None = None) -> RunReport:
    """Record the plan's skips, then send what is due, in order, one message at a time."""
    now, program = plan.now, plan.program
    owner = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"  # who claimed a row, for a person reading it
    renderer = renderer or renderer_for(program.templates_dir)
    send = plan.send[:limit] if limit is not None else plan.send
    report.next_due = plan.next_due
    report.pending = len(send) < len(plan.send)
    preflight(program, renderer, send)
    run_id = ledger.start_run(now)
    live = transport.channel == SMTP
    for occ in plan.skip:
        ledger.skip(key=occ.key, cohort=occ.cohort.id, pair=occ.pair.id, step=occ.step.key, role=occ.role,
                    due_at=occ.due_at, now=now, reason=occ.skip_reason or "skipped", late=occ.late, live=live)
        report.count(occ, SKIPPED)
    for occ, old in report.already:
        ledger.skip(key=occ.key, cohort=occ.cohort.id, pair=occ.pair.id, step=occ.step.key, role=occ.role,
                    due_at=occ.due_at, now=now, reason=f"already received as {old} (a rename)", live=live)
        if occ.has_invite:  # the invitation they hold follows them, UID and all
            ledger.move_invite(old, cohort=occ.cohort.id, pair=occ.pair.id.lower(), step=occ.step.key)
        report.count(occ, SKIPPED)
    secret = ledger.secret
    done = 0
    try:
        for done, occ in enumerate(send, 1):
            if stop is not None and stop():
                report.stopped = True
                break
            send_one(program, ledger, transport, renderer, occ, secret=secret, now=now,
                     retry_after=retry_after, report=report, owner=owner, catch_up=catch_up, checkins=checkins,
                     unsubscribe_url=unsubscribe_url)
            if done % CHECKPOINT_EVERY == 0:
                ledger.checkpoint()
            if progress:
                progress(done, len(send))
    except TransportError as exc:
        report.aborted = exc
        report.held_back = len(send) - done  # the rest stay due: the summary counts every one of them
    finally:
        ledger.finish_run(run_id, now, sent=report.sent, skipped=report.skipped, failed=report.failed,
                          deferred=report.deferred, uncertain=report.uncertain)
    return report


def send_one(program: Program, ledger: Ledger, transport: Transport, renderer: Renderer, occ: Occurrence, *,
             secret: bytes, now: datetime, retry_after: timedelta, report: RunReport, owner: str,
             catch_up: bool = False, checkins: bool = True, unsubscribe_url: str | None = None) -> None:
    """Render, claim, send and record one message; a transport that cannot go on at all raises."""
    extra = links(occ, secret, checkins=checkins, unsubscribe_url=unsubscribe_url)
    rendered = renderer.render(context(program, occ, checkin=extra.checkin), template_name(occ))
    domain = occ.cohort.coordinator.ascii_email.rpartition("@")[2]
    mid = message_id(secret, occ.key, domain)
    sender, rcpts = envelope(occ)
    invite = _invite(occ, now)
    claim = ledger.claim(key=occ.key, cohort=occ.cohort.id, pair=occ.pair.id, step=occ.step.key, role=occ.role,
                         due_at=occ.due_at, now=now, message_id=mid, recipients=rcpts, subject=rendered.subject,
                         owner=owner, channel=transport.channel, catch_up=catch_up)
    if claim is None:
        report.contended += 1  # another runner took it between our plan and our claim
        return
    todo = [r for r in rcpts if r not in claim.delivered and r not in claim.refused]
    data = build_message(occ, rendered, msg_id=mid, now=now, ics=invite[1] if invite else None,
                         method=invite[0].method if invite else "REQUEST", extra=extra.headers)
    try:
        result = transport.send(Outgoing(occ.key, occ.due_at, sender, todo, data),
                                lambda: ledger.mark_body(occ.key)) if todo else Delivery(SENT, attempts=0)
    except TransportError as exc:
        # nothing of this message reached the server: it stays due, not uncertain
        ledger.finish(claim, state=DEFERRED, now=now, attempts=1, reason=str(exc), next_attempt_at=now,
                      channel=transport.channel)
        report.count(occ, DEFERRED)
        raise
    next_at = None
    if result.state == DEFERRED:
        next_at = now + retry_after * min(2 ** (max(1, result.attempts) - 1), 16)
    ledger.finish(claim, state=result.state, now=now, attempts=result.attempts, delivered=result.delivered,
                  refused=result.refused, reason=result.detail if result.state != SENT else None,
                  location=result.detail if result.state == SENT else None, next_attempt_at=next_at,
                  channel=transport.channel, people=[p.ascii_email for p in occ.pair.people()])
    if invite is not None and result.state in (SENT, UNCERTAIN) and not (occ.change and occ.change.drop):
        held = invite[0]
        conf = occ.step.conference
        assert conf is not None and conf.meetup is not None
        ledger.record_invite(uid=held.uid, cohort=occ.cohort.id, pair=occ.pair.id, conference=conf.key,
                             step=occ.step.key, sequence=held.sequence, method=held.method,
                             details=details(conf), message_key=occ.key, now=now, attendees=held.attendees)
        report.invites[held.method if held.sequence == 0 or held.method == "CANCEL" else "UPDATE"] += 1
    if claim.is_resend:
        report.resent += 1
    if claim.previous == TRIAL and result.state == SENT:
        report.went_live += 1
    report.count(occ, result.state)
    if result.state == SENT:
        report.pairs_sent.setdefault((occ.cohort.id, occ.step_label), set()).add(occ.pair.id)
        for rcpt, reply in result.refused.items():  # a message that failed whole is one failure, not one each
            report.failures.append((occ.key, "refused", f"{rcpt}: {reply}"))
            report.refused += 1
    elif result.detail:
        report.failures.append((occ.key, result.state, result.detail))


def _invite(occ: Occurrence, now: datetime) -> tuple[Invite, bytes] | None:
    """The invitation a meetup message carries, and its .ics bytes."""
    if not occ.has_invite:
        return None
    # imported only when a run has an invitation to send: icalendar is slow to load
    from mailer.core.ical import build_ics
    from mailer.core.invitation import build_invite

    invite = build_invite(occ, now)
    return invite, build_ics(invite)


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
            renderer.render(context(program, occ, checkin=links(occ, b"preflight").checkin), template_name(occ))
            _invite(occ, occ.due_at)
        except InputError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
        except ValueError as exc:  # the invitation cannot be written (say, a meetup in a repeated hour)
            problems.append(f"{occ.cohort.path.name}/cohort.toml: meetup for {occ.step.key}: {exc}")
    if problems:
        raise InputError(problems)
