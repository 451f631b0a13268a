"""The SMTP transport against hostile servers: dripping replies, garbled codes, stray replies, refusals,
unusable AUTH mechanisms and a server that echoes the password back in base64."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailer.errors import TransportError
from mailer.shell.smtp import SmtpTransport
from mailer.shell.transport import Outgoing
from tests.scripted_smtp import Peer, dialogue, scripted
from tests.smtpd import SmtpPki

USER, PASSWORD = "mailer", "canary-pw-5d1e"
DRIP = 0.2  # seconds between bytes: a server that would take minutes for one reply
SLOW = "250 " + "x" * 400  # 80 s at DRIP


def outgoing(n: int = 1, rcpts: tuple[str, ...] = ("a@example.org",)) -> Outgoing:
    data = f"Subject: m{n}\r\nMessage-ID: <m{n}@example.org>\r\n\r\nhello {n}\r\n".encode()
    return Outgoing(f"c/p{n}/s", datetime(2020, 1, 1, tzinfo=UTC), "c@example.org", list(rcpts), data)


def transport(port: int, **kw: object) -> SmtpTransport:
    options: dict[str, object] = {"security": "none", "timeout": 1.0, "message_timeout": 3.0, "max_attempts": 2,
                                  "backoff": 0.0}
    return SmtpTransport("127.0.0.1", port, **(options | kw))  # type: ignore[arg-type]


def on(verb: str, answer: str | Callable[[str, Peer], str], *, drip: float = 0.0) -> Callable[[Peer], None]:
    """A session that answers `verb` with `answer` (dripped if asked) and everything else normally."""
    def reply(v: str, arg: str, peer: Peer) -> str | None:
        if v != verb:
            return None
        text = answer(arg, peer) if callable(answer) else answer
        if drip:
            peer.say(text, drip=drip)
            return ""
        return text
    return lambda peer: dialogue(peer, reply=reply)


def test_dripping_greeting_is_abandoned_within_the_deadline() -> None:
    """Before: smtplib's timeout is per read, and each dripped byte restarts it."""
    with scripted(lambda peer: peer.say("220 " + "x" * 400, drip=DRIP)) as server:
        t = transport(server.port)
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            t.send(outgoing())
        elapsed = time.monotonic() - started
        t.close()
    assert info.value.deferred and "no complete reply within 1 s" in str(info.value)
    assert elapsed < 30  # unbounded before; about 2 s (two attempts of 1 s) now


@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "DATA"])
def test_dripping_reply_before_the_body_is_transient(verb: str) -> None:
    with scripted(on(verb, SLOW, drip=DRIP)) as server:
        t = transport(server.port, max_attempts=10)
        started = time.monotonic()
        result = t.send(outgoing())
        elapsed = time.monotonic() - started
        t.close()
    assert result.state == "deferred" and result.delivered == ()
    assert "MENTOR_MAILER_SMTP_MESSAGE_TIMEOUT" in (result.detail or "")
    assert server.record.bodies == []
    assert elapsed < 30  # the message deadline (3 s) ends it, though 10 attempts were allowed


def test_a_server_too_slow_for_every_message_stops_the_run() -> None:
    """Three messages abandoned at their deadline in a row: the next send stops the run."""
    with scripted(on("MAIL", SLOW, drip=DRIP)) as server:
        t = transport(server.port, max_attempts=10, message_timeout=1.5)
        results = [t.send(outgoing(n)) for n in range(3)]
        mails = sum(line.startswith("MAIL") for line in server.record.lines)
        with pytest.raises(TransportError) as info:
            t.send(outgoing(3))
        t.close()
    assert [r.state for r in results] == ["deferred"] * 3
    assert info.value.deferred and "took none of the last 3 messages" in str(info.value)
    assert sum(line.startswith("MAIL") for line in server.record.lines) == mails  # the 4th was not tried


def test_dripping_reply_after_the_body_is_uncertain() -> None:
    with scripted(on("BODY", SLOW, drip=DRIP)) as server:
        t = transport(server.port)
        result = t.send(outgoing())
        t.close()
    assert result.state == "uncertain", result
    assert len(server.record.bodies) == 1  # the server has it: resending blindly would double it


@pytest.mark.parametrize(("answer", "state"), [
    ("2x0 queued", "uncertain"),  # before: a permanent failure, never retried, though the server took it
    ("250 2.0.0 queued", "sent"),
    ("251 2.1.5 forwarded", "sent"),
    ("354 what", "uncertain"),
    ("452 4.3.1 full", "deferred"),
    ("554 5.6.0 rejected", "failed"),
])
def test_reply_after_the_body(answer: str, state: str) -> None:
    with scripted(on("BODY", answer)) as server:
        t = transport(server.port, max_attempts=1)
        result = t.send(outgoing())
        t.close()
    assert result.state == state, result


@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "DATA"])
@pytest.mark.parametrize("answer", ["2x0 what", "399 what", "hello"])
def test_an_undefined_reply_before_the_body_is_transient(verb: str, answer: str) -> None:
    with scripted(on(verb, answer)) as server:
        t = transport(server.port, max_attempts=1)
        result = t.send(outgoing())
        again = t.send(outgoing(2))  # the session was out of step: the next message gets a new one
        t.close()
    assert result.state == "deferred" and result.refused == {}, result
    assert again.state == "deferred"
    assert server.record.connections == 2


def test_a_stray_extra_reply_is_not_taken_for_the_next_command() -> None:
    """Before: the stray 250 answered the next MAIL, and the session ran one reply behind until a
    354 was expected and a 250 came: the message was recorded failed for good."""
    with scripted(on("BODY", "250 2.0.0 queued\r\n250 2.0.0 queued again")) as server:
        t = transport(server.port, max_attempts=1)
        results = [t.send(outgoing(n)) for n in range(3)]
        t.close()
    assert [r.state for r in results] == ["sent"] * 3
    assert len(server.record.bodies) == 3
    assert server.record.connections == 3


def test_pipelined_session_reads_each_reply_for_its_own_command() -> None:
    with scripted(lambda peer: dialogue(peer, extensions=("PIPELINING",))) as server:
        t = transport(server.port, max_attempts=1)
        results = [t.send(outgoing(n, ("a@example.org", "b@example.org"))) for n in range(3)]
        t.close()
    assert [r.state for r in results] == ["sent"] * 3 and server.record.connections == 1


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_server_refusing_every_mail_stops_the_run(attempts: int) -> None:
    """Before: 15 s per message and the run went on (20,000 messages, 83 hours)."""
    with scripted(on("MAIL", "450 4.7.0 Rate limit exceeded")) as server:
        t = transport(server.port, max_attempts=attempts)
        results = []

        def send_all() -> None:
            for n in range(10):
                results.append(t.send(outgoing(n)))

        with pytest.raises(TransportError) as info:
            send_all()
        t.close()
    assert info.value.deferred and "450 4.7.0 Rate limit exceeded" in str(info.value)
    assert sum(line.startswith("MAIL") for line in server.record.lines) == 3
    assert all(r.state == "deferred" for r in results) and len(results) == 3 - attempts
    with pytest.raises(TransportError):  # and stays stopped: no further connection
        t.send(outgoing(99))
    assert sum(line.startswith("MAIL") for line in server.record.lines) == 3


def test_a_421_keeps_its_own_words_in_the_reason() -> None:
    sessions = iter([on("MAIL", "421 4.7.0 Too many connections from your address")])

    def script(peer: Peer) -> None:
        next(sessions, lambda p: None)(peer)  # later connections: closed at once, without a word

    with scripted(script) as server:
        t = transport(server.port, max_attempts=2)
        with pytest.raises(TransportError) as info:
            t.send(outgoing())
        t.close()
    assert "421 4.7.0 Too many connections from your address" in str(info.value)


# AUTH needs TLS: these servers speak TLS from the first byte with the test CA's certificate.

def tls_transport(port: int, ca: Path, **kw: object) -> SmtpTransport:
    return transport(port, security="tls", username=USER, password=PASSWORD, ca_file=ca, **kw)


def test_only_unusable_auth_mechanisms_is_a_configuration_error(smtp_pki: SmtpPki) -> None:
    """Before: "cannot be reached", exit 1, and every later run tried again."""
    script = lambda peer: dialogue(peer, extensions=("AUTH GSSAPI NTLM",))  # noqa: E731
    with scripted(script, tls=smtp_pki.server_context()) as server:
        t = SmtpTransport("localhost", server.port, security="tls", username=USER, password=PASSWORD,
                          ca_file=smtp_pki.ca_file, timeout=5, max_attempts=3, backoff=0)
        with pytest.raises(TransportError) as info:
            t.send(outgoing())
        t.close()
    assert not info.value.deferred and info.value.exit_code == 2
    assert "GSSAPI NTLM" in str(info.value) and "PLAIN, LOGIN or CRAM-MD5" in str(info.value)
    assert server.record.connections == 1  # not retried


def b64(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


def encoded_forms(user: str, password: str) -> list[str]:
    """The forms a server can echo, written out here independently of the code under test."""
    forms = [b64(f"\0{user}\0{password}"), b64(f"{user}\0{user}\0{password}"), b64(password),
             b64(f"user={user}\x01auth=Bearer {password}\x01\x01")]
    return [password, *forms, *(f.rstrip("=") for f in forms)]


def login_echo(arg: str, peer: Peer) -> str:
    """535 with the AUTH argument in it; for LOGIN, the password line too."""
    if arg.upper().startswith("LOGIN"):
        peer.say("334 UGFzc3dvcmQ6")
        return f"535 5.7.8 no such login: {arg} / {peer.line()}"
    if arg.upper().startswith("CRAM-MD5"):
        peer.say("334 " + base64.b64encode(b"<1.2@scripted>").decode())
        return f"535 5.7.8 no such login: {peer.line()}"
    return f"535 5.7.8 no such login: {arg}"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_a_535_that_echoes_the_auth_argument_is_not_kept(mechanism: str, smtp_pki: SmtpPki) -> None:
    def script(peer: Peer) -> None:
        dialogue(peer, extensions=(f"AUTH {mechanism}",),
                 reply=lambda v, arg, p: login_echo(arg, p) if v == "AUTH" else None)

    with scripted(script, tls=smtp_pki.server_context()) as server:
        t = SmtpTransport("localhost", server.port, security="tls", username=USER, password=PASSWORD,
                          ca_file=smtp_pki.ca_file, timeout=5)
        with pytest.raises(TransportError) as info:
            t.send(outgoing())
        t.close()
    text = str(info.value)
    assert any(line.startswith("AUTH") for line in server.record.lines)
    assert "refused the login for mailer: 535" in text and info.value.exit_code == 2
    assert "no such login" not in text  # none of the server's words after AUTH
    for form in encoded_forms(USER, PASSWORD):
        assert form not in text


@pytest.mark.parametrize("pad", [True, False])
def test_every_kept_reply_is_scrubbed_of_the_encoded_password(pad: bool, smtp_pki: SmtpPki) -> None:
    def strip(s: str) -> str:
        return s if pad else s.rstrip("=")

    plain, xoauth = strip(b64(f"\0{USER}\0{PASSWORD}")), strip(b64(f"user={USER}\x01auth=Bearer {PASSWORD}\x01\x01"))
    login_user, login_pw = strip(b64(USER)), strip(b64(PASSWORD))

    def reply(verb: str, arg: str, peer: Peer) -> str | None:
        if verb == "RCPT" and "a@" in arg:
            return f"550 5.1.1 unknown; you said {plain} and {login_user} {login_pw}"
        if verb == "BODY":
            return f"554 5.6.0 no: {xoauth} {PASSWORD}"
        return None

    with scripted(lambda peer: dialogue(peer, reply=reply, extensions=("AUTH PLAIN",)),
                  tls=smtp_pki.server_context()) as server:
        t = SmtpTransport("localhost", server.port, security="tls", username=USER, password=PASSWORD,
                          ca_file=smtp_pki.ca_file, timeout=5, max_attempts=1)
        result = t.send(outgoing(1, ("a@example.org", "b@example.org")))
        t.close()
    kept = " ".join([result.detail or "", *result.refused.values()])
    assert result.state == "failed" and "550 5.1.1 unknown" in kept and "554 5.6.0 no" in kept
    for form in encoded_forms(USER, PASSWORD):
        assert form not in kept
