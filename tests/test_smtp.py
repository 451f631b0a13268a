"""SMTP delivery against a real aiosmtpd server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailer.app import outcome, send
from mailer.core.plan import build_plan
from mailer.errors import ConfigError
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings
from mailer.shell.smtp import SmtpTransport
from mailer.shell.transport import Outgoing
from tests.smtpd import SMTP_PASSWORD, SMTP_USER, SmtpServer

WELCOME = datetime(2019, 8, 1, 17, tzinfo=UTC)  # 11 messages, one per active pair
ZOE = "zoe.ng@example.com"  # p02's mentee
# A stall test waits this long for the client to give up on a held reply; long enough that no other
# step of a loopback conversation reaches it on a loaded machine, short enough not to drag the suite.
STALL_TIMEOUT = 2.0


def smtp_settings(base: Settings, server: SmtpServer, **extra: object) -> Settings:
    values: dict[str, object] = {
        "program_dir": base.program_dir, "database": base.database, "transport": "smtp",
        "smtp_host": server.host, "smtp_port": server.port, "smtp_security": "none",
        "smtp_timeout": 5.0, "smtp_max_attempts": 3, "smtp_backoff": 0.01, "digest": False, "_env_file": None,
    } | extra
    return Settings(**values)  # type: ignore[arg-type]


def rows(s: Settings) -> dict[str, sqlite3.Row]:
    conn = sqlite3.connect(s.database_path)
    conn.row_factory = sqlite3.Row
    try:
        return {r["key"]: r for r in conn.execute("SELECT * FROM messages")}
    finally:
        conn.close()


def copies(server: SmtpServer) -> Counter[tuple[str | None, str]]:
    """How many times each (Message-ID, recipient) was accepted by the server."""
    return Counter((r.message_id, rcpt) for r in server.accepted() for rcpt in r.rcpt_tos)


def assert_no_duplicates(server: SmtpServer) -> None:
    assert max(copies(server).values(), default=1) == 1, [k for k, v in copies(server).items() if v > 1]


def test_plain_delivery_one_connection_ids_match_ledger(settings: Settings, smtp_server: SmtpServer) -> None:
    s = smtp_settings(settings, smtp_server)
    report = send.run(s, now=WELCOME)
    assert report.sent == 11 and report.exit_code == 0
    assert smtp_server.connections == 1
    ledger = rows(s)
    assert {r.message_id for r in smtp_server.accepted()} == {r["message_id"] for r in ledger.values()}
    assert all(r["state"] == "sent" for r in ledger.values())
    msg = email.message_from_bytes(smtp_server.accepted()[0].data, policy=email.policy.default)
    assert msg["Message-ID"] == smtp_server.accepted()[0].message_id
    assert send.run(s, now=WELCOME + timedelta(hours=1)).sent == 0  # a rerun sends nothing
    assert len(smtp_server.accepted()) == 11


@pytest.mark.parametrize("stage", ["connect", "mail"])
def test_421_reconnects_and_delivers(settings: Settings, smtp_server: SmtpServer, stage: str) -> None:
    fault = smtp_server.add_fault(stage, code=421, text="4.3.2 closing, try again")
    report = send.run(smtp_settings(settings, smtp_server), now=WELCOME)
    assert fault.fired == 1
    assert report.sent == 11 and report.deferred == 0
    assert smtp_server.connections == 2
    assert len(smtp_server.accepted()) == 11
    assert_no_duplicates(smtp_server)


@pytest.mark.parametrize("code", [450, 451, 452])
def test_transient_rcpt_is_retried_for_that_recipient_only(settings: Settings, smtp_server: SmtpServer,
                                                            code: int) -> None:
    smtp_server.add_fault("rcpt", code=code, text="4.2.0 mailbox busy", match=ZOE, times=1)
    s = smtp_settings(settings, smtp_server)
    report = send.run(s, now=WELCOME)
    assert report.sent == 11 and report.exit_code == 0
    assert_no_duplicates(smtp_server)
    zoe = [r for r in smtp_server.accepted() if ZOE in r.rcpt_tos]
    assert len(zoe) == 1 and zoe[0].rcpt_tos == [ZOE]  # the retry went to her alone
    assert rows(s)["2019-2020/p02/welcome"]["attempts"] == 2


def test_transient_past_the_attempt_limit_is_deferred_then_sent_next_run(
    settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.add_fault("rcpt", code=451, text="4.7.1 greylisted", match=ZOE, times=-1)
    s = smtp_settings(settings, smtp_server)
    report = send.run(s, now=WELCOME)
    assert report.deferred == 1 and report.sent == 10 and report.exit_code == 1
    row = rows(s)["2019-2020/p02/welcome"]
    assert row["state"] == "deferred" and row["attempts"] == 3 and "451 4.7.1 greylisted" in row["reason"]
    assert row["next_attempt_at"] > WELCOME.isoformat()
    assert row["delivered"] == '["dagny.jonsdottir@example.org"]'  # the mentor has it already
    # too early: waits for its next attempt time
    assert send.run(s, now=WELCOME + timedelta(minutes=5)).sent == 0
    smtp_server.clear()
    later = send.run(s, now=WELCOME + timedelta(hours=2))
    assert later.sent == 1
    assert [r.rcpt_tos for r in smtp_server.accepted()] == [[ZOE]]  # only the one still owed
    assert rows(s)["2019-2020/p02/welcome"]["state"] == "sent"


@pytest.mark.parametrize("code", [550, 553])
def test_permanent_refusal_of_one_recipient_is_recorded_not_retried(
    settings: Settings, smtp_server: SmtpServer, code: int
) -> None:
    smtp_server.add_fault("rcpt", code=code, text="5.1.1 no such user", match=ZOE, times=-1)
    s = smtp_settings(settings, smtp_server)
    report = send.run(s, now=WELCOME)
    assert report.sent == 11 and report.refused == 1 and report.exit_code == 1
    assert any(ZOE in f[2] and str(code) in f[2] for f in report.failures)
    row = rows(s)["2019-2020/p02/welcome"]
    assert row["state"] == "sent" and f'"{ZOE}": "{code} 5.1.1 no such user"' in row["refused"]
    assert [r.rcpt_tos for r in smtp_server.accepted() if "dagny.jonsdottir@example.org" in r.rcpt_tos] == \
        [["dagny.jonsdottir@example.org"]]
    smtp_server.clear()
    assert send.run(s, now=WELCOME + timedelta(days=1)).sent == 0
    assert smtp_server.received == []


@pytest.mark.parametrize("code", [552, 554])
def test_permanent_after_data_fails_that_message_only(settings: Settings, smtp_server: SmtpServer,
                                                      code: int) -> None:
    smtp_server.add_fault("data", code=code, text="5.3.4 message too big", times=1)
    s = smtp_settings(settings, smtp_server)
    report = send.run(s, now=WELCOME)
    assert report.failed == 1 and report.sent == 10 and report.exit_code == 1
    failed = [r for r in rows(s).values() if r["state"] == "failed"]
    assert len(failed) == 1 and f"{code} 5.3.4 message too big" in failed[0]["reason"]
    assert send.run(s, now=WELCOME + timedelta(days=1)).sent == 0  # never retried automatically
    assert len(smtp_server.accepted()) == 10


def test_disconnect_after_body_is_uncertain_then_resent_once_with_same_id(
    settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.add_fault("data", action="disconnect", times=1)
    s = smtp_settings(settings, smtp_server)
    report = send.run(s, now=WELCOME)
    assert report.uncertain == 1 and report.sent == 10
    dropped = [r for r in smtp_server.received if r.outcome == "dropped"]
    assert len(dropped) == 1
    key = next(k for k, r in rows(s).items() if r["state"] == "uncertain")
    again = send.run(s, now=WELCOME + timedelta(minutes=1))
    assert again.sent == 1 and again.resent == 1
    row = rows(s)[key]
    assert row["state"] == "sent" and row["resends"] == 1
    assert [r.message_id for r in smtp_server.accepted()].count(dropped[0].message_id) == 1
    assert row["message_id"] == dropped[0].message_id  # the repeat carries the same Message-ID


def test_stall_before_data_is_transient(settings: Settings, smtp_server: SmtpServer) -> None:
    fault = smtp_server.add_fault("mail", action="hold", times=1)  # released when the server stops
    report = send.run(smtp_settings(settings, smtp_server, smtp_timeout=STALL_TIMEOUT), now=WELCOME)
    assert fault.fired == 1
    assert report.sent == 11 and report.uncertain == 0
    assert_no_duplicates(smtp_server)


def test_stall_after_body_is_uncertain(settings: Settings, smtp_server: SmtpServer) -> None:
    fault = smtp_server.add_fault("data", action="hold", times=1)
    report = send.run(smtp_settings(settings, smtp_server, smtp_timeout=STALL_TIMEOUT), now=WELCOME)
    assert fault.fired == 1
    assert report.uncertain == 1 and report.sent == 10


def test_server_without_starttls_is_refused_by_name(settings: Settings,
                                                     smtp_server_no_starttls: SmtpServer) -> None:
    s = smtp_settings(settings, smtp_server_no_starttls, smtp_security="starttls")
    report = send.run(s, now=WELCOME)
    assert report.aborted is not None and report.exit_code == 2
    assert f"{smtp_server_no_starttls.host}:{smtp_server_no_starttls.port} does not offer STARTTLS" in \
        str(report.aborted)
    assert smtp_server_no_starttls.received == []
    assert [r["state"] for r in rows(s).values()] == ["deferred"]  # nothing lost: still due


def test_starttls_verified_against_ca_file_and_login(settings: Settings, smtp_server: SmtpServer,
                                                     smtp_ca_file: Path) -> None:
    s = smtp_settings(settings, smtp_server, smtp_host="localhost", smtp_security="starttls",
                      smtp_ca_file=smtp_ca_file, smtp_username=SMTP_USER, smtp_password=SMTP_PASSWORD)
    report = send.run(s, now=WELCOME)
    assert report.sent == 11
    assert smtp_server.logins == [SMTP_USER]


def test_starttls_without_the_ca_is_refused(settings: Settings, smtp_server: SmtpServer) -> None:
    s = smtp_settings(settings, smtp_server, smtp_host="localhost", smtp_security="starttls")
    report = send.run(s, now=WELCOME)
    assert report.aborted is not None and "certificate verify failed" in str(report.aborted)
    assert smtp_server.received == []


def test_implicit_tls(settings: Settings, smtp_server_tls: SmtpServer, smtp_ca_file: Path) -> None:
    s = smtp_settings(settings, smtp_server_tls, smtp_host="localhost", smtp_security="tls",
                      smtp_ca_file=smtp_ca_file, smtp_username=SMTP_USER, smtp_password=SMTP_PASSWORD)
    assert send.run(s, now=WELCOME).sent == 11


def test_failed_login_names_server_and_user_not_password(settings: Settings, smtp_server: SmtpServer,
                                                         smtp_ca_file: Path) -> None:
    s = smtp_settings(settings, smtp_server, smtp_host="localhost", smtp_security="starttls",
                      smtp_ca_file=smtp_ca_file, smtp_username=SMTP_USER, smtp_password="wrong-canary-7431")
    report = send.run(s, now=WELCOME)
    assert report.aborted is not None and report.exit_code == 2
    text = str(report.aborted)
    assert "refused the login for mailer: 535" in text and "wrong-canary-7431" not in text
    assert smtp_server.received == []


def test_plaintext_is_only_for_loopback_and_never_with_a_password(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="only for a loopback host"):
        SmtpTransport("mail.example.org", 25, security="none")
    with pytest.raises(ConfigError, match="in the clear"):
        SmtpTransport("127.0.0.1", 25, security="none", username="u", password="p")


def test_unreachable_server_defers_and_stops_the_run(settings: Settings, smtp_server: SmtpServer) -> None:
    port = smtp_server.port
    smtp_server.stop()
    s = smtp_settings(settings, smtp_server, smtp_port=port)
    report = send.run(s, now=WELCOME)
    assert report.aborted is not None and report.aborted.deferred and report.exit_code == 1
    assert "cannot be reached" in str(report.aborted)
    assert [r["state"] for r in rows(s).values()] == ["deferred"]  # one claimed, none lost
    # the summary counts every held message, not only the one that was tried
    assert report.deferred == 1 and report.held_back == 10
    assert "1 deferred" in report.summary() and "10 more message(s) not tried" in report.summary()
    assert send.run(s, now=WELCOME, dry_run=True).planned  # everything is still due


def test_rate_limit_spaces_messages(smtp_server: SmtpServer) -> None:
    slept: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    t = SmtpTransport(smtp_server.host, smtp_server.port, security="none", rate=120, sleep=sleep,
                      monotonic=lambda: clock[0])
    for i in range(3):
        out = Outgoing(f"k{i}", WELCOME, "a@example.org", ["b@example.org"],
                       f"Message-ID: <{i}@example.org>\r\n\r\nhi\r\n".encode())
        assert t.send(out).state == "sent"
    t.close()
    assert slept == [0.5, 0.5]
    assert len(smtp_server.accepted()) == 3


def test_claims_keep_two_unlocked_runners_from_doubling(settings: Settings, smtp_server: SmtpServer) -> None:
    """Even without the flock (say, a lock file on a network share), claims prevent duplicates."""
    import threading

    from mailer.load.program import load_program

    s = smtp_settings(settings, smtp_server)
    program = load_program(s.program_dir)
    Ledger.open(s.database_path).close()
    reports: list[outcome.RunReport] = []

    def one() -> None:
        with Ledger.open(s.database_path) as ledger:
            transport = SmtpTransport(smtp_server.host, smtp_server.port, security="none")
            try:
                plan = build_plan(program, ledger.snapshot(WELCOME), now=WELCOME, window=timedelta(days=14))
                reports.append(send.execute(plan, ledger, transport, outcome.RunReport(now=WELCOME)))
            finally:
                transport.close()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.sent for r in reports) == 11
    assert len(smtp_server.accepted()) == 11
    assert_no_duplicates(smtp_server)


@pytest.mark.parametrize("fault", [
    None,
    {"stage": "rcpt", "code": 451, "text": "4.7.1 later", "match": ZOE, "times": 1},
    {"stage": "rcpt", "code": 550, "text": "5.1.1 no such user", "match": ZOE, "times": -1},
    {"stage": "mail", "code": 451, "text": "4.3.0 try again", "times": 1},
    {"stage": "mail", "code": 421, "text": "4.3.2 closing", "times": 1},
    {"stage": "data", "code": 554, "text": "5.7.1 rejected", "times": 1},
])
def test_pipelined_transactions_handle_every_answer(settings: Settings, smtp_server: SmtpServer,
                                                    fault: dict[str, object] | None) -> None:
    """With PIPELINING advertised, the envelope and DATA go in one write; each answer still counts."""
    smtp_server.pipelining = True
    if fault:
        smtp_server.add_fault(**fault)  # type: ignore[arg-type]
    s = smtp_settings(settings, smtp_server)
    report = send.run(s, now=WELCOME)
    assert_no_duplicates(smtp_server)
    permanent = fault is not None and str(fault["code"]).startswith("5")
    assert report.sent + report.failed == 11 and report.deferred == 0
    assert report.failed == (1 if fault and fault["stage"] == "data" else 0)
    assert report.refused == (1 if permanent and fault and fault["stage"] == "rcpt" else 0)
    delivered = {rcpt for r in smtp_server.accepted() for rcpt in r.rcpt_tos}
    if not permanent:
        assert ZOE in delivered and len(smtp_server.accepted()) == 11 + (fault is not None and
                                                                         fault["stage"] == "rcpt")
