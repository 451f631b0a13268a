"""What the coordinator reads: status per cohort and step, the upcoming plan; pure over ledger rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from mailer.core.heard import Heard, pair_rows
from mailer.core.keys import parse
from mailer.core.occurrence import Occurrence
from mailer.core.plan import Plan
from mailer.core.records import FAILED, SENT, SKIPPED, Row


@dataclass(slots=True)
class StepStatus:
    cohort: str
    step: str
    due: str  # the step's scheduled date
    description: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class CohortStatus:
    cohort: str
    name: str
    pair_count: int
    steps: list[StepStatus]
    next_step: str | None  # "readings on 2019-10-01", or None when the year is done
    attention: list[dict[str, object]] = field(default_factory=list)  # failed, deferred, uncertain, refused
    coming: list[dict[str, object]] = field(default_factory=list)  # next 30 days: date, step, messages
    pairs: list[dict[str, object]] = field(default_factory=list)  # per pair: contact, check-ins, RSVPs, suppressed
    left_out: list[str] = field(default_factory=list)  # roster rows left out of every run, each with its reason


def status(plan: Plan, counts: Mapping[tuple[str, str, str], int], trouble: Iterable[Row],
           heard: Heard | None = None) -> list[CohortStatus]:
    """Per cohort and step: how many messages were sent, skipped, failed (`counts`: (cohort, step, state) ->
    n, counted by the ledger); what needs the coordinator's attention (`trouble`: failures with the server's
    reply, uncertain messages, refused recipients); the next step and what is due in the 30 days from the
    plan's `now`. A step no longer in the program still shows what it sent. `heard` (the inbox's
    records) gives each pair's last contact, check-ins, RSVPs and suppressed addresses."""
    program, now = plan.program, plan.now
    by_step: dict[tuple[str, str], dict[str, int]] = {}
    for (cohort_id, step_key, state), n in counts.items():
        by_step.setdefault((cohort_id, step_key), {})[state] = n
    attention: dict[str, list[dict[str, object]]] = {}
    for r in trouble:
        if r.state in ("failed", "deferred", "uncertain") or (r.reason or "").startswith("held back"):
            attention.setdefault(r.cohort, []).append(
                {"pair": r.pair, "step": _step_part(r.key), "state": r.state, "detail": r.reason or ""})
        for rcpt, reply in r.refused.items():
            attention.setdefault(r.cohort, []).append(
                {"pair": r.pair, "step": _step_part(r.key), "state": "refused", "detail": f"{rcpt}: {reply}"})
    out = []
    for cohort in program.cohorts:
        steps = []
        for step in cohort.steps:
            steps.append(_step_status(cohort.id, step.key, step.due.isoformat(), step.description,
                                      by_step.get((cohort.id, step.key), {})))
        known = {s.key for s in cohort.steps}
        for (cohort_id, step_key), c in sorted(by_step.items()):
            if cohort_id == cohort.id and step_key not in known:
                steps.append(_step_status(cohort.id, step_key, "", "(no longer in the program)", c))
        nxt = plan.next_by_cohort.get(cohort.id)
        next_step = (f"{nxt.step.key} on {nxt.due_at.astimezone(cohort.timezone).date().isoformat()}"
                     if nxt else None)
        coming: dict[tuple[str, str], int] = {}
        for o in plan.upcoming:
            if o.cohort.id == cohort.id and o.change is None and o.due_at < now + timedelta(days=30):
                day = o.due_at.astimezone(cohort.timezone).date().isoformat()
                coming[(day, o.step.key)] = coming.get((day, o.step.key), 0) + 1
        out.append(CohortStatus(cohort.id, cohort.name, len(cohort.pairs), steps, next_step,
                                attention.get(cohort.id, []),
                                [{"date": d, "step": s, "messages": n} for (d, s), n in sorted(coming.items())],
                                pair_rows(cohort, heard or Heard()),
                                [str(p) for p in program.skipped_rows if f"cohorts/{cohort.id}/" in p.file]))
    return out


def _step_status(cohort: str, step: str, due: str, description: str, c: Mapping[str, int]) -> StepStatus:
    return StepStatus(cohort, step, due, description, {k: c.get(k, 0) for k in (SENT, SKIPPED, FAILED)}
                      | {k: v for k, v in c.items() if k not in (SENT, SKIPPED, FAILED)})


def _step_part(key: str) -> str:
    """The key without its cohort and pair: step, recipient and change, as `status --json` has always shown it."""
    return str(parse(key)).split("/", 2)[2]


def plan_rows(occurrences: Iterable[Occurrence]) -> list[dict[str, object]]:
    """The upcoming messages as plain rows (for a table, JSON or CSV)."""
    rows: list[dict[str, object]] = []
    for o in occurrences:
        rows.append({
            "due_at": o.due_at.isoformat(),
            "date": o.due_at.astimezone(o.cohort.timezone).date().isoformat(),
            "cohort": o.cohort.id,
            "pair": o.pair.id,
            "step": o.step.key,
            "to": [o.pair.person(r).email for r in o.addressed()],
            "key": o.key,
            "left_out": [f"{o.pair.person(r).email}: {why}" for r, why in o.left_out],
        })
    return rows
