"""Scale cases (issue 12): do `status`, `report` and a run after the invitations grow at most linearly?

Each is measured at S pairs and at 4·S pairs (S = --scale-pairs; default the suite's N, so 10,000 and
40,000, or 1,000 and 4,000 with --quick), and the ratio of the two is printed for wall time and peak
RSS: at most 4 means at most linear growth.

7. status: `mentor-mailer status --json` over a year's ledger;
8. report: `mentor-mailer report --out FILE` over the same ledger;
9. run after the invitations: the midwinter meetup's time changes after its invitations went out,
   and `run --now 2019-12-21T18:00:00Z` sends every pair its update (SEQUENCE 1).

A year's ledger is written by mentor-mailer itself: `run --now` on each day something falls due
(taken from `plan --json` of a 4-pair twin with the same cohorts), over SMTP to the sink, untimed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

# `kit` below is benchmarks/run.py itself, passed in: this module runs both as benchmarks.scale (tests)
# and beside a script run as __main__, where importing run.py again would make a second BenchError
# that the driver's handler does not catch. `suite` is its Suite, `program` its Program.

YEAR_FROM, YEAR_TO = "2019-08-01", "2020-07-31"
INVITES_DAY = "2019-12-20"  # meetup-midwinter-2020 goes out: each pair then holds an invitation
UPDATE_NOW = "2019-12-21T18:00:00Z"
OLD_TIME, NEW_TIME = "time = 12:30:00", "time = 13:00:00"  # the sample's midwinter meetup, then moved
FACTOR = 4

CASES = {
    "7": "7. status --json, year's ledger",
    "8": "8. report --out, year's ledger",
    "9": "9. run after the invitations",
}
LABELS = {f"{k}{size}": f"{v} at {'S' if size == 's' else f'{FACTOR}S'}" for k, v in CASES.items() for size in "sl"}


def due_days(suite: Any, kit: ModuleType) -> list[str]:
    """The instants a daily cron would have run at: the end of each day something falls due."""
    twin = kit.make_program(suite.work / "program-dates", 4)
    done = suite.run([*kit.mailer_argv(), "-C", str(twin.root), "plan", "--from", YEAR_FROM, "--to", YEAR_TO, "--json"],
                     cwd=suite.work)
    days = sorted({row["due_at"][:10] for row in json.loads(done.stdout)})
    return [f"{d}T23:59:00Z" for d in days]


def drive_year(suite: Any, kit: ModuleType, program: Any, days: list[str]) -> tuple[Path, Path]:
    """The year's ledger at program's size, and a copy of it as it was after the invitations day."""
    db = suite.ledgers / f"year-{program.pairs}.sqlite3"
    after_invites = suite.ledgers / f"after-invites-{program.pairs}.sqlite3"
    kit.remove_ledger(db)
    kit.remove_ledger(after_invites)
    total = 0
    for now in days:
        done = suite.run([*kit.mailer_argv(), "run", "--now", now],
                         env=kit.mailer_env(program.root, db, suite.sink.port), cwd=suite.work)
        total += kit.summary_counts(done.stdout)[0]
        if now.startswith(INVITES_DAY):
            kit.copy_ledger(db, after_invites)
    if not after_invites.exists():
        raise kit.BenchError(f"no step fell due on {INVITES_DAY}: the sample's conferences changed?")
    suite.say(f"  year's ledger for {program.pairs:,} pairs: {len(days)} runs, {total:,} messages")
    return db, after_invites


def moved_meetup(kit: ModuleType, program: Any) -> Path:
    """A copy of the program in which the midwinter meetup starts half an hour later."""
    moved = program.root.with_name(program.root.name + "-moved")
    if moved.exists():
        shutil.rmtree(moved)
    shutil.copytree(program.root, moved)
    for toml in (moved / "cohorts").glob("*/cohort.toml"):
        text = toml.read_text(encoding="utf-8")
        if text.count(OLD_TIME) != 1:
            raise kit.BenchError(f"{toml}: expected one {OLD_TIME!r} (the midwinter meetup)")
        toml.write_text(text.replace(OLD_TIME, NEW_TIME), encoding="utf-8")
    return moved


def measure(suite: Any, kit: ModuleType, program: Any, size: str, year: Path, after_invites: Path) -> None:
    env = kit.mailer_env(program.root, year, suite.sink.port)
    moved = moved_meetup(kit, program)
    samples: dict[str, list[Any]] = {"7": [], "8": [], "9": []}
    for i in range(suite.repeat):
        done = suite.run([*kit.mailer_argv(), "status", "--json"], env=env, cwd=suite.work)
        if not json.loads(done.stdout):
            raise kit.BenchError("status --json printed no cohort")
        samples["7"].append(kit.Sample(done.wall, done.rss_kib))
        page = suite.work / f"report-{size}.html"
        done = suite.run([*kit.mailer_argv(), "report", "--out", str(page)], env=env, cwd=suite.work)
        if page.stat().st_size < 1000:
            raise kit.BenchError(f"report: {page} is nearly empty")
        samples["8"].append(kit.Sample(done.wall, done.rss_kib, bytes=page.stat().st_size))
        db = suite.ledgers / f"case-9{size}-{i}.sqlite3"
        kit.copy_ledger(after_invites, db)
        suite.sink.reset()
        done = suite.run([*kit.mailer_argv(), "run", "--now", UPDATE_NOW],
                         env=kit.mailer_env(moved, db, suite.sink.port), cwd=suite.work)
        sent, _ = kit.summary_counts(done.stdout)
        if sent != program.pairs:
            raise kit.BenchError(f"case 9: expected an update for each of {program.pairs:,} pairs, sent {sent}")
        samples["9"].append(kit.Sample(done.wall, done.rss_kib, sent, suite.sink.stats().get("b2", 0)))
    for key, got in samples.items():
        suite.results[f"{key}{size}"] = kit.Result(f"{key}{size}", got)
        suite.say(f"  {LABELS[key + size]} ({program.pairs:,} pairs): {got[0].wall:.2f} s, "
                  f"{got[0].rss_kib / 1024:.0f} MiB")


def run_scale(suite: Any, kit: ModuleType, pairs: int) -> None:
    """Cases 7-9 at `pairs` and FACTOR times as many."""
    days = due_days(suite, kit)
    for size, n in (("s", pairs), ("l", FACTOR * pairs)):
        suite.say(f"  scale: writing the program and a year's ledger for {n:,} pairs")
        program = kit.make_program(suite.work / f"program-scale-{n}", n)
        year, after_invites = drive_year(suite, kit, program, days)
        measure(suite, kit, program, size, year, after_invites)


def ratio_rows(results: dict[str, object]) -> list[tuple[str, float | None, float, str]]:
    """For the report: each case's wall time and peak RSS at 4·S over at S; linear growth is 4."""
    rows: list[tuple[str, float | None, float, str]] = []
    for key, name in CASES.items():
        small, large = results.get(f"{key}s"), results.get(f"{key}l")
        for what, attr in (("wall", "wall"), ("peak RSS", "rss_kib")):
            value = None
            if small is not None and large is not None and getattr(small, attr):
                value = getattr(large, attr) / getattr(small, attr)
            rows.append((f"ratio case {key} {what}, {name[3:].split(',')[0]}, at {FACTOR}S vs S", value, float(FACTOR),
                         "" if value is not None else "(skipped)"))
    return rows
