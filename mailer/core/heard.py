"""What the inbox heard, as the coordinator reads it: RSVPs, silent pairs, check-ins, suppressions. Pure.

The ledger's inbox tables are read once into a `Heard` (shell/inbox_store.py `heard`); the digest, the
report page and `status --json` all take their lines and rows from here, so they never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailer.core.model import Cohort, Program
from mailer.core.records import Suppressed

PairId = tuple[str, str]  # (cohort, pair id in lower case)
RSVP_WORDS = {"ACCEPTED": "accepted", "DECLINED": "declined", "TENTATIVE": "tentative"}
NO_ANSWER = "none"  # never "declined": Google sometimes sends no reply at all
CHECKIN_WORDS = {"met": "we met this month", "not-yet": "not yet", "help": "we'd like help"}


@dataclass(frozen=True, slots=True)
class Away:
    """An out-of-office notice: not contact, but worth knowing."""

    cohort: str
    pair: str
    address: str
    subject: str
    at: str


@dataclass(frozen=True, slots=True)
class Heard:
    """Everything the inbox recorded, by pair; times are ISO strings in UTC."""

    last_contact: dict[PairId, str] = field(default_factory=dict)  # a reply, an RSVP or a check-in
    welcomed: dict[PairId, str] = field(default_factory=dict)  # when the pair was first written to
    rsvps: dict[PairId, dict[str, dict[str, str]]] = field(default_factory=dict)  # conference -> address -> word
    invited: dict[PairId, dict[str, tuple[str, ...]]] = field(default_factory=dict)  # conference -> addresses
    checkins: dict[PairId, dict[str, str]] = field(default_factory=dict)  # step -> answer (met, not-yet, help)
    suppressed: tuple[Suppressed, ...] = ()
    away: tuple[Away, ...] = ()
    unmatched: int = 0  # mail left in the inbox as not the program's


def _key(cohort: str, pair: str) -> PairId:
    return cohort, pair.lower()


def rsvp_of(heard: Heard, cohort: str, pair: str) -> dict[str, dict[str, str]]:
    """conference -> address -> accepted | declined | tentative | none, for each invitation the pair holds."""
    got = heard.rsvps.get(_key(cohort, pair), {})
    out: dict[str, dict[str, str]] = {}
    for conference, addresses in sorted(heard.invited.get(_key(cohort, pair), {}).items()):
        answers = got.get(conference, {})
        out[conference] = {a: answers.get(a, NO_ANSWER) for a in addresses}
    for conference, answers in got.items():  # an answer to an invitation since withdrawn still counts
        out.setdefault(conference, dict(answers))
    return out


def pair_rows(cohort: Cohort, heard: Heard) -> list[dict[str, object]]:
    """`status --json` per cohort: each pair's last contact, check-ins, RSVPs and suppressed addresses."""
    rows: list[dict[str, object]] = []
    for pair in cohort.pairs:
        key = _key(cohort.id, pair.id)
        mine = {p.ascii_email.lower() for p in pair.people()} | {p.email.lower() for p in pair.people()}
        last = heard.last_contact.get(key)
        rows.append({
            "pair": pair.id,
            "last_contact": last[:10] if last else None,
            "checkins": dict(heard.checkins.get(key, {})),
            "rsvp": rsvp_of(heard, cohort.id, pair.id),
            "suppressed": [{"address": s.address, "reason": s.reason, "since": s.since}
                           for s in heard.suppressed if s.address in mine],
        })
    return rows


@dataclass(frozen=True, slots=True)
class Silent:
    """A pair with no sign of contact for the set number of days."""

    cohort: str
    pair: str
    last_contact: str | None  # None: nothing at all since the welcome
    since: str  # the last contact, or the welcome

    def line(self, now: datetime) -> str:
        days = (now - datetime.fromisoformat(self.since)).days
        if self.last_contact is None:
            return f"{self.cohort} pair {self.pair}: no sign of contact since the welcome ({days} days ago)"
        return f"{self.cohort} pair {self.pair}: last sign of contact {self.last_contact[:10]} ({days} days ago)"


def silent_pairs(program: Program, heard: Heard, *, now: datetime, days: int) -> list[Silent]:
    """Active pairs with no reply, RSVP or check-in from either partner for `days`; those with none at all
    since the welcome come first, the longest silent first."""
    out = []
    for cohort in program.cohorts:
        for pair in cohort.pairs:
            if pair.status != "active":
                continue
            key = _key(cohort.id, pair.id)
            welcomed = heard.welcomed.get(key)
            if welcomed is None:
                continue  # not written to yet: silence means nothing
            last = heard.last_contact.get(key)
            since = last or welcomed
            if now - datetime.fromisoformat(since) >= timedelta(days=days):
                out.append(Silent(cohort.id, pair.id, last, since))
    return sorted(out, key=lambda s: (s.last_contact is not None, s.since, s.cohort, s.pair))


def sections(program: Program, heard: Heard, *, cohorts: Sequence[str], now: datetime,
             days: int) -> list[tuple[str, list[str]]]:
    """The digest's and the report's sections on what the inbox heard, for these cohorts."""
    wanted = set(cohorts)
    names = {(c.id, p.id.lower()): p for c in program.cohorts for p in c.pairs}
    whose = {a: (c.id, p.id) for c in program.cohorts for p in c.pairs
             for person in p.people() for a in (person.ascii_email.lower(), person.email.lower())}
    silent = [s.line(now) for s in silent_pairs(program, heard, now=now, days=days) if s.cohort in wanted]
    out = [(f"Pairs with no sign of contact for {days} days", silent or ["None."])]

    lines = []
    tally: dict[tuple[str, str], dict[str, int]] = {}
    for (cohort, pair_id), pair in sorted(names.items()):
        if cohort not in wanted:
            continue
        for conference, answers in rsvp_of(heard, cohort, pair_id).items():
            for word in answers.values():
                counts = tally.setdefault((cohort, conference), {})
                counts[word] = counts.get(word, 0) + 1
            people = {p.ascii_email.lower(): p.name for p in pair.people()}
            said = ", ".join(f"{people.get(a.lower(), a)}: {'no answer' if w == NO_ANSWER else w}"
                             for a, w in answers.items())
            lines.append(f"{conference}, {cohort} pair {pair.id}: {said}")
    totals = [f"{conference} ({cohort}): " + ", ".join(
        f"{n} {'no answer' if w == NO_ANSWER else w}" for w in (*RSVP_WORDS.values(), NO_ANSWER) if (n := c.get(w)))
        for (cohort, conference), c in sorted(tally.items())]
    out.append(("RSVPs to the meetup invitations", totals + lines or ["No invitations sent yet."]))

    lines = []
    for (cohort, pair_id), steps in sorted(heard.checkins.items()):
        if cohort in wanted:
            pair_name = names[(cohort, pair_id)].id if (cohort, pair_id) in names else pair_id
            for step, answer in steps.items():
                flag = "NEEDS YOU: " if answer == "help" else ""
                lines.append(f"{flag}{cohort} pair {pair_name}, {step}: {CHECKIN_WORDS.get(answer, answer)}")
    lines.sort(key=lambda line: not line.startswith("NEEDS YOU"))
    out.append(("Check-ins", lines or ["None yet."]))

    lines = []
    for s in heard.suppressed:
        where = whose.get(s.address)
        if where is None or where[0] in wanted:
            of = f" ({where[0]} pair {where[1]})" if where else ""
            said = {"hard-bounce": "the server said", "soft-bounces": "the server said last",
                    "complaint": "report type"}.get(s.reason, "how")
            words = f"; {said}: {s.detail}" if s.detail else ""
            lines.append(f"{s.address}{of}: {s.reason} since {s.since[:10]}{words}")
    out.append(("No more prompts to these addresses", lines or ["None."]))

    lines = [f"{a.address} ({a.cohort} pair {a.pair}), {a.at[:10]}: {a.subject}" for a in heard.away
             if a.cohort in wanted]
    out.append(("Out of office", lines or ["None."]))
    out.append(("Unmatched mail", [f"{heard.unmatched} message(s) left in the inbox as not the program's "
                                   "(never moved or marked)"]))
    return out
