"""Monthly prompts carry List-Unsubscribe and check-in links whose tokens the inbox recognises."""

from __future__ import annotations

import urllib.parse
from email import message_from_bytes
from pathlib import Path

import pytest

from mailer.app import inbox
from mailer.app.send import run as send
from mailer.core import tokens
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings
from tests.conftest import utc
from tests.test_inbox import maildir, replace_settings


def _outbox(settings: Settings) -> dict[str, object]:
    out = {}
    for path in (settings.outbox_path / "new").iterdir():
        msg = message_from_bytes(path.read_bytes())
        out[str(msg["X-Mentor-Mailer-Key"])] = msg
    return out


def _text(msg: object) -> str:
    for part in msg.walk():  # type: ignore[attr-defined]
        if part.get_content_type() == "text/plain":
            return str(part.get_payload(decode=True).decode("utf-8"))
    raise AssertionError("no text part")


def test_prompts_carry_unsubscribe_and_checkins_invitations_do_not(settings: Settings) -> None:
    settings = replace_settings(settings, unsubscribe_url="https://example.org/u/{token}")
    send(settings, now=utc(2020, 1, 20, 15), catch_up=True, new_ledger=True)
    mails = _outbox(settings)
    with Ledger.open(settings.database_path) as ledger:
        secret = ledger.secret
    welcome = mails["2019-2020/p01/welcome"]
    header = str(welcome["List-Unsubscribe"])  # type: ignore[index]
    assert header.startswith("<mailto:mentoring@example.org?subject=unsubscribe-mm1.")
    assert ", <https://example.org/u/mm1." in header
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # type: ignore[index]
    token = tokens.find(header)
    assert token is not None and tokens.parse(secret, token) == tokens.Unsubscribe("2019-2020", "p01", "pair")
    text = _text(welcome)
    assert "We met this month" in text and "Not yet" in text and "We'd like help" in text
    hrefs = [line.split("<", 1)[1].rstrip(">") for line in text.splitlines() if "<mailto:" in line]
    answers = [tokens.parse(secret, tokens.find(urllib.parse.unquote(h)) or "") for h in hrefs]
    assert [a.answer for a in answers if isinstance(a, tokens.Checkin)] == ["met", "not-yet", "help"]
    invitations = [m for k, m in mails.items() if "midwinter" in k]
    assert invitations and all(m["List-Unsubscribe"] is None for m in invitations)  # type: ignore[index]
    assert all("We met this month" not in _text(m) for m in invitations)


def test_checkins_can_be_turned_off(settings: Settings) -> None:
    settings = replace_settings(settings, checkins=False)
    send(settings, now=utc(2020, 1, 20, 15), catch_up=True, new_ledger=True)
    welcome = _outbox(settings)["2019-2020/p01/welcome"]
    assert "We met this month" not in _text(welcome)
    assert welcome["List-Unsubscribe"] is not None and welcome["List-Unsubscribe-Post"] is None  # type: ignore[index]


def test_a_clicked_checkin_and_a_pair_unsubscribe_are_recorded(settings: Settings, tmp_path: Path) -> None:
    send(settings, now=utc(2020, 1, 20, 15), catch_up=True, new_ledger=True)
    welcome = _outbox(settings)["2019-2020/p03/welcome"]
    lines = _text(welcome).splitlines()
    help_href = lines[lines.index("- We'd like help:") + 1]  # the link on its own line, under its label
    subject = urllib.parse.unquote(help_href.split("subject=", 1)[1].rstrip(">"))
    unsub = str(welcome["List-Unsubscribe"]).split("subject=", 1)[1].split(">", 1)[0]  # type: ignore[index]
    mails = [(f"From: margaret.okafor@example.org\r\nTo: mentoring@example.org\r\nSubject: {subject}\r\n"
              "Message-ID: <c1@example.org>\r\n\r\n").encode(),
             (f"From: lukasz.wojcik@example.com\r\nTo: mentoring@example.org\r\nSubject: {unsub}\r\n"
              "Message-ID: <u9@example.com>\r\n\r\n").encode()]
    box = maildir(tmp_path / "Maildir", mails)
    report = inbox.run(replace_settings(settings, inbox=f"maildir:{box}"), now=utc(2020, 1, 21))
    assert report.outcomes == {"acted": 2}
    with Ledger.open(settings.database_path) as ledger:
        checkins = [tuple(r)[:4] for r in ledger.conn.execute("SELECT * FROM checkins")]
        gone = [tuple(r)[:2] for r in ledger.conn.execute("SELECT * FROM suppressions")]
    assert checkins == [("2019-2020", "p03", "welcome", "help")]
    assert gone == [("lukasz.wojcik@example.com", "unsubscribed")]


def test_the_unsubscribe_url_must_be_https_with_a_token() -> None:
    from mailer.errors import ConfigError
    from mailer.shell.settings import load_settings

    with pytest.raises(ConfigError, match="MENTOR_MAILER_UNSUBSCRIBE_URL"):
        load_settings(unsubscribe_url="http://example.org/u")
