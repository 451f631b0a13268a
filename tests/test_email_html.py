"""The emails' HTML as mail clients and screen readers meet it: its structure, and headless Chromium with axe-core."""

from __future__ import annotations

import csv
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailer.load.program import load_program
from tests.emails import REPO, Mail, cli, copy_sample, html_words, markdown_program, rehearse, text_words
from tests.test_htmlreport import Chromium, _problem

AXE = REPO / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
AXE_INSTALL = "axe-core is missing: install it with `npm ci --prefix tests/a11y` (.ci/run does)"
WIDTHS = (375, 800)  # a small phone, and a desktop client's reading pane
LONG_NAME = "Wolfeschlegelsteinhausenbergerdorffvoralternwaren"  # one unbreakable word, wider than a phone
VAGUE = {"here", "click here", "link", "this link", "more", "read more", "this"}


def _one_per_step(mails: list[Mail]) -> list[Mail]:
    """One message per step and variant (role, update, cancellation), p01's where it has one."""
    chosen: dict[str, Mail] = {}
    for mail in sorted(mails, key=lambda m: "/p01/" not in str(m.message["X-Mentor-Mailer-Key"])):
        cohort, _, rest = str(mail.message["X-Mentor-Mailer-Key"]).split("/", 2)
        chosen.setdefault(f"{cohort}/{rest}", mail)
    return list(chosen.values())


@pytest.fixture(scope="module")
def mails(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Mail]]:
    """Every message of the sample year and of the same year written in Markdown; p01's mentee has a long name."""
    out = {}
    for kind, make in (("sample", copy_sample), ("markdown", markdown_program)):
        root = tmp_path_factory.mktemp(kind)
        program = make(root / "program")
        roster = program / "cohorts/2019-2020/roster.csv"
        with roster.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        rows[1][3] = LONG_NAME
        with roster.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(rows)
        out[kind] = rehearse(program, root / "outbox")
    return out


# --- structure, for every message ------------------------------------------------------------

def _tags(markup: str, name: str) -> list[str]:
    return re.findall(rf"<{name}\b[^>]*>", markup, re.I)


@pytest.mark.parametrize("kind", ["sample", "markdown"])
def test_every_html_part_is_a_document_that_clients_and_screen_readers_read_well(
        mails: dict[str, list[Mail]], kind: str) -> None:
    assert len(mails[kind]) == 181
    for mail in mails[kind]:
        page, name = mail.html, mail.path.name
        subject = str(mail.message["Subject"])
        assert page.startswith('<!doctype html>\n<html lang="en">\n'), name
        assert '<meta name="color-scheme" content="light dark">' in page, name
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page, name
        title = re.findall(r"<title>(.*?)</title>", page, re.S)
        assert [html.unescape(t) for t in title] == [subject], name
        h1 = re.findall(r"<h1\b[^>]*>(.*?)</h1>", page, re.S)
        assert [html.unescape(re.sub(r"<[^>]+>", "", h)) for h in h1] == [subject], name  # one, the heading
        for link in re.findall(r"<a\b[^>]*>(.*?)</a>", page, re.S):
            words = html.unescape(re.sub(r"<[^>]+>", "", link)).strip()
            assert words and words.casefold() not in VAGUE and not words.startswith("http"), (name, words)
        for img in _tags(page, "img"):
            assert re.search(r'\balt="', img), (name, img)
        for tag in ("script", "form", "input", "button", "iframe", "object", "embed", "link", "base", "video"):
            assert not _tags(page, tag), (name, tag)
        assert not re.search(r"""\b(?:src|background|srcset)\s*=|url\(|@import""", page, re.I), name
        # links are https, or the check-in mailto: links to the coordinator
        assert all(href.startswith(("https://", "mailto:mentoring@example.org?subject="))
                   for href in re.findall(r'href="([^"]*)"', page)), name
        # both parts say the same words in the same order, so SpamAssassin's MPART_ALT_DIFF cannot fire
        assert text_words(mail.text) == html_words(mail.html), name


def test_the_cohort_language_is_the_documents_language(program_dir: Path) -> None:
    cohort = program_dir / "cohorts/2019-2020/cohort.toml"
    cohort.write_text(cohort.read_text(encoding="utf-8").replace('send_hour = 9', 'send_hour = 9\nlanguage = "fr-CA"'),
                      encoding="utf-8")
    program = load_program(program_dir)
    assert {c.id: c.language for c in program.cohorts} == {"2019-2020": "fr-CA", "2020-january": "en"}
    page = cli(program_dir, "preview", "--pair", "p01", "--step", "welcome", "--format", "html")
    assert page.returncode == 0, page.stderr
    assert page.stdout.startswith('<!doctype html>\n<html lang="fr-CA">')
    cohort.write_text(cohort.read_text(encoding="utf-8").replace('"fr-CA"', '"French"'), encoding="utf-8")
    broken = load_program(program_dir).broken  # that cohort is held back, with the problem named
    assert [b.id for b in broken] == ["2019-2020"]
    assert ("cohorts/2019-2020/cohort.toml: language expected a language tag such as 'en' or 'fr-CA', got 'French'"
            in [str(p) for p in broken[0].problems])


# --- headless Chromium: layout at two widths, and axe-core's rules ------------------------------

@dataclass
class Seen:
    scroll_width: int
    smallest: tuple[float, str]  # the smallest font size of any visible text, and that text
    violations: list[dict[str, Any]]  # axe-core's


@dataclass
class Looked:
    views: dict[str, Seen]  # per view: "375 px", "800 px", "800 px dark"
    errors: list[str]
    requests: list[str]


SMALLEST_TEXT = """(() => {
  let min = [1e9, ''];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const text = walk.currentNode.textContent.trim();
    const style = text && getComputedStyle(walk.currentNode.parentElement);
    if (!text || style.display === 'none' || style.visibility === 'hidden') continue;
    const px = parseFloat(style.fontSize);
    if (px < min[0]) min = [px, text.slice(0, 40)];
  }
  return min;
})()"""
# every rule axe-core ships for WCAG 2.x A/AA and its best practices; in the dark scheme, the colours again
ALL_RULES = "{type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}"
COLOURS = "{type: 'rule', values: ['color-contrast', 'link-in-text-block']}"
RUN_AXE = ("axe.run(document, {{resultTypes: ['violations'], runOnly: {rules}}})"
           ".then(r => r.violations.map(v => ({{id: v.id, impact: v.impact, help: v.help, "
           "nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}})))")


def look(browser: Chromium, url: str, axe: str) -> Looked:
    """Open `url` once in a fresh tab; at 800 px run all of axe-core's rules, at 375 px (a phone) measure the
    layout again, and in the dark scheme check the colours again."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def evaluate(expression: str, *, wait: bool = False) -> Any:
        reply = browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                  "awaitPromise": wait}, session, timeout=60)
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    def view(width: int, dark: bool, rules: str) -> Seen:
        browser.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 800, "deviceScaleFactor": 1,
                                                            "mobile": width < 600}, session)
        browser.call("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]}, session)
        smallest = evaluate(SMALLEST_TEXT)
        return Seen(int(evaluate("document.documentElement.scrollWidth")), (float(smallest[0]), str(smallest[1])),
                    list(evaluate(RUN_AXE.format(rules=rules), wait=True)))

    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        browser.call("Emulation.setDeviceMetricsOverride", {"width": 800, "height": 800, "deviceScaleFactor": 1,
                                                            "mobile": False}, session)
        nav = browser.call("Page.navigate", {"url": url}, session)
        assert not nav.get("errorText"), nav
        browser.wait_for("Page.loadEventFired", session)
        evaluate(axe)
        views = {"800 px": view(800, False, ALL_RULES), "375 px": view(WIDTHS[0], False, ALL_RULES),
                 "800 px dark": view(800, True, COLOURS)}
    finally:
        browser.call("Target.closeTarget", {"targetId": target})
    mine = [e for e in browser.events if e.get("sessionId") == session]
    browser.events = [e for e in browser.events if e.get("sessionId") != session]
    return Looked(views, [m for e in mine if (m := _problem(e))],
                  [e["params"]["request"]["url"] for e in mine if e.get("method") == "Network.requestWillBeSent"])


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    chromium = Chromium.launch(tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def axe() -> str:
    if not AXE.is_file():
        pytest.fail(AXE_INSTALL)
    return AXE.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["sample", "markdown"])
def test_one_message_per_step_in_chromium_fits_a_phone_and_passes_axe(
        mails: dict[str, list[Mail]], browser: Chromium, axe: str, tmp_path: Path, kind: str) -> None:
    chosen = _one_per_step(mails[kind])
    assert len(chosen) >= 20  # two cohorts' steps, with roles, meetup updates and cancellations
    report: list[str] = []
    minor: dict[str, set[str]] = {}
    for mail in chosen:
        path = tmp_path / (mail.path.stem + ".html")
        path.write_text(mail.html, encoding="utf-8")
        key = str(mail.message["X-Mentor-Mailer-Key"])
        looked = look(browser, path.as_uri(), axe)
        assert looked.errors == [], key
        assert looked.requests == [path.as_uri()], key  # nothing fetched from anywhere
        for name, seen in looked.views.items():
            where, width = f"{key} at {name}", int(name.split()[0])
            assert seen.scroll_width <= width, f"{where}: {seen.scroll_width} px wide, it scrolls sideways"
            assert seen.smallest[0] >= 12, f"{where}: {seen.smallest[1]!r} is {seen.smallest[0]} px"
            serious = [v for v in seen.violations if v["impact"] in ("serious", "critical")]
            assert not serious, f"{where}: {json.dumps(serious, indent=1)}"
            for v in seen.violations:
                minor.setdefault(f"{v['id']} ({v['impact']})", set()).add(key)
            report.append(f"{where}: {seen.scroll_width} px wide, smallest text {seen.smallest[0]:g} px")
    print(f"\n{kind}: {len(chosen)} messages at 375 and 800 px (and dark) in Chromium, axe-core "
          f"{json.loads(AXE.parent.joinpath('package.json').read_text())['version']}: no serious or critical "
          f"violation; others: {', '.join(sorted(minor)) or 'none'}")
    print("\n".join(report))


def test_axe_and_the_layout_checks_catch_a_bad_email(browser: Chromium, axe: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.html"
    path.write_text('<!doctype html><html><head><meta charset="utf-8"></head><body>'
                    '<p style="color:#bbbbbb; background:#ffffff; font-size:10px">faint and tiny</p>'
                    '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><a href="https://example.org/"></a>'
                    '<table style="width:700px"><tr><td>wide</td></tr></table></body></html>', encoding="utf-8")
    seen = look(browser, path.as_uri(), axe).views["375 px"]
    ids = {v["id"] for v in seen.violations if v["impact"] in ("serious", "critical")}
    assert {"html-has-lang", "document-title", "image-alt", "link-name", "color-contrast"} <= ids
    assert seen.scroll_width > 375 and seen.smallest == (10.0, "faint and tiny")
