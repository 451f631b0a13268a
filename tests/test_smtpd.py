"""The test SMTP server plugin (tests/smtpd.py), driven by the stdlib's smtplib: every fault, TLS and AUTH."""

from __future__ import annotations

import base64
import gc
import logging
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
import trustme

from tests.smtpd import SMTP_HOST, SMTP_PASSWORD, SMTP_USER, MakeSmtpServer, SmtpServer

pytest_plugins = ["tests.smtpd"]

SENDER = "coordinator@program.test"
CLIENT_NAME = "client.test"  # smtplib would otherwise look up this machine's FQDN for EHLO


class LoopbackSMTP(smtplib.SMTP):
    """Connects to 127.0.0.1 whatever host name it is given; STARTTLS then verifies that name."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((SMTP_HOST, port), timeout)


class LoopbackSMTPSSL(smtplib.SMTP_SSL):
    """Implicit TLS to 127.0.0.1, verifying the certificate for the host name it is given."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((SMTP_HOST, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=host)


def connect(server: SmtpServer, timeout: float = 5.0) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, local_hostname=CLIENT_NAME, timeout=timeout)


def message(message_id: str = "<m1@program.test>", to: str = "pair@program.test") -> bytes:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = "Your monthly prompt"
    msg["Message-ID"] = message_id
    msg.set_content("Hello,\n.a line that starts with a dot\n..and one with two\nBye\n")
    return msg.as_bytes(policy=SMTP_POLICY)


def trusting(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


# Plain sending and what is recorded


def test_a_plain_send_is_recorded_as_accepted(smtp_server: SmtpServer) -> None:
    raw = message("<plain@program.test>")
    with connect(smtp_server) as client:
        refused = client.sendmail(SENDER, ["mentor@program.test", "mentee@program.test"], raw)
    assert refused == {}
    assert smtp_server.connections == 1
    [got] = smtp_server.received
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ["mentor@program.test", "mentee@program.test"]
    assert got.message_id == "<plain@program.test>"
    assert got.outcome == "accepted"
    assert got.data == raw  # CRLF line ends, dots un-stuffed, no final dot
    assert b"\r\n.a line that starts with a dot\r\n..and one with two\r\n" in got.data
    assert smtp_server.accepted() == [got]


def test_a_message_without_message_id_is_recorded_with_none(smtp_server: SmtpServer) -> None:
    with connect(smtp_server) as client:
        client.sendmail(SENDER, ["a@program.test"], b"Subject: no id\r\n\r\nbody\r\n")
    assert smtp_server.received[0].message_id is None


def test_several_messages_on_one_connection_with_rset_and_noop(smtp_server: SmtpServer) -> None:
    with connect(smtp_server) as client:
        for n in range(3):
            assert client.noop()[0] == 250
            client.sendmail(SENDER, [f"p{n}@program.test"], message(f"<m{n}@program.test>"))
            assert client.rset()[0] == 250
    assert smtp_server.connections == 1
    assert [r.message_id for r in smtp_server.accepted()] == [f"<m{n}@program.test>" for n in range(3)]
    assert [r.rcpt_tos for r in smtp_server.received] == [[f"p{n}@program.test"] for n in range(3)]


# connect


def test_421_at_connect_raises_connect_error_then_the_next_connection_works(smtp_server: SmtpServer) -> None:
    fault = smtp_server.add_fault("connect", code=421, text="4.3.2 Service not available, try later")
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        connect(smtp_server)
    assert caught.value.smtp_code == 421
    assert caught.value.smtp_error == b"4.3.2 Service not available, try later"
    assert fault.fired == 1
    with connect(smtp_server) as client:
        assert client.noop()[0] == 250
    assert smtp_server.connections == 2


def test_disconnect_at_connect(smtp_server: SmtpServer) -> None:
    smtp_server.add_fault("connect", "disconnect")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        connect(smtp_server)


# ehlo


def test_a_reply_at_ehlo_also_answers_the_helo_fallback(smtp_server: SmtpServer) -> None:
    fault = smtp_server.add_fault("ehlo", code=554, text="5.7.1 go away", times=-1)
    with connect(smtp_server) as client:
        with pytest.raises(smtplib.SMTPHeloError):
            client.sendmail(SENDER, ["a@program.test"], message())  # EHLO, then HELO
        assert client.ehlo() == (554, b"5.7.1 go away")
    assert fault.fired == 3
    assert smtp_server.received == []


def test_a_one_time_ehlo_fault_lets_smtplib_fall_back_to_helo(smtp_server: SmtpServer) -> None:
    smtp_server.add_fault("ehlo", code=451)
    with connect(smtp_server) as client:
        client.sendmail(SENDER, ["a@program.test"], message())
        assert not client.does_esmtp
    assert len(smtp_server.accepted()) == 1


# mail


def test_421_at_mail_answers_and_closes_the_connection(smtp_server: SmtpServer) -> None:
    smtp_server.add_fault("mail", code=421, text="4.3.2 shutting down")
    with connect(smtp_server) as client:
        client.ehlo()
        assert client.mail(SENDER) == (421, b"4.3.2 shutting down")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    smtp_server.add_fault("mail", code=421)
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPSenderRefused) as caught:
        client.sendmail(SENDER, ["a@program.test"], message())
    assert caught.value.smtp_code == 421
    assert smtp_server.received == []


def test_a_4xx_at_mail_leaves_the_connection_usable(smtp_server: SmtpServer) -> None:
    smtp_server.add_fault("mail", code=451, text="4.7.1 greylisted")
    with connect(smtp_server) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            client.sendmail(SENDER, ["a@program.test"], message())  # smtplib sends RSET after it
        assert caught.value.smtp_code == 451
        client.sendmail(SENDER, ["a@program.test"], message())
    assert len(smtp_server.accepted()) == 1


def test_a_mail_fault_with_match_only_hits_matching_senders(smtp_server: SmtpServer) -> None:
    fault = smtp_server.add_fault("mail", code=550, match="blocked", times=-1)
    with connect(smtp_server) as client:
        client.sendmail(SENDER, ["a@program.test"], message())
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail("blocked@program.test", ["a@program.test"], message())
        client.sendmail(SENDER, ["a@program.test"], message())
    assert fault.fired == 1
    assert len(smtp_server.accepted()) == 2


# rcpt


@pytest.mark.parametrize("code", [450, 451, 452])
def test_a_transient_rcpt_fault_refuses_one_recipient_and_accepts_the_other(smtp_server: SmtpServer,
                                                                             code: int) -> None:
    smtp_server.add_fault("rcpt", code=code, text="4.2.1 mailbox busy", match="busy")
    with connect(smtp_server) as client:
        refused = client.sendmail(SENDER, ["busy@program.test", "ok@program.test"], message())
    assert refused == {"busy@program.test": (code, b"4.2.1 mailbox busy")}
    [got] = smtp_server.received
    assert got.rcpt_tos == ["ok@program.test"]
    assert got.outcome == "accepted"


@pytest.mark.parametrize("code", [550, 553])
def test_a_permanent_rcpt_fault_refuses_one_of_two_recipients(smtp_server: SmtpServer, code: int) -> None:
    smtp_server.add_fault("rcpt", code=code, text="5.1.1 no such user", match="gone@")
    with connect(smtp_server) as client:
        refused = client.sendmail(SENDER, ["ok@program.test", "gone@program.test"], message())
    assert refused == {"gone@program.test": (code, b"5.1.1 no such user")}
    assert smtp_server.accepted()[0].rcpt_tos == ["ok@program.test"]


def test_when_every_recipient_is_refused_nothing_is_received(smtp_server: SmtpServer) -> None:
    smtp_server.add_fault("rcpt", code=550, times=-1)
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        client.sendmail(SENDER, ["a@program.test", "b@program.test"], message())
    assert set(caught.value.recipients) == {"a@program.test", "b@program.test"}
    assert smtp_server.received == []


# data


@pytest.mark.parametrize("code", [451, 552, 554])
def test_a_reply_after_data_is_recorded_as_rejected(smtp_server: SmtpServer, code: int) -> None:
    smtp_server.add_fault("data", code=code, text="5.3.4 message too big")
    with connect(smtp_server) as client:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            client.sendmail(SENDER, ["a@program.test"], message("<rejected@program.test>"))
        assert caught.value.smtp_code == code
        client.sendmail(SENDER, ["a@program.test"], message("<next@program.test>"))
    assert [(r.message_id, r.outcome) for r in smtp_server.received] == [
        ("<rejected@program.test>", "rejected"), ("<next@program.test>", "accepted")]
    assert [r.message_id for r in smtp_server.accepted()] == ["<next@program.test>"]


def test_a_disconnect_after_the_body_is_recorded_as_dropped(smtp_server: SmtpServer) -> None:
    smtp_server.add_fault("data", "disconnect")
    raw = message("<dropped@program.test>")
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail(SENDER, ["a@program.test"], raw)
    [got] = smtp_server.received
    assert (got.outcome, got.message_id, got.data) == ("dropped", "<dropped@program.test>", raw)
    assert smtp_server.accepted() == []


@pytest.mark.parametrize("stage", ["ehlo", "mail", "rcpt"])
def test_a_disconnect_before_data(smtp_server: SmtpServer, stage: str) -> None:
    smtp_server.add_fault(stage, "disconnect")
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail(SENDER, ["a@program.test"], message())
    assert smtp_server.received == []


# stall


@pytest.mark.parametrize("stage", ["connect", "ehlo", "mail", "rcpt", "data"])
def test_a_stall_past_the_client_timeout_times_the_client_out(smtp_server: SmtpServer, stage: str) -> None:
    fault = smtp_server.add_fault(stage, "stall", seconds=2.0)
    started = time.monotonic()
    # smtplib turns a timeout while it waits for a reply into SMTPServerDisconnected("...: timed out").
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"), \
            connect(smtp_server, timeout=0.5) as client:
        client.sendmail(SENDER, ["a@program.test"], message("<stalled@program.test>"))
    assert time.monotonic() - started < 1.9
    assert fault.fired == 1
    expected = [("<stalled@program.test>", "dropped")] if stage == "data" else []
    assert [(r.message_id, r.outcome) for r in smtp_server.received] == expected


def test_a_stall_shorter_than_the_client_timeout_only_delays(smtp_server: SmtpServer) -> None:
    smtp_server.add_fault("rcpt", "stall", seconds=0.3)
    started = time.monotonic()
    with connect(smtp_server, timeout=5) as client:
        client.sendmail(SENDER, ["a@program.test"], message())
    assert time.monotonic() - started >= 0.3
    assert len(smtp_server.accepted()) == 1


# times, order, clear


def test_times_limits_how_often_a_fault_fires(smtp_server: SmtpServer) -> None:
    twice = smtp_server.add_fault("rcpt", code=451, times=2)
    with connect(smtp_server) as client:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail(SENDER, ["a@program.test"], message())
        client.sendmail(SENDER, ["a@program.test"], message())
    assert twice.fired == 2
    assert len(smtp_server.accepted()) == 1


def test_times_minus_one_fires_every_time(smtp_server: SmtpServer) -> None:
    always = smtp_server.add_fault("data", code=554, times=-1)
    with connect(smtp_server) as client:
        for _ in range(3):
            with pytest.raises(smtplib.SMTPDataError):
                client.sendmail(SENDER, ["a@program.test"], message())
    assert always.fired == 3
    assert [r.outcome for r in smtp_server.received] == ["rejected"] * 3


def test_faults_fire_in_the_order_added(smtp_server: SmtpServer) -> None:
    first = smtp_server.add_fault("rcpt", code=450, text="first")
    second = smtp_server.add_fault("rcpt", code=550, text="second")
    with connect(smtp_server) as client:
        refused = client.sendmail(SENDER, ["a@program.test", "b@program.test", "c@program.test"], message())
    assert refused == {"a@program.test": (450, b"first"), "b@program.test": (550, b"second")}
    assert (first.fired, second.fired) == (1, 1)
    assert smtp_server.received[0].rcpt_tos == ["c@program.test"]


def test_clear_forgets_messages_faults_and_counters(smtp_server: SmtpServer, smtp_ca_file: Path) -> None:
    smtp_server.add_fault("data", code=554)
    with connect(smtp_server) as client:
        client.starttls(context=trusting(smtp_ca_file))
        client.login(SMTP_USER, SMTP_PASSWORD)
        with pytest.raises(smtplib.SMTPDataError):
            client.sendmail(SENDER, ["a@program.test"], message())
        smtp_server.add_fault("rcpt", code=550, times=-1)
        smtp_server.clear()
        client.sendmail(SENDER, ["a@program.test"], message())  # the cleared rcpt fault is gone
    assert smtp_server.connections == 0  # counted at connect, before the clear
    assert [r.outcome for r in smtp_server.received] == ["accepted"]
    assert smtp_server.faults == [] and smtp_server.logins == []


def test_add_fault_rejects_nonsense(smtp_server: SmtpServer) -> None:
    with pytest.raises(ValueError, match="stage"):
        smtp_server.add_fault("helo")
    with pytest.raises(ValueError, match="action"):
        smtp_server.add_fault("mail", "explode")
    with pytest.raises(ValueError, match="match"):
        smtp_server.add_fault("data", match="x")
    with pytest.raises(ValueError, match="times"):
        smtp_server.add_fault("data", times=0)
    with pytest.raises(ValueError, match="4xx or 5xx"):
        smtp_server.add_fault("data", code=250)


# TLS and AUTH


def test_the_no_starttls_server_offers_neither_starttls_nor_auth(smtp_server_no_starttls: SmtpServer) -> None:
    with connect(smtp_server_no_starttls) as client:
        client.ehlo()
        assert not client.has_extn("starttls") and not client.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.starttls()
        client.sendmail(SENDER, ["a@program.test"], message())
    assert len(smtp_server_no_starttls.accepted()) == 1


def test_auth_is_neither_offered_nor_accepted_before_starttls(smtp_server: SmtpServer) -> None:
    with connect(smtp_server) as client:
        client.ehlo()
        assert client.has_extn("starttls") and not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN")[0] == 538
        client.sendmail(SENDER, ["a@program.test"], message())  # no login needed to send
    assert len(smtp_server.accepted()) == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_verifies_localhost_and_login_works(smtp_server: SmtpServer, smtp_ca_file: Path,
                                                     mechanism: str) -> None:
    with LoopbackSMTP("localhost", smtp_server.port, local_hostname=CLIENT_NAME, timeout=5) as client:
        client.starttls(context=trusting(smtp_ca_file))  # verifies the chain and the name "localhost"
        client.ehlo()
        assert client.has_extn("auth") and not client.has_extn("starttls")
        client.esmtp_features["auth"] = mechanism  # make smtplib use this mechanism
        assert client.login(SMTP_USER, SMTP_PASSWORD)[0] == 235
        client.sendmail(SENDER, ["a@program.test"], message())
    assert smtp_server.logins == [SMTP_USER]
    assert len(smtp_server.accepted()) == 1


def test_starttls_certificate_also_covers_the_ip_address(smtp_server: SmtpServer, smtp_ca_file: Path) -> None:
    with connect(smtp_server) as client:
        client.starttls(context=trusting(smtp_ca_file))  # server_hostname is "127.0.0.1"
        assert client.noop()[0] == 250


def test_a_client_that_does_not_trust_the_test_ca_fails_starttls(smtp_server: SmtpServer,
                                                                   tmp_path: Path) -> None:
    other_ca = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with connect(smtp_server) as client, pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(context=trusting(other_ca))
    with connect(smtp_server) as client:  # the server carries on
        assert client.noop()[0] == 250


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_wrong_password_gets_535_and_is_neither_echoed_nor_logged(
        smtp_server: SmtpServer, smtp_ca_file: Path, caplog: pytest.LogCaptureFixture, mechanism: str) -> None:
    caplog.set_level(logging.DEBUG, logger="mail.log")
    wrong = "Tr0ub4dor&3"
    with connect(smtp_server) as client:
        client.starttls(context=trusting(smtp_ca_file))
        client.ehlo()
        client.esmtp_features["auth"] = mechanism
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login(SMTP_USER, wrong)
        assert caught.value.smtp_code == 535
        assert caught.value.smtp_error == b"5.7.8 Authentication credentials invalid"
        # A client out of step sends its base64 password as a command: not echoed, not logged.
        out_of_step = base64.b64encode(wrong.encode())
        code, reply = client.docmd(out_of_step.decode())
        assert code == 500 and out_of_step.upper() not in reply.upper()
        assert client.login(SMTP_USER, SMTP_PASSWORD)[0] == 235
    assert smtp_server.logins == [SMTP_USER]
    assert caplog.records, "aiosmtpd logged nothing at DEBUG: the check below would prove nothing"
    for secret in (wrong, SMTP_PASSWORD):
        for form in (secret, base64.b64encode(secret.encode()).decode(),
                     base64.b64encode(f"\0{SMTP_USER}\0{secret}".encode()).decode()):
            assert form.upper() not in caplog.text.upper()


def test_implicit_tls_with_smtp_ssl(smtp_server_tls: SmtpServer, smtp_ca_file: Path) -> None:
    context = trusting(smtp_ca_file)
    with LoopbackSMTPSSL("localhost", smtp_server_tls.port, local_hostname=CLIENT_NAME, timeout=5,
                         context=context) as client:
        client.ehlo()
        assert client.has_extn("auth") and not client.has_extn("starttls")
        client.login(SMTP_USER, SMTP_PASSWORD)
        client.sendmail(SENDER, ["a@program.test"], message("<tls@program.test>"))
    with smtplib.SMTP_SSL(smtp_server_tls.host, smtp_server_tls.port, local_hostname=CLIENT_NAME, timeout=5,
                          context=context) as client:
        client.sendmail(SENDER, ["b@program.test"], message("<tls2@program.test>"))  # no login needed
    assert smtp_server_tls.logins == [SMTP_USER]
    assert [r.message_id for r in smtp_server_tls.accepted()] == ["<tls@program.test>", "<tls2@program.test>"]
    assert smtp_server_tls.connections == 2


def test_faults_work_over_implicit_tls(smtp_server_tls: SmtpServer, smtp_ca_file: Path) -> None:
    smtp_server_tls.add_fault("data", "disconnect")
    with smtplib.SMTP_SSL(smtp_server_tls.host, smtp_server_tls.port, local_hostname=CLIENT_NAME, timeout=5,
                          context=trusting(smtp_ca_file)) as client, \
            pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail(SENDER, ["a@program.test"], message())
    assert [r.outcome for r in smtp_server_tls.received] == ["dropped"]


def test_auth_required_refuses_mail_until_login(make_smtp_server: MakeSmtpServer, smtp_ca_file: Path) -> None:
    server = make_smtp_server(auth_required=True)
    with connect(server) as client:
        client.ehlo()
        assert client.mail(SENDER)[0] == 530
        client.starttls(context=trusting(smtp_ca_file))
        client.login(SMTP_USER, SMTP_PASSWORD)
        client.sendmail(SENDER, ["a@program.test"], message())
    assert len(server.accepted()) == 1


# Lifecycle


def test_servers_get_distinct_ports_and_stop_frees_them(make_smtp_server: MakeSmtpServer) -> None:
    first, second = make_smtp_server(), make_smtp_server(starttls=False)
    assert first.host == second.host == "127.0.0.1"
    assert first.port != second.port
    first.stop()
    first.stop()  # idempotent; the fixture stops it once more at teardown
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((first.host, first.port), 1).close()
    with connect(second) as client:
        assert client.noop()[0] == 250


def test_stop_closes_connections_left_open_without_resource_warnings(smtp_server: SmtpServer,
                                                                      smtp_ca_file: Path) -> None:
    idle = connect(smtp_server)
    in_data = connect(smtp_server)
    in_data.ehlo()
    in_data.mail(SENDER)
    in_data.rcpt("a@program.test")
    in_data.putcmd("DATA")
    assert in_data.getreply()[0] == 354
    in_data.send(b"Subject: half a message\r\n")
    tls = connect(smtp_server)
    tls.starttls(context=trusting(smtp_ca_file))
    stalled = connect(smtp_server)
    smtp_server.add_fault("ehlo", "stall", seconds=2)
    stalled.putcmd("EHLO", CLIENT_NAME)
    started = time.monotonic()
    smtp_server.stop()
    assert time.monotonic() - started < 1
    for client in (idle, in_data, tls, stalled):
        try:
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.noop()
        finally:
            client.close()
    gc.collect()  # an unclosed transport would warn here, and warnings are errors
