"""Places a program's steps on the dates of one cohort's year, with every clash or stray date reported."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

from mailer.core.model import Conference, Step, StepDef
from mailer.errors import Problem


def place_steps(defs: list[StepDef], start: date, end: date, conferences: list[Conference],
                cohort_file: str, warnings: list[Problem] | None = None) -> tuple[list[Step], list[Problem]]:
    """The cohort's steps in due order, and what stops a step from being placed (named by `cohort_file`).

    A conference step that would fall before the year starts, for a conference inside the year, goes on
    the year's first day (as it would for a pair that joins late), and `warnings` says so."""
    steps: list[Step] = []
    problems: list[Problem] = []
    made: dict[str, str] = {}  # placed key -> the step definition that made it
    for d in defs:
        placed: list[tuple[str, date, Conference | None]] = []
        if d.days_after_start is not None:
            placed.append((d.key, days_before(start, -d.days_after_start), None))
        elif d.month is not None and d.day is not None:
            placed.append((d.key, month_day(start, d.month, d.day), None))
        elif d.conference is not None and d.days_before is not None:
            targets = conferences if d.conference == "*" else [c for c in conferences if c.key == d.conference]
            if d.conference != "*" and not targets:
                problems.append(Problem(
                    d.source, None, f"steps.{d.key}.conference",
                    f"names conference '{d.conference}', which {cohort_file} does not list"))
            for target in targets:
                key = f"{d.key}-{target.key}" if d.conference == "*" else d.key
                placed.append((key, days_before(target.start, d.days_before), target))
        suffix = {key: key[len(d.key):] for key, _, _ in placed}  # "-midwinter-2020" for a per-conference step
        for key, due, conf in placed:
            if key in made:
                problems.append(Problem(
                    d.source, None, f"steps.{d.key}",
                    f"makes step '{key}' for {cohort_file}, and so does step '{made[key]}'; rename one"))
                continue
            made[key] = d.key
            if conf is not None and due < start <= conf.start:
                if warnings is not None:
                    warnings.append(Problem(cohort_file, None, f"conferences.{conf.key}",
                                            f"starts {(conf.start - start).days} days into the year, so step "
                                            f"'{key}' ({d.days_before} days before it) goes out on the year's "
                                            f"first day, {start}"))
                due = start
            if not start <= due <= end:
                problems.append(Problem(
                    d.source, None, f"steps.{d.key}",
                    f"puts '{key}' on {due}, outside the program year {start}–{end} of {cohort_file}"))
                continue
            steps.append(Step(key=key, template=d.template, to=d.to, late=d.late,
                              description=d.description, due=due, conference=conf,
                              renamed_from=tuple(old + suffix[key] for old in d.renamed_from), new=d.new))
    steps.sort(key=lambda s: (s.due, s.key))
    return steps, problems


def month_day(start: date, month: int, day: int) -> date:
    """The `day` of the program year's `month` (1 = the month the year starts), clamped to month end."""
    index = start.month - 1 + month - 1
    year, month0 = start.year + index // 12, index % 12
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day, last))


def days_before(day: date, n: int) -> date:
    return day - timedelta(days=n)
