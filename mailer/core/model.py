"""The program's vocabulary as plain frozen values: people, pairs, conferences, steps, cohorts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from mailer.errors import Problem

Role = Literal["mentor", "mentee"]
Audience = Literal["pair", "each"]
LatePolicy = Literal["all", "latest", "skip"]
PairStatus = Literal["active", "paused", "withdrawn"]


@dataclass(frozen=True, slots=True)
class Person:
    """One participant as the roster names them."""

    name: str
    email: str  # as the coordinator wrote it, normalised
    ascii_email: str  # what goes on the wire (IDN domains in punycode)
    role: Role
    timezone: ZoneInfo | None = None
    given_name: str | None = None  # the roster's <role>_first_name: the name greetings use

    @property
    def first_name(self) -> str:
        if self.given_name:
            return self.given_name
        return self.name.split()[0] if self.name.split() else self.name


@dataclass(frozen=True, slots=True)
class Pair:
    """A mentor and a mentee, with when they are active in the program."""

    id: str
    mentor: Person
    mentee: Person
    joined: date | None = None
    status: PairStatus = "active"
    status_from: date | None = None
    status_until: date | None = None
    notes: str = ""

    def people(self) -> tuple[Person, Person]:
        return (self.mentor, self.mentee)

    def person(self, role: Role) -> Person:
        return self.mentor if role == "mentor" else self.mentee

    def partner(self, role: Role) -> Person:
        return self.mentee if role == "mentor" else self.mentor


@dataclass(frozen=True, slots=True)
class Meetup:
    """The pair meetup a cohort proposes at a conference."""

    day: date
    start: time
    minutes: int
    place: str


@dataclass(frozen=True, slots=True)
class Conference:
    key: str
    name: str
    city: str
    venue: str
    start: date
    end: date
    timezone: ZoneInfo
    status: Literal["confirmed", "cancelled"]
    meetup: Meetup | None

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


@dataclass(frozen=True, slots=True)
class StepDef:
    """A step as the program file defines it, before it is placed in a cohort's year."""

    key: str
    template: str
    to: Audience
    late: LatePolicy
    description: str
    days_after_start: int | None = None
    month: int | None = None
    day: int | None = None
    conference: str | None = None  # a conference key, or "*" for one step per conference
    days_before: int | None = None
    source: str = "cohorts/program.toml"  # the file that defines it, for messages
    renamed_from: tuple[str, ...] = ()  # earlier keys of this step: what went out under them is not resent
    new: bool = False  # a step added mid-year, not a renamed one (see core/renames.py)


@dataclass(frozen=True, slots=True)
class Step:
    """A step placed in one cohort's year: a key, a due date and, for meetups, its conference."""

    key: str
    template: str
    to: Audience
    late: LatePolicy
    description: str
    due: date
    conference: Conference | None = None
    renamed_from: tuple[str, ...] = ()  # earlier keys, placed like this one (`meetup-<conference>`)
    new: bool = False


@dataclass(frozen=True, slots=True)
class Coordinator:
    name: str
    email: str
    ascii_email: str


@dataclass(frozen=True, slots=True)
class Cohort:
    """One cohort: its year, its people and its steps, already validated."""

    id: str
    name: str
    start: date
    end: date
    timezone: ZoneInfo
    send_hour: int
    coordinator: Coordinator
    evaluations: dict[str, str | None]
    conferences: tuple[Conference, ...]
    steps: tuple[Step, ...]
    pairs: tuple[Pair, ...]
    path: Path
    language: str = "en"  # BCP 47 tag of the emails' language: <html lang>, for screen readers
    send_days: frozenset[int] = frozenset(range(7))  # weekdays (Monday 0) a step may go out on
    late_pickup_days: int = 3  # a late pair's welcome first; what it picks up from the year this many days on

    def send_time(self, day: date, people: tuple[Person, ...] = ()) -> datetime:
        """When a step due on `day` goes out: the cohort's send hour, in its time zone; or, for people
        whose roster row gives a time zone, that hour in theirs. An email to two people goes when it is
        the send hour for both, so neither gets it before that hour locally."""
        at = time(self.send_hour)
        times = [datetime.combine(day, at, tzinfo=p.timezone or self.timezone) for p in people if p.timezone]
        base = datetime.combine(day, at, tzinfo=self.timezone)
        if not times:
            return base
        if len(times) < len(people):
            times.append(base)
        return max(times)

    def step(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), None)

    def pair(self, pair_id: str) -> Pair | None:
        """The pair with this id, compared without case."""
        wanted = pair_id.lower()
        return next((p for p in self.pairs if p.id.lower() == wanted), None)


@dataclass(frozen=True, slots=True)
class BrokenCohort:
    """A cohort whose files have problems: it is left out of every run until they are put right."""

    id: str
    problems: tuple[Problem, ...]

    @property
    def summary(self) -> str:
        return f"cohort {self.id}: {len(self.problems)} problem(s) in its files hold back all of its messages"


@dataclass(frozen=True, slots=True)
class Program:
    """Everything loaded from a program folder: cohorts, readings and what was wrong with rows."""

    root: Path
    name: str
    readings: tuple[str, ...]
    cohorts: tuple[Cohort, ...]
    skipped_rows: tuple[Problem, ...] = field(default=())  # roster rows left out of every run
    warnings: tuple[Problem, ...] = field(default=())
    broken: tuple[BrokenCohort, ...] = field(default=())  # cohorts left out until their files are right

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates" / "email"

    def cohort(self, cohort_id: str) -> Cohort | None:
        return next((c for c in self.cohorts if c.id == cohort_id), None)
