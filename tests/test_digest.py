"""The coordinator's digest, delivered through the aiosmtpd fixture."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from mailer.app import queries, send
from mailer.shell.settings import Settings
from tests.smtpd import SmtpServer

WELCOME = datetime(2019, 8, 5, 17, tzinfo=UTC)  # the welcome went out on Aug 1; within the window


def smtp(settings: Settings, server: SmtpServer) -> Settings:
    return settings.model_copy(update={"transport": "smtp", "smtp_host": server.host, "smtp_port": server.port,
                                       "smtp_security": "none", "smtp_backoff": 0.0, "digest": True})


def digests(server: SmtpServer) -> list[EmailMessage]:
    out = []
    for r in server.accepted():
        msg = email.message_from_bytes(r.data, policy=email.policy.default)
        if str(msg["X-Mentor-Mailer-Key"]).startswith("digest/"):
            out.append(msg)  # type: ignore[arg-type]
    return out


def test_digest_after_a_run_with_failures_and_none_after_an_empty_run(
    settings: Settings, smtp_server: SmtpServer
) -> None:
    roster = settings.program_dir / "cohorts/2019-2020/roster.csv"
    with roster.open("a", encoding="utf-8") as f:
        f.write("p13,Ann Example,ann@@example.org,Bo Example,bo@example.org,,active,,,,,\n")
    smtp_server.add_fault("rcpt", code=550, text="5.1.1 no such mailbox", match="zoe.ng@", times=-1)
    s = smtp(settings, smtp_server)
    report = send.run(s, now=WELCOME, new_ledger=True)
    assert report.digests == 1
    [digest] = digests(smtp_server)
    assert [a.addr_spec for a in digest["To"].addresses] == ["mentoring@example.org"]
    text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "2019-2020 / welcome: 11 sent" in text
    assert "2019-2020 pair p02, welcome: refused: zoe.ng@example.com: 550 5.1.1 no such mailbox" in text
    assert "mentor_email 'ann@@example.org' is not a valid address" in text  # a pair with a bad address
    assert "2019-09-01  2019-2020 / day-in-the-life: 11 message(s)" in text  # due in the next 30 days
    assert "2020-january" not in text  # another cohort's coordinator would get their own
    html = digest.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "no such mailbox" in html and "<script" not in html
    # a rerun that does nothing sends no digest
    again = send.run(s, now=WELCOME + timedelta(hours=1))
    assert again.sent == 0 and again.digests == 0
    assert len(digests(smtp_server)) == 1


def test_uncertain_messages_are_listed(settings: Settings, smtp_server: SmtpServer) -> None:
    smtp_server.add_fault("data", action="disconnect", times=1)
    send.run(smtp(settings, smtp_server), now=WELCOME, new_ledger=True)
    [digest] = digests(smtp_server)
    text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    section = text.split("Uncertain")[1].split("Roster problems")[0]
    assert "Message-ID <" in section and "welcome" in section


def test_digest_can_be_turned_off(settings: Settings, smtp_server: SmtpServer) -> None:
    s = smtp(settings, smtp_server).model_copy(update={"digest": False})
    assert send.run(s, now=WELCOME, new_ledger=True).sent == 11
    assert digests(smtp_server) == []


def test_status_shows_what_the_digest_shows(settings: Settings, smtp_server: SmtpServer) -> None:
    smtp_server.add_fault("rcpt", code=550, text="5.1.1 no such mailbox", match="zoe.ng@", times=-1)
    s = smtp(settings, smtp_server)
    send.run(s, now=WELCOME, new_ledger=True)
    [cohort] = [c for c in queries.status(s, now=WELCOME) if c.cohort == "2019-2020"]
    assert {"pair": "p02", "step": "welcome", "state": "refused",
            "detail": "zoe.ng@example.com: 550 5.1.1 no such mailbox"} in cohort.attention
    assert cohort.coming == [{"date": "2019-09-01", "step": "day-in-the-life", "messages": 11}]
    assert cohort.next_step == "day-in-the-life on 2019-09-01"
