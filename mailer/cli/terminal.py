"""The terminal: a progress bar on a terminal only, and signals that let the message in flight finish; imports
inside functions are there for start-up time only."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

from mailer.cli.common import PROG

if TYPE_CHECKING:
    pass


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


