"""The lint tools the tests run are the versions pyproject.toml pins, so a new release cannot change CI."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import pytest

from tests.conftest import REPO

TEST_EXTRA = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "optional-dependencies"]["test"]


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_lint_tools_are_pinned_and_installed_at_the_pin(tool: str) -> None:
    pins = [m for spec in TEST_EXTRA if (m := re.fullmatch(rf"{tool}==([0-9][0-9.]*)", spec))]
    assert len(pins) == 1, f"pyproject.toml's test extra must pin {tool} exactly: {TEST_EXTRA}"
    assert version(tool) == pins[0][1], f"{tool} {version(tool)} is installed; run: pip install -e '.[test]'"
