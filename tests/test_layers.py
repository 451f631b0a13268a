"""Meta-tests: the layer rule and the clock rule, read from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "mailer"
PURE = ["errors", "model", "program", "plan", "compose", "mime", "report", "invite", "meetups", "htmlreport",
        "digest", "csvout"]
# these read ledger rows, so they may name the ledger's Row type and state constants (not open it)
READS_ROWS = {"report", "htmlreport", "digest"}
SHELL = ["runner", "cli", "ledger", "transport", "smtp", "checks", "settings", "daemon", "schedule", "scaffold"]
EFFECTS = {"smtplib", "sqlite3", "socket", "ssl", "fcntl", "subprocess", "apscheduler"}


def imports(module: str) -> set[str]:
    tree = ast.parse((PKG / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", [m for m in PURE if (PKG / f"{m}.py").exists()])
def test_pure_modules_touch_no_effects_and_no_shell(module: str) -> None:
    found = imports(module)
    assert not {i.split(".")[0] for i in found} & EFFECTS, found
    assert not {f"mailer.{s}" for s in SHELL if s != "ledger" or module not in READS_ROWS} & found, found


def test_only_the_runner_reads_the_clock() -> None:
    offenders = []
    for path in PKG.glob("*.py"):
        if path.stem in ("runner", "daemon"):
            continue
        src = path.read_text(encoding="utf-8")
        for needle in ("datetime.now(", "date.today(", "time.time(", "datetime.utcnow("):
            if needle in src:
                offenders.append(f"{path.name}: {needle}")
    assert offenders == []


def test_every_module_opens_with_a_sentence() -> None:
    for path in PKG.glob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc and doc.split("\n")[0].endswith((".", ":")), path.name
