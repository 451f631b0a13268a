"""SMTP with XOAUTH2: the token the coordinator's command prints, against a real aiosmtpd server over STARTTLS."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from mailer.errors import TransportError
from mailer.shell.smtp import SmtpTransport
from mailer.shell.transport import Outgoing
from tests.conftest import utc
from tests.smtpd import SmtpPki

GOOD = "ya29.good-token-5f1e"
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\nMessage-ID: <x1@example.org>\r\n\r\nhi\r\n"


class _Handler:
    def __init__(self) -> None:
        self.logins: list[str] = []
        self.received: list[bytes] = []

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        given = base64.b64decode(args[1]).decode() if len(args) > 1 else ""
        if given == f"user=mailer\x01auth=Bearer {GOOD}\x01\x01":
            self.logins.append("mailer")
            return AuthResult(success=True, auth_data="mailer")
        # RFC 7628: a JSON error as a challenge; the client answers with an empty line, then 535
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}).encode())
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(bytes(envelope.content or b""))
        return "250 2.0.0 accepted"


class _Controller(Controller):  # type: ignore[misc]
    def _trigger_server(self) -> None:
        # bound with port=0: learn the real port before the readiness probe connects to it
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def xoauth2_server(smtp_pki: SmtpPki) -> Iterator[tuple[Controller, _Handler]]:
    handler = _Handler()
    controller = _Controller(handler, hostname="127.0.0.1", port=0, tls_context=smtp_pki.server_context(),
                            require_starttls=False, auth_require_tls=True, auth_exclude_mechanism=["LOGIN", "PLAIN"])
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def _command(tmp_path: Path, token: str) -> str:
    script = tmp_path / "print-token"
    script.write_text(f"#!/bin/sh\necho '{token}'\n", encoding="utf-8")
    script.chmod(0o700)
    return str(script)


def _transport(server: Controller, ca_file: Path, command: str) -> SmtpTransport:
    return SmtpTransport("127.0.0.1", server.port, security="starttls", username="mailer", ca_file=ca_file,
                         token_command=command, max_attempts=1, backoff=0)


def test_xoauth2_sends_with_the_commands_token(xoauth2_server: tuple[Controller, Any], smtp_pki: SmtpPki,
                                               tmp_path: Path) -> None:
    server, handler = xoauth2_server
    transport = _transport(server, smtp_pki.ca_file, _command(tmp_path, GOOD))
    try:
        result = transport.send(Outgoing("k", utc(2020, 1, 1), "a@example.org", ["b@example.org"], MESSAGE))
    finally:
        transport.close()
    assert result.state == "sent" and handler.logins == ["mailer"]
    assert b"Message-ID: <x1@example.org>" in handler.received[0]


def test_a_refused_token_names_the_setting_never_the_token(xoauth2_server: tuple[Controller, Any],
                                                           smtp_pki: SmtpPki, tmp_path: Path) -> None:
    server, handler = xoauth2_server
    transport = _transport(server, smtp_pki.ca_file, _command(tmp_path, "ya29.expired-token-9c2"))
    try:
        with pytest.raises(TransportError) as caught:
            transport.send(Outgoing("k", utc(2020, 1, 1), "a@example.org", ["b@example.org"], MESSAGE))
    finally:
        transport.close()
    text = str(caught.value)
    assert "refused the OAuth2 token for mailer: 535" in text and "MENTOR_MAILER_OAUTH2_TOKEN_COMMAND" in text
    assert "expired-token" not in text and handler.received == []
