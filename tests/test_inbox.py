"""The inbox use case end to end: a sent sample year, replies in a Maildir or in Dovecot, effects exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from mailer.app import inbox
from mailer.app.send import run as send
from mailer.cli import main
from mailer.core import tokens
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings
from tests.conftest import utc
from tests.imapd import IMAP_PASSWORD, Imapd

NOW = utc(2020, 1, 21, 15)
EFFECT_TABLES = ("suppressions", "soft_bounces", "rsvps", "contacts", "checkins", "out_of_office")


@dataclass(frozen=True)
class Sent:
    """What the sample year's first months sent, as replies need it."""

    welcome_id: str
    readings_key: str
    uid: str
    secret: bytes


@pytest.fixture
def sent(settings: Settings) -> Sent:
    """The sample program sent everything due by 2020-01-20 (outbox transport), meetup invitations included."""
    send(settings, now=utc(2020, 1, 20, 15), catch_up=True, new_ledger=True)
    with Ledger.open(settings.database_path) as ledger:
        welcome = ledger.conn.execute("SELECT message_id FROM messages WHERE key='2019-2020/p01/welcome'").fetchone()
        uid = ledger.conn.execute("SELECT uid FROM invites WHERE pair='p01' AND cohort='2019-2020'").fetchone()
        return Sent(welcome[0], "2019-2020/p01/readings", uid[0], ledger.secret)


def reply(sent: Sent) -> bytes:
    return (f"From: Renée Côté <renee.cote@example.org>\r\nTo: mentoring@example.org, jose.munoz@example.org\r\n"
            f"Subject: Re: Welcome\r\nDate: Tue, 21 Jan 2020 10:00:00 -0500\r\nMessage-ID: <r1@example.org>\r\n"
            f"In-Reply-To: {sent.welcome_id}\r\nReferences: {sent.welcome_id}\r\n\r\nWe met!\r\n").encode()


def rsvp(sent: Sent) -> bytes:
    ics = (f"BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{sent.uid}\r\n"
           "SEQUENCE:0\r\nDTSTAMP:20200121T150000Z\r\n"
           "ATTENDEE;PARTSTAT=DECLINED:mailto:jose.munoz@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    return ("From: jose.munoz@example.org\r\nTo: mentoring@example.org\r\nSubject: Declined: Meetup\r\n"
            "Message-ID: <r2@example.org>\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n{ics}").encode()


def bounce(sent: Sent) -> bytes:
    return (b"From: MAILER-DAEMON@mx.example.org\r\nTo: mentoring@example.org\r\nSubject: Undelivered Mail\r\n"
            b"Message-ID: <b1@mx.example.org>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
            b"Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; zoe.ng@example.com\r\n"
            b"Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n"
            b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nX-Mentor-Mailer-Key: 2019-2020/p02/readings\r\n"
            b"Subject: Readings\r\n\r\n--b--\r\n")


def unsubscribe(sent: Sent) -> bytes:
    token = tokens.make_unsubscribe(sent.secret, "2019-2020", "p03", "mentee")
    return (f"From: lukasz.wojcik@example.com\r\nTo: mentoring@example.org\r\nSubject: unsubscribe-{token}\r\n"
            "Message-ID: <u1@example.com>\r\n\r\n").encode()


UNRELATED = (b"From: newsletter@shop.example\r\nTo: mentoring@example.org\r\nSubject: Sale!\r\n"
             b"Message-ID: <n1@shop.example>\r\n\r\nBuy now.\r\n")


def program_mail(sent: Sent) -> list[bytes]:
    return [reply(sent), rsvp(sent), bounce(sent), unsubscribe(sent)]


def effect_rows(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    with Ledger.open(settings.database_path) as ledger:
        return {t: [tuple(r)[:-1] for r in ledger.conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2")]
                for t in EFFECT_TABLES}


def assert_effects_once(settings: Settings) -> None:
    rows = effect_rows(settings)
    assert [r[:2] for r in rows["suppressions"]] == [("lukasz.wojcik@example.com", "unsubscribed"),
                                                     ("zoe.ng@example.com", "hard-bounce")]
    assert [(r[1], r[5]) for r in rows["rsvps"]] == [("jose.munoz@example.org", "DECLINED")]
    assert [r[:5] for r in rows["contacts"]] == [("2019-2020", "p01", "welcome", "renee.cote@example.org",
                                                  "2020-01-21T15:00:00+00:00")]
    assert rows["contacts"][0][5] == 1  # the partner was addressed too


def maildir(root: Path, messages: list[bytes]) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for n, data in enumerate(messages):
        (root / "new" / f"17000000{n:02d}.m{n}.host").write_bytes(data)
    return root


def test_maildir_end_to_end_exactly_once(settings: Settings, sent: Sent, tmp_path: Path) -> None:
    box = maildir(tmp_path / "Maildir", [*program_mail(sent), UNRELATED])
    settings = replace_settings(settings, inbox=f"maildir:{box}")
    report = inbox.run(settings, now=NOW)
    assert report.outcomes == {"acted": 4, "left": 1} and report.moved == 4
    assert_effects_once(settings)
    assert [p.read_bytes() for p in (box / "new").iterdir()] == [UNRELATED]
    assert len(list((box / ".mentor-mailer.processed" / "new").iterdir())) == 4
    again = inbox.run(settings, now=NOW)
    assert again.handled == [] and again.moved == 0
    assert_effects_once(settings)


def test_a_dry_run_records_and_moves_nothing(settings: Settings, sent: Sent, tmp_path: Path) -> None:
    box = maildir(tmp_path / "Maildir", [*program_mail(sent), UNRELATED])
    report = inbox.run(replace_settings(settings, inbox=f"maildir:{box}"), now=NOW, dry_run=True)
    assert report.outcomes == {"would act": 4, "would leave": 1}
    assert any("no more prompts to zoe.ng@example.com (hard-bounce: 5.1.1" in line for line in report.lines())
    assert len(list((box / "new").iterdir())) == 5
    assert all(rows == [] for rows in effect_rows(settings).values())


def replace_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update=changes)


def imap_settings(settings: Settings, imapd: Imapd, user: str, folder: str = "INBOX") -> Settings:
    return replace_settings(settings, inbox=f"imaps://{user}@{imapd.host}:{imapd.tls_port}/{folder}",
                            imap_password=SecretStr(IMAP_PASSWORD), imap_ca_file=imapd.ca_file)


def folder_state(imapd: Imapd, user: str, folder: str) -> list[tuple[bytes, tuple[bytes, ...]]]:
    client = imapd.connect(user)
    try:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        answer = client.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
        return sorted((v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].strip(),
                       tuple(f for f in v[b"FLAGS"] if f != b"\\Recent")) for v in answer.values())
    finally:
        client.logout()


def test_dovecot_end_to_end_peek_move_and_rerun(settings: Settings, sent: Sent, imapd: Imapd,
                                                imap_user: str) -> None:
    imapd.append(imap_user, [*program_mail(sent), UNRELATED])
    imapd.append(imap_user, [UNRELATED.replace(b"<n1@", b"<n2@")], flags=[b"\\Flagged"])
    settings = imap_settings(settings, imapd, imap_user)
    report = inbox.run(settings, now=NOW)
    assert report.outcomes == {"acted": 4, "left": 2} and report.moved == 4
    assert_effects_once(settings)
    assert folder_state(imapd, imap_user, "INBOX") == [(b"Message-ID: <n1@shop.example>", ()),
                                                       (b"Message-ID: <n2@shop.example>", (b"\\Flagged",))]
    processed = folder_state(imapd, imap_user, "mentor-mailer.processed")
    assert len(processed) == 4 and all(flags == () for _, flags in processed)  # never \Seen
    assert inbox.run(settings, now=NOW).handled == []
    assert_effects_once(settings)


def test_a_recreated_folder_and_a_second_folder_apply_nothing_twice(settings: Settings, sent: Sent, imapd: Imapd,
                                                                    imap_user: str) -> None:
    imapd.append(imap_user, program_mail(sent), folder="Mentoring")
    settings = imap_settings(settings, imapd, imap_user, "Mentoring")
    assert inbox.run(settings, now=NOW).outcomes == {"acted": 4}
    client = imapd.connect(imap_user)
    client.delete_folder("Mentoring")  # a new UIDVALIDITY; the same messages come back (a server restore)
    client.logout()
    imapd.append(imap_user, program_mail(sent), folder="Mentoring")
    imapd.append(imap_user, program_mail(sent), folder="Other")
    report = inbox.run(settings, now=NOW)
    assert report.outcomes == {"duplicate": 4} and report.moved == 4
    other = inbox.run(imap_settings(settings, imapd, imap_user, "Other"), now=NOW)
    assert other.outcomes == {"duplicate": 4}
    assert_effects_once(settings)
    assert folder_state(imapd, imap_user, "Mentoring") == [] and folder_state(imapd, imap_user, "Other") == []


CRASH = textwrap.dedent("""
    import os, signal, sys
    from datetime import UTC, datetime
    from mailer.app import inbox
    from mailer.shell import imap
    from mailer.shell.settings import load_settings

    def die(self, refs):  # the moment after the ledger committed, before anything moved
        os.kill(os.getpid(), signal.SIGKILL)

    imap.ImapMailbox.move_processed = die
    inbox.run(load_settings(), now=datetime(2020, 1, 21, 15, tzinfo=UTC))
""")


def test_a_crash_between_commit_and_move(settings: Settings, sent: Sent, imapd: Imapd, imap_user: str) -> None:
    imapd.append(imap_user, program_mail(sent))
    settings = imap_settings(settings, imapd, imap_user)
    env = {**os.environ, "MENTOR_MAILER_PROGRAM_DIR": str(settings.program_dir),
           "MENTOR_MAILER_DATABASE": str(settings.database_path), "MENTOR_MAILER_INBOX": str(settings.inbox),
           "MENTOR_MAILER_IMAP_PASSWORD": IMAP_PASSWORD, "MENTOR_MAILER_IMAP_CA_FILE": str(imapd.ca_file)}
    process = subprocess.Popen([sys.executable, "-c", CRASH], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        _out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, err.decode()
    assert_effects_once(settings)  # committed before the crash
    assert len(folder_state(imapd, imap_user, "INBOX")) == 4  # but nothing moved
    report = inbox.run(settings, now=NOW)
    assert report.handled == [] and report.moved == 4  # moved now, acted on never again
    assert_effects_once(settings)
    assert folder_state(imapd, imap_user, "INBOX") == []


def test_the_inbox_command(settings: Settings, sent: Sent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    box = maildir(tmp_path / "Maildir", [*program_mail(sent), UNRELATED])
    monkeypatch.setenv("MENTOR_MAILER_INBOX", f"maildir:{box}")
    monkeypatch.setenv("MENTOR_MAILER_DATABASE", str(settings.database_path))
    assert main(["-C", str(settings.program_dir), "inbox", "--dry-run", "--now", "2020-01-21T15:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "would record  RSVP declined: jose.munoz@example.org" in out and "dry run" in out
    assert main(["-C", str(settings.program_dir), "inbox", "--now", "2020-01-21T15:00:00Z"]) == 0
    assert "acted on 4" in capsys.readouterr().out
    assert_effects_once(settings)


def test_the_inbox_command_names_a_missing_setting(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-C", str(settings.program_dir), "inbox"]) == 2
    assert "MENTOR_MAILER_INBOX is not set" in capsys.readouterr().err


def soft_bounce(n: int, key: str) -> bytes:
    return (f"From: MAILER-DAEMON@mx.example.org\r\nTo: mentoring@example.org\r\nSubject: Delayed Mail\r\n"
            f"Message-ID: <s{n}@mx.example.org>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
            "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
            "Final-Recipient: rfc822; zoe.ng@example.com\r\nAction: delayed\r\nStatus: 4.2.2\r\n"
            "Diagnostic-Code: smtp; 452 4.2.2 mailbox full\r\n\r\n"
            f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nX-Mentor-Mailer-Key: {key}\r\n\r\n--b--\r\n").encode()


def test_three_soft_bounces_in_a_row_suppress_and_warnings_about_one_message_count_once(
        settings: Settings, sent: Sent, tmp_path: Path) -> None:
    keys = ["2019-2020/p02/welcome", "2019-2020/p02/welcome", "2019-2020/p02/readings", "2019-2020/p02/resumes"]
    box = maildir(tmp_path / "Maildir", [soft_bounce(n, k) for n, k in enumerate(keys)])
    report = inbox.run(replace_settings(settings, inbox=f"maildir:{box}"), now=NOW)
    lines = report.lines()
    assert lines[:3] == ["recorded  temporary failure 1 of 3 for zoe.ng@example.com",
                         "recorded  temporary failure 1 of 3 for zoe.ng@example.com",  # the same message again
                         "recorded  temporary failure 2 of 3 for zoe.ng@example.com"]
    assert lines[3].startswith("recorded  no more prompts to zoe.ng@example.com (soft-bounces: 4.2.2")
    assert [r[:2] for r in effect_rows(settings)["suppressions"]] == [("zoe.ng@example.com", "soft-bounces")]
