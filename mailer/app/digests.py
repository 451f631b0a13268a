"""The coordinator's digest after a run: one email per coordinator whose cohorts the run touched."""

from __future__ import annotations

from datetime import timedelta

from mailer.app.guards import coordinator_of
from mailer.app.outcome import RunReport
from mailer.core import digest
from mailer.core.compose import message_id
from mailer.core.keys import cohort_of
from mailer.core.plan import Plan
from mailer.core.records import SENT, UNCERTAIN
from mailer.errors import TransportError
from mailer.shell.ledger import Ledger
from mailer.shell.transport import Outgoing, Transport


def send_digests(plan: Plan, ledger: Ledger, transport: Transport, report: RunReport) -> None:
    """Send each coordinator their digest; a failure to send it is reported, never fatal (the messages
    themselves are already recorded)."""
    program, now = plan.program, report.now
    held: dict[str, int] = {}
    for occ in report.held_late:
        held[occ.cohort.id] = held.get(occ.cohort.id, 0) + 1
    needs_you = [(None, note) for note in report.notes] + [(c, text) for c, text in report.notices] + [
        (cohort, f"{n} message(s) past the late window were held back, not skipped: "
                 "if the clock is right and you want them gone, run `mentor-mailer run --skip-late`; "
                 "`run --catch-up` sends them instead") for cohort, n in sorted(held.items())]
    facts = digest.RunFacts(now=now, summary=report.summary(), by_step=dict(report.by_step),
                            failures=report.failures, bad_rows=report.bad_rows, needs_you=needs_you)
    if not digest.needed(facts):
        return
    touched = ({c for c, _, _ in report.by_step} | {cohort_of(k) for k, _, _ in report.failures} | set(held)
               | ({c.id for c in program.cohorts} if report.notes else set()) | {c for c, _ in report.notices})
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
        rendered = digest.build(program, facts, cohorts=cohort_ids, uncertain=uncertain, upcoming=upcoming)
        key = f"digest/{now.isoformat()}/{address}"
        data = digest.message(rendered, name=name, address=address, key=key, now=now,
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
