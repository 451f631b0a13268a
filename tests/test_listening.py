"""What the coordinator learns from the inbox: the digest, the report and `status --json`, end to end."""

from __future__ import annotations

import json
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path

from mailer.app.queries import html_report, status
from mailer.app.send import run as send
from mailer.core.heard import Heard, pair_rows, silent_pairs
from mailer.core.records import Suppressed
from mailer.load.program import load_program
from mailer.shell import inbox_store
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings
from tests.conftest import utc
from tests.imapd import Imapd
from tests.test_inbox import (  # noqa: F401
    NOW,
    UNRELATED,
    Sent,
    bounce,
    folder_state,
    imap_settings,
    maildir,
    replace_settings,
    reply,
    rsvp,
    sent,
    unsubscribe,
)


def test_silent_pairs_come_first_and_no_answer_is_never_declined(program_dir: Path) -> None:
    program = load_program(program_dir)
    heard = Heard(last_contact={("2019-2020", "p02"): "2020-01-10T00:00:00+00:00",
                                ("2019-2020", "p03"): "2019-10-01T00:00:00+00:00"},
                  welcomed={("2019-2020", p): "2019-08-01T13:00:00+00:00" for p in ("p01", "p02", "p03")},
                  invited={("2019-2020", "p01"): {"midwinter-2020": ("renee.cote@example.org", "x@example.org")}},
                  rsvps={("2019-2020", "p01"): {"midwinter-2020": {"x@example.org": "declined"}}},
                  suppressed=(Suppressed("x@example.org", "complaint", "2020-01-02T00:00:00+00:00", "abuse"),))
    silent = silent_pairs(program, heard, now=datetime.fromisoformat("2020-01-21T00:00:00+00:00"), days=45)
    assert [(s.pair, s.last_contact is None) for s in silent][:2] == [("p01", True), ("p03", False)]
    assert "p02" not in {s.pair for s in silent if s.cohort == "2019-2020"}  # in touch 11 days ago
    cohort = program.cohort("2019-2020")
    assert cohort is not None
    rows = {r["pair"]: r for r in pair_rows(cohort, heard)}
    assert rows["p01"]["rsvp"] == {"midwinter-2020": {"renee.cote@example.org": "none", "x@example.org": "declined"}}
    assert rows["p02"]["last_contact"] == "2020-01-10" and rows["p01"]["last_contact"] is None


def _digests(settings: Settings) -> list[Message]:
    out = []
    for path in sorted((settings.outbox_path / "new").iterdir()):
        msg = message_from_bytes(path.read_bytes())
        if str(msg["X-Mentor-Mailer-Key"]).startswith("digest/"):
            out.append(msg)
    return out


def _text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode("utf-8")
    raise AssertionError("no text part")


def test_the_year_listens_end_to_end_through_dovecot(settings: Settings, sent: Sent, imapd: Imapd,  # noqa: F811
                                                     imap_user: str, tmp_path: Path) -> None:
    """Invitations went out (the `sent` fixture); a REPLY, a human reply, a bounce and an unsubscribe come
    back through Dovecot; the next run reads them first, leaves those addresses out, and the digest says so."""
    imapd.append(imap_user, [reply(sent), rsvp(sent), bounce(sent), unsubscribe(sent), UNRELATED])
    settings = replace_settings(imap_settings(settings, imapd, imap_user), digest=True)
    with Ledger.open(settings.database_path) as ledger:
        before = {r[0] for r in ledger.conn.execute("SELECT key FROM messages")}
    report = send(settings, now=utc(2020, 1, 21, 15))
    assert report.inbox is not None and report.inbox.outcomes == {"acted": 4, "left": 1}
    assert folder_state(imapd, imap_user, "INBOX") == [(b"Message-ID: <n1@shop.example>", ())]
    digest = _text(_digests(settings)[-1])
    assert "zoe.ng@example.com gets no more prompts: hard-bounce" in digest  # told today, under Needs you
    assert "Pairs with no sign of contact for 45 days\n-----------------------------------------\n  None." in digest
    assert "midwinter-2020, 2019-2020 pair p01: Renée Côté: no answer, José Muñoz: declined" in digest
    assert "lukasz.wojcik@example.com (2019-2020 pair p03): unsubscribed since 2020-01-21" in digest
    assert "zoe.ng@example.com (2019-2020 pair p02): hard-bounce since 2020-01-21; the server said: 5.1.1" in digest
    assert "1 message(s) left in the inbox as not the program's" in digest
    assert _digests(settings)[-1]["X-Auto-Response-Suppress"] == "All"

    later = send(settings, now=utc(2020, 7, 1, 15), catch_up=True)  # the rest of the year
    assert later.inbox is not None and later.inbox.handled == []
    digest = _text(_digests(settings)[-1])
    assert digest.index("Pairs with no sign of contact") < digest.index("This run")
    silent = digest.split("Pairs with no sign of contact", 1)[1].split("\n\n", 1)[0]
    assert "2019-2020 pair p02: no sign of contact since the welcome (163 days ago)" in silent
    assert "2019-2020 pair p01: last sign of contact 2020-01-21 (162 days ago)" in silent
    assert silent.index("pair p02:") < silent.index("pair p01:")  # none at all since the welcome: first
    with Ledger.open(settings.database_path) as ledger:
        rows = [r for r in ledger.conn.execute("SELECT key, recipients, state, reason FROM messages")
                if r["key"] not in before]
    assert len(rows) > 20
    assert not [r["key"] for r in rows if "zoe.ng@" in (r["recipients"] or "") or "wojcik@" in (r["recipients"] or "")]
    assert [r for r in rows if r["key"].startswith("2019-2020/p02/") and r["state"] == "sent"]  # Dagný still hears
    skipped = [r for r in rows if r["key"].startswith("2019-2020/p03/") and r["key"].endswith("/mentee")]
    assert all(r["state"] == "skipped" and "it unsubscribed" in r["reason"] for r in skipped)

    cohorts = {c.cohort: c for c in status(settings, now=utc(2020, 7, 1, 16))}
    pairs = {p["pair"]: p for p in json.loads(json.dumps(cohorts["2019-2020"].pairs))}
    assert pairs["p01"]["last_contact"] == "2020-01-21"
    assert pairs["p01"]["rsvp"]["midwinter-2020"] == {"renee.cote@example.org": "none",
                                                      "jose.munoz@example.org": "declined"}
    assert pairs["p02"]["suppressed"] == [{"address": "zoe.ng@example.com", "reason": "hard-bounce",
                                          "since": "2020-01-21T15:00:00+00:00"}]
    assert pairs["p03"]["suppressed"][0]["reason"] == "unsubscribed" and pairs["p03"]["last_contact"] is None

    page = html_report(settings, tmp_path / "report.html", now=utc(2020, 7, 1, 16)).read_text(encoding="utf-8")
    assert '<h2 id="heard-h">Replies and contact</h2>' in page and "unsubscribed since 2020-01-21" in page


def test_a_mailbox_that_cannot_be_read_is_reported_and_the_run_goes_on(settings: Settings, tmp_path: Path) -> None:
    settings = replace_settings(settings, inbox=f"maildir:{tmp_path / 'missing'}")
    report = send(settings, now=utc(2019, 8, 1, 15), catch_up=True, new_ledger=True)
    assert report.sent > 0
    assert any(note.startswith("the inbox was not read: MENTOR_MAILER_INBOX maildir:") for note in report.notes)


def test_checkins_answers_reach_the_digest_and_help_is_flagged(settings: Settings, sent: Sent,  # noqa: F811
                                                               tmp_path: Path) -> None:
    from mailer.core import tokens

    token = tokens.make_checkin(sent.secret, "2019-2020", "p02", "readings", "help")
    mail = (f"From: dagny.jonsdottir@example.org\r\nTo: mentoring@example.org\r\nSubject: We'd like help ({token})"
            "\r\nMessage-ID: <h1@example.org>\r\n\r\n").encode()
    box = maildir(tmp_path / "Maildir", [mail])
    settings = replace_settings(settings, inbox=f"maildir:{box}", digest=True)
    send(settings, now=utc(2020, 1, 21, 15))
    digest = _text(_digests(settings)[-1])
    assert "2019-2020 pair p02 would like help (readings check-in from dagny.jonsdottir@example.org)" in digest
    assert "NEEDS YOU: 2019-2020 pair p02, readings: we'd like help" in digest
    with Ledger.open(settings.database_path) as ledger:
        assert inbox_store.heard(ledger).checkins == {("2019-2020", "p02"): {"readings": "help"}}
