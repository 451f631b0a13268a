"""What an SMTP exchange can end in, and how each end is worded: the transport's outcomes and sentences."""

from __future__ import annotations

import contextlib
import ipaddress
import smtplib
import socket
import ssl
from dataclasses import dataclass, field

from mailer.shell.smtp_session import Late, Session

# this many 4xx replies to MAIL FROM in a row (across messages and attempts), or messages abandoned
# at their deadline, mean the server takes nothing for now (a rate limit, a block, a tar pit), not
# that one message has a problem
REFUSALS_TO_STOP = 3


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Reconnect(Exception):
    """The server closed the session (421 or a drop) before the body: try again on a new connection."""


class Uncertain(Exception):
    """The body went out but no usable reply came back."""


class RefusesAll(Exception):
    """Several MAIL FROM in a row got a 4xx: the server takes nothing for now."""


@dataclass(slots=True)
class Outcome:
    delivered: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # permanent, per recipient
    transient: dict[str, str] = field(default_factory=dict)  # try again, per recipient
    drop: bool = False  # the session is out of step: do not send another command on it


def reply_text(code: int, msg: bytes | str) -> str:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
    text = " ".join(text.split())
    return text if code == -1 else f"{code} {text}"


def rset(conn: Session, out: Outcome) -> None:
    try:
        code, _ = conn.rset()
    except (smtplib.SMTPException, OSError):
        out.drop = True
        return
    out.drop = out.drop or code != 250


def close_quietly(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def refusing_all(where: str, reason: str) -> str:
    return (f"SMTP server {where} took none of the last {REFUSALS_TO_STOP} messages ({reason}); "
            "the rest stays due and the next run tries again")


def with_earlier(said: str | None, last: str) -> str:
    return last if said is None or said in last else f"{said}; then {last}"


def describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPConnectError):
        return reply_text(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, Late):
        return str(exc)
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out waiting for the server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


def tls_failed(where: str, host: str, exc: ssl.SSLError) -> str:
    """A TLS failure, with what usually fixes it."""
    advice = ("a server with a private or self-signed certificate needs MENTOR_MAILER_SMTP_CA_FILE, the "
              "PEM file of the CA that signed it")
    if is_loopback(host):
        advice += "; a relay on this machine may use MENTOR_MAILER_SMTP_SECURITY=none instead"
    return f"TLS with SMTP server {where} failed: {exc} ({advice})"


def abandon_data(conn: Session, data_reply: tuple[int, bytes], out: Outcome) -> None:
    """A pipelined DATA the server accepted although no recipient was: send an empty message's end
    (RFC 2920 section 3.1) so the session is back in step; the server rejects it for want of recipients."""
    if data_reply[0] == 354:
        conn.send(b".\r\n")
        code, _ = conn.getreply()
        out.drop = out.drop or 200 <= code < 300  # it took an empty message: better not trust the session
