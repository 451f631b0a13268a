"""The command line's grammar: every command, option, default and help text; imports inside functions are
for start-up time only."""

from __future__ import annotations

import argparse
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mailer import __version__

if TYPE_CHECKING:
    pass
from mailer.cli.commands import (
    cmd_check,
    cmd_inbox,
    cmd_init,
    cmd_invites,
    cmd_plan,
    cmd_preview,
    cmd_rehearse,
    cmd_report,
    cmd_run,
    cmd_serve,
    cmd_status,
    cmd_units,
)
from mailer.cli.common import PROG


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


