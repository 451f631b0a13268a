"""The read-only commands: plan, status, preview, the invitations export and the report page.

Each builds the same plan a run would (one snapshot of the ledger, `build_plan`) and records nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from mailer.core.compose import build_message, context, links, message_id, template_name
from mailer.core.htmlreport import render_report
from mailer.core.model import Program
from mailer.core.occurrence import InviteChange, Occurrence
from mailer.core.plan import HORIZON, Plan, build_plan
from mailer.core.records import Row
from mailer.core.status import CohortStatus
from mailer.core.status import status as cohort_status
from mailer.core.year import year_schedule
from mailer.errors import InputError
from mailer.load.program import load_program
from mailer.load.templates import renderer_for
from mailer.shell import inbox_store
from mailer.shell.files import private_dir, write_private
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings


def current_plan(settings: Settings, *, now: datetime, cohorts: list[str] | None = None,
                 horizon: timedelta = HORIZON) -> Plan:
    """The plan a run at `now` would follow, with what is coming up to `horizon` after it."""
    program = load_program(settings.program_dir, cohort_ids=cohorts or None)
    return build_plan(program, Ledger.view(settings.database_path, now), now=now,
                      window=timedelta(days=settings.late_window_days), horizon=horizon)


def upcoming(settings: Settings, *, now: datetime, start: datetime | None = None, end: datetime | None = None,
             cohorts: list[str] | None = None) -> list[Occurrence]:
    """Messages not yet sent whose time falls in [start, end), as planned at `start` (default: now, and the
    next 30 days); from now, what is due and not yet sent is listed too."""
    at = start or now
    end = end or at + timedelta(days=30)
    plan = current_plan(settings, now=at, cohorts=cohorts, horizon=max(end - at, timedelta(0)))
    return plan.coming(at, end, due_now=start is None)


def status(settings: Settings, *, now: datetime, cohorts: list[str] | None = None) -> list[CohortStatus]:
    """The ledger's view per cohort and step, with each cohort's next step."""
    plan = current_plan(settings, now=now, cohorts=cohorts)
    if not settings.database_path.exists():
        return cohort_status(plan, {}, [])
    with Ledger.open(settings.database_path, readonly=True) as ledger:
        return cohort_status(plan, ledger.counts(), ledger.trouble(), inbox_store.heard(ledger))


def preview(settings: Settings, *, now: datetime, pair: str, step: str, cohort: str | None = None,
            role: str | None = None, fmt: str = "text") -> str:
    """One message rendered as it would go out: text, HTML, or the whole .eml."""
    program = load_program(settings.program_dir, cohort_ids=[cohort] if cohort else None)
    of_pair = [o for o in year_schedule(program) if o.pair.id.lower() == pair.lower()]
    if not of_pair:
        pairs = sorted({p.id for c in program.cohorts for p in c.pairs})
        raise InputError([f"there is no pair '{pair}'; pairs are: {', '.join(pairs[:30]) or 'none'}"
                          f"{' …' if len(pairs) > 30 else ''}"])
    matches = [o for o in of_pair if o.step.key == step]
    if not matches:
        known = sorted({s.key for c in program.cohorts for s in c.steps})
        raise InputError([f"no message for pair '{pair}' and step '{step}'; steps are: {', '.join(known)}"])
    if len({o.cohort.id for o in matches}) > 1:
        raise InputError([f"pair '{pair}' is in several cohorts; add --cohort"])
    if role is not None and matches[0].role is None:
        raise InputError([f"step '{step}' goes to both partners in one email; leave out --role"])
    matches = [o for o in matches if role is None or o.role == role]
    if len(matches) > 1 and fmt != "text":
        raise InputError([f"step '{step}' sends one email to each partner; add --role mentor or --role mentee"])
    if len(matches) > 1:  # each partner's email, one after the other
        return "\n".join(f"===== to the {o.role}: {o.pair.person(o.role).name} =====\n"  # type: ignore[arg-type]
                         + _preview_one(settings, program, o, now, fmt) for o in matches)
    return _preview_one(settings, program, matches[0], now, fmt)


def _preview_one(settings: Settings, program: Program, occ: Occurrence, now: datetime, fmt: str) -> str:
    # signed with a stand-in secret: a preview's links show their shape, and no real token leaves the ledger
    extra = links(occ, b"preview", checkins=settings.checkins, unsubscribe_url=settings.unsubscribe_url)
    rendered = renderer_for(program.templates_dir).render(context(program, occ, checkin=extra.checkin),
                                                          template_name(occ))
    if fmt == "html":
        return rendered.html
    if fmt == "eml":
        ics = _ics(occ, now) if occ.has_invite else None
        domain = occ.cohort.coordinator.ascii_email.rpartition("@")[2]
        data = build_message(occ, rendered, msg_id=message_id(b"preview", occ.key, domain), now=now, ics=ics,
                             extra=extra.headers)
        return data.decode("ascii").replace("\r\n", "\n")
    return f"Subject: {rendered.subject}\n\n{rendered.text}"


def export_invites(settings: Settings, *, now: datetime, cohort: str, out: Path) -> list[Path]:
    """Write each pair's current invitation as an .ics file: as last sent, or as it will next go out."""
    plan = current_plan(settings, now=now, cohorts=[cohort])
    held = {(i.pair.lower(), i.step): i for i in Ledger.view(settings.database_path, now).invites
            if i.cohort == cohort}
    changes = {(o.pair.id.lower(), o.step.key): o for o in plan.send if o.change is not None}
    private_dir(out)
    written = []
    for occ in year_schedule(plan.program):
        if not occ.has_invite:
            continue
        current = changes.get((occ.pair.id.lower(), occ.step.key))
        sent = held.get((occ.pair.id.lower(), occ.step.key))
        if current is None and sent is not None:
            method: Literal["REQUEST", "CANCEL"] = "CANCEL" if sent.method == "CANCEL" else "REQUEST"
            current = replace(occ, change=InviteChange(method, sent.sequence, "")) if sent.sequence else occ
        if current is None:
            if occ.skip_reason is not None:
                continue  # this pair will never be invited to this meetup
            current = occ
        path = out / f"{occ.pair.id}-{occ.step.conference.key}.ics"  # type: ignore[union-attr]
        write_private(path, _ics(current, now))
        written.append(path)
    return written


def html_report(settings: Settings, out: Path, *, now: datetime) -> Path:
    """The coordinator's report page: timeline per cohort, failures, the next run's plan."""
    plan = current_plan(settings, now=now)
    counts: dict[tuple[str, str, str, str], int] = {}
    trouble: list[Row] = []
    heard = None
    if settings.database_path.exists():
        with Ledger.open(settings.database_path, readonly=True) as ledger:
            counts, trouble = ledger.report_counts(), ledger.trouble()
            heard = inbox_store.heard(ledger) if settings.inbox else None
    page = render_report(plan.program, counts, trouble, plan.coming(now, now + HORIZON), now=now, heard=heard,
                         no_contact_days=settings.no_contact_days)
    write_private(out, page.encode("utf-8"), make_parent=True)
    return out


def _ics(occ: Occurrence, now: datetime) -> bytes:
    # imported only when an invitation is written: icalendar is slow to load
    from mailer.core.ical import build_ics
    from mailer.core.invitation import build_invite

    return build_ics(build_invite(occ, now))
