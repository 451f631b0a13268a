"""Helpers for the tests that read rehearsed emails: run the CLI's rehearsal, split messages, compare parts."""

from __future__ import annotations

import email
import email.policy
import html
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def copy_sample(root: Path) -> Path:
    """A writable copy of the sample program (cohorts/ and templates/) under `root`."""
    shutil.copytree(REPO / "cohorts", root / "cohorts")
    shutil.copytree(REPO / "templates", root / "templates")
    return root


def cli(program: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point on `program`, in a subprocess, with no MENTOR_MAILER_* from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    return subprocess.run([sys.executable, "-m", "mailer.cli", "-C", str(program), *args], capture_output=True,
                          text=True, env=env, cwd=program, timeout=300, check=False)


@dataclass(frozen=True)
class Mail:
    path: Path
    message: EmailMessage
    text: str
    html: str

    @property
    def step(self) -> str:
        """The message's step, from its ledger key header: `cohort/pair/step[/…]`."""
        return str(self.message["X-Mentor-Mailer-Key"]).split("/")[2]


def rehearse(program: Path, outbox: Path) -> list[Mail]:
    """`mentor-mailer rehearse --outbox OUTBOX` on `program`; every message it wrote, parsed, in name order."""
    result = cli(program, "rehearse", "--outbox", str(outbox))
    assert result.returncode == 0, result.stdout + result.stderr
    return [read_mail(path) for path in sorted((outbox / "new").iterdir())]


def read_mail(path: Path) -> Mail:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = message.get_body(("plain",))
    markup = message.get_body(("html",))
    assert text is not None and markup is not None, f"{path.name} lacks a text or an HTML part"
    return Mail(path, message, str(text.get_content()), str(markup.get_content()))


# --- the words a reader sees, in order -------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_URL = re.compile(r"<?(?:https?|mailto):[^\s>]+>?")
_LIST_MARKER = re.compile(r"^[ \t>]*(?:[-*+]|\d{1,3}[.)])[ \t]+", re.M)
_BLOCK = frozenset({"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "tr",
                    "table", "blockquote", "pre", "hr"})


class _Visible(HTMLParser):
    """The text of an HTML document's body, as a reader sees it (no head, style or script)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "style", "script", "title"):
            self.hidden += 1
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script", "title"):
            self.hidden = max(self.hidden - 1, 0)
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_words(markup: str) -> list[str]:
    """The words of an HTML part's visible text, case-folded, with URLs dropped."""
    parser = _Visible()
    parser.feed(markup)
    parser.close()
    return _words(html.unescape("".join(parser.parts)))


def text_words(text: str) -> list[str]:
    """The words of a plain-text part, ignoring its markup: list markers, `<url>` after a link's text."""
    return _words(_LIST_MARKER.sub("", text))


def _words(text: str) -> list[str]:
    return [w.casefold().replace("’", "'") for w in _WORD.findall(_URL.sub(" ", text))]


def markdown_program(root: Path) -> Path:
    """A copy of the sample program whose every step is one Markdown file (tests/data/markdown_steps)."""
    copy_sample(root)
    templates = root / "templates" / "email"
    for path in templates.iterdir():
        if not path.name.startswith("base."):
            path.unlink()
    for path in (REPO / "tests" / "data" / "markdown_steps").glob("*.md.j2"):
        shutil.copy(path, templates / path.name)
    return root
