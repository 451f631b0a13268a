"""The test server's gates (tests/smtpd.py): a "hold" fault answers when released, `after` counts messages."""

from __future__ import annotations

import smtplib
import threading
import time

import pytest

from tests.smtpd import SmtpServer
from tests.test_smtpd import SENDER, connect, message

pytest_plugins = ["tests.smtpd"]


def send_in_thread(server: SmtpServer, ids: list[str]) -> tuple[threading.Thread, list[BaseException]]:
    """Sends one message per id on one connection, in a thread, so the test can watch a held reply."""
    errors: list[BaseException] = []

    def send() -> None:
        try:
            with connect(server, timeout=60) as client:
                for mid in ids:
                    client.sendmail(SENDER, ["a@program.test"], message(mid))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, errors


def wait_until(predicate: object) -> None:
    deadline = time.monotonic() + 60
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.005)


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_a_hold_answers_only_when_released(smtp_server: SmtpServer, stage: str) -> None:
    fault = smtp_server.add_fault(stage, "hold")
    thread, errors = send_in_thread(smtp_server, ["<held@program.test>"])
    try:
        wait_until(lambda: fault.fired)
        assert smtp_server.accepted() == []  # held: no answer yet, however long the client waits
        assert thread.is_alive()
    finally:
        fault.release()
        thread.join(60)
    assert errors == []
    assert [r.message_id for r in smtp_server.accepted()] == ["<held@program.test>"]


def test_after_arms_a_fault_at_a_message_count(smtp_server: SmtpServer) -> None:
    fault = smtp_server.add_fault("data", "hold", after=2)  # the third body is held
    thread, errors = send_in_thread(smtp_server, [f"<m{i}@program.test>" for i in range(4)])
    try:
        wait_until(lambda: fault.fired)
        assert [(r.message_id, r.outcome) for r in smtp_server.received] == [
            ("<m0@program.test>", "accepted"), ("<m1@program.test>", "accepted"), ("<m2@program.test>", "dropped")]
    finally:
        fault.release()
        thread.join(60)
    assert errors == []
    assert len(smtp_server.accepted()) == 4 and fault.fired == 1


def test_a_held_client_that_hangs_up_is_let_go(smtp_server: SmtpServer) -> None:
    fault = smtp_server.add_fault("rcpt", "hold")
    client = connect(smtp_server)
    try:
        client.ehlo()
        client.mail(SENDER)
        client.send(b"RCPT TO:<a@program.test>\r\n")
        wait_until(lambda: fault.fired)
    finally:
        client.close()
    wait_until(lambda: smtp_server.connections == 1 and not smtp_server._live)  # the handler ended unreleased


def test_a_disarmed_fault_fires_no_more(smtp_server: SmtpServer) -> None:
    always = smtp_server.add_fault("rcpt", code=451, times=-1)
    with connect(smtp_server) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail(SENDER, ["a@program.test"], message())
        always.disarm()
        client.sendmail(SENDER, ["a@program.test"], message("<m2@program.test>"))
    assert always.fired == 1 and len(smtp_server.accepted()) == 1


def test_add_fault_rejects_a_negative_count(smtp_server: SmtpServer) -> None:
    with pytest.raises(ValueError, match="after"):
        smtp_server.add_fault("data", after=-1)
