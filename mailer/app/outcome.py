"""What a run did: counts per cohort and step, every failure and bad row named, and its exit code."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from mailer.core.model import BrokenCohort
from mailer.core.occurrence import Occurrence
from mailer.core.records import DEFERRED, FAILED, SENT, SKIPPED, UNCERTAIN
from mailer.errors import EXIT_OK, EXIT_SEND_FAILED, Problem, TransportError

if TYPE_CHECKING:
    from mailer.app.inbox import InboxReport


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
    notes: list[str] = field(default_factory=list)  # things the coordinator should know (a clock gone back)
    held_late: list[Occurrence] = field(default_factory=list)  # too many late skips: held, not recorded
    already: list[tuple[Occurrence, str]] = field(default_factory=list)  # received under an old key (renamed)
    held_renames: list[tuple[Occurrence, str]] = field(default_factory=list)  # held: a renamed step, or new?
    held_back: int = 0  # not tried: the transport stopped the run (a server down); each stays due
    went_live: int = 0  # sent to people over SMTP after a trial run had put them only in the outbox
    contended: int = 0
    recovered: list[str] = field(default_factory=list)  # keys a crashed run left `sending`
    stopped: bool = False  # asked to stop (a signal) before the end
    aborted: TransportError | None = None
    dry_run: bool = False
    by_step: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (cohort, step, state)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (key, state, the server's reply)
    bad_rows: list[Problem] = field(default_factory=list)
    broken: list[BrokenCohort] = field(default_factory=list)  # cohorts held back by bad files
    notices: list[tuple[str, str]] = field(default_factory=list)  # (cohort, text) for today's digest
    planned: list[Occurrence] = field(default_factory=list)  # dry run: what would go
    planned_skips: list[Occurrence] = field(default_factory=list)
    pairs_sent: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (cohort, step) -> pairs
    invites: Counter[str] = field(default_factory=Counter)  # REQUEST, UPDATE, CANCEL sent
    digests: int = 0
    digest_errors: list[str] = field(default_factory=list)
    idle: bool = False  # nothing was due: the run stopped at the fast path
    next_due: datetime | None = None  # the next time a message of the year falls due
    pending: bool = False  # something due now was left (a limit, a signal, a retry): no idle fast path
    inbox: InboxReport | None = None  # what the run read from the inbox first (MENTOR_MAILER_INBOX)

    def count(self, occ: Occurrence, state: str) -> None:
        self.by_step[(occ.cohort.id, occ.step_label, state)] += 1
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
        if any((self.failed, self.deferred, self.uncertain, self.refused, self.bad_rows, self.held_late,
                self.broken, self.held_renames)):
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
            if self.went_live:
                extra.append(f"{self.went_live} of them had only gone to the outbox before (a trial run)")
            if extra:
                line += ", " + ", ".join(extra)
        if self.bad_rows:
            line += f"; {len(self.bad_rows)} roster problem(s) left pairs out"
        if self.held_renames:
            line += f"; {len(self.held_renames)} message(s) of a step that may be a renamed one held back"
        if self.held_back:
            line += f"; {self.held_back} more message(s) not tried, due again at the next run"
        if self.broken:
            line += f"; {len(self.broken)} cohort(s) held back by problems in their files"
        if self.held_late:
            line += (f"; {len(self.held_late)} message(s) past the late window held back, not skipped "
                     "(is the clock right? --catch-up sends them, --skip-late records them as skipped)")
        if self.stopped:
            line += "; stopped early by a signal"
        if self.inbox is not None and self.inbox.handled:
            line += f"; inbox: {len(self.inbox.handled)} read, {self.inbox.outcomes['acted']} acted on"
        return line
