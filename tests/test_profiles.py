"""The Hypothesis profiles of tests/conftest.py: `ci` by default and derandomized, `fuzz` on request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import settings

from tests.conftest import FUZZ_EXAMPLES, REPO, examples


def test_ci_profile_is_derandomized_and_the_default(request: pytest.FixtureRequest) -> None:
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None  # the same examples every run, nothing remembered
    chosen = request.config.getoption("hypothesis_profile") or os.environ.get("HYPOTHESIS_PROFILE", "ci")
    assert (settings().derandomize, examples(1000)) == ((True, 1000) if chosen == "ci" else (False, FUZZ_EXAMPLES))


def test_report_the_example_count() -> None:
    """Run by the next test in a subprocess, under the fuzz profile."""
    print(f"examples(1000)={examples(1000)} derandomize={settings().derandomize}")
    assert examples(1000) >= 1000


def test_fuzz_profile_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                   request: pytest.FixtureRequest) -> None:
    import conftest  # the module pytest loaded, whose hook runs at start-up

    before = settings.get_current_profile_name()
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "fuzz")
    try:
        conftest.pytest_configure(request.config)
        assert settings().max_examples == examples(1000) == FUZZ_EXAMPLES
        assert not settings().derandomize
    finally:
        settings.load_profile(before)


def test_the_pytest_option_wins_over_the_environment() -> None:
    """Hypothesis's plugin loads --hypothesis-profile after tests/conftest.py has loaded HYPOTHESIS_PROFILE."""
    test = "tests/test_profiles.py::test_report_the_example_count"
    env = os.environ | {"HYPOTHESIS_PROFILE": "ci"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", test,
                             "--hypothesis-profile=fuzz"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"examples(1000)={FUZZ_EXAMPLES} derandomize=False" in result.stdout
