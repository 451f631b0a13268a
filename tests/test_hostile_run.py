"""The real `mentor-mailer run` against hostile servers: two signals end a run stuck on a dripping
server, and a server that echoes the password in base64 leaves no trace of it in any output."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailer.shell.settings import Settings
from tests.scripted_smtp import Peer, ScriptedServer, dialogue, scripted
from tests.smtpd import SMTP_PASSWORD, SMTP_USER, SmtpPki, SmtpServer

NOW = "2019-08-01T15:00:00Z"  # the sample cohort's welcome: one message per pair
LATER = "2019-09-01T15:00:00Z"


def env_for(s: Settings, host: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    return env | {
        "MENTOR_MAILER_PROGRAM_DIR": str(s.program_dir), "MENTOR_MAILER_DATABASE": str(s.database_path),
        "MENTOR_MAILER_TRANSPORT": "smtp", "MENTOR_MAILER_SMTP_HOST": host, "MENTOR_MAILER_SMTP_PORT": str(port),
        "MENTOR_MAILER_SMTP_SECURITY": "none", "MENTOR_MAILER_SMTP_BACKOFF": "0", "MENTOR_MAILER_DIGEST": "false",
    } | extra


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailer.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def read_line(proc: subprocess.Popen[str], wanted: str, timeout: float = 60.0) -> str:
    """stderr up to the line containing `wanted`."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stderr], [], [], left)[0]:
            raise AssertionError(f"timed out waiting for {wanted!r} on stderr; got {seen!r}")
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"the run ended before saying {wanted!r}: {seen!r}")
        seen += line
    return seen


def states(s: Settings) -> dict[str, str]:
    conn = sqlite3.connect(s.database_path)
    try:
        return dict(conn.execute("SELECT key, state FROM messages"))
    finally:
        conn.close()


def drip_forever(at: str) -> Callable[[Peer], None]:
    """A session that answers `at` ("MAIL", or "BODY" for the end of the message) one byte per 0.2 s."""
    def reply(verb: str, arg: str, peer: Peer) -> str | None:
        if verb == at:
            peer.say("250 " + "x" * 100_000, drip=0.2)
        return None
    return lambda peer: dialogue(peer, reply=reply)


@pytest.mark.parametrize("stuck_at", ["MAIL", "BODY"])
def test_a_second_sigterm_ends_a_stuck_run_at_once(settings: Settings, smtp_server: SmtpServer,
                                                    stuck_at: str) -> None:
    """Before: the second signal unwound into QUIT on the same dripping session and hung there,
    holding the lock, so every later cron run exited 75."""
    with scripted(drip_forever(stuck_at)) as server:
        # timeouts far beyond the test: only the signals can end this run
        env = env_for(settings, server.host, server.port, MENTOR_MAILER_SMTP_TIMEOUT="3600",
                      MENTOR_MAILER_SMTP_MESSAGE_TIMEOUT="3600")
        proc = subprocess.Popen([sys.executable, "-m", "mailer.cli", "run", "--now", NOW], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            mark = "DATA" if stuck_at == "BODY" else "MAIL"
            wait_until(lambda: any(line.startswith(mark) for line in server.record.lines), f"the run's {mark}")
            if stuck_at == "BODY":
                wait_until(lambda: bool(server.record.bodies), "the message body")
            proc.send_signal(signal.SIGTERM)
            heard = read_line(proc, "stopping after the message in flight")  # back to back, two are one
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            err = heard + err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    left = states(settings)
    assert list(left.values()) == ["sending"]  # the one in flight, for the next run to recover
    stuck = next(iter(left))

    again = cli(env_for(settings, smtp_server.host, smtp_server.port), "run", "--now", NOW)
    assert again.returncode == 0, again.stderr  # not 75: the lock went with the stopped run
    after = states(settings)
    assert "sending" not in after.values() and set(after.values()) == {"sent"}
    assert len(smtp_server.accepted()) == len(after) > 1
    if stuck_at == "BODY":
        assert "uncertain" in again.stderr and stuck in again.stderr  # resent once, same Message-ID


def readable(data: bytes) -> str:
    """A message as its reader sees it: every text part decoded (a base64 body would hide an echo)."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    parts = [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
    return "\n".join([data.decode("utf-8", "replace"), *parts])


def b64(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


def password_forms(user: str, password: str) -> list[str]:
    forms = [b64(f"\0{user}\0{password}"), b64(f"{user}\0{user}\0{password}"), b64(password),
             b64(f"user={user}\x01auth=Bearer {password}\x01\x01")]
    return [password, *forms, *(f.rstrip("=") for f in forms)]


def echoing(mechanism: str, smtp_pki: SmtpPki) -> ScriptedServer:
    """Implicit TLS; takes the login, then echoes the AUTH argument(s) in the replies that are kept."""
    said: list[str] = []

    def reply(verb: str, arg: str, peer: Peer) -> str | None:
        if verb == "AUTH":
            said.append(arg.partition(" ")[2])
            if mechanism == "LOGIN":
                peer.say("334 UGFzc3dvcmQ6")
                said.append(peer.line())
            return f"235 2.7.0 welcome {' '.join(said)}"
        echo = " ".join(s.rstrip("=") if n % 2 else s for n, s in enumerate(said))
        if verb == "RCPT" and "example.com" in arg:
            return f"550 5.1.1 unknown user (you are {echo})"
        if verb == "BODY" and len(peer.record.bodies) % 3 == 0:
            return f"451 4.3.0 try later {echo}"
        if verb == "BODY" and len(peer.record.bodies) % 3 == 1:
            return f"2x0 {echo}"  # garbled: uncertain, with the reply recorded
        return None

    return ScriptedServer(lambda peer: dialogue(peer, reply=reply, extensions=(f"AUTH {mechanism}",)),
                          tls=smtp_pki.server_context())


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_canary_password_in_encoded_forms_never_appears(settings: Settings, smtp_pki: SmtpPki,
                                                        smtp_server: SmtpServer, mechanism: str,
                                                        tmp_path: Path) -> None:
    """stderr, the ledger file (and its -wal), status --json, report --out and the digest: none carries
    the password, plain or in base64 (PLAIN, LOGIN, XOAUTH2; padded or not)."""
    password = SMTP_PASSWORD  # the aiosmtpd fixture's: the digest of the second run goes through it
    server = echoing(mechanism, smtp_pki)
    outputs: list[str] = []
    try:
        env = env_for(settings, "localhost", server.port, MENTOR_MAILER_SMTP_SECURITY="tls",
                      MENTOR_MAILER_SMTP_CA_FILE=str(smtp_pki.ca_file), MENTOR_MAILER_SMTP_USERNAME=SMTP_USER,
                      MENTOR_MAILER_SMTP_PASSWORD=password, MENTOR_MAILER_SMTP_TIMEOUT="10",
                      MENTOR_MAILER_SMTP_MAX_ATTEMPTS="1", MENTOR_MAILER_DIGEST="true")
        first = cli(env, "run", "--now", NOW)
        outputs += [first.stdout, first.stderr]
        digests_seen = [b for b in server.record.bodies if b"Auto-Submitted: auto-generated" in b]
    finally:
        server.stop()
    assert first.returncode == 1, first.stderr
    assert "550 5.1.1 unknown user" in first.stderr and "try later" in first.stderr
    assert any(password_forms(SMTP_USER, password)[1 if mechanism == "PLAIN" else 3] in line
               for line in server.record.lines)  # the server did see the encoded form

    # the next run goes through the aiosmtpd fixture (STARTTLS, the same login), digest on
    env2 = env_for(settings, "localhost", smtp_server.port, MENTOR_MAILER_SMTP_SECURITY="starttls",
                   MENTOR_MAILER_SMTP_CA_FILE=str(smtp_pki.ca_file), MENTOR_MAILER_SMTP_USERNAME=SMTP_USER,
                   MENTOR_MAILER_SMTP_PASSWORD=password, MENTOR_MAILER_DIGEST="true")
    second = cli(env2, "run", "--now", LATER)
    outputs += [second.stdout, second.stderr]
    for args in (["status", "--json"], ["report", "--out", str(tmp_path / "report.html")]):
        r = cli(env2, *args)
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
    status_json, report = outputs[-4], (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "550 5.1.1 unknown user" in status_json and "550 5.1.1 unknown user" in report
    digests = [readable(m.data) for m in smtp_server.accepted() if b"Auto-Submitted: auto-generated" in m.data]
    assert digests and digests_seen
    ledger_files = b"".join(p.read_bytes() for p in settings.database_path.parent.glob("ledger.sqlite3*"))
    conn = sqlite3.connect(settings.database_path)
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert "550 5.1.1 unknown user" in dump
    everything = "\n".join([*outputs, report, dump, *digests,
                            *(readable(b) for b in digests_seen)])
    for form in password_forms(SMTP_USER, password):
        assert form not in everything, form
        assert form.encode() not in ledger_files, form


def test_a_server_offering_only_unusable_auth_mechanisms_exits_2(settings: Settings, smtp_pki: SmtpPki) -> None:
    """Before: "cannot be reached", exit 1, and every cron run tried again."""
    with scripted(lambda peer: dialogue(peer, extensions=("AUTH GSSAPI NTLM",)),
                  tls=smtp_pki.server_context()) as server:
        env = env_for(settings, "localhost", server.port, MENTOR_MAILER_SMTP_SECURITY="tls",
                      MENTOR_MAILER_SMTP_CA_FILE=str(smtp_pki.ca_file), MENTOR_MAILER_SMTP_USERNAME=SMTP_USER,
                      MENTOR_MAILER_SMTP_PASSWORD=SMTP_PASSWORD)
        r = cli(env, "run", "--now", NOW)
    assert r.returncode == 2, r.stderr
    assert "offers AUTH GSSAPI NTLM only" in r.stderr and "Traceback" not in r.stderr
    assert server.record.connections == 1
    assert set(states(settings).values()) <= {"deferred"}  # nothing lost: it stays due
