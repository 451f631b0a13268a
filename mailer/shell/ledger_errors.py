"""SQLite's errors turned into sentences, once, at the boundary: every statement the ledger runs goes through here."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mailer.errors import LedgerError


def explain(path: Path, exc: sqlite3.Error) -> LedgerError:
    """SQLite's error as one sentence a coordinator can act on, naming the ledger file. A failed statement
    rolls its transaction back, so nothing is ever half-recorded."""
    text = str(exc).lower()
    if "full" in text:
        what = "the disk holding it is full; free some space and run again"
    elif "disk i/o" in text:
        what = "writing it failed (a full disk, or a failing one); free some space and run again"
    elif "malformed" in text or "not a database" in text or "corrupt" in text:
        what = ("the file is damaged; restore it from a backup (README: \"Backing up the ledger\") or move it "
                "aside and confirm a fresh start with `run --new-ledger`")
    elif "readonly" in text or "read-only" in text:
        what = "it is read-only for this user; the sending commands need to write it"
    elif "unable to open" in text:
        what = "it cannot be opened; its folder must exist and be writable by the user running mentor-mailer"
    elif "locked" in text or "busy" in text:
        what = "another program holds it locked; try again in a minute"
    else:
        what = f"SQLite reports: {exc}"
    return LedgerError(f"ledger {path}: {what}")


class GuardedConnection:
    """The connection, with every SQLite error turned into a sentence once, here at the boundary."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn, self._path = conn, path

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise explain(self._path, exc) from None

    def executemany(self, sql: str, seq: Iterable[Any]) -> sqlite3.Cursor:
        try:
            return self._conn.executemany(sql, seq)
        except sqlite3.Error as exc:
            raise explain(self._path, exc) from None

    def close(self) -> None:
        self._conn.close()
