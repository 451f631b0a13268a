"""One SMTP connection whose every write and reply has a deadline on the monotonic clock.

smtplib's timeout is per socket read, so a server that drips a reply one byte a second holds a
client as long as it likes. Here each reply must be complete within `command_timeout`, and nothing
may run past `message_deadline`, whichever comes first.
"""

from __future__ import annotations

import re
import select
import smtplib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_MAXLINE = 8192  # smtplib's own limit on one reply line
_CODE = re.compile(rb"[2-5][0-9][0-9]")


class Late(smtplib.SMTPServerDisconnected):
    """A reply or write did not complete in time; `whole_message` when the message's own deadline passed."""

    def __init__(self, text: str, *, whole_message: bool) -> None:
        super().__init__(text)
        self.whole_message = whole_message


class _Deadlines:
    """Mixed into smtplib.SMTP and SMTP_SSL: replaces its reading and writing, keeps its commands."""

    sock: Any
    file: Any

    def __init__(self, host: str, port: int, *, command_timeout: float, message_deadline: float,
                 monotonic: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        self.command_timeout = command_timeout
        self.message_deadline = message_deadline
        self._monotonic = monotonic
        self._buffer = bytearray()
        self._deadline = self._arm()
        # the connect timeout and, for implicit TLS, the handshake's total time (CPython's ssl counts
        # the whole handshake against the socket timeout)
        super().__init__(host, port, timeout=max(self._deadline - monotonic(), 0.001), **kwargs)  # type: ignore[call-arg]

    def _arm(self) -> float:
        self._deadline = min(self._monotonic() + self.command_timeout, self.message_deadline)
        return self._deadline

    def _left(self) -> float:
        left = self._deadline - self._monotonic()
        if left <= 0:
            if self._deadline >= self.message_deadline:
                raise Late("the message ran out of time (MENTOR_MAILER_SMTP_MESSAGE_TIMEOUT)", whole_message=True)
            raise Late(f"no complete reply within {self.command_timeout:g} s (MENTOR_MAILER_SMTP_TIMEOUT)",
                       whole_message=False)
        return left

    def send(self, s: ReadableBuffer | str) -> None:
        if not self.sock:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        data = s.encode("ascii") if isinstance(s, str) else bytes(s)
        self._arm()
        try:
            # sendall counts the whole write against the timeout (Python 3.5+), not each chunk
            self.sock.settimeout(self._left())
            self.sock.sendall(data)
        except Late:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise smtplib.SMTPServerDisconnected(f"connection lost while sending ({exc})") from None

    def getreply(self) -> tuple[int, bytes]:
        """smtplib's reply parser with a deadline per reply; a code that is not three digits 2xx-5xx is -1."""
        self._arm()
        lines: list[bytes] = []
        code = -1
        while True:
            line = self._readline()
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("connection closed by the server")
            if len(line) > _MAXLINE:
                self.close()
                raise smtplib.SMTPResponseException(500, "Line too long.")
            lines.append(line[4:].strip(b" \t\r\n"))
            if not _CODE.fullmatch(line[:3]):
                code = -1
                lines[-1] = line.strip(b" \t\r\n")  # keep the garbled code in what is reported
                break
            code = int(line[:3])
            if line[3:4] != b"-":
                break
        # whatever comes next (a TLS handshake after STARTTLS) gets a fresh window; a reply that came
        # in is never lost to a deadline passing just now: the next read or write notices that
        left = self._arm() - self._monotonic()
        if self.sock and left > 0:
            self.sock.settimeout(left)
        return code, b"\n".join(lines)

    def _readline(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or len(self._buffer) > _MAXLINE:
                n = end + 1 if end >= 0 else _MAXLINE + 1
                line = bytes(self._buffer[:n])
                del self._buffer[:n]
                return line
            if not self.sock:
                return b""
            try:
                self.sock.settimeout(self._left())
                chunk = self.sock.recv(4096)
            except Late:
                self.close()
                raise
            except TimeoutError:
                self.close()
                raise Late(f"no complete reply within {self.command_timeout:g} s (MENTOR_MAILER_SMTP_TIMEOUT)",
                           whole_message=self._deadline >= self.message_deadline) from None
            except OSError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(f"connection lost ({exc})") from None
            if not chunk:
                return bytes(self._buffer)
            self._buffer += chunk

    def starttls(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        result: tuple[int, bytes] = super().starttls(*args, **kwargs)  # type: ignore[misc]
        self._buffer.clear()  # nothing read in the clear may be taken for a reply under TLS
        return result

    def out_of_step(self) -> bool:
        """Is there input nobody asked for (a stray extra reply, or the server's hang-up)? Then the next
        reply read would answer the wrong command."""
        if self._buffer:
            return True
        if not self.sock:
            return True
        pending = getattr(self.sock, "pending", None)
        if pending is not None and pending():
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self._buffer.clear()
        super().close()  # type: ignore[misc]


class Session(_Deadlines, smtplib.SMTP):
    """A plain connection (STARTTLS follows on it)."""


class SessionTLS(Session, smtplib.SMTP_SSL):
    """A connection in TLS from its first byte."""
