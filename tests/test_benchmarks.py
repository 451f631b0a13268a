"""The benchmark suite runs end to end on a small program and prints its whole table; no time is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CASES = [
    "1. monthly run (day-in-the-life)",
    "2. baseline: EmailMessage + smtplib",
    "3. meetup run (with .ics)",
    "4. no-op rerun",
    "5. year rehearsal (Maildir)",
    "6. startup: mentor-mailer --help",
    "reference: python -c pass",
    "sink ceiling: pipelined raw socket",
    "smtplib lock-step, pre-built bytes",
    *(f"{n}. {what}" for n, what in (("7", "status --json"), ("8", "report --out"), ("9", "run after"))),
]
RATIOS = [
    "ratio case 1 / case 2",
    "ratio case 3 / case 1",
    "ratio case 4 / case 1",
    "ratio case 6",
    "ratio peak RSS case 1 at N vs at 1,000",
    *(f"ratio case {k} {what}" for k in "789" for what in ("wall", "peak RSS")),  # benchmarks/scale.py
]


def test_quick_run_prints_every_case_and_every_ratio(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--pairs", "200", "--repeat", "1",
         "--scale-pairs", "40", "--rehearsal-repeat", "1", "--startup-repeat", "3",
         "--out", str(tmp_path / "bench")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "N = 200 pairs" in out and "machine:" in out and "python:" in out
    lines = out.splitlines()
    for name in CASES:
        row = next((line for line in lines if line.strip().startswith(name)), None)
        assert row is not None, f"no table row for {name!r}:\n{out}"
    for label in RATIOS:
        row = next((line for line in lines if line.startswith(label)), None)
        assert row is not None, f"no ratio line {label!r}:\n{out}"
        assert "target ≤" in row and row.split("target ≤")[1].split()[1] in ("met", "MISSED", "n/a"), row


def test_sink_counts_and_unstuffs_messages_sent_in_pieces(tmp_path: Path) -> None:
    """The sink finds each body's end across arbitrary chunk boundaries and undoes dot-stuffing."""
    import socket
    import time

    from benchmarks.run import Sink

    body = b".X-First: a dot opens the message\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n"
    stuffed = b"." + body.replace(b"\r\n.", b"\r\n..")
    session = (b"EHLO t\r\n" + b"".join(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
                                      b"RCPT TO:<c@example.org>\r\nDATA\r\n" + stuffed + b".\r\n" for _ in range(3))
               + b"QUIT\r\n")
    sink = Sink(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as sock:
            for i in range(0, len(session), 7):
                sock.sendall(session[i:i + 7])
                time.sleep(0.0005)
            replies = b""
            while not replies.endswith(b"221 2.0.0 bye\r\n"):
                chunk = sock.recv(4096)
                assert chunk, replies
                replies += chunk
        assert replies.count(b"354 ") == 3 and b"\r\n5" not in replies
        stats = sink.stats()
        assert stats["messages"] == 3 and stats["recipients"] == 6 and stats["m2"] == 3
        assert stats["bytes"] == 3 * len(body)
        assert sink.dump(tmp_path / "last.eml") == body
    finally:
        sink.stop()
    assert sink.rss_kib > 0
