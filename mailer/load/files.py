"""Reads the coordinator's files: bytes to text (UTF-8, with a BOM or without) and TOML documents, each
problem reported with the file and line."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from mailer.errors import Problem, display_path


def read_text(path: Path, root: Path, problems: list[Problem], *, missing: str = "is missing",
              advice: str = "save it as UTF-8") -> str | None:
    """The file's text (UTF-8, a BOM allowed), or None after reporting why it cannot be read.

    The one place the loader reads a file, so every file gets the same sentences."""
    shown = display_path(path, root)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(Problem(shown, None, None, missing))
        return None
    except OSError as exc:  # a folder by that name, no permission, a link loop
        problems.append(Problem(shown, None, None, f"cannot be read: {exc.strerror or exc}"))
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = "it looks like UTF-16 ('Unicode text'); " if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        problems.append(Problem(shown, raw.count(b"\n", 0, exc.start) + 1, None,
                                f"is not UTF-8: undecodable byte at offset {exc.start}; {hint}{advice}"))
        return None


def read_toml(path: Path, root: Path, problems: list[Problem]) -> dict[str, Any] | None:
    """The document, or None after reporting why it cannot be read ({} is a file with nothing in it)."""
    shown = display_path(path, root)
    text = read_text(path, root, problems)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError has no lineno attribute yet; its message carries it
        at = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        if msg.startswith(("Cannot overwrite a value", "Cannot declare")):
            msg += " (a key or table given twice?)"
        if at and (bare := _bare_time(text, int(at.group(1)))) is not None:
            msg = f"write times as {bare}:00, with seconds ({msg})"
        problems.append(Problem(shown, int(at.group(1)) if at else None, None, f"is not valid TOML: {msg}"))
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        problems.append(Problem(shown, None, None, "is not valid TOML: arrays or tables nested too deeply"))
    except ValueError:  # tomllib lets int() refuse a number of more than 4300 digits
        long = re.search(r"\d{4300,}", text)
        problems.append(Problem(shown, text.count("\n", 0, long.start()) + 1 if long else None, None,
                                "is not valid TOML: a number has too many digits"))
    return None


def program_files(root: Path) -> tuple[list[tuple[str, os.stat_result]], list[Problem]]:
    """Every file under cohorts/ and templates/ with its stat, and a problem for each that cannot be read.

    Folder links are followed once each (a link loop is walked no further), and a file link that loops or
    points nowhere is a problem, not a crash: `check` and every run's fast path say the same sentence.
    """
    found: list[tuple[str, os.stat_result]] = []
    problems: list[Problem] = []
    seen: set[tuple[int, int]] = set()
    for base in (root / "cohorts", root / "templates"):
        for folder, dirs, files in os.walk(base, followlinks=True):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                dirs[:] = []  # a folder link back up the tree: its files are read already
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                try:
                    found.append((path, os.stat(path)))
                except OSError as exc:
                    problems.append(Problem(display_path(Path(path), root), None, None,
                                            f"cannot be read: {exc.strerror or exc} (a symbolic link that loops "
                                            "or points nowhere?)"))
    return found, problems


def _bare_time(text: str, line: int) -> str | None:
    """A time written without seconds on `line` ("time = 12:15"), which TOML does not read."""
    lines = text.splitlines()
    found = re.search(r"=\s*(\d{1,2}:\d{2})\s*(?:#.*)?$", lines[line - 1]) if 0 < line <= len(lines) else None
    return found.group(1) if found else None
