"""The commands: each turns parsed arguments into one call into app/ and prints what a person reads; imports
inside functions are there for start-up time only."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from mailer.errors import EXIT_BAD_INPUT, EXIT_OK

if TYPE_CHECKING:
    from mailer.shell.settings import Settings
from mailer.cli.common import PROG, _console, _moment, _now, _print_problems, _refuse_path
from mailer.cli.terminal import _graceful_stop, _progress


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from mailer.app.check import check_program

    result = check_program(settings, now=_moment(settings, args.now))
    _print_problems(result.warnings, "warnings")
    _print_problems(result.problems, "problems")
    if result.problems:
        return EXIT_BAD_INPUT
    print(f"ok: {result.cohorts} cohort(s), {result.pairs} pair(s), {result.steps} step(s), "
          f"{result.renders} message(s) rendered in text and HTML")
    if args.smtp:
        from mailer.shell.smtp import SmtpTransport

        print(SmtpTransport.from_settings(settings).check())
    return EXIT_OK


def cmd_plan(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from mailer.app.queries import upcoming
    from mailer.core.status import plan_rows

    start = datetime.combine(args.start, time(0), tzinfo=UTC) if args.start else None
    end = datetime.combine(args.end, time(23, 59, 59), tzinfo=UTC) if args.end else None
    rows = plan_rows(upcoming(settings, now=_now(), start=start, end=end, cohorts=args.cohort))
    if args.csv:
        from mailer.core.csvout import write_csv

        write_csv(rows, ["date", "due_at", "cohort", "pair", "step", "to", "key"], sys.stdout)
        return EXIT_OK
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    from rich.table import Table

    table = Table("date", "cohort", "pair", "step", "to", title=f"{len(rows)} message(s) coming up")
    for r in rows:
        table.add_row(str(r["date"]), str(r["cohort"]), str(r["pair"]), str(r["step"]),
                      ", ".join([*r["to"], *(f"left out: {x}" for x in r["left_out"])]))  # type: ignore[attr-defined,misc]
    _console().print(table)
    return EXIT_OK


def cmd_preview(settings: Settings, args: argparse.Namespace) -> int:
    from mailer.app.queries import preview

    out = preview(settings, now=_now(), cohort=args.cohort, pair=args.pair, step=args.step, role=args.role,
                  fmt=args.format)
    sys.stdout.write(out)
    return EXIT_OK


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from mailer.app.send import run

    with _progress(enabled=not args.quiet and not args.dry_run) as progress, _graceful_stop() as stop:
        report = run(settings, now=_moment(settings, args.now), dry_run=args.dry_run, catch_up=args.catch_up,
                     limit=args.limit, cohorts=args.cohort, progress=progress, stop=stop,
                     new_ledger=args.new_ledger, skip_late=args.skip_late)
    if report.dry_run:
        for occ in report.planned:
            to = ", ".join(occ.pair.person(r).email for r in occ.addressed()) + occ.left_out_note
            print(f"would send  {occ.due_at.astimezone(occ.cohort.timezone):%Y-%m-%d %H:%M}  {occ.key}  to {to}")
        for occ in report.planned_skips:
            print(f"would skip  {occ.due_at.astimezone(occ.cohort.timezone):%Y-%m-%d %H:%M}  {occ.key}  "
                  f"({occ.skip_reason})")
    _print_problems(report.bad_rows, "roster rows left out")
    for cohort in report.broken:
        _print_problems(cohort.problems, f"{cohort.summary}")
    for note in report.notes:
        print(f"{PROG}: {note}", file=sys.stderr)
    for _, notice in report.notices:
        if not notice.startswith("cohort "):  # a broken cohort's problems are printed above
            print(f"{PROG}: {notice}", file=sys.stderr)
    for occ in report.held_late:
        print(f"held back: {occ.key}: {occ.skip_reason}", file=sys.stderr)
    for why in sorted({why for _, why in report.held_renames}):
        print(f"held back: {why}", file=sys.stderr)
    for key in report.recovered:
        print(f"uncertain: {key}: a previous run stopped while sending it; resending once", file=sys.stderr)
    for key, state, reply in report.failures:
        print(f"{state}: {key}: {reply}", file=sys.stderr)
    if report.aborted is not None:
        print(f"{PROG}: {report.aborted}", file=sys.stderr)
    for problem in report.digest_errors:
        print(f"{PROG}: {problem}", file=sys.stderr)
    if not args.quiet or report.exit_code:
        print(report.summary())
    return report.exit_code


def cmd_inbox(settings: Settings, args: argparse.Namespace) -> int:
    from mailer.app.inbox import run

    report = run(settings, now=_moment(settings, args.now), dry_run=args.dry_run)
    if not args.quiet or args.dry_run:
        for line in report.lines():
            print(line)
        print(report.summary())
    return EXIT_OK


def cmd_rehearse(settings: Settings, args: argparse.Namespace) -> int:
    from rich.table import Table

    from mailer.app.rehearse import rehearse

    if args.outbox is not None:
        _refuse_path(args.outbox, folder=True, what="--outbox")
    with _progress(enabled=True) as progress:
        result = rehearse(settings, outbox=args.outbox, cohorts=args.cohort, progress=progress)
    table = Table("date", "cohort", "step", "pairs", "messages", title="The year, as rehearsed")
    for day, cohort, step, pairs, messages in result.timeline:
        table.add_row(day.isoformat(), cohort, step, str(pairs), str(messages))
    _console().print(table)
    _print_problems(result.bad_rows, "roster rows left out")
    print(f"rehearsed: {result.messages} message(s) written to {result.outbox / 'new'}, "
          f"{result.skipped} skipped by the year's rules")
    return EXIT_OK if not result.bad_rows else 1


def cmd_invites(settings: Settings, args: argparse.Namespace) -> int:
    from mailer.app.queries import export_invites

    _refuse_path(args.out, folder=True, what="--out")
    now = _now()
    written = [path for cohort in dict.fromkeys(args.cohort)
               for path in export_invites(settings, now=now, cohort=cohort, out=args.out)]
    print(f"wrote {len(written)} invitation(s) to {args.out}")
    return EXIT_OK


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import logging

    from mailer.daemon import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    # one line per run is ours to log; APScheduler's own lines ("Running job", "executed successfully")
    # are for debugging only
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return serve(settings)


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from mailer.app.queries import html_report

    _refuse_path(args.out, folder=False, what="--out")
    print(f"wrote {html_report(settings, args.out, now=_now())}")
    return EXIT_OK


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from mailer.app.scaffold import TO_EDIT, init_program

    files = init_program(args.dir, today=_now().date())
    width = max(len(name) for name, _ in TO_EDIT)
    print(f"created {args.dir} ({len(files)} files). Edit, in {args.dir}:")
    for name, what in TO_EDIT:
        print(f"  {name.ljust(width)}  {what}")
    print(f"then run: mentor-mailer -C {args.dir} check   (and rehearse, to read the whole year)")
    return EXIT_OK


def cmd_units(settings: Settings, args: argparse.Namespace) -> int:
    from mailer.app.units import units, write_units

    # the units run the mentor-mailer of the interpreter running now: the venv the README made
    found = units(program_dir=settings.program_dir.resolve(), user=args.user,
                  executable=Path(sys.executable).parent / PROG)
    if args.out is None:
        sys.stdout.write("\n".join(u.text for u in found))
        return EXIT_OK
    for path in write_units(args.out, found):
        print(f"wrote {path}")
    return EXIT_OK


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from mailer.app.queries import status

    cohorts = status(settings, now=_now(), cohorts=args.cohort)
    if args.csv:
        from mailer.core.csvout import write_csv

        flat = [{"cohort": c.cohort, "step": s.step, "due": s.due, "description": s.description, **s.counts}
                for c in cohorts for s in c.steps]
        states = sorted({k for c in cohorts for s in c.steps for k in s.counts})
        write_csv(flat, ["cohort", "step", "due", "description", *states], sys.stdout)
        return EXIT_OK
    if args.json:
        print(json.dumps([asdict(c) for c in cohorts], indent=2, ensure_ascii=False))
        return EXIT_OK
    from rich.table import Table

    console = _console()
    for c in cohorts:
        table = Table("step", "due", "sent", "skipped", "failed", "other",
                      title=f"{c.cohort}: {c.name} ({c.pair_count} pairs) — next: {c.next_step or 'year complete'}")
        for s in c.steps:
            other = sum(v for k, v in s.counts.items() if k not in ("sent", "skipped", "failed"))
            table.add_row(s.step, s.due, str(s.counts["sent"]), str(s.counts["skipped"]),
                          str(s.counts["failed"]), str(other))
        console.print(table)
        if c.attention:
            needs = Table("pair", "step", "state", "detail", title=f"{c.cohort}: needs attention")
            for a in c.attention:
                needs.add_row(str(a["pair"]), str(a["step"]), str(a["state"]), str(a["detail"]))
            console.print(needs)
        if c.coming:
            soon = Table("date", "step", "messages", title=f"{c.cohort}: due in the next 30 days")
            for d in c.coming:
                soon.add_row(str(d["date"]), str(d["step"]), str(d["messages"]))
            console.print(soon)
    return EXIT_OK


