"""Shared fixtures: a copy of the sample program in tmp_path, and settings that point at it."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from mailer.shell.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.smtpd", "tests.imapd"]

# Hypothesis profiles. `ci`, the default, is derandomized: every run tries the same examples, so a
# failure in CI is the failure on your machine. `fuzz` searches afresh with 10,000 examples per test,
# by hand: HYPOTHESIS_PROFILE=fuzz, or pytest's --hypothesis-profile=fuzz (which wins).
# Test modules import this file a second time as `tests.conftest`: both registrations name their parent
# so that they come out the same, and only the hook below, which runs once, loads a profile.
FUZZ_EXAMPLES = 10_000
_BASE = hypothesis_settings.get_profile("default")
hypothesis_settings.register_profile("ci", parent=_BASE, derandomize=True)
hypothesis_settings.register_profile("fuzz", parent=_BASE, max_examples=FUZZ_EXAMPLES, deadline=None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Loads HYPOTHESIS_PROFILE (default `ci`) before Hypothesis's plugin loads --hypothesis-profile."""
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(ci: int) -> int:
    """A test's example count: `ci` in the ci profile, the profile's count when that is larger (fuzz)."""
    return max(ci, hypothesis_settings().max_examples)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MENTOR_MAILER_* variable or .env from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def program_dir(tmp_path: Path) -> Path:
    """A writable copy of the repo's sample program (cohorts/ and templates/)."""
    root = tmp_path / "program"
    shutil.copytree(REPO / "cohorts", root / "cohorts")
    shutil.copytree(REPO / "templates", root / "templates")
    return root


@pytest.fixture
def settings(program_dir: Path, tmp_path: Path) -> Settings:
    """Settings for the copied sample: outbox transport, ledger and outbox in tmp_path, no digest."""
    return Settings(program_dir=program_dir, database=tmp_path / "ledger.sqlite3",
                    outbox_dir=tmp_path / "outbox", digest=False, _env_file=None)  # type: ignore[call-arg]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
