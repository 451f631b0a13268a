"""The inbox use case: read the mailbox, recognise, decide, record each effect with its processed key, then move.

Exactly once: a message's effects and its place are committed in one transaction, and only then is
the message moved. A crash before the commit leaves nothing (the next run reads it again); a crash
after it leaves a recorded place, which the next run does not act on again but still moves. A copy
of a message acted on already (a recreated folder, a second folder) is recognised by its Message-ID
and content and only moved. Mail that is not the program's is recorded as left and never touched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime

from mailer.core import listen
from mailer.core.inbound import Inbound
from mailer.core.model import Program
from mailer.errors import ConfigError, InputError
from mailer.load.inbound import recognise
from mailer.load.program import load_program
from mailer.shell import inbox_store
from mailer.shell.ledger import Ledger
from mailer.shell.mailbox import Mailbox, MailboxError, MessageRef, open_mailbox
from mailer.shell.settings import Settings


@dataclass(frozen=True, slots=True)
class Handled:
    """One message read this run, what it was and what it did (or, in a dry run, would do)."""

    ref: MessageRef
    inbound: Inbound
    effects: tuple[listen.Effect, ...]
    outcome: str  # acted, left, duplicate, seen; "would act" / "would leave" in a dry run


@dataclass
class InboxReport:
    """What an `inbox` run read and did."""

    mailbox: str
    dry_run: bool
    handled: list[Handled] = field(default_factory=list)
    moved: int = 0

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(h.outcome for h in self.handled)

    def lines(self) -> list[str]:
        """One line per effect, for people."""
        out = []
        for h in self.handled:
            for effect in h.effects:
                if not isinstance(effect, listen.Unmatched):
                    prefix = "would record" if self.dry_run else "recorded" if h.outcome == "acted" else h.outcome
                    out.append(f"{prefix}  {describe(effect)}")
        return out

    def summary(self) -> str:
        counts = self.outcomes
        if self.dry_run:
            return (f"inbox {self.mailbox}: {len(self.handled)} new message(s) read; would act on "
                    f"{counts['would act']}, leave {counts['would leave']} untouched (dry run: nothing recorded "
                    "or moved)")
        return (f"inbox {self.mailbox}: {len(self.handled)} new message(s) read; acted on {counts['acted']}, "
                f"{counts['duplicate']} already known, {counts['left']} left untouched; {self.moved} moved")


def describe(effect: listen.Effect) -> str:
    """An effect in a few words; never a message body."""
    match effect:
        case listen.Rsvp():
            stale = " (answers an older version)" if effect.stale else ""
            return f"RSVP {effect.partstat.lower()}: {effect.address}, {effect.cohort}/{effect.pair} at " \
                   f"{effect.conference}{stale}"
        case listen.Suppression():
            detail = f": {effect.detail}" if effect.detail else ""
            return f"no more prompts to {effect.address} ({effect.reason}{detail})"
        case listen.SoftBounce():
            return f"temporary failure {effect.count} of {listen.SOFT_BOUNCES_LIMIT} for {effect.address}"
        case listen.Contact():
            step = f" to {effect.step}" if effect.step else ""
            return f"contact: {effect.address} replied{step} ({effect.cohort}/{effect.pair})"
        case listen.CheckinAnswer():
            return f"check-in {effect.cohort}/{effect.pair} {effect.step}: {effect.answer}"
        case listen.OutOfOffice():
            return f"out of office: {effect.address} ({effect.subject})"
    return f"left alone: {effect.reason}"


def run(settings: Settings, *, now: datetime, dry_run: bool = False,
        mailbox: Mailbox | None = None) -> InboxReport:
    """Reads every new message of the inbox once; see the module docstring."""
    if now.tzinfo is None:
        raise InputError(["--now must carry a time zone offset, e.g. 2020-01-15T14:00:00Z"])
    program = load_program(settings.program_dir)
    box = mailbox if mailbox is not None else open_mailbox(settings)
    try:
        with Ledger.open(settings.database_path) as ledger:
            return process(ledger, program, box, now=now, dry_run=dry_run)
    finally:
        box.close()


def before_run(settings: Settings, ledger: Ledger, *, now: datetime) -> tuple[InboxReport | None, str | None]:
    """`run` and `serve` read the inbox first, under the run lock, so the plan honours what arrived (an
    unsubscribe, a bounce). A mailbox that cannot be read is reported and the run goes on sending."""
    try:
        box = open_mailbox(settings)
    except (ConfigError, MailboxError) as exc:
        return None, f"the inbox was not read: {exc}; the run went on sending"
    try:
        return process(ledger, load_program(settings.program_dir), box, now=now), None
    except MailboxError as exc:
        return None, f"the inbox {box.name} was not read to the end: {exc}; the run went on sending"
    finally:
        box.close()


def process(ledger: Ledger, program: Program, box: Mailbox, *, now: datetime, dry_run: bool = False) -> InboxReport:
    """Read, recognise, decide and record each new message of `box`, then move what was the program's."""
    report = InboxReport(mailbox=box.name, dry_run=dry_run)
    known = inbox_store.places(ledger, box.name)
    refs = box.refs()
    fresh = [r for r in refs if (r.uidvalidity, r.uid) not in known]
    # recorded by a run that stopped before moving them: move now, act never again
    to_move = [r for r in refs if (p := known.get((r.uidvalidity, r.uid))) is not None
               and p.outcome in (inbox_store.ACTED, inbox_store.DUPLICATE) and not p.moved]
    view = inbox_store.sent_view(ledger, program)
    for ref, data in box.fetch(fresh):
        inbound = recognise(data)
        effects = listen.decide(inbound, view)
        if dry_run:
            report.handled.append(Handled(ref, inbound, effects,
                                          "would act" if listen.acts(effects) else "would leave"))
            continue
        outcome = inbox_store.record(ledger, ref, data, inbound, effects, now)
        report.handled.append(Handled(ref, inbound, effects, outcome))
        if outcome in (inbox_store.ACTED, inbox_store.DUPLICATE):
            to_move.append(ref)
        if outcome == inbox_store.ACTED and any(isinstance(e, listen.SoftBounce) for e in effects):
            view = replace(view, soft_bounces=inbox_store.soft_bounces(ledger))
    if not dry_run and to_move:
        box.move_processed(to_move)
        inbox_store.mark_moved(ledger, to_move)
        report.moved = len(to_move)
    return report
