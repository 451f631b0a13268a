"""The coordinator's digest after a run: one email per coordinator whose cohorts the run touched."""

from __future__ import annotations

from datetime import timedelta

from mailer.app.guards import coordinator_of
from mailer.app.outcome import RunReport
from mailer.core import digest, listen
from mailer.core.compose import message_id
from mailer.core.keys import cohort_of
from mailer.core.model import Program
from mailer.core.plan import Plan
from mailer.core.records import SENT, UNCERTAIN
from mailer.errors import TransportError
from mailer.shell import inbox_store
from mailer.shell.ledger import Ledger
from mailer.shell.transport import Outgoing, Transport


def send_digests(plan: Plan, ledger: Ledger, transport: Transport, report: RunReport, *, listening: bool = False,
                 no_contact_days: int = 45) -> None:
    """Send each coordinator their digest; a failure to send it is reported, never fatal (the messages
    themselves are already recorded). With `listening` (an inbox is read), it says what came back."""
    program, now = plan.program, report.now
    heard = inbox_store.heard(ledger) if listening else None
    held: dict[str, int] = {}
    for occ in report.held_late:
        held[occ.cohort.id] = held.get(occ.cohort.id, 0) + 1
    news = inbox_news(report, program)
    needs_you: list[tuple[str | None, str]] = [(None, note) for note in report.notes]
    needs_you += [(c, text) for c, text in report.notices] + [
        (cohort, f"{n} message(s) past the late window were held back, not skipped: "
                 "if the clock is right and you want them gone, run `mentor-mailer run --skip-late`; "
                 "`run --catch-up` sends them instead") for cohort, n in sorted(held.items())]
    needs_you += news
    facts = digest.RunFacts(now=now, summary=report.summary(), by_step=dict(report.by_step),
                            failures=report.failures, bad_rows=report.bad_rows, needs_you=needs_you)
    if not digest.needed(facts):
        return
    touched = ({c for c, _, _ in report.by_step} | {cohort_of(k) for k, _, _ in report.failures} | set(held)
               | ({c.id for c in program.cohorts} if report.notes else set()) | {c for c, _ in report.notices}
               | {c for c, _ in news if c is not None})
    by_coordinator: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for cohort_id in sorted(touched):
        who = coordinator_of(ledger, program, cohort_id)
        if who is not None:
            names[who[1]] = who[0]
            by_coordinator.setdefault(who[1], []).append(cohort_id)
    upcoming = [o for o in plan.upcoming if o.due_at < now + timedelta(days=30)]
    uncertain = ledger.rows_in_state(UNCERTAIN)
    for address, cohort_ids in sorted(by_coordinator.items()):
        name = names[address]
        rendered = digest.build(program, facts, cohorts=cohort_ids, uncertain=uncertain, upcoming=upcoming,
                                heard=heard, no_contact_days=no_contact_days)
        key = f"digest/{now.isoformat()}/{address}"
        zone = next((c.timezone for c in program.cohorts if c.id in cohort_ids), None)
        data = digest.message(rendered, name=name, address=address, key=key,
                              now=now.astimezone(zone) if zone else now,
                              msg_id=message_id(ledger.secret, key, address.rpartition("@")[2]))
        try:
            result = transport.send(Outgoing(key.replace(":", "-"), now, address, [address], data))
        except TransportError as exc:
            report.digest_errors.append(f"digest to {address}: {exc}")
            continue
        if result.state != SENT:
            report.digest_errors.append(f"digest to {address}: {result.state}: {result.detail}")
        else:
            report.digests += 1


def inbox_news(report: RunReport, program: Program) -> list[tuple[str | None, str]]:
    """What this run's inbox reading changed that the coordinator must hear today: an address that gets no
    more prompts, a pair asking for help."""
    whose = {a: c.id for c in program.cohorts for p in c.pairs for person in p.people()
             for a in (person.ascii_email.lower(), person.email.lower())}
    out: list[tuple[str | None, str]] = []
    for handled in report.inbox.handled if report.inbox else ():
        if handled.outcome != inbox_store.ACTED:
            continue
        for effect in handled.effects:
            if isinstance(effect, listen.Suppression):
                words = f" ({effect.detail})" if effect.detail else ""
                out.append((whose.get(effect.address.lower()),
                            f"{effect.address} gets no more prompts: {effect.reason}{words}; "
                            "the partner still gets them"))
            elif isinstance(effect, listen.CheckinAnswer) and effect.answer == "help":
                out.append((effect.cohort, f"{effect.cohort} pair {effect.pair} would like help ({effect.step} "
                                           f"check-in from {effect.address or 'the pair'})"))
    return out
