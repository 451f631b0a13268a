"""What people already have under another key: a renamed pair or cohort, a pair moved to another cohort,
a renamed step, a step switched between `to = "pair"` and `to = "each"`.

The ledger's key names a message by cohort, pair and step; renaming any of them makes a new key. So before a
message goes, each recipient is looked up by address: a message of the same step (or one of its earlier keys)
that reached them under a key the program no longer makes, for the same pair of people and within the
cohort's year, means they have it. A step new to the ledger on the very day a step that went out disappeared
may be that step renamed or a new one: the tool cannot tell, so it holds that step back and says how to decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mailer.core.keys import parse
from mailer.core.model import Cohort, Program
from mailer.core.occurrence import Occurrence
from mailer.core.plan import Plan
from mailer.core.records import OUTBOX, Delivered


@dataclass(slots=True)
class Resolved:
    """What the check found: messages already received (with the key they came under), and held ones."""

    received: list[tuple[Occurrence, str]] = field(default_factory=list)
    held: list[tuple[Occurrence, str]] = field(default_factory=list)  # (message, the sentence to act on)


def makes(program: Program, key: str) -> bool:
    """Does the program as it is now produce this message key?"""
    try:
        k = parse(key)
    except ValueError:
        return False
    cohort = program.cohort(k.cohort)
    step = cohort.step(k.step) if cohort else None
    if cohort is None or step is None or cohort.pair(k.pair) is None:
        return False
    return k.change is not None or (step.to == "each") == (k.role is not None)


def resolve(plan: Plan, received: Mapping[tuple[str, str], list[Delivered]], *, live: bool,
            steps_sent: Mapping[str, Mapping[str, str]]) -> Resolved:
    """Take out of `plan.send` what its people already have, and what cannot be told from a renamed step.

    `received` maps (address, step) to the messages that reached the address; `live` says a run goes to
    people (then a trial that only reached the outbox counts for nothing); `steps_sent` maps each cohort's
    steps that went out to the date they were due (ISO).
    """
    out = Resolved()
    keep = []
    unclear = {c.id: _unclear_steps(c, steps_sent.get(c.id, {})) for c in plan.program.cohorts}
    for occ in plan.send:
        if occ.change is None:
            old = _received_under(plan.program, occ, received, live=live)
            if old is not None:
                out.received.append((occ, old))
                continue
            why = unclear[occ.cohort.id].get(occ.step.key)
            if why is not None:
                out.held.append((occ, why))
                continue
        keep.append(occ)
    plan.send = keep
    return out


def _received_under(program: Program, occ: Occurrence, received: Mapping[tuple[str, str], list[Delivered]], *,
                    live: bool) -> str | None:
    """The old key under which every recipient of `occ` already has this step, or None."""
    people = frozenset(p.ascii_email.lower() for p in occ.pair.people())
    names = (occ.step.key, *occ.step.renamed_from)
    found = None
    for role in occ.recipients():
        address = occ.pair.person(role).ascii_email.lower()
        hit = next((d.key for name in names for d in received.get((address, name), ())
                    if not (live and d.channel == OUTBOX) and (d.people is None or d.people == people)
                    and occ.cohort.start <= d.due_at.astimezone(occ.cohort.timezone).date() <= occ.cohort.end
                    and d.key != occ.key and not makes(program, d.key)), None)
        if hit is None:
            return None
        found = found or hit
    return found


def _unclear_steps(cohort: Cohort, sent: Mapping[str, str]) -> dict[str, str]:
    """New steps due on the day a sent step vanished: {step key: what the coordinator should write}."""
    current = {s.key for s in cohort.steps} | {old for s in cohort.steps for old in s.renamed_from}
    vanished = {step: due for step, due in sent.items() if step not in current}
    out = {}
    for step in cohort.steps:
        if step.key in sent or step.renamed_from or step.new:
            continue
        twins = sorted(v for v, due in vanished.items() if due[:10] == step.due.isoformat())
        if twins:
            out[step.key] = (
                f"step '{step.key}' of cohort {cohort.id} is new to the ledger, and step '{twins[0]}', sent on "
                f"{step.due.isoformat()}, is no longer in the program; it is held back. If '{step.key}' is "
                f"'{twins[0]}' renamed, add renamed_from = \"{twins[0]}\" to its [[steps]] table; if it is a new "
                "step, add new = true there")
    return out
