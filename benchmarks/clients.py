"""The benchmark's reference SMTP clients, each run by `benchmarks/run.py` as its own child process.

- ``baseline``: case 2, the bare stdlib loop. For each pair it builds an `email.message.EmailMessage`
  (From, To with both partners, Subject, Date, Message-ID, a text part and an HTML alternative whose
  contents are case 1's own text and HTML, so the sizes match) and sends it with smtplib over one
  reused connection. No templates, no ledger, no planning: the floor a Python mailer can hope for.
- ``smtplib``: pre-built message bytes sent N times with `smtplib.SMTP.sendmail` on one connection, in
  lock-step (one round trip per command): what SMTP round trips alone cost.
- ``pipelined``: the sink's ceiling. Pre-built bytes written to a raw socket without waiting for any
  reply (MAIL, 2 x RCPT, DATA, dot-stuffed body, "." for each message, in batches), while a reader
  thread drains and checks the replies; the clock stops when the sink answers QUIT, i.e. when it has
  read and counted everything. (This is stricter than RFC 2920, which would wait for the 354 before
  the body; the sink handles the stream in order, so it does not mind.)

Each prints one JSON line: ``{"messages": N, "seconds": S}`` (S measured inside the child, after startup).
"""

from __future__ import annotations

import argparse
import json
import re
import smtplib
import socket
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

_DOT = re.compile(rb"(?m)^\.")


def baseline(port: int, spec_path: Path) -> dict[str, object]:
    from datetime import UTC, datetime
    from email.message import EmailMessage
    from email.utils import format_datetime, formataddr, make_msgid

    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    sender_name, sender = spec["sender"]
    subject, text, html, domain = spec["subject"], spec["text"], spec["html"], spec["domain"]
    start = time.perf_counter()
    sent = 0
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo()
        for mentor_name, mentor, mentee_name, mentee in spec["pairs"]:
            msg = EmailMessage()
            msg["From"] = formataddr((sender_name, sender))
            msg["To"] = [formataddr((mentor_name, mentor)), formataddr((mentee_name, mentee))]
            msg["Subject"] = subject
            msg["Date"] = format_datetime(datetime.now(UTC))
            msg["Message-ID"] = make_msgid(domain=domain)
            msg.set_content(text)
            msg.add_alternative(html, subtype="html")
            smtp.send_message(msg, from_addr=sender, to_addrs=[mentor, mentee])
            sent += 1
    return {"messages": sent, "seconds": time.perf_counter() - start}


def smtplib_prebuilt(port: int, message: bytes, count: int, sender: str, rcpts: list[str]) -> dict[str, object]:
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo()
        for _ in range(count):
            smtp.sendmail(sender, rcpts, message)
    return {"messages": count, "seconds": time.perf_counter() - start}


def pipelined(port: int, message: bytes, count: int, sender: str, rcpts: list[str],
              batch: int = 64) -> dict[str, object]:
    body = _DOT.sub(b"..", message)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    block = (f"MAIL FROM:<{sender}>\r\n".encode()
             + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts)
             + b"DATA\r\n" + body + b".\r\n")
    expected = count * (3 + len(rcpts))  # MAIL, each RCPT, DATA's 354, the final 250
    start = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    _expect(reader, b"220")
    sock.sendall(b"EHLO bench\r\n")
    while True:
        line = reader.readline()
        if not line.startswith(b"250"):
            raise RuntimeError(f"EHLO: {line!r}")
        if line[3:4] == b" ":
            break
    result: dict[str, object] = {}

    def drain() -> None:
        replies = bad = 0
        while True:
            line = reader.readline()
            if not line:
                break
            if line[3:4] != b" ":
                continue
            if line.startswith(b"221"):
                break
            replies += 1
            if line[:1] not in (b"2", b"3"):
                bad += 1
        result.update(replies=replies, bad=bad)

    thread = threading.Thread(target=drain)
    thread.start()
    chunk = block * batch
    full, rest = divmod(count, batch)
    for _ in range(full):
        sock.sendall(chunk)
    if rest:
        sock.sendall(block * rest)
    sock.sendall(b"QUIT\r\n")
    thread.join()
    seconds = time.perf_counter() - start
    sock.close()
    if result.get("replies") != expected or result.get("bad"):
        raise RuntimeError(f"pipelined: expected {expected} good replies, got {result}")
    return {"messages": count, "seconds": seconds}


def _expect(reader: BinaryIO, code: bytes) -> None:
    line = reader.readline()
    if not line.startswith(code):
        raise RuntimeError(f"expected {code!r}, got {line!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="reference SMTP clients for benchmarks/run.py")
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("baseline")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--spec", type=Path, required=True)
    for name in ("smtplib", "pipelined"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--message", type=Path, required=True)
        p.add_argument("--count", type=int, required=True)
        p.add_argument("--sender", required=True)
        p.add_argument("--rcpt", action="append", required=True)
    args = parser.parse_args(argv)
    if args.mode == "baseline":
        out = baseline(args.port, args.spec)
    elif args.mode == "smtplib":
        out = smtplib_prebuilt(args.port, args.message.read_bytes(), args.count, args.sender, args.rcpt)
    else:
        out = pipelined(args.port, args.message.read_bytes(), args.count, args.sender, args.rcpt)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
