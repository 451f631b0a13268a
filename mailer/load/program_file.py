"""program.toml (and a cohort's own program.toml): the program's name, its reading list and its steps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast, get_args

from mailer.core.model import Audience, LatePolicy, StepDef
from mailer.errors import Problem
from mailer.load.fields import STEP_KEY_RE, Collector, clean_text, kind
from mailer.load.templates import step_template_problems

# The keys each table may hold; any other is reported as a warning (a typo like `sendhour` would
# otherwise be dropped without a word, and the default used instead).
PROGRAM_KEYS = frozenset({"program", "readings", "steps"})
STEP_KEYS = frozenset({"key", "template", "to", "late", "description", "days_after_start", "month", "day",
                       "renamed_from", "new",
                       "conference", "days_before"})


def parse_program(
    doc: dict[str, Any] | None, shown: str, problems: list[Problem], warnings: list[Problem], root: Path, *,
    steps_only: bool = False,
) -> tuple[str, list[str], list[StepDef], dict[str, Any]]:
    col = Collector(shown)
    name = "Mentoring program"
    readings: list[str] = []
    rules: dict[str, Any] = {}
    if doc is None:  # unreadable: already reported
        return name, readings, [], rules
    if steps_only:
        col.unknown_keys(doc, frozenset({"steps"}))
    else:
        col.unknown_keys(doc, PROGRAM_KEYS)
        head = doc.get("program", {})
        if not isinstance(head, dict):
            col.add("program", "expected a [program] table with name = \"...\"")
        else:
            col.unknown_keys(head, frozenset({"name", "send_days", "late_pickup_days"}), "program.")
            rules = _rules(head, col)
            if "name" in head:
                if not isinstance(head["name"], str) or not head["name"].strip():
                    col.add("program.name", f"expected the program's name as text, got {kind(head['name'])}")
                else:
                    name = clean_text(head["name"], col, "program.name") or name
        for i, item in enumerate(table_list(doc, "readings", col), 1):
            col.unknown_keys(item, frozenset({"citation"}), f"readings[{i}].")
            cite = item.get("citation")
            if not isinstance(cite, str) or not cite.strip():
                col.add(f"readings[{i}].citation", "expected a non-empty text")
            else:
                readings.append(clean_text(cite, col, f"readings[{i}].citation"))
    steps: list[StepDef] = []
    seen: set[str] = set()
    raw_steps = table_list(doc, "steps", col)
    if "steps" not in doc:
        col.add("steps", "is missing: expected at least one [[steps]] table")
    elif isinstance(doc["steps"], list) and not doc["steps"]:
        col.add("steps", "expected at least one [[steps]] table")
    templates = root / "templates" / "email"
    for i, item in enumerate(raw_steps, 1):
        col.unknown_keys(item, STEP_KEYS, f"steps[{i}].")
        step = _parse_step(item, f"steps[{i}]", col, templates, shown)
        if step is None:
            continue
        if step.key in seen:
            col.add(f"steps[{i}].key", f"'{step.key}' is used by another step; keys must be unique")
            continue
        seen.add(step.key)
        steps.append(step)
    problems.extend(col.problems)
    warnings.extend(col.warnings)
    return name, readings, steps, rules


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _rules(head: dict[str, Any], col: Collector) -> dict[str, Any]:
    """The year's rules the [program] table may set: `send_days` and `late_pickup_days`, as Cohort fields."""
    rules: dict[str, Any] = {}
    if "send_days" in head:
        raw = head["send_days"]
        days = [str(d).strip().lower()[:3] for d in raw] if isinstance(raw, list) else None
        if not days or any(d not in DAY_NAMES for d in days):
            col.add("program.send_days", f"expected a list of weekdays such as [\"mon\", \"tue\", \"wed\", "
                                         f"\"thu\", \"fri\"], got {kind(raw)}")
        else:
            rules["send_days"] = frozenset(DAY_NAMES.index(d) for d in days)
    if "late_pickup_days" in head:
        raw = head["late_pickup_days"]
        if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= 60:
            col.add("program.late_pickup_days", f"expected a number of days from 0 to 60, got {kind(raw)}")
        else:
            rules["late_pickup_days"] = raw
    return rules


def _parse_step(item: dict[str, Any], where: str, col: Collector, templates: Path,
                source: str) -> StepDef | None:
    before = len(col.problems)
    key = item.get("key")
    if not isinstance(key, str) or not STEP_KEY_RE.match(key):
        col.add(f"{where}.key", f"expected lowercase letters, digits and '-' (at most 64), got {kind(key)}")
        key = "?"
    template = item.get("template")
    if not isinstance(template, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", template):
        col.add(f"{where}.template", "expected a template name such as 'welcome' (letters, digits, '_' and '-', "
                                     f"at most 64), got {kind(template)}")
        template = "?"
    else:
        for message in step_template_problems(templates, template):
            col.add(f"{where}.template", message)
    to = item.get("to", "pair")
    if to not in get_args(Audience):
        col.add(f"{where}.to", f"expected 'pair' or 'each', got {kind(to)}")
    late = item.get("late", "latest")
    if late not in get_args(LatePolicy):
        col.add(f"{where}.late", f"expected 'all', 'latest' or 'skip', got {kind(late)}")
    description = item.get("description", key)
    if not isinstance(description, str):
        col.add(f"{where}.description", f"expected text, got {kind(description)}")
        description = str(key)
    else:
        description = clean_text(description, col, f"{where}.description")
    forms = [
        "days_after_start" in item,
        "month" in item or "day" in item,
        "conference" in item or "days_before" in item,
    ]
    if sum(forms) != 1:
        col.add(where, "expected exactly one of: days_after_start = N | month = M, day = D | "
                       "conference = \"*\" or a key, days_before = N")
    ints: dict[str, int | None] = {}
    for name, low, high in (("days_after_start", 0, 400), ("month", 1, 24), ("day", 1, 31),
                            ("days_before", 0, 400)):
        value = item.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not low <= value <= high):
            col.add(f"{where}.{name}", f"expected a whole number from {low} to {high}, got {kind(value)}")
            value = None
        ints[name] = value
    if forms[1] and ("month" not in item or "day" not in item):
        col.add(where, "month and day go together")
    conference = item.get("conference")
    if forms[2] and (not isinstance(conference, str) or "days_before" not in item):
        col.add(where, "a conference step needs conference = \"*\" (or a conference key) and days_before = N")
    elif isinstance(conference, str) and conference != "*" and not STEP_KEY_RE.match(conference):
        col.add(f"{where}.conference", f"expected \"*\" or a conference key, got {kind(conference)}")
    renamed = item.get("renamed_from", [])
    if isinstance(renamed, str):
        renamed = [renamed]
    if not isinstance(renamed, list) or not all(isinstance(r, str) and STEP_KEY_RE.match(r) for r in renamed):
        col.add(f"{where}.renamed_from", f"expected the step's earlier key, or a list of them, got {kind(renamed)}")
        renamed = []
    new = item.get("new", False)
    if not isinstance(new, bool):
        col.add(f"{where}.new", f"expected true or false, got {kind(new)}")
    if len(col.problems) != before:
        return None
    return StepDef(key=key, template=template, to=cast(Audience, to), late=cast(LatePolicy, late),
                   description=description, days_after_start=ints["days_after_start"],
                   month=ints["month"], day=ints["day"], conference=conference,
                   days_before=ints["days_before"], source=source, renamed_from=tuple(renamed), new=bool(new))


def table_list(doc: dict[str, Any], name: str, col: Collector) -> list[dict[str, Any]]:
    value = doc.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        col.add(name, f"expected [[{name}]] tables, got {kind(value)}")
        return []
    return value
