"""The SQLite ledger: migrations, durability settings, file mode."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailer.errors import LedgerError
from mailer.ledger import Ledger

NOW = datetime(2019, 8, 1, 13, tzinfo=UTC)


def test_new_ledger_is_owner_only_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as ledger:
        assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        secret = ledger.secret
    assert path.stat().st_mode & 0o777 == 0o600
    with Ledger.open(path) as again:
        assert again.secret == secret  # per installation, kept


def test_record_is_upsert_and_settles(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        ledger.record(key="c/p/s", cohort="c", pair="p", step="s", role=None, state="sent",
                      due_at=NOW, now=NOW, recipients=["a@example.org"], subject="Hi")
        ledger.record(key="c/p/t", cohort="c", pair="p", step="t", role=None, state="skipped",
                      due_at=NOW, now=NOW, reason="late")
        assert ledger.settled_keys() == {"c/p/s", "c/p/t"}
        rows = {r.key: r for r in ledger.rows()}
        assert rows["c/p/s"].recipients == ["a@example.org"] and rows["c/p/s"].sent_at
        assert rows["c/p/t"].reason == "late" and rows["c/p/t"].sent_at is None


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    Ledger.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(LedgerError, match="newer mentor-mailer"):
        Ledger.open(path)


def test_not_a_database_is_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger.open(path)


def test_naive_times_are_refused(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as ledger, pytest.raises(ValueError, match="aware"):
        ledger.record(key="k", cohort="c", pair="p", step="s", role=None, state="sent",
                      due_at=datetime(2020, 1, 1), now=NOW)  # noqa: DTZ001
