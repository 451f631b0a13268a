"""The mentor-mailer command, one of the two edges: argv in, the clock read once, one call into app/, text out,
an exit code back.

Heavy modules (jinja2, pydantic, rich, sqlite3) are imported inside the commands so that `--help` and a cron
run's start stay fast; every such import is there for start-up time only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailer import __version__
from mailer.errors import EXIT_BAD_INPUT, EXIT_OK, MailerError

if TYPE_CHECKING:
    from mailer.shell.settings import Settings

PROG = "mentor-mailer"


def _now() -> datetime:
    """The clock, read here and in the daemon only; everything below takes `now`."""
    return datetime.now(UTC)


def _aware(value: str) -> datetime | date:
    """An ISO date-time with an offset; or a date alone, which means midnight in the program's zone."""
    if len(value) == 10:
        return _day(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date-time such as 2020-01-15T14:00:00Z") from None
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError(f"'{value}' needs a time zone offset, e.g. {value}Z or {value}-05:00")
    return dt


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date such as 2020-01-15") from None


NOW_HELP = ("act as if it were this moment: an ISO date-time with an offset (2020-01-15T14:00:00Z), or a date "
            "(2027-01-01: midnight in the program's time zone); default: now")
COHORT_HELP = "only this cohort (repeatable; default: every cohort)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Walk every mentor/mentee pair of a mentoring program through its year by email.",
        epilog="Start with:  mentor-mailer rehearse   (writes the whole year to ./rehearsal/)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-C", "--program-dir", type=Path, metavar="DIR",
                        help="the program folder (default: $MENTOR_MAILER_PROGRAM_DIR or the current folder)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=f"{summary}\n\nexample:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    # in the order a coordinator meets them: set up, check, look, send, watch, then the rest
    p = command("init", "Create a new program folder: an example cohort, an empty roster, program, templates.",
                "mentor-mailer init my-program && cd my-program && mentor-mailer check")
    p.add_argument("dir", type=Path, metavar="DIR", help="the new program folder (may exist, without cohorts/)")
    p.set_defaults(func=cmd_init)

    p = command("check", "Validate every cohort, roster, the program and every template; list all problems.",
                "mentor-mailer check --smtp")
    p.add_argument("--now", type=_aware, metavar="DATETIME", help=NOW_HELP.replace("act as if it were this "
                   "moment", "check the ledger's invitations as of this moment"))
    p.add_argument("--smtp", action="store_true", help="also connect to the SMTP server, upgrade to TLS and log "
                   "in as a run would, sending nothing (default: off)")
    p.set_defaults(func=cmd_check)

    p = command("rehearse", "Run the whole year against a throwaway ledger, writing every email to a folder.",
                "mentor-mailer rehearse --outbox /tmp/year")
    p.add_argument("--cohort", action="append", metavar="C", help=COHORT_HELP)
    p.add_argument("--outbox", type=Path, metavar="DIR", help="where the year's emails go (default: ./rehearsal)")
    p.set_defaults(func=cmd_rehearse)

    p = command("preview", "Render one message of one pair and step, as text, HTML or a whole .eml.",
                "mentor-mailer preview --pair p01 --step welcome --format text")
    p.add_argument("--pair", required=True, metavar="P", help="the pair id, as in roster.csv (required)")
    p.add_argument("--step", required=True, metavar="S", help="the step key, as in plan or status (required)")
    p.add_argument("--cohort", metavar="C", help="needed when the pair id is in several cohorts (default: the "
                   "one cohort that has it)")
    p.add_argument("--role", choices=("mentor", "mentee"),
                   help="for a step sent to each partner: whose email (default: both, one after the other)")
    p.add_argument("--format", choices=("text", "html", "eml"), default="text", help="default: text")
    p.set_defaults(func=cmd_preview)

    p = command("plan", "Show the messages coming up: date, cohort, pair, step and recipients.",
                "mentor-mailer plan --from 2019-09-01 --to 2019-12-31 --cohort 2019-2020")
    p.add_argument("--cohort", action="append", metavar="C", help=COHORT_HELP)
    p.add_argument("--from", dest="start", type=_day, metavar="DATE", help="first day (default: today)")
    p.add_argument("--to", dest="end", type=_day, metavar="DATE", help="last day (default: 30 days on)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (default: a table)")
    p.add_argument("--csv", action="store_true", help="print CSV, safe to open in a spreadsheet (default: a table)")
    p.set_defaults(func=cmd_plan)

    p = command("run", "Send what is due now, each message once, and print one summary line.",
                "mentor-mailer run            (from cron, hourly)")
    p.add_argument("--now", type=_aware, metavar="DATETIME", help=NOW_HELP)
    p.add_argument("--dry-run", action="store_true", help="list what would go; send and record nothing")
    p.add_argument("--catch-up", action="store_true",
                   help="also send steps older than the late window (default 14 days) instead of skipping them")
    p.add_argument("--limit", type=int, metavar="N", help="send at most N messages (default: no limit)")
    p.add_argument("--new-ledger", action="store_true",
                   help="confirm a fresh start: the ledger knows nothing of a year already under way")
    p.add_argument("--skip-late", action="store_true",
                   help="record messages past the late window as skipped, even more than "
                        "MENTOR_MAILER_LATE_SKIP_LIMIT (default 5)")
    p.add_argument("--cohort", action="append", metavar="C", help=COHORT_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when all went well (default: a "
                   "summary line)")
    p.set_defaults(func=cmd_run)

    p = command("status", "Show, per cohort and step, what was sent, skipped or failed, and what is next.",
                "mentor-mailer status --cohort 2019-2020")
    p.add_argument("--cohort", action="append", metavar="C", help=COHORT_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (default: a table)")
    p.add_argument("--csv", action="store_true", help="print one CSV row per cohort and step, spreadsheet-safe "
                   "(default: a table)")
    p.set_defaults(func=cmd_status)

    p = command("report", "Write one self-contained HTML page: timeline per cohort, failures, next run's plan.",
                "mentor-mailer report --out report.html")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.html",
                   help="the page to write, in an existing folder (required)")
    p.set_defaults(func=cmd_report)

    p = command("invites", "Write each pair's current meetup invitation as an .ics file, to import by hand.",
                "mentor-mailer invites --cohort 2019-2020 --out invites/")
    p.add_argument("--cohort", action="append", required=True, metavar="C",
                   help="the cohort (required; repeatable)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="the folder to write into, created if missing (required)")
    p.set_defaults(func=cmd_invites)

    p = command("inbox", "Read MENTOR_MAILER_INBOX: record RSVPs, bounces, replies, check-ins and unsubscribes once.",
                "mentor-mailer inbox --dry-run")
    p.add_argument("--now", type=_aware, metavar="DATETIME", help=NOW_HELP)
    p.add_argument("--dry-run", action="store_true", help="show what the new mail means; record and move nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when all went well")
    p.set_defaults(func=cmd_inbox)

    p = command("serve", "Run as a daemon: send what is due on MENTOR_MAILER_SCHEDULE (default 09:00 daily).",
                "mentor-mailer serve --schedule '5 * * * *'")
    p.add_argument("--schedule", metavar="CRON", help="when to run, in crontab syntax, such as '5 * * * *' "
                   "(default: $MENTOR_MAILER_SCHEDULE, else '0 9 * * *')")
    p.set_defaults(func=cmd_serve)

    p = command("units", "Print the systemd units that run this program (a service with an hourly timer, or serve).",
                "mentor-mailer -C /srv/mentoring units --out /tmp/units && sudo cp /tmp/units/* /etc/systemd/system/")
    p.add_argument("--out", type=Path, metavar="DIR", help="write the three files into DIR (default: print them)")
    p.add_argument("--user", default="mentoring", metavar="USER",
                   help="the account the units run as (default: mentoring)")
    p.set_defaults(func=cmd_units)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    if args.command == "plan" and args.start and args.end and args.start > args.end:
        parser.error(f"--from {args.start} is after --to {args.end}")
    try:
        from mailer.shell.settings import load_settings

        overrides: dict[str, Any] = {}
        if args.program_dir is not None:
            overrides["program_dir"] = args.program_dir
        if getattr(args, "schedule", None):
            overrides["schedule"] = args.schedule
        settings = load_settings(**overrides)
        code: int = args.func(settings, args)
        sys.stdout.flush()
        return code
    except MailerError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `plan --csv | head` closed the pipe: what was read is all the reader wanted
        with contextlib.suppress(OSError, ValueError):  # so the interpreter's last flush finds no pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _moment(settings: Settings, value: datetime | date | None) -> datetime:
    """--now as given; a date alone is midnight in the program's (first cohort's) time zone."""
    if value is None:
        return _now()
    if isinstance(value, datetime):
        return value
    from mailer.load.program import load_program

    cohorts = load_program(settings.program_dir).cohorts
    zone = cohorts[0].timezone if cohorts else UTC
    return datetime.combine(value, time(0), tzinfo=zone)


def _refuse_path(path: Path, *, folder: bool, what: str) -> None:
    """An ordinary path mistake, said in one sentence before anything is written."""
    if folder and path.exists() and not path.is_dir():
        raise MailerError(f"{what} {path} is a file; give a folder")
    if not folder:
        if path.is_dir():
            raise MailerError(f"{what} {path} is a folder; give a file name such as {path / 'report.html'}")
        if not path.parent.is_dir():
            raise MailerError(f"{what} {path}: the folder {path.parent} does not exist; create it first")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _print_problems(problems: Sequence[object], title: str) -> None:
    if problems:
        err = _console(stderr=True)
        err.print(f"{title}:", markup=False)
        for p in problems:
            err.print(f"  {p}", markup=False)


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


class _graceful_stop:
    """SIGTERM (and a first Ctrl-C) let the message in flight finish; the run then stops and reports.

    A second signal ends the run at once. That is safe at any point: the message in flight stays
    `sending` for the next run to recover (uncertain if its body had gone out), SQLite rolls back
    any transaction left open, and the lock goes with the process's file descriptor.
    """

    def __enter__(self) -> Any:
        import signal
        import threading

        self.flag = threading.Event()
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self.flag.is_set

    def _handle(self, signum: int, _frame: object) -> None:
        import signal

        if self.flag.is_set():  # a second signal: stop now
            for s, handler in self.previous.items():  # a third one meets the handlers from before the run
                signal.signal(s, handler)
            self._say(f"{PROG}: stopping now; the message in flight is left for the next run")
            raise KeyboardInterrupt
        self.flag.set()
        # said at once, so whoever sent the signal knows it was heard (signals sent back to back
        # arrive as one: only a signal sent after this line counts as the second)
        self._say(f"{PROG}: stopping after the message in flight; signal again to stop at once")

    @staticmethod
    def _say(line: str) -> None:
        """One line to stderr from a signal handler: os.write, because print may be mid-write already."""
        import contextlib
        import os

        with contextlib.suppress(OSError, ValueError):
            os.write(sys.stderr.fileno(), (line + "\n").encode("utf-8", "replace"))

    def __exit__(self, *exc: object) -> None:
        import signal

        for s, handler in self.previous.items():
            signal.signal(s, handler)


class _progress:
    """A rich progress bar on a terminal; nothing at all under cron or in a pipe."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled and sys.stdout.isatty()
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.start()
        self.task = self.bar.add_task("sending", total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        if total >= 30:  # a handful of messages needs no bar
            self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


if __name__ == "__main__":
    raise SystemExit(main())
