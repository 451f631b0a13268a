"""The coordinator's report page: rendered from a real ledger, checked as text and in headless Chromium."""

from __future__ import annotations

import base64
import contextlib
import csv
import fcntl
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailer.app import queries, send
from mailer.core.htmlreport import render_report, tally, troubled
from mailer.core.model import Program
from mailer.core.occurrence import Occurrence
from mailer.core.records import Row
from mailer.load.program import load_program
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings

RUNS = [datetime(2019, 8, 1, 17, tzinfo=UTC), datetime(2019, 9, 1, 17, tzinfo=UTC),
        datetime(2019, 12, 20, 17, tzinfo=UTC)]
NOW = RUNS[-1]
NASTY = 'Zoë <b>&"Q\'uote'  # a name that breaks any page that forgets to escape
# puts argv[1] on fd 3 and argv[2] on fd 4, then becomes argv[3:] (a portable `3<&N 4>&M exec ...`)
TRAMPOLINE = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
              "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")
INSTALL = "Chromium is missing: install it with `apt-get update -qq && apt-get install -y -qq chromium`"


def build(settings: Settings) -> tuple[Program, list[Row], list[Occurrence]]:
    for now in RUNS:
        send.run(settings, now=now, skip_late=True)
    with Ledger.open(settings.database_path) as ledger:
        rows = ledger.rows()
    upcoming = queries.upcoming(settings, now=NOW, start=NOW, end=NOW + timedelta(days=60))
    return load_program(settings.program_dir), rows, upcoming


@pytest.fixture
def page(settings: Settings) -> tuple[str, list[Row]]:
    program, rows, upcoming = build(settings)
    return render_report(program, tally(rows), troubled(rows), upcoming, now=NOW), rows


def section(html: str, ident: str) -> str:
    m = re.search(rf'<section id="{re.escape(ident)}".*?</section>', html, re.S)
    assert m, f"no section {ident}"
    return m.group(0)


def step_row(html: str, cohort: str, step: str) -> str:
    m = re.search(rf'<tr data-step="{re.escape(step)}">.*?</tr>', section(html, f"c-{cohort}"), re.S)
    assert m, f"no row for {cohort}/{step}"
    return re.sub(r"<[^>]+>", "", m.group(0))  # its text


def test_page_is_a_complete_accessible_document(page: tuple[str, list[Row]]) -> None:
    html, _ = page
    assert html.startswith("<!doctype html>\n<html lang=\"en\">")
    assert '<meta charset="utf-8">' in html and 'name="viewport"' in html
    assert "generated <time datetime=\"2019-12-20T17:00:00Z\">2019-12-20 12:00 EST</time>" in html
    assert html.count('<th scope="col">') > 24 and '<th scope="row">' in html
    assert "@media print" in html and 'class="legend"' in html
    for state in ("sent", "skipped", "failed", "deferred", "uncertain", "upcoming"):
        assert f'class="badge s-{state}"' in html  # the legend names every colour in words


def test_timeline_shows_each_step_with_its_counts(page: tuple[str, list[Row]]) -> None:
    html, _ = page
    for cohort in load_program(Path(__file__).resolve().parent.parent).cohorts:
        sec = section(html, f"c-{cohort.id}")
        assert f"{len(cohort.pairs)} pairs" in sec
        assert re.findall(r'<tr data-step="([^"]+)"', sec) == [s.key for s in cohort.steps]
    assert "sent: 11" in step_row(html, "2019-2020", "welcome")
    assert "skipped: 1" in step_row(html, "2019-2020", "welcome")  # p05 joined past the late window
    assert "sent: 11" in step_row(html, "2019-2020", "meetup-midwinter-2020")
    assert "skipped: 12" in step_row(html, "2019-2020", "readings")  # the runs missed October
    assert "upcoming: 24" in step_row(html, "2019-2020", "midyear")  # one email to each partner of 12 pairs
    assert "not yet due" in step_row(html, "2019-2020", "wrap-up")
    assert "upcoming: 4" in step_row(html, "2020-january", "welcome")
    # the cell sits in the month it is due: Aug 2019 is the first month column
    welcome = re.search(r'<tr data-step="welcome">.*?</tr>', section(html, "c-2019-2020"), re.S)
    assert welcome and re.search(r'</th><td class="cell s-sent">', welcome.group(0))
    assert "No failures." in html


def test_failures_and_refusals_are_listed_with_their_reply(settings: Settings) -> None:
    program, rows, upcoming = build(settings)
    first = rows[0]
    trouble = [
        replace(first, key="2019-2020/p02/readings", pair="p02", step="readings", state="failed", attempts=1,
                reason="550 5.1.1 <zoe.ng@example.com>: user unknown", refused={"zoe.ng@example.com": "550 <x>"}),
        replace(first, key="2019-2020/p03/readings", pair="p03", step="readings", state="deferred", attempts=3,
                reason="451 4.7.1 try again later"),
        replace(first, key="2019-2020/p04/readings", pair="p04", step="readings", state="uncertain", attempts=1),
        replace(first, key="2019-2020/p07/readings", pair="p07", step="readings", state="sent", attempts=1,
                refused={"kwame.mensah@example.com": "554 mailbox <b>disabled</b>"}),
        replace(first, key="2019-2020/p09/meetup-midwinter-2020/cancel-1", pair="p09", state="failed",
                step="meetup-midwinter-2020", reason="554 no"),
    ]
    html = render_report(program, tally([*rows, *trouble]), troubled([*rows, *trouble]), upcoming, now=NOW)
    failures = section(html, "failures")
    assert "No failures." not in html and failures.count("<tr>") == 6  # the header and five rows
    assert "550 5.1.1 &lt;zoe.ng@example.com&gt;: user unknown" in failures
    assert "kwame.mensah@example.com: 554 mailbox &lt;b&gt;disabled&lt;/b&gt;" in failures
    assert "Margaret Okafor &amp; Łukasz Wójcik" in failures and "meetup-midwinter-2020 (cancel 1)" in failures
    for state in ("failed", "deferred", "uncertain", "refused"):
        assert f"</span> {state}</span>" in failures
    assert "<td>3</td>" in failures  # attempts
    cell = step_row(html, "2019-2020", "meetup-midwinter-2020")
    assert "sent: 11" in cell and "cancels: 1 (failed: 1)" in cell
    assert "failed: 1" in step_row(html, "2019-2020", "readings")


def test_everything_is_escaped_and_nothing_is_fetched(program_dir: Path, settings: Settings) -> None:
    roster = program_dir / "cohorts" / "2019-2020" / "roster.csv"
    with roster.open("a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow(["p13", NASTY, "q13@example.org", "Ann <i>", "a13@example.org",
                                "", "active", "", "", "", "", ""])
    program, rows, upcoming = build(settings)
    html = render_report(program, tally(rows), troubled(rows), upcoming, now=NOW,
                         title='Report <script>alert("x")</script>')
    assert NASTY not in html and "<b>" not in html and "<i>" not in html and "<script" not in html
    assert "Zoë &lt;b&gt;&amp;&quot;Q&#x27;uote &amp; Ann &lt;i&gt;" in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    for tag in re.findall(r"<(?:link|script|img|iframe|source|video|audio)\b[^>]*>", html, re.I):
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", tag, re.I), tag
    assert not re.search(r"url\(|@import|@font-face", html)  # the CSS fetches nothing either


def test_output_is_deterministic_and_needs_an_aware_now(page: tuple[str, list[Row]], settings: Settings) -> None:
    html, rows = page
    program = load_program(settings.program_dir)
    upcoming = queries.upcoming(settings, now=NOW, start=NOW, end=NOW + timedelta(days=60))
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    assert render_report(program, tally(shuffled), troubled(shuffled), upcoming[::-1], now=NOW) == html
    with pytest.raises(ValueError, match="aware"):
        render_report(program, tally(rows), troubled(rows), upcoming, now=NOW.replace(tzinfo=None))


# --- a real browser: headless Chromium driven over the DevTools protocol on a pipe (stdlib only) ---

@dataclass
class Loaded:
    errors: list[str]  # console errors, uncaught exceptions, failed loads
    requests: list[str]  # every URL the page asked for
    text: str  # document.body.innerText
    scroll_width: int  # the page's width in CSS pixels


@dataclass
class Chromium:
    """Chromium with --remote-debugging-pipe: NUL-terminated JSON, commands on its fd 3, replies on fd 4."""

    proc: subprocess.Popen[bytes]
    rfd: int
    wfd: int
    buf: bytes = b""
    next_id: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def launch(cls, profile: Path) -> Chromium:
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            pytest.fail(INSTALL)
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        # move the child's ends above 4, so that placing them on fds 3 and 4 never clobbers one with the other
        child_r, child_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_r, out_w))
        os.close(cmd_r)
        os.close(out_w)
        argv = [sys.executable, "-c", TRAMPOLINE, str(child_r), str(child_w), exe,
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"]
        log = (profile.parent / "chromium.log").open("wb")
        proc = subprocess.Popen(argv, pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log)
        log.close()
        os.close(child_r)
        os.close(child_w)
        return cls(proc, out_r, cmd_w)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 15) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self.events.append(self._read(deadline - time.monotonic()))
        return next(e for e in self.events if e.get("method") == method and e.get("sessionId") == session)

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
            self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\0")
        return dict(json.loads(raw))

    def load(self, url: str, *, width: int = 1280, screenshot: Path | None = None) -> Loaded:
        """Open `url` in a fresh tab `width` CSS pixels wide; collect what went wrong while it loaded and just
        after, and how wide the page turned out (wider than the window: it scrolls sideways)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                         "mobile": width < 600}, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        nav = self.call("Page.navigate", {"url": url}, session)
        if nav.get("errorText"):
            raise RuntimeError(f"{url}: {nav['errorText']}")
        self.wait_for("Page.loadEventFired", session)
        # a turn of the event loop, so a timer's or a promise's error is in too
        self.call("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 50))", "awaitPromise": True},
                  session)
        seen = self.call("Runtime.evaluate", {"expression": "[document.body ? document.body.innerText : '', "
                                              "document.documentElement.scrollWidth]",
                                              "returnByValue": True}, session)["result"]["value"]
        if screenshot is not None:
            shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        self.call("Target.closeTarget", {"targetId": target})
        mine = [e for e in self.events if e.get("sessionId") == session]
        self.events = [e for e in self.events if e.get("sessionId") != session]
        return Loaded(errors=[m for e in mine if (m := _problem(e))],
                      requests=[e["params"]["request"]["url"] for e in mine
                                if e.get("method") == "Network.requestWillBeSent"],
                      text=str(seen[0]), scroll_width=int(seen[1]))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.rfd)
        os.close(self.wfd)


def _problem(event: dict[str, Any]) -> str | None:
    """The error an event reports, if it is one: console.error/assert, an uncaught exception, a log error."""
    p = event.get("params", {})
    if event.get("method") == "Runtime.exceptionThrown":
        d = p["exceptionDetails"]
        return f"uncaught: {d.get('exception', {}).get('description') or d.get('text')}"
    if event.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        return "console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
    if event.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
        return f"log ({p['entry']['source']}): {p['entry']['text']} {p['entry'].get('url', '')}".rstrip()
    return None


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    browser = Chromium.launch(tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield browser
    finally:
        browser.close()


def test_the_page_loads_in_chromium_without_errors(chromium: Chromium, page: tuple[str, list[Row]],
                                                   tmp_path: Path) -> None:
    html, _ = page
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    loaded = chromium.load(path.as_uri())
    assert loaded.errors == []
    assert loaded.requests == [path.as_uri()]  # the page itself and nothing else: no external assets
    for step in ("welcome", "day-in-the-life", "meetup-midwinter-2020", "midyear", "wrap-up"):
        assert step in loaded.text
    assert "sent: 11" in loaded.text and "No failures." in loaded.text and "Next run's plan" in loaded.text
    phone = chromium.load(path.as_uri(), width=390)
    assert phone.errors == [] and phone.scroll_width <= 390  # on a phone the timeline scrolls in its own box


@pytest.mark.parametrize("broken", [
    '<script>throw new Error("boom")</script>',
    '<script>console.error("x marks the spot")</script>',
    '<script>setTimeout(() => Promise.reject(new Error("late boom")), 0)</script>',
    '<img alt="" src="missing.png">',
])
def test_the_browser_check_catches_a_broken_page(chromium: Chromium, tmp_path: Path, broken: str) -> None:
    path = tmp_path / "broken.html"
    path.write_text(f'<!doctype html><html lang="en"><meta charset="utf-8"><title>t</title>{broken}<p>hi</p>',
                    encoding="utf-8")
    loaded = chromium.load(path.as_uri())
    assert loaded.errors, f"the check missed {broken}"
    assert "hi" in loaded.text


def test_a_missing_chromium_fails_with_the_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y -qq chromium"):
        Chromium.launch(tmp_path / "profile")
