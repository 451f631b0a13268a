"""The inbox tables on a real SQLite file: places, copies, and what a record leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.core import listen
from mailer.core.inbound import Inbound
from mailer.errors import LedgerError
from mailer.shell import inbox_store
from mailer.shell.ledger import Ledger
from mailer.shell.mailbox import MessageRef
from tests.conftest import utc

NOW = utc(2020, 1, 21, 15)
DATA = b"From: a@example.org\r\nMessage-ID: <x@example.org>\r\n\r\nSTOP\r\n"
INBOUND = Inbound(kind="human", message_id="<x@example.org>", from_address="a@example.org", first_line="STOP")
STOP = (listen.Suppression("a@example.org", "unsubscribed", "replied 'STOP'", None),)
LEFT = (listen.Unmatched("mail that answers none of our messages"),)


def count(ledger: Ledger, table: str) -> int:
    return int(ledger.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_a_place_is_recorded_once_and_a_copy_elsewhere_acts_never(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        first = MessageRef("maildir:/m", 0, "1")
        assert inbox_store.record(ledger, first, DATA, INBOUND, STOP, NOW) == "acted"
        assert inbox_store.record(ledger, first, DATA, INBOUND, STOP, NOW) == "seen"
        assert inbox_store.record(ledger, MessageRef("imaps://c@h:993/INBOX", 7, "1"), DATA, INBOUND, STOP,
                                  NOW) == "duplicate"
        assert count(ledger, "suppressions") == 1 and count(ledger, "inbound") == 2
        assert inbox_store.places(ledger, "maildir:/m") == {(0, "1"): inbox_store.Place("acted", False)}
        inbox_store.mark_moved(ledger, [first])
        assert inbox_store.places(ledger, "maildir:/m")[(0, "1")].moved
        (suppressed,) = inbox_store.suppressions(ledger)
        assert (suppressed.address, suppressed.reason, suppressed.since) == (
            "a@example.org", "unsubscribed", "2020-01-21T15:00:00+00:00")


def test_mail_left_alone_never_blocks_a_later_copy(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        assert inbox_store.record(ledger, MessageRef("m", 1, "1"), DATA, INBOUND, LEFT, NOW) == "left"
        assert inbox_store.record(ledger, MessageRef("m", 1, "2"), DATA, INBOUND, STOP, NOW) == "acted"
        assert count(ledger, "suppressions") == 1


def test_a_failed_transaction_leaves_neither_place_nor_effect(tmp_path: Path) -> None:
    bad = (listen.Rsvp("u", "c", "p", "conf", "a@example.org", "ACCEPTED", 0, False, None),
           listen.Suppression("a@example.org", "unsubscribed", None, None))
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.conn.execute("CREATE TRIGGER boom BEFORE INSERT ON suppressions BEGIN SELECT RAISE(ABORT, 'x'); END")
        with pytest.raises(LedgerError, match="SQLite reports: x"):  # the trigger's abort, like a crash mid-record
            inbox_store.record(ledger, MessageRef("m", 1, "1"), DATA, INBOUND, bad, NOW)
        assert count(ledger, "inbound") == 0 and count(ledger, "rsvps") == 0
