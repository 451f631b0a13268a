"""A minimal, fast SMTP sink for the benchmarks: accepts everything, counts it, keeps next to nothing.

It speaks just enough SMTP for smtplib and for a pipelining raw-socket client: EHLO/HELO, MAIL, RCPT,
DATA (read to the lone dot, dot-unstuffed, counted), RSET, NOOP, QUIT. No TLS, no AUTH, no checks on
addresses. It is a `asyncio.Protocol` that parses whole buffers at a time and answers a whole batch of
pipelined commands with one write, so that it outpaces any client it is measured against (aiosmtpd
manages about 1,000 messages a second; this sink takes tens of thousands).

Control commands, on any connection, for the benchmark driver:
- ``XSTAT``: ``250 messages=M recipients=R bytes=B connections=C m1=.. b1=.. m2=.. b2=..`` since the
  last reset, where ``mK``/``bK`` count the messages (and their bytes) that had K recipients;
- ``XRESET``: zero the counters;
- ``XDUMP <path> [K]``: write the last message received with K recipients (un-dot-stuffed, CRLF) to
  ``path`` (without K: the last one of those with the most recipients).

Run it in its own process: ``python benchmarks/sink.py --port 0`` prints ``port NNNN`` once it listens.
On SIGTERM or SIGINT it prints the final counters and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

_EHLO = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n"


class Stats:
    """Counters shared by every session of one sink, in total and by a message's number of recipients."""

    def __init__(self) -> None:
        self.messages = 0
        self.recipients = 0
        self.bytes = 0
        self.connections = 0
        self.by_rcpts: dict[int, list[int]] = {}  # recipients -> [messages, bytes]
        self.last: dict[int, bytes] = {}  # recipients -> the last such message

    def reset(self) -> None:
        self.messages = self.recipients = self.bytes = self.connections = 0
        self.by_rcpts = {}

    def count(self, rcpts: int, body: bytes) -> None:
        self.messages += 1
        self.recipients += rcpts
        self.bytes += len(body)
        slot = self.by_rcpts.get(rcpts)
        if slot is None:
            slot = self.by_rcpts[rcpts] = [0, 0]
        slot[0] += 1
        slot[1] += len(body)
        self.last[rcpts] = body

    def line(self) -> str:
        by = "".join(f" m{r}={m} b{r}={b}" for r, (m, b) in sorted(self.by_rcpts.items()))
        return (f"messages={self.messages} recipients={self.recipients} bytes={self.bytes} "
                f"connections={self.connections}{by}")


class Session(asyncio.Protocol):
    """One SMTP connection: commands line by line, message bodies found by their end marker."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buf = bytearray()
        self.in_data = False
        self.scan = 0  # where to resume looking for the end of a body that arrived in pieces
        self.mail = False
        self.rcpts = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1
        transport.write(b"220 sink ESMTP ready\r\n")

    def dump(self, line: str) -> bytes:
        """XDUMP <path> [<recipients>]: the last message, or the last one with that many recipients."""
        arg = line[5:].strip()
        path, _, last = arg.rpartition(" ")
        rcpts = int(last) if path and last.isdigit() else None
        if rcpts is None:
            path = arg
        if rcpts is None and self.stats.last:
            rcpts = max(self.stats.last)  # the most recent of all is not tracked; the widest will do
        body = self.stats.last.get(rcpts) if rcpts is not None else None
        if body is None or not path:
            return b"550 nothing to dump\r\n"
        try:
            Path(path).write_bytes(body)
        except OSError as exc:
            return f"451 {exc}\r\n".encode()
        return b"250 dumped\r\n"

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out: list[bytes] = []
        pos = 0
        closing = False
        while True:
            if self.in_data:
                # the body region starts with the CRLF that ended the DATA line, so the end marker
                # is always CRLF "." CRLF, even for an empty body
                end = buf.find(b"\r\n.\r\n", max(pos, self.scan))
                if end < 0:
                    break
                body = bytes(buf[pos:end + 2]).replace(b"\r\n..", b"\r\n.")[2:]
                pos = end + 5
                self.in_data = False
                self.stats.count(self.rcpts, body)
                self.mail, self.rcpts = False, 0
                out.append(b"250 2.0.0 queued\r\n")
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            line = bytes(buf[pos:eol])
            verb = line[:4].upper()
            if verb == b"DATA":
                if not self.rcpts:
                    out.append(b"503 5.5.1 RCPT first\r\n")
                    pos = eol + 2
                    continue
                out.append(b"354 end with <CRLF>.<CRLF>\r\n")
                pos = eol  # keep the CRLF: the body region begins with it
                self.in_data = True
                self.scan = pos
                continue
            pos = eol + 2
            if verb == b"MAIL":
                self.mail, self.rcpts = True, 0
                out.append(b"250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                if self.mail:
                    self.rcpts += 1
                    out.append(b"250 2.1.5 ok\r\n")
                else:
                    out.append(b"503 5.5.1 MAIL first\r\n")
            elif verb == b"EHLO":
                out.append(_EHLO)
            elif verb == b"HELO":
                out.append(b"250 sink\r\n")
            elif verb == b"RSET":
                self.mail, self.rcpts = False, 0
                out.append(b"250 2.0.0 ok\r\n")
            elif verb == b"NOOP":
                out.append(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 bye\r\n")
                closing = True
                break
            elif verb == b"XSTA":
                out.append(f"250 {self.stats.line()}\r\n".encode())
            elif verb == b"XRES":
                self.stats.reset()
                out.append(b"250 reset\r\n")
            elif verb == b"XDUM":
                out.append(self.dump(line.decode()))
            else:
                out.append(b"500 5.5.2 unknown command\r\n")
        del buf[:pos]
        if self.in_data:
            self.scan = max(0, len(buf) - 4)  # the marker may straddle this chunk and the next
        assert self.transport is not None
        if out:
            self.transport.write(b"".join(out))
        if closing:
            self.transport.close()


async def serve(host: str, port: int, stats: Stats) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Session(stats), host, port, backlog=128)
    bound = server.sockets[0].getsockname()[1]
    print(f"port {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed as 'port N')")
    args = parser.parse_args(argv)
    stats = Stats()
    asyncio.run(serve(args.host, args.port, stats))
    print(f"final {stats.line()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
