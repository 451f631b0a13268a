"""Locks beside the ledger: one sending run at a time, one daemon at a time, released even if the process dies."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from mailer.errors import LedgerError, LockBusy


@contextmanager
def file_lock(path: Path, busy: str) -> Iterator[None]:
    """An exclusive flock on `path` (created owner-only), or LockBusy(`busy`) when another process holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise LedgerError(f"{path}: cannot create the lock file: {exc.strerror}; the folder must be writable "
                          "by the user running mentor-mailer") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(busy) from None
        yield
    finally:
        os.close(fd)


def run_lock(db_path: Path) -> AbstractContextManager[None]:
    """One sending run at a time per ledger."""
    lock = db_path.with_name(db_path.name + ".lock")
    return file_lock(lock, f"another mentor-mailer run holds {lock}; this run sent nothing")


def serve_lock(db_path: Path) -> AbstractContextManager[None]:
    """One daemon per ledger: a second `serve` says so and exits 75."""
    lock = db_path.with_name(db_path.name + ".serve.lock")
    return file_lock(lock, f"another mentor-mailer serve holds {lock}")
