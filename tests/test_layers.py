"""Meta-tests: the layer rule by package, no import cycle, the clock rule and module size, read with ast."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "mailer"
LAYERS = ("core", "load", "shell", "app")
# standard-library modules that touch the world; the core may import none of them
EFFECTS = {"os", "sqlite3", "smtplib", "socket", "ssl", "fcntl", "subprocess", "shutil", "tempfile", "signal",
           "threading", "asyncio", "select", "selectors", "urllib", "http", "imaplib", "mailbox", "glob", "time"}
CORE_THIRD_PARTY = {"jinja2", "icalendar", "markdown_it"}
# calls that read or write files, or read the clock: a core module makes none of them
# (os and time are not importable there at all, so Path.replace and time.time need no entry)
IO_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "exists", "is_file", "is_dir",
            "iterdir", "glob", "rglob", "mkdir", "stat", "unlink", "rename", "touch", "walk",
            "FileSystemLoader", "now", "today", "utcnow", "monotonic"}
CLOCK = ("datetime.now(", "date.today(", "time.time(", "datetime.utcnow(")


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The modules `path` imports (with `from mailer.x import y`, both mailer.x and mailer.x.y if it exists)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    mods = modules()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods)
    return names


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def allowed(importer: str, target: str) -> bool:
    """The dependency direction: core <- load, shell <- app <- cli, daemon."""
    src, dst = layer(importer), layer(target)
    if dst in ("", "errors") or target == "mailer.errors":
        return True
    if dst in ("cli", "daemon"):
        # the command line's own modules import each other, and `mentor-mailer serve` starts the daemon
        return src == dst or (src == "cli" and dst == "daemon")
    rules = {
        "core": {"core"},
        "load": {"core", "load"},
        "shell": {"core", "shell"},
        "app": {"core", "load", "shell", "app"},
        "cli": {"core", "load", "shell", "app"},
        "daemon": {"core", "load", "shell", "app"},
    }
    return dst in rules.get(src, set())


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_point_down_only(name: str) -> None:
    wrong = [t for t in imported(modules()[name]) if t.startswith("mailer.") and not allowed(name, t)]
    assert wrong == [], f"{name} imports {wrong}"


@pytest.mark.parametrize("name", [n for n in sorted(modules()) if layer(n) == "core"])
def test_core_touches_no_effects(name: str) -> None:
    path = modules()[name]
    tops = {i.split(".")[0] for i in imported(path)}
    third = {t for t in tops - set(sys.stdlib_module_names) if t != "mailer"}
    assert not tops & EFFECTS, f"{name} imports {tops & EFFECTS}"
    assert third <= CORE_THIRD_PARTY, f"{name} imports {third - CORE_THIRD_PARTY}"
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if called in IO_CALLS:
                calls.append(f"{called} (line {node.lineno})")
    assert calls == [], f"{name} calls {calls}"


def test_no_import_cycle() -> None:
    graph = {name: {t for t in imported(path) if t in modules() and t != name} for name, path in modules().items()}
    # a package's __init__ is not a dependency of its modules in practice: ignore edges to packages
    graph = {n: {t for t in ts if modules()[t].name != "__init__.py"} for n, ts in graph.items()}
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node)


def test_imports_inside_functions_say_why() -> None:
    """An import inside a function is there for start-up time only, and a comment says so."""
    silent = []
    for name, path in modules().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        if "start-up" in (ast.get_docstring(ast.parse("\n".join(lines))) or ""):
            continue  # the module says once why its commands import inside functions
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body_imports = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
            if not body_imports:
                continue
            first = min(n.lineno for n in body_imports)
            context = "\n".join(lines[max(node.lineno - 1, first - 4):max(n.end_lineno or n.lineno
                                                                          for n in body_imports)])
            doc = ast.get_docstring(node) or ""
            if "#" not in context and "import" not in doc.lower():
                silent.append(f"{name}:{first}")
    assert silent == []


def test_only_the_edges_read_the_clock() -> None:
    offenders = []
    for name, path in modules().items():
        if layer(name) in ("cli", "daemon"):
            continue
        src = path.read_text(encoding="utf-8")
        offenders += [f"{name}: {needle}" for needle in CLOCK if needle in src]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_opens_with_a_sentence_and_stays_small(name: str) -> None:
    path = modules()[name]
    text = path.read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(text))
    assert doc and " ".join(doc.split("\n\n")[0].split()).endswith((".", ":")), name
    code = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(code) <= 320, f"{name} has {len(code)} lines of code; split it by what it owns"
