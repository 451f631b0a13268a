"""A scriptable test SMTP server, as a pytest plugin: aiosmtpd on 127.0.0.1, with injected faults.

Load it with ``pytest_plugins = ["tests.smtpd"]``. Fixtures:

- ``smtp_ca_file`` (session): PEM of a test CA whose server certificate covers "localhost" and "127.0.0.1";
- ``smtp_server``: plain SMTP that offers STARTTLS, and AUTH PLAIN/LOGIN once TLS is on;
- ``smtp_server_no_starttls``: plain SMTP, never STARTTLS, never AUTH;
- ``smtp_server_tls``: implicit TLS from the first byte, AUTH offered;
- ``make_smtp_server(*, starttls=True, implicit_tls=False, auth_required=False)``: more servers.

Every server records each message body it receives (``received``) and answers normally unless a fault
added with ``add_fault`` fires. A fault is a stage ("connect", "ehlo", "mail", "rcpt", "data") and an
action: "reply" sends ``code text`` instead of the normal answer, "disconnect" closes the connection
without answering, "stall" waits ``seconds`` and then answers normally, "hold" waits until the test
calls ``fault.release()`` (or the server stops) and then answers normally. A 421 reply, and any reply at
"connect", also closes the connection, as RFC 5321 says a 421 does. ``after=N`` arms a fault only once
the server has received N message bodies, so a test can stop a client at a given message, not a time.

Only SMTP_USER with SMTP_PASSWORD may log in. Neither the server nor this module logs or echoes a
password: aiosmtpd masks AUTH command lines itself, and a filter on its logger drops the few lines
that could still carry one.

PYTEST_DONT_REWRITE: test modules may import this module before pytest registers it as a plugin;
its asserts are internal checks that need no rewriting.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, NoReturn, Protocol

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

__all__ = [
    "SMTP_HOST",
    "SMTP_PASSWORD",
    "SMTP_USER",
    "Fault",
    "MakeSmtpServer",
    "Received",
    "SmtpPki",
    "SmtpServer",
    "make_smtp_server",
    "smtp_ca_file",
    "smtp_pki",
    "smtp_server",
    "smtp_server_no_starttls",
    "smtp_server_tls",
]

SMTP_HOST = "127.0.0.1"
SMTP_USER = "mailer"
SMTP_PASSWORD = "correct horse battery staple"
BANNER_HOSTNAME = "localhost"

STAGES = ("connect", "ehlo", "mail", "rcpt", "data")
ACTIONS = ("reply", "disconnect", "stall", "hold")
OUTCOMES = ("accepted", "rejected", "dropped")


@dataclass
class Received:
    """One message body the server read to its final dot, and what became of it."""

    mail_from: str
    rcpt_tos: list[str]  # the recipients the server accepted for this message
    data: bytes  # as received after DATA: CRLF line ends, without the final dot, un-dot-stuffed
    message_id: str | None  # the Message-ID header of data, unfolded and stripped, e.g. "<a@b>"
    outcome: str  # "accepted" (250 sent), "rejected" (a fault replied 4xx/5xx), "dropped" (closed, no reply)


@dataclass
class Fault:
    """One injected fault; ``fired`` counts how often it fired so far."""

    stage: str
    action: str = "reply"
    code: int = 451
    text: str = "injected fault"
    match: str | None = None
    times: int = 1
    seconds: float = 0.0
    after: int = 0
    fired: int = 0
    released: threading.Event = field(default_factory=threading.Event)

    def armed(self, stage: str, address: str | None, seen: int) -> bool:
        if self.stage != stage or (self.times != -1 and self.fired >= self.times) or seen < self.after:
            return False
        return self.match is None or (address is not None and self.match in address)

    def disarm(self) -> None:
        """Fires no more, as if its ``times`` were used up."""
        self.times = self.fired  # armed() then finds it spent, even at 0

    def release(self) -> None:
        """Lets every connection this "hold" fault is holding, and any it holds later, answer normally."""
        self.released.set()


class SmtpServer:
    """A running test server on 127.0.0.1; see the module docstring."""

    host: str
    port: int
    received: list[Received]
    connections: int
    logins: list[str]
    faults: list[Fault]

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, starttls: bool = True,
                 implicit_tls: bool = False, auth_required: bool = False) -> None:
        if (starttls or implicit_tls) and tls_context is None:
            raise ValueError("STARTTLS and implicit TLS need a tls_context")
        self.host = SMTP_HOST
        self.port = 0
        self.received = []
        self.connections = 0
        self.logins = []
        self.pipelining = False  # advertise PIPELINING (RFC 2920); aiosmtpd reads pipelined commands in order
        self.faults = []
        self.implicit_tls = implicit_tls
        self.starttls = starttls and not implicit_tls  # no STARTTLS inside TLS
        self._lock = threading.Lock()
        self._ready = False  # False while Controller.start() makes its own self-test connection
        self._live: set[_FaultySMTP] = set()
        self._stopped = False
        smtp_kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            "auth_required": auth_required,
            "auth_require_tls": True,  # AUTH is neither offered nor accepted in clear text
        }
        if self.starttls:
            smtp_kwargs.update(tls_context=tls_context, require_starttls=False)
        self._controller = _Controller(
            self, _Handler(self), hostname=SMTP_HOST, port=0, server_hostname=BANNER_HOSTNAME,
            ssl_context=tls_context if implicit_tls else None, **smtp_kwargs)
        try:
            self._controller.start()
        except BaseException:
            self._controller.stop(no_assert=True)  # the loop thread may be running already
            raise
        self.port = self._controller.port
        self._ready = True

    def __repr__(self) -> str:
        tls = "implicit TLS" if self.implicit_tls else "STARTTLS" if self.starttls else "no TLS"
        return f"<SmtpServer {self.host}:{self.port} {tls}>"

    def add_fault(self, stage: str, action: str = "reply", code: int = 451, text: str = "injected fault", *,
                  match: str | None = None, times: int = 1, seconds: float = 0.0, after: int = 0) -> Fault:
        """Adds a fault after those already added; the first armed one that matches fires."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
        if match is not None and stage not in ("mail", "rcpt"):
            raise ValueError("match only applies to the 'mail' and 'rcpt' stages")
        if times != -1 and times < 1:
            raise ValueError("times must be -1 (always) or at least 1")
        if action == "reply" and not 400 <= code <= 599:
            raise ValueError("a reply fault needs a 4xx or 5xx code")
        if "\r" in text or "\n" in text:
            raise ValueError("text must be one line")
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        if after < 0:
            raise ValueError("after must not be negative")
        fault = Fault(stage, action, code, text, match=match, times=times, seconds=seconds, after=after)
        with self._lock:
            self.faults.append(fault)
        return fault

    @property
    def live_connections(self) -> int:
        """Connections open now; a client that was killed drops out once the server has seen it go."""
        return len(self._live)

    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.outcome == "accepted"]

    def clear(self) -> None:
        """Forgets received messages, faults, logins and the connection count."""
        with self._lock:
            for fault in self.faults:
                fault.release()
            self.received.clear()
            self.faults.clear()
            self.logins.clear()
            self.connections = 0

    def stop(self) -> None:
        """Closes every open connection, then the listener; the port is free afterwards. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        with self._lock:
            for fault in self.faults:
                fault.release()  # a held handler answers, then its connection is closed below
        try:
            asyncio.run_coroutine_threadsafe(self._close_connections(), self._controller.loop).result(10)
        finally:
            self._controller.stop()

    # Called on the server's own thread.

    def _take(self, stage: str, address: str | None = None) -> Fault | None:
        with self._lock:
            seen = len(self.received) - (stage == "data")  # at "data", the body in hand is not yet "seen"
            for fault in self.faults:
                if fault.armed(stage, address, seen):
                    fault.fired += 1
                    return fault
        return None

    def _connected(self) -> bool:
        """Counts a new connection; False for the controller's own readiness probe."""
        if self._ready:
            with self._lock:
                self.connections += 1
        return self._ready

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user_ok = hmac.compare_digest(auth_data.login, SMTP_USER.encode())
        password_ok = hmac.compare_digest(auth_data.password, SMTP_PASSWORD.encode())
        if not (user_ok and password_ok):
            return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8 ...
        with self._lock:
            self.logins.append(SMTP_USER)
        return AuthResult(success=True, auth_data=SMTP_USER)

    async def _close_connections(self) -> None:
        for smtp in list(self._live):
            smtp.abort()
        deadline = time.monotonic() + 5
        while self._live and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # Let the cancelled client handlers unwind here, before Controller.stop() stops the loop
        # under them and leaves transports for the garbage collector (ResourceWarning).
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Controller(Controller):  # type: ignore[misc]
    def __init__(self, state: SmtpServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.state = state

    def factory(self) -> _FaultySMTP:
        return _FaultySMTP(self.state, self.handler, implicit_tls=self.ssl_context is not None,
                           **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # Bound with port=0: learn the real port before the readiness probe connects to it.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _FaultySMTP(SMTP):  # type: ignore[misc]
    """One connection: aiosmtpd's SMTP, plus faults at connect and EHLO/HELO, and a clean hang-up."""

    def __init__(self, state: SmtpServer, handler: _Handler, *, implicit_tls: bool, **kwargs: Any) -> None:
        # aiosmtpd keeps these limits in a class attribute that EHLO increments: give each
        # connection its own, so connections and servers do not grow one another's limits.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        super().__init__(handler, **kwargs)
        self.state = state
        self.faults_apply = state._connected()
        self.hang_up_after_reply = False
        if implicit_tls:
            # aiosmtpd only counts STARTTLS as TLS; this whole connection is TLS, so AUTH may go on.
            self._auth_require_tls = False

    async def fault_reply(self, stage: str, address: str | None = None) -> str | None:
        """Applies the fault due at this stage: the reply to send instead, or None to answer normally."""
        fault = self.state._take(stage, address) if self.faults_apply else None
        if fault is None:
            return None
        if fault.action in ("stall", "hold"):
            try:
                if fault.action == "stall":
                    await asyncio.sleep(fault.seconds)
                else:
                    while not fault.released.is_set():  # a threading.Event: the test's thread sets it
                        await asyncio.sleep(0.005)
            except asyncio.CancelledError:  # the client gave up and closed
                self.close()
                raise
            return None
        if fault.action == "disconnect":
            self.hang_up()
        if stage == "connect" or fault.code == 421:
            self.hang_up_after_reply = True
        return f"{fault.code} {fault.text}"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        transport = self._original_transport or self.transport  # under STARTTLS, the TCP transport
        if transport is not None:
            transport.abort()

    def hang_up(self) -> NoReturn:
        """Closes the connection and ends this client's handler the way a lost connection does."""
        self.close()
        raise asyncio.CancelledError

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str) and _ECHOED_COMMAND.match(status):
            # aiosmtpd echoes an unknown command line back; a client that got out of step would
            # see its password echoed, so say less.
            status = "500 5.5.2 Error: command not recognized"
        await super().push(status)
        if self.hang_up_after_reply:
            self.hang_up()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.state._live.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.state._live.discard(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        status = await self.fault_reply("connect")
        if status is not None:
            await self.push(status)  # and hangs up
            return
        await super()._handle_client()

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if hostname and (status := await self.fault_reply("ehlo")) is not None:
            await self.push(status)
            return
        await super().smtp_EHLO(hostname)

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if hostname and (status := await self.fault_reply("ehlo")) is not None:
            await self.push(status)
            return
        await super().smtp_HELO(hostname)


class _Handler:
    """aiosmtpd hooks: faults at MAIL, RCPT and after DATA, and the record of every message."""

    def __init__(self, state: SmtpServer) -> None:
        self.state = state

    async def handle_EHLO(self, server: _FaultySMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to a handler that has this hook
        if self.state.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: _FaultySMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> Any:
        status = await server.fault_reply("mail", address)
        return MISSING if status is None else status  # MISSING: aiosmtpd's normal answer

    async def handle_RCPT(self, server: _FaultySMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> Any:
        status = await server.fault_reply("rcpt", address)
        return MISSING if status is None else status

    async def handle_DATA(self, server: _FaultySMTP, session: Session, envelope: Envelope) -> Any:
        data = bytes(envelope.original_content)
        received = Received(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos), data=data,
                            message_id=_message_id(data), outcome="dropped")  # until a reply goes out
        with self.state._lock:
            self.state.received.append(received)
        status = await server.fault_reply("data")  # a disconnect, or a client gone during a stall, raises
        received.outcome = "accepted" if status is None else "rejected"
        return MISSING if status is None else status


def _message_id(data: bytes) -> str | None:
    value = BytesHeaderParser().parsebytes(data).get("Message-ID")
    if value is None:
        return None
    return re.sub(r"\r?\n[ \t]+", " ", str(value)).strip() or None


_ECHOED_COMMAND = re.compile(r'500 Error: command ".*" not recognized\Z', re.DOTALL)
_SMTP_VERBS = {"EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "STARTTLS", "AUTH", "VRFY",
               "HELP", "EXPN"}


class _NoSecretsInLog(logging.Filter):
    """Drops aiosmtpd log lines that can hold a password: raw lines that are not an SMTP command.

    aiosmtpd masks the argument of an AUTH command itself, and does not log the answers to its AUTH
    challenges; but it logs a non-base64 answer, and, as an unknown command, any line from a client
    that got out of step, such as a base64 password.
    """

    RAW_LINE_TEMPLATES = ("%r >> %r", "_handle_client readline: %r", "%r unrecognised: %s")

    def filter(self, record: logging.LogRecord) -> bool:
        if "decode base64" in str(record.msg):
            return False
        if record.msg in self.RAW_LINE_TEMPLATES and isinstance(record.args, tuple) and record.args:
            line = record.args[-1]
            text = line.decode("ascii", "replace") if isinstance(line, bytes) else str(line)
            verb = text.split(" ", 1)[0].strip().upper()
            return verb in _SMTP_VERBS
        return True


_AIOSMTPD_LOG = logging.getLogger("mail.log")
if not any(isinstance(f, _NoSecretsInLog) for f in _AIOSMTPD_LOG.filters):
    _AIOSMTPD_LOG.addFilter(_NoSecretsInLog())


@dataclass(frozen=True)
class SmtpPki:
    """The test CA (trusted through ``ca_file``) and the server certificate it issued."""

    ca: trustme.CA
    server_cert: trustme.LeafCert
    ca_file: Path
    identities: tuple[str, ...]

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        return context


class MakeSmtpServer(Protocol):
    def __call__(self, *, starttls: bool = True, implicit_tls: bool = False,
                 auth_required: bool = False) -> SmtpServer: ...


@pytest.fixture(scope="session")
def smtp_pki(tmp_path_factory: pytest.TempPathFactory) -> SmtpPki:
    """A test CA and a server certificate for "localhost" and "127.0.0.1"."""
    ca = trustme.CA()
    identities = ("localhost", SMTP_HOST)
    cert = ca.issue_cert(*identities)
    ca_file = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return SmtpPki(ca, cert, ca_file, identities)


@pytest.fixture(scope="session")
def smtp_ca_file(smtp_pki: SmtpPki) -> Path:
    """PEM file of the CA that signed every test server's certificate."""
    return smtp_pki.ca_file


@pytest.fixture
def make_smtp_server(smtp_pki: SmtpPki) -> Iterator[MakeSmtpServer]:
    """Starts extra servers on free ports of 127.0.0.1; all are stopped at teardown."""
    with ExitStack() as stack:
        def make(*, starttls: bool = True, implicit_tls: bool = False, auth_required: bool = False) -> SmtpServer:
            server = SmtpServer(tls_context=smtp_pki.server_context(), starttls=starttls,
                                implicit_tls=implicit_tls, auth_required=auth_required)
            stack.callback(server.stop)
            return server

        yield make


@pytest.fixture
def smtp_server(make_smtp_server: MakeSmtpServer) -> SmtpServer:
    """Plain SMTP offering STARTTLS; AUTH PLAIN/LOGIN after STARTTLS; sending needs no login."""
    return make_smtp_server()


@pytest.fixture
def smtp_server_no_starttls(make_smtp_server: MakeSmtpServer) -> SmtpServer:
    """Plain SMTP that never offers STARTTLS, hence never AUTH."""
    return make_smtp_server(starttls=False)


@pytest.fixture
def smtp_server_tls(make_smtp_server: MakeSmtpServer) -> SmtpServer:
    """Implicit TLS from the first byte (SMTPS); AUTH PLAIN/LOGIN offered."""
    return make_smtp_server(implicit_tls=True)

