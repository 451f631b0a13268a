"""Loads a program folder into one core Program: every cohort, its roster and its steps, all problems at once."""

from __future__ import annotations

from pathlib import Path

from mailer.core.model import BrokenCohort, Cohort, Program
from mailer.errors import InputError, Problem, display_path
from mailer.load.cohort_file import load_cohort
from mailer.load.files import read_toml
from mailer.load.program_file import parse_program


def load_program(root: Path, *, cohort_ids: list[str] | None = None) -> Program:
    """Load every cohort under root/cohorts; raise InputError listing all file-level problems.

    Roster rows that are wrong do not raise: they are left out and listed in `skipped_rows`,
    so one bad row never stops the other pairs.
    """
    root = Path(root)
    cohorts_dir = root / "cohorts"
    program_file = cohorts_dir / "program.toml"
    problems: list[Problem] = []
    warnings: list[Problem] = []
    if not cohorts_dir.is_dir():
        raise InputError([Problem(display_path(cohorts_dir), None, None,
                                  "is missing: the program folder needs a cohorts/ folder "
                                  "(set MENTOR_MAILER_PROGRAM_DIR, or run from the program folder)")])
    default_doc = read_toml(program_file, root, problems)
    name, readings, default_steps, rules = parse_program(default_doc, display_path(program_file, root), problems,
                                                   warnings, root)

    cohorts: list[Cohort] = []
    skipped: list[Problem] = []
    found = sorted(p.parent for p in cohorts_dir.glob("*/cohort.toml"))
    if cohort_ids:
        known = {p.name for p in found}
        for cid in cohort_ids:
            if cid not in known:
                problems.append(Problem(display_path(cohorts_dir, root), None, "cohort",
                                        f"'{cid}' not found; cohorts are: {', '.join(sorted(known)) or 'none'}"))
        found = [p for p in found if p.name in cohort_ids]
    elif not found:
        problems.append(Problem(display_path(cohorts_dir, root), None, None,
                                "holds no cohort: expected cohorts/<cohort-id>/cohort.toml"))
    if problems:  # the program's own file, or the cohorts asked for: nothing can be planned
        raise InputError(problems)
    broken: list[BrokenCohort] = []
    for folder in found:
        # a cohort's problems stop that cohort only: the others are planned and sent as ever
        own: list[Problem] = []
        rows: list[Problem] = []
        steps = default_steps
        override = folder / "program.toml"
        if override.exists():
            doc = read_toml(override, root, own)
            _, _, steps, _ = parse_program(doc, display_path(override, root), own, warnings, root, steps_only=True)
        cohort = load_cohort(folder, root, steps, own, rows, warnings, rules)
        if own or cohort is None:
            broken.append(BrokenCohort(folder.name, (*own, *rows)))  # all at once: the bad rows too
        else:
            cohorts.append(cohort)
            skipped.extend(rows)
    return Program(root=root, name=name, readings=tuple(readings), cohorts=tuple(cohorts),
                   skipped_rows=tuple(skipped), warnings=tuple(warnings), broken=tuple(broken))
