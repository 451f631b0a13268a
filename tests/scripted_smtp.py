"""A hostile SMTP server for tests: raw sockets on 127.0.0.1, each connection run by a script.

aiosmtpd (tests/smtpd.py) always speaks correct SMTP; the servers here do what a broken or hostile
server does: drip a reply a byte at a time, garble a code, send a stray extra reply, echo the AUTH
argument. A script is a function of one `Peer`; `dialogue` runs an ordinary session in which a
`reply` hook may replace any answer.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

HOST = "127.0.0.1"


class Gone(Exception):
    """The client closed the connection, or the server is stopping."""


@dataclass
class Record:
    """What the server saw: every command line, every message body (up to the final dot)."""

    lines: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0


class Peer:
    """One client connection, seen from the server."""

    def __init__(self, sock: socket.socket, record: Record, stopping: threading.Event, lock: threading.Lock) -> None:
        self.sock = sock
        self.record = record
        self.stopping = stopping
        self._lock = lock
        self._buffer = b""

    def say(self, text: str, *, drip: float = 0.0) -> None:
        """Send one reply (CRLF added); with `drip`, one byte every `drip` seconds, as a hostile server does."""
        data = text.encode("utf-8") + b"\r\n"
        try:
            if not drip:
                self.sock.sendall(data)
                return
            for i in range(len(data)):
                if self.stopping.wait(drip):
                    raise Gone
                self.sock.sendall(data[i:i + 1])
        except OSError:
            raise Gone from None

    def line(self) -> str:
        """The next command line, without its CRLF."""
        while b"\r\n" not in self._buffer:
            self._fill()
        raw, self._buffer = self._buffer.split(b"\r\n", 1)
        text = raw.decode("utf-8", "replace")
        with self._lock:
            self.record.lines.append(text)
        return text

    def body(self) -> bytes:
        """The message after DATA, up to (not including) the final dot line."""
        while b"\r\n.\r\n" not in self._buffer:
            self._fill()
        data, self._buffer = self._buffer.split(b"\r\n.\r\n", 1)
        with self._lock:
            self.record.bodies.append(data + b"\r\n")
        return data

    def tls(self, context: ssl.SSLContext) -> None:
        """Switch this connection to TLS (after a 220 to STARTTLS)."""
        self._buffer = b""
        self.sock = context.wrap_socket(self.sock, server_side=True)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            raise Gone from None
        if not chunk:
            raise Gone
        self._buffer += chunk


Reply = Callable[[str, str, Peer], "str | None"]


def dialogue(peer: Peer, *, reply: Reply | None = None, extensions: tuple[str, ...] = (),
             greeting: str = "220 scripted ESMTP", starttls: ssl.SSLContext | None = None) -> None:
    """An ordinary SMTP session; `reply(verb, argument, peer)` may return another answer (or say its
    own with peer.say and return "") for any command, "BODY" standing for the end of a message."""
    def answer(verb: str, arg: str, normal: str) -> None:
        custom = reply(verb, arg, peer) if reply else None
        if custom is None:
            peer.say(normal)
        elif custom:
            peer.say(custom)
        if (custom or normal).startswith("421"):
            raise Gone

    peer.say(greeting)
    tls_on = False
    while True:
        verb, _, arg = peer.line().partition(" ")
        verb = verb.upper()
        if verb in ("EHLO", "HELO"):
            offered = [*extensions, *(["STARTTLS"] if starttls is not None and not tls_on else [])]
            lines = ["scripted", *offered]
            answer(verb, arg, "\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{t}" for i, t in enumerate(lines)))
        elif verb == "STARTTLS" and starttls is not None:
            peer.say("220 2.0.0 go ahead")
            peer.tls(starttls)
            tls_on = True
        elif verb == "AUTH":
            answer(verb, arg, "235 2.7.0 accepted")
        elif verb == "DATA":
            answer(verb, arg, "354 go ahead")
            peer.body()
            answer("BODY", "", "250 2.0.0 queued")
        elif verb == "QUIT":
            peer.say("221 bye")
            return
        else:
            answer(verb, arg, "250 ok")


class ScriptedServer:
    """Listens on 127.0.0.1:port; each connection runs `script(peer)` in its own thread."""

    def __init__(self, script: Callable[[Peer], None], *, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.record = Record()
        self.host = HOST
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._listener], [], [], 0.05)
            if not readable:
                continue
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.record.connections += 1
                self._socks.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
                with self._lock:
                    self._socks.append(sock)
            self.script(Peer(sock, self.record, self._stopping, self._lock))
        except (Gone, OSError, ssl.SSLError):
            pass
        finally:
            sock.close()

    def stop(self) -> None:
        self._stopping.set()
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        for sock in socks:
            sock.close()


@contextmanager
def scripted(script: Callable[[Peer], None], *, tls: ssl.SSLContext | None = None) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script, tls=tls)
    try:
        yield server
    finally:
        server.stop()
