"""Shared fixtures: a copy of the sample program in tmp_path, and settings that point at it."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailer.shell.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.smtpd", "tests.imapd"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MENTOR_MAILER_* variable or .env from the developer's shell leaks into a test."""
    import os

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
