"""SMTP delivery: one verified TLS connection per run, each answer mapped to a ledger state.

Before the body, a 4xx, a reply SMTP does not define, a drop or a timeout is transient (retried with
backoff, then deferred); 5xx is permanent for that recipient or message. After the body, 2xx is sent,
4xx deferred, 5xx failed, and anything else (a garbled reply, a drop, the deadline) is uncertain, the
one window SMTP itself cannot close. Every reply that is kept is scrubbed of the password's forms.
"""

from __future__ import annotations

import dataclasses
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from mailer.errors import ConfigError, TransportError
from mailer.shell.settings import Settings
from mailer.shell.smtp_auth import login, login_xoauth2, oauth2_token, secret_forms
from mailer.shell.smtp_replies import (
    REFUSALS_TO_STOP,
    Outcome,
    Reconnect,
    RefusesAll,
    Uncertain,
    abandon_data,
    close_quietly,
    describe,
    is_loopback,
    refusing_all,
    reply_text,
    rset,
    tls_failed,
    with_earlier,
)
from mailer.shell.smtp_session import Session, SessionTLS
from mailer.shell.transport import Delivery, Outgoing

_DOT = re.compile(rb"(?m)^\.")
_CONNECTION_ERRORS = (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError)


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
        message_timeout: float = 300.0,
        ca_file: Path | None = None,
        rate: float = 0.0,
        max_attempts: int = 3,
        backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        token_command: str | None = None,
    ) -> None:
        if security == "none" and not is_loopback(host):
            raise ConfigError(f"MENTOR_MAILER_SMTP_SECURITY=none is allowed only for a loopback host, not {host}; "
                              "use starttls or tls")
        if username and security == "none":
            raise ConfigError("MENTOR_MAILER_SMTP_USERNAME is set but SMTP_SECURITY=none: the password would "
                              "travel in the clear; use starttls or tls")
        self.host, self.port, self.security = host, port, security
        self.username, self._password = username, password
        self._secrets = secret_forms(username, password)
        self.token_command = token_command  # with a user name: log in with XOAUTH2 and the token it prints
        self.timeout, self.message_timeout = timeout, message_timeout
        self.ca_file, self.rate = ca_file, rate
        self.max_attempts, self.backoff = max_attempts, backoff
        self._sleep, self._monotonic = sleep, monotonic
        self._conn: Session | None = None
        self._last_send: float | None = None
        self._mail_refusals = 0
        self._refusing: str | None = None  # set when the server refused too often: the next send stops the run

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        return cls(
            settings.smtp_host, settings.smtp_port, security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            timeout=settings.smtp_timeout, message_timeout=settings.smtp_message_timeout,
            ca_file=settings.smtp_ca_file, rate=settings.smtp_rate,
            max_attempts=settings.smtp_max_attempts, backoff=settings.smtp_backoff,
            token_command=settings.oauth2_token_command,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _scrub(self, text: str) -> str:
        """No text that leaves here can carry the password, plain or base64, whatever a server echoes."""
        for form in self._secrets:
            text = text.replace(form, "***")
        return text

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()  # verifies the certificate and the host name
        if self.ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"MENTOR_MAILER_SMTP_CA_FILE {self.ca_file}: cannot load it: {exc}") from None
        return ctx

    def _connect(self, deadline: float) -> Session:
        conn: Session
        kwargs = {"command_timeout": self.timeout, "message_deadline": deadline, "monotonic": self._monotonic}
        if self.security == "tls":
            conn = SessionTLS(self.host, self.port, context=self._tls_context(), **kwargs)  # type: ignore[arg-type]
        else:
            conn = Session(self.host, self.port, **kwargs)  # type: ignore[arg-type]
        try:
            conn.ehlo()
            if self.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise TransportError(
                        f"SMTP server {self.where} does not offer STARTTLS; refusing to send in plaintext "
                        "(use MENTOR_MAILER_SMTP_SECURITY=tls if it speaks TLS from the start)")
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if self.username and self.token_command:
                token = oauth2_token(self.token_command)
                self._secrets = sorted({*self._secrets, *secret_forms(self.username, token)}, key=len, reverse=True)
                login_xoauth2(conn, where=self.where, username=self.username, token=token)
            elif self.username:
                login(conn, where=self.where, username=self.username, password=self._password or "")
        except BaseException:
            close_quietly(conn)
            raise
        return conn

    def check(self) -> str:
        """Connect, upgrade to TLS and log in as a run would, and send nothing: what worked, in one line."""
        try:
            conn = self._connect(self._monotonic() + self.timeout)
        except ssl.SSLError as exc:
            raise TransportError(tls_failed(self.where, self.host, exc)) from None
        except _CONNECTION_ERRORS as exc:
            raise TransportError(f"SMTP server {self.where} cannot be reached: {describe(exc)}") from None
        self._conn = conn
        self.close()
        steps = {"starttls": "upgraded to TLS with STARTTLS", "tls": "spoke TLS from the start",
                 "none": "without TLS (loopback only)"}[self.security]
        who = f", logged in as {self.username}" if self.username else ", no login (SMTP_USERNAME unset)"
        return f"SMTP server {self.where}: connected, {steps}{who}; nothing was sent"

    def _pace(self) -> None:
        if self.rate > 0 and self._last_send is not None:
            wait = self._last_send + 60.0 / self.rate - self._monotonic()
            if wait > 0:
                self._sleep(wait)
        self._last_send = self._monotonic()

    def send(self, out: Outgoing, before_body: Callable[[], None] | None = None) -> Delivery:
        """Deliver to every recipient in `out`, retrying transient trouble up to max_attempts and
        within MENTOR_MAILER_SMTP_MESSAGE_TIMEOUT."""
        try:
            delivery = self._send(out, before_body)
        except TransportError as exc:
            raise TransportError(self._scrub(str(exc)), deferred=exc.deferred) from None
        except BaseException:
            self._drop()  # interrupted mid-command (a second signal): never QUIT on a session out of step
            raise
        return dataclasses.replace(
            delivery, detail=self._scrub(delivery.detail) if delivery.detail else None,
            refused={r: self._scrub(reply) for r, reply in delivery.refused.items()})

    def _send(self, out: Outgoing, before_body: Callable[[], None] | None) -> Delivery:
        if self._refusing is not None:
            raise TransportError(self._refusing, deferred=True)
        deadline = self._monotonic() + self.message_timeout
        remaining = list(out.recipients)
        delivered: list[str] = []
        refused: dict[str, str] = {}
        last = "not attempted"
        said: str | None = None  # the server's own words (a 421), kept when a later failure says less
        attempt = 0
        while remaining and attempt < self.max_attempts:
            attempt += 1
            if attempt > 1:
                pause = self.backoff * 2 ** (attempt - 2)
                if self._monotonic() + pause >= deadline:
                    break
                self._sleep(pause)
            self._pace()
            try:
                if self._conn is not None and self._conn.out_of_step():
                    self._drop()
                if self._conn is None:
                    self._conn = self._connect(deadline)
                self._conn.message_deadline = deadline
                outcome = self._transaction(self._conn, out.sender, remaining, out.data, before_body)
            except Uncertain as exc:
                self._drop()
                return Delivery("uncertain", tuple(delivered), refused, str(exc), attempt)
            except RefusesAll as exc:
                self._drop()  # pipelined replies may be unread: the session is not to be used again
                self._refusing = refusing_all(self.where, str(exc))
                if not delivered:
                    raise TransportError(self._refusing, deferred=True) from None
                return Delivery("deferred", tuple(delivered), refused, str(exc), attempt)
            except ssl.SSLError as exc:
                self._drop()
                raise TransportError(tls_failed(self.where, self.host, exc)) from None
            except (Reconnect, *_CONNECTION_ERRORS) as exc:
                self._drop()
                last = describe(exc)
                if isinstance(exc, Reconnect):
                    said = last
                if self._monotonic() >= deadline:
                    break
                if attempt == self.max_attempts and not delivered:
                    raise TransportError(f"SMTP server {self.where} cannot be reached: {with_earlier(said, last)}",
                                         deferred=True) from None
                continue
            delivered += outcome.delivered
            refused.update(outcome.refused)
            remaining = list(outcome.transient)
            if outcome.transient:
                last = next(iter(outcome.transient.values()))
            if outcome.drop:
                self._drop()
        if remaining and self._monotonic() >= deadline:
            last = (f"abandoned after {self.message_timeout:g} s (MENTOR_MAILER_SMTP_MESSAGE_TIMEOUT) before "
                    f"the body went out: {with_earlier(said, last)}")
            self._mail_refusals += 1
            if self._mail_refusals >= REFUSALS_TO_STOP:
                self._refusing = refusing_all(self.where, last)  # this one is deferred; the next stops the run
        if remaining:
            return Delivery("deferred", tuple(delivered), refused, with_earlier(said, last), attempt)
        if delivered:
            return Delivery("sent", tuple(delivered), refused, None, attempt)
        return Delivery("failed", (), refused, "; ".join(sorted(set(refused.values()))), attempt)

    def _transaction(self, conn: Session, sender: str, rcpts: list[str], data: bytes,
                     before_body: Callable[[], None] | None) -> Outcome:
        """One SMTP transaction. With PIPELINING (RFC 2920) the envelope and DATA go in one write and
        their replies are read in order; otherwise command by command. Commands are written here, not
        by smtplib.mail/rcpt, which re-parse every address; ours are validated ASCII already."""
        out = Outcome()
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
            self._count_refusal(mail)
            abandon_data(conn, data_reply, out)
            return self._whole(conn, mail[0], mail[1], rcpts, out)
        self._mail_refusals = 0
        accepted = []
        for rcpt, (code, msg) in zip(rcpts, rcpt_replies, strict=True):
            if code in (250, 251):
                accepted.append(rcpt)
            elif code == 421:
                raise Reconnect(reply_text(code, msg))
            elif 500 <= code < 600:
                out.refused[rcpt] = reply_text(code, msg)
            else:  # 4xx, or a reply SMTP does not define: not the server's last word
                out.transient[rcpt] = reply_text(code, msg)
                out.drop = out.drop or not 400 <= code < 500
        if not accepted:
            abandon_data(conn, data_reply, out)
            if not out.drop:
                rset(conn, out)
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
            raise Uncertain(f"no reply after the message body ({exc}); the server may have it") from None
        if 200 <= code < 300:
            out.delivered = accepted
            out.drop = conn.out_of_step()  # a stray extra reply must not answer the next MAIL
            return out
        if not 400 <= code < 600:
            raise Uncertain(f"unexpected reply after the message body: {reply_text(code, msg)}; the server may have it")
        return self._whole(conn, code, msg, accepted, out)

    def _count_refusal(self, mail: tuple[int, bytes]) -> None:
        if 400 <= mail[0] < 500:
            self._mail_refusals += 1
            if self._mail_refusals >= REFUSALS_TO_STOP:
                raise RefusesAll(reply_text(*mail))

    def _whole(self, conn: Session, code: int, msg: bytes, rcpts: list[str], out: Outcome) -> Outcome:
        """A reply that concerns the whole message (MAIL, DATA, or a 4xx/5xx after the body)."""
        reply = reply_text(code, msg)
        if code == 421:
            raise Reconnect(reply)
        if 500 <= code < 600:
            target = out.refused
        else:
            target = out.transient
            if not 400 <= code < 500:  # a reply SMTP does not define here: the session is out of step
                out.drop = True
                reply = f"unexpected reply {reply!r}"
        for rcpt in rcpts:
            target[rcpt] = reply
        if not out.drop:
            rset(conn, out)
        return out

    def _drop(self) -> None:
        if self._conn is not None:
            close_quietly(self._conn)
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.message_deadline = self._monotonic() + self.timeout
                self._conn.quit()
            except (*_CONNECTION_ERRORS, smtplib.SMTPException):
                pass
            finally:
                close_quietly(self._conn)
                self._conn = None
