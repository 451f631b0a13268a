"""The SQLite ledger: migrations, durability settings, file mode."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailer.errors import LedgerError
from mailer.shell.ledger import Claim, Ledger

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


def _claim(ledger: Ledger, key: str = "c/p/s", now: datetime = NOW) -> Claim | None:
    return ledger.claim(key=key, cohort="c", pair="p", step="s", role=None, due_at=NOW, now=now,
                        message_id="<m@example.org>", recipients=["a@example.org", "b@example.org"], subject="Hi")


def test_claim_is_exclusive_and_sending_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as ledger, Ledger.open(path) as other:
        claim = _claim(ledger)
        assert claim is not None and claim.previous is None
        assert _claim(other) is None  # a second runner cannot take it
        # committed: visible to another connection before any SMTP happens
        state = other.conn.execute("SELECT state FROM messages WHERE key='c/p/s'").fetchone()[0]
        assert state == "sending"


def test_crashed_sending_becomes_uncertain_and_is_resent_once(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as ledger:
        assert _claim(ledger) is not None
        ledger.mark_body("c/p/s")  # ... and the process dies here, between the body and the reply
    with Ledger.open(path) as ledger:
        assert ledger.recover(NOW) == ["c/p/s"]
        assert "c/p/s" not in ledger.settled_keys(NOW)
        assert "c/p/s" in ledger.retrying_keys()
        claim = _claim(ledger)
        assert claim is not None and claim.is_resend
        ledger.finish(claim, state="sent", now=NOW, attempts=1, delivered=["a@example.org", "b@example.org"])
        row = ledger.rows()[0]
        assert (row.state, row.resends, row.delivered) == ("sent", 1, ("a@example.org", "b@example.org"))
    with Ledger.open(path) as ledger:
        assert _claim(ledger) is None  # sent is final


def test_uncertain_twice_stays_uncertain_and_settled(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        _claim(ledger)
        ledger.mark_body("c/p/s")
        ledger.recover(NOW)
        claim = _claim(ledger)
        assert claim is not None
        ledger.mark_body("c/p/s")
        ledger.recover(NOW)  # the resend was cut in the same window
        assert "c/p/s" in ledger.settled_keys(NOW)  # resent once already: never a third copy
        assert _claim(ledger) is None
        assert ledger.rows()[0].state == "uncertain"


def test_crash_before_the_body_is_plainly_due_again(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        _claim(ledger)  # dies during MAIL or RCPT: nothing can have arrived
        assert ledger.recover(NOW) == []
        row = ledger.rows()[0]
        assert row.state == "deferred" and row.resends == 0
        claim = _claim(ledger)
        assert claim is not None and not claim.is_resend


def test_deferred_waits_for_its_next_attempt_and_keeps_delivered(tmp_path: Path) -> None:
    later = NOW + timedelta(minutes=30)
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        claim = _claim(ledger)
        assert claim is not None
        ledger.finish(claim, state="deferred", now=NOW, attempts=3, delivered=["a@example.org"],
                      reason="451 try later", next_attempt_at=later)
        assert "c/p/s" in ledger.settled_keys(NOW)
        assert "c/p/s" not in ledger.settled_keys(later)
        again = _claim(ledger, now=later)
        assert again is not None and again.delivered == ("a@example.org",)
        ledger.finish(again, state="sent", now=later, attempts=1, delivered=["b@example.org"],
                      refused={"c@example.org": "550 no"})
        row = ledger.rows()[0]
        assert row.delivered == ("a@example.org", "b@example.org")
        assert row.refused == {"c@example.org": "550 no"} and row.attempts == 4


def test_skip_never_overwrites_an_attempt(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        claim = _claim(ledger)
        assert claim is not None
        ledger.finish(claim, state="deferred", now=NOW, attempts=1, next_attempt_at=NOW)
        ledger.skip(key="c/p/s", cohort="c", pair="p", step="s", role=None, due_at=NOW, now=NOW, reason="late")
        assert ledger.rows()[0].state == "deferred"


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
    with pytest.raises(LedgerError, match="the file is damaged; restore it from a backup"):
        Ledger.open(path)


def test_naive_times_are_refused(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as ledger, pytest.raises(ValueError, match="aware"):
        ledger.skip(key="k", cohort="c", pair="p", step="s", role=None, reason="x",
                    due_at=datetime(2020, 1, 1), now=NOW)  # noqa: DTZ001
