"""The mentor-mailer command, one of the two edges: argv in, the clock read once, one call into app/, text out,
an exit code back.

Heavy modules (jinja2, pydantic, rich, sqlite3) are imported inside the commands so that `--help` and a cron
run's start stay fast; every such import is there for start-up time only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from mailer.cli.common import PROG
from mailer.cli.parser import build_parser
from mailer.errors import EXIT_OK, MailerError

__all__ = ["build_parser", "main"]


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


