"""SMTP delivery: one verified TLS connection per run, each answer mapped to a ledger state.

4xx and dropped connections before the body are transient (retried with backoff, then deferred);
5xx is permanent for that recipient or message; a drop after the body and before the server's reply
is uncertain, the one window SMTP itself cannot close.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailer.errors import ConfigError, TransportError
from mailer.shell.settings import Settings
from mailer.shell.transport import Delivery, Outgoing

_DOT = re.compile(rb"(?m)^\.")
_CONNECTION_ERRORS = (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reconnect(Exception):
    """The server closed the session (421 or a drop) before the body: try again on a new connection."""


class _Uncertain(Exception):
    """The body went out but no reply came back."""


@dataclass(slots=True)
class _Outcome:
    delivered: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # permanent, per recipient
    transient: dict[str, str] = field(default_factory=dict)  # try again, per recipient


def _reply(code: int, msg: bytes | str) -> str:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
    return f"{code} {' '.join(text.split())}"


class SmtpTransport:
    """Sends over one SMTP connection, reconnecting after a 421 or a dropped connection."""

    channel = "smtp"  # whichever server: switching servers never resends

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ca_file: Path | None = None,
        rate: float = 0.0,
        max_attempts: int = 3,
        backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if security == "none" and not is_loopback(host):
            raise ConfigError(f"MENTOR_MAILER_SMTP_SECURITY=none is allowed only for a loopback host, not {host}; "
                              "use starttls or tls")
        if username and security == "none":
            raise ConfigError("MENTOR_MAILER_SMTP_USERNAME is set but SMTP_SECURITY=none: the password would "
                              "travel in the clear; use starttls or tls")
        self.host, self.port, self.security = host, port, security
        self.username, self._password = username, password
        self.timeout, self.ca_file, self.rate = timeout, ca_file, rate
        self.max_attempts, self.backoff = max_attempts, backoff
        self._sleep, self._monotonic = sleep, monotonic
        self._conn: smtplib.SMTP | None = None
        self._last_send: float | None = None
        self.connections = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        return cls(
            settings.smtp_host, settings.smtp_port, security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            timeout=settings.smtp_timeout, ca_file=settings.smtp_ca_file, rate=settings.smtp_rate,
            max_attempts=settings.smtp_max_attempts, backoff=settings.smtp_backoff,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _scrub(self, text: str) -> str:
        """No error that leaves here can carry the password, whatever a server echoes."""
        return text.replace(self._password, "***") if self._password else text

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()  # verifies the certificate and the host name
        if self.ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"MENTOR_MAILER_SMTP_CA_FILE {self.ca_file}: cannot load it: {exc}") from None
        return ctx

    def _connect(self) -> smtplib.SMTP:
        conn: smtplib.SMTP
        if self.security == "tls":
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._tls_context())
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        self.connections += 1
        try:
            conn.ehlo()
            if self.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise TransportError(
                        f"SMTP server {self.where} does not offer STARTTLS; refusing to send in plaintext "
                        "(use MENTOR_MAILER_SMTP_SECURITY=tls if it speaks TLS from the start)")
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if self.username:
                try:
                    conn.login(self.username, self._password or "")
                except smtplib.SMTPAuthenticationError as exc:
                    raise TransportError(self._scrub(
                        f"SMTP server {self.where} refused the login for {self.username}: "
                        f"{_reply(exc.smtp_code, exc.smtp_error)}")) from None
                except smtplib.SMTPNotSupportedError:
                    raise TransportError(f"SMTP server {self.where} does not offer AUTH; unset "
                                         "MENTOR_MAILER_SMTP_USERNAME or use another server") from None
        except BaseException:
            _close(conn)
            raise
        return conn

    def _pace(self) -> None:
        if self.rate > 0 and self._last_send is not None:
            wait = self._last_send + 60.0 / self.rate - self._monotonic()
            if wait > 0:
                self._sleep(wait)
        self._last_send = self._monotonic()

    def send(self, out: Outgoing, before_body: Callable[[], None] | None = None) -> Delivery:
        """Deliver to every recipient in `out`, retrying transient trouble up to max_attempts."""
        remaining = list(out.recipients)
        delivered: list[str] = []
        refused: dict[str, str] = {}
        last = "not attempted"
        attempt = 0
        while remaining and attempt < self.max_attempts:
            attempt += 1
            if attempt > 1:
                self._sleep(self.backoff * 2 ** (attempt - 2))
            self._pace()
            try:
                if self._conn is None:
                    self._conn = self._connect()
                outcome = self._transaction(self._conn, out.sender, remaining, out.data, before_body)
            except _Uncertain as exc:
                self._drop()
                return Delivery("uncertain", tuple(delivered), refused, self._scrub(str(exc)), attempt)
            except ssl.SSLError as exc:
                self._drop()
                raise TransportError(f"TLS with SMTP server {self.where} failed: {exc}") from None
            except (_Reconnect, *_CONNECTION_ERRORS) as exc:
                self._drop()
                last = self._scrub(_describe(exc))
                if attempt == self.max_attempts and not delivered:
                    raise TransportError(f"SMTP server {self.where} cannot be reached: {last}",
                                         deferred=True) from None
                continue
            delivered += outcome.delivered
            refused.update(outcome.refused)
            remaining = list(outcome.transient)
            if outcome.transient:
                last = next(iter(outcome.transient.values()))
        if remaining:
            return Delivery("deferred", tuple(delivered), refused, last, attempt)
        if delivered:
            return Delivery("sent", tuple(delivered), refused, None, attempt)
        return Delivery("failed", (), refused, "; ".join(sorted(set(refused.values()))), attempt)

    def _transaction(self, conn: smtplib.SMTP, sender: str, rcpts: list[str], data: bytes,
                     before_body: Callable[[], None] | None) -> _Outcome:
        """One SMTP transaction. With PIPELINING (RFC 2920) the envelope and DATA go in one write and
        their replies are read in order; otherwise command by command. Commands are written here, not
        by smtplib.mail/rcpt, which re-parse every address; ours are validated ASCII already."""
        out = _Outcome()
        commands = [f"MAIL FROM:<{sender}>", *(f"RCPT TO:<{r}>" for r in rcpts)]
        if conn.does_esmtp and conn.has_extn("pipelining"):
            conn.send(("\r\n".join([*commands, "DATA"]) + "\r\n").encode("ascii"))
            mail, *rcpt_replies, data_reply = [conn.getreply() for _ in range(len(commands) + 1)]
        else:
            mail = conn.docmd(commands[0])
            rcpt_replies, data_reply = [], (0, b"")
            if mail[0] == 250:
                rcpt_replies = [conn.docmd(c) for c in commands[1:]]
        if mail[0] != 250:
            self._abandon_data(conn, data_reply)
            return self._whole(conn, mail[0], mail[1], rcpts, out)
        accepted = []
        for rcpt, (code, msg) in zip(rcpts, rcpt_replies, strict=True):
            if code in (250, 251):
                accepted.append(rcpt)
            elif code == 421:
                raise _Reconnect(_reply(code, msg))
            elif 400 <= code < 500:
                out.transient[rcpt] = _reply(code, msg)
            else:
                out.refused[rcpt] = _reply(code, msg)
        if not accepted:
            self._abandon_data(conn, data_reply)
            _rset(conn)
            return out
        code, msg = data_reply if data_reply[0] else conn.docmd("DATA")
        if code != 354:
            return self._whole(conn, code, msg, accepted, out)
        body = _DOT.sub(b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        if before_body is not None:
            before_body()
        conn.send(body + b".\r\n")  # a drop here leaves no complete message at the server: transient
        try:
            code, msg = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Uncertain(f"connection lost after the message body, before the server's reply ({exc})") from None
        if code == 250:
            out.delivered = accepted
            return out
        return self._whole(conn, code, msg, accepted, out)

    @staticmethod
    def _abandon_data(conn: smtplib.SMTP, data_reply: tuple[int, bytes]) -> None:
        """A pipelined DATA the server accepted although no recipient was: send an empty message's end
        (RFC 2920 section 3.1) so the session is back in step; the server rejects it for want of recipients."""
        if data_reply[0] == 354:
            conn.send(b".\r\n")
            conn.getreply()

    def _whole(self, conn: smtplib.SMTP, code: int, msg: bytes, rcpts: list[str], out: _Outcome) -> _Outcome:
        """A reply that concerns the whole message (MAIL, DATA, or after the body)."""
        reply = _reply(code, msg)
        if code == 421:
            raise _Reconnect(reply)
        target = out.transient if 400 <= code < 500 else out.refused
        for rcpt in rcpts:
            target[rcpt] = reply
        _rset(conn)
        return out

    def _drop(self) -> None:
        if self._conn is not None:
            _close(self._conn)
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (*_CONNECTION_ERRORS, smtplib.SMTPException):
                pass
            finally:
                _close(self._conn)
                self._conn = None


def _rset(conn: smtplib.SMTP) -> None:
    try:
        conn.rset()
    except (smtplib.SMTPException, OSError):
        raise _Reconnect("connection lost during RSET") from None


def _close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPConnectError):
        return _reply(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out waiting for the server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
