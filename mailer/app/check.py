"""`check`: every cohort, roster, the program and every template, rendered for every pair."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from jinja2 import TemplateError

from mailer.app.scaffold import PLACEHOLDER_NAME, example_readings
from mailer.core.compose import context, template_name
from mailer.core.ical import build_ics
from mailer.core.invitation import build_invite
from mailer.core.model import Pair, Person, Program
from mailer.core.occurrence import InviteChange
from mailer.core.plan import build_plan
from mailer.core.render import template_problem
from mailer.core.year import pair_schedule, year_schedule
from mailer.errors import InputError, Problem
from mailer.load.files import program_files
from mailer.load.program import load_program
from mailer.load.templates import renderer_for
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings


@dataclass(slots=True)
class CheckResult:
    problems: list[Problem | str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    cohorts: int = 0
    pairs: int = 0
    steps: int = 0
    renders: int = 0


def check_program(settings: Settings, *, now: datetime | None = None) -> CheckResult:
    """Everything wrong with the program folder, all at once; nothing is sent or recorded. With `now`, also
    what the ledger knows that the files no longer say (an invitation held by a pair whose row is gone)."""
    result = CheckResult()
    root = settings.program_dir
    templates = root / "templates" / "email"
    renderer = renderer_for(templates)
    result.problems.extend(program_files(root)[1])  # what a run's fast path would stop on
    # syntax of every template file, used or not, so a typo is found before its month comes
    if templates.is_dir():
        for path in sorted(templates.glob("*.j2")):
            try:
                renderer.env.get_template(path.name)
            except TemplateError as exc:
                result.problems.append(template_problem(exc, path.name))
    try:
        program = load_program(root)
    except InputError as exc:
        result.problems.extend(exc.problems)
        return result
    result.problems.extend(init_leftovers(program))
    result.warnings.extend(env_warnings(root))
    result.warnings.extend(readings_warning(program))
    result.problems.extend(program.skipped_rows)
    result.problems.extend(p for b in program.broken for p in b.problems)
    result.warnings.extend(program.warnings)
    if now is not None:
        plan = build_plan(program, Ledger.view(settings.database_path, now), now=now, window=None)
        result.warnings += [Problem(f"cohorts/{cohort}/roster.csv", None, None, text)
                            for cohort, text in plan.notices()]
    result.cohorts = len(program.cohorts)
    result.pairs = sum(len(c.pairs) for c in program.cohorts)
    result.steps = sum(len(c.steps) for c in program.cohorts)
    seen: set[str] = {str(p) for p in result.problems}
    # a cohort with no pairs yet (a new roster) is checked with a stand-in pair, so its templates are too
    stand_in = Pair("example", Person("Alex Example", "alex@example.org", "alex@example.org", "mentor"),
                    Person("Sam Example", "sam@example.org", "sam@example.org", "mentee"))
    empty = [replace(c, pairs=(stand_in,)) for c in program.cohorts if not c.pairs]
    occurrences = [*year_schedule(program),
                   *(o for c in empty for o in pair_schedule(c, stand_in))]
    for occ in occurrences:
        variants = [occ]
        if occ.has_invite:  # the update and the cancellation must render too, should they be needed
            variants += [replace(occ, change=InviteChange("REQUEST", 1, "The meetup moved.")),
                         replace(occ, change=InviteChange("CANCEL", 2, "The meetup is cancelled."))]
        for variant in variants:
            try:
                renderer.render(context(program, variant), template_name(variant))
                if variant.has_invite:
                    build_ics(build_invite(variant, variant.due_at))
                result.renders += 1
            except InputError as exc:
                for p in exc.problems:
                    if str(p) not in seen:
                        seen.add(str(p))
                        result.problems.append(p)
            except ValueError as exc:
                text = f"{occ.cohort.id}/cohort.toml: the invitation for {occ.step.key} cannot be written: {exc}"
                if text not in seen:
                    seen.add(text)
                    result.problems.append(text)
    return result


def init_leftovers(program: Program) -> list[Problem]:
    """What `init` wrote that must not reach a participant: the placeholder name, the example readings."""
    found = []
    if program.name == PLACEHOLDER_NAME:
        found.append(Problem("cohorts/program.toml", None, "program.name",
                             f"is still init's placeholder '{PLACEHOLDER_NAME}': write your program's name"))
    return found


def env_warnings(root: Path) -> list[Problem]:
    """The program folder's .env, when it holds a password that other accounts can read."""
    env = root / ".env"
    try:
        mode = env.stat().st_mode
        text = env.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    holds_password = any(line.split("=", 1)[0].strip().endswith("_PASSWORD") and line.split("=", 1)[1].strip()
                         for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    if holds_password and mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [Problem(".env", None, None, f"holds a password and is readable by others (mode "
                        f"{stat.S_IMODE(mode):o}): run chmod 600 .env")]
    return []


def readings_warning(program: Program) -> list[Problem]:
    """init's example reading list, left unchanged."""
    if program.readings and program.readings == example_readings():
        return [Problem("cohorts/program.toml", None, "readings",
                        "is init's example list: replace it with readings from your own field, or delete it")]
    return []
