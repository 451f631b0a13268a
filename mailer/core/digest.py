"""The coordinator's digest after a run: what went out, what failed and why, what is coming. Pure."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from mailer.core import mime
from mailer.core.heard import Heard
from mailer.core.heard import sections as heard_sections
from mailer.core.keys import parse
from mailer.core.model import Program
from mailer.core.occurrence import Occurrence
from mailer.core.records import Row
from mailer.core.render import Rendered
from mailer.errors import Problem

STATES = ("sent", "skipped", "deferred", "failed", "uncertain")


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the digest needs of a run, without the runner's types."""

    now: datetime
    summary: str
    by_step: dict[tuple[str, str, str], int]  # (cohort, step, state) -> count
    failures: Sequence[tuple[str, str, str]]  # (key, state, reply)
    bad_rows: Sequence[Problem]
    needs_you: Sequence[tuple[str | None, str]] = ()  # (cohort or None for all, what the coordinator must decide)


def needed(facts: RunFacts) -> bool:
    """A run that sent, deferred or failed anything gets a digest; one that did nothing does not."""
    return (any(n for (_, _, state), n in facts.by_step.items() if state != "skipped") or bool(facts.failures)
            or bool(facts.needs_you))


def build(program: Program, facts: RunFacts, *, cohorts: Sequence[str], uncertain: Sequence[Row],
          upcoming: Sequence[Occurrence], heard: Heard | None = None, no_contact_days: int = 45) -> Rendered:
    """The digest for the coordinator of `cohorts`, as subject, text and HTML; with `heard` (an inbox is
    read), what came back: silent pairs first, then RSVPs, check-ins, suppressed addresses."""
    cohort_set = set(cohorts)
    sections: list[tuple[str, list[str]]] = []
    urgent = [line for cohort, line in facts.needs_you if cohort is None or cohort in cohort_set]
    if urgent:
        sections.append(("Needs you", urgent))
    listened = heard_sections(program, heard, cohorts=cohorts, now=facts.now, days=no_contact_days) if heard else []
    sections += listened[:1]  # the pairs that never made contact: the coordinators' most common failure

    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for (cohort, step, state), n in sorted(facts.by_step.items()):
        if cohort in cohort_set:
            counts[cohort][step][state] = n
    lines = []
    for cohort in cohorts:
        for step, by_state in counts.get(cohort, {}).items():
            parts = ", ".join(f"{by_state[s]} {s}" for s in STATES if by_state.get(s))
            lines.append(f"{cohort} / {step}: {parts}")
    sections.append(("This run", lines or ["Nothing was sent."]))

    lines = []
    for key, state, reply in facts.failures:
        k = parse(key)
        if k.cohort in cohort_set:
            lines.append(f"{k.cohort} pair {k.pair}, {str(k).split('/', 2)[2]}: {state}: {reply}")
    sections.append(("Failures", lines or ["None."]))

    lines = [f"{r.cohort} pair {r.pair}, {r.step}: Message-ID {r.message_id}; {r.reason or 'no reply'}"
             for r in uncertain if r.cohort in cohort_set]
    sections.append(("Uncertain (the server may have them; resent once with the same Message-ID)",
                     lines or ["None."]))

    lines = [str(p) for p in facts.bad_rows if any(f"cohorts/{c}/" in p.file for c in cohort_set)]
    refused = [(parse(key), reply) for key, state, reply in facts.failures if state == "refused"]
    lines += [f"{k.cohort} pair {k.pair}: {reply}" for k, reply in refused if k.cohort in cohort_set]
    sections.append(("Roster problems (these pairs were left out) and refused addresses", lines or ["None."]))

    coming: dict[tuple[str, str, str], int] = defaultdict(int)
    for o in upcoming:
        if o.cohort.id in cohort_set:
            coming[(o.due_at.astimezone(o.cohort.timezone).date().isoformat(), o.cohort.id, o.step.key)] += 1
    lines = [f"{day}  {cohort} / {step}: {n} message(s)" for (day, cohort, step), n in sorted(coming.items())]
    sections.append(("Due in the next 30 days", lines or ["Nothing."]))
    sections += listened[1:]

    # the coordinator reads it in the program's time: the first of their cohorts' zones
    zone = next((c.timezone for c in program.cohorts if c.id in cohort_set), None)
    local = facts.now.astimezone(zone) if zone else facts.now
    stamp = f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
    subject = f"mentor-mailer digest {local.date().isoformat()}: {facts.summary}"
    text = f"mentor-mailer ran at {stamp}: {facts.summary}\n"
    for title, body in sections:
        text += f"\n{title}\n{'-' * len(title)}\n" + "\n".join(f"  {line}" for line in body) + "\n"
    esc = html.escape
    page = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(subject)}</title>"
            "</head><body style=\"font-family:sans-serif;max-width:760px\">",
            f"<p>mentor-mailer ran at {esc(stamp)}: <strong>{esc(facts.summary)}</strong></p>"]
    for title, body in sections:
        page.append(f"<h2 style=\"font-size:1.05em\">{esc(title)}</h2><ul>")
        page += [f"<li>{esc(line)}</li>" for line in body]
        page.append("</ul>")
    page.append("</body></html>\n")
    return Rendered(subject, text, "".join(page))


def message(rendered: Rendered, *, name: str, address: str, key: str, msg_id: str, now: datetime) -> bytes:
    """The digest as wire bytes: from the coordinator to the coordinator, marked as automatic (RFC 3834)."""
    who = mime.address(mime.header_safe(name), address)
    headers = [("From", who), ("To", who),
               ("Subject", mime.unstructured("Subject", mime.header_safe(rendered.subject))),
               ("Date", format_datetime(now)), ("Message-ID", msg_id),
               ("Auto-Submitted", "auto-generated"), ("X-Mentor-Mailer-Key", key),
               ("X-Auto-Response-Suppress", "All")]  # Exchange: no out-of-office or read receipts to a digest
    body = mime.multipart("alternative", "=_mm_digest", [mime.text("plain", rendered.text),
                                                          mime.text("html", rendered.html)])
    return mime.message(headers, body)
