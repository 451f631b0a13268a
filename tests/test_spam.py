"""Every email of the sample year, scored by SpamAssassin's local rules: well below any spam threshold."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.emails import REPO, copy_sample, markdown_program, rehearse

SCORER = REPO / "tests" / "data" / "spamscore.pl"
GTUBE = REPO / "tests" / "data" / "gtube.eml"
# the sample's words in the text part, other words in the HTML part: what the year's emails must never be
ALT_DIFF = REPO / "tests" / "data" / "mpart_alt_diff.eml"
INSTALL = ("SpamAssassin is missing: install it with "
           "`apt-get update -qq && apt-get install -y -qq --no-install-recommends spamassassin`")
HAM_BELOW = 2.0  # SpamAssassin calls 5.0 spam; the year's emails stay far from it
SPAM_ABOVE = 5.0


def score(files: list[Path], state: Path) -> tuple[str, dict[Path, tuple[float, list[str]]]]:
    """SpamAssassin's score and the rules that fired, per file, from one process (see spamscore.pl)."""
    if shutil.which("perl") is None or subprocess.run(["perl", "-MMail::SpamAssassin", "-e", "1"],
                                                      capture_output=True, check=False).returncode != 0:
        pytest.fail(INSTALL)
    state.mkdir()
    (state / "user_prefs").write_text("", encoding="utf-8")
    # HOME too, so that nothing SpamAssassin might create lands in the developer's home
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(state), "LC_ALL": "C"}
    result = subprocess.run(["perl", str(SCORER), str(state), *map(str, files)], capture_output=True, text=True,
                            env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    scores = {}
    for line in lines:
        name, value, rules = line.split("\t")
        scores[Path(name)] = (float(value), [r for r in rules.split(",") if r])
    assert set(scores) == set(files), "SpamAssassin did not score every file"
    return header, scores


def test_every_email_of_the_year_scores_as_ham_and_gtube_as_spam(tmp_path: Path) -> None:
    sample = rehearse(copy_sample(tmp_path / "sample"), tmp_path / "sample-outbox")
    # of the all-Markdown program, one message per step (and per update or cancellation): the words are the
    # sample's, and SpamAssassin takes a tenth of a second a message
    md = list({m.message["X-Mentor-Mailer-Key"].split("/", 2)[2]: m for m in
               rehearse(markdown_program(tmp_path / "markdown"), tmp_path / "markdown-outbox")}.values())
    mails = {m.path: m for m in [*sample, *md]}
    header, scores = score([GTUBE, ALT_DIFF, *mails], tmp_path / "sa-state")
    gtube, gtube_rules = scores.pop(GTUBE)
    alt_diff, alt_diff_rules = scores.pop(ALT_DIFF)
    fired: Counter[str] = Counter(r for _, rules in scores.values() for r in rules)
    worst = max(scores, key=lambda p: scores[p][0])
    print(f"\n{header}\nGTUBE: {gtube:.1f} ({', '.join(gtube_rules)}); parts that disagree: {alt_diff:.1f} "
          f"({', '.join(alt_diff_rules)})")
    print(f"{len(scores)} messages ({len(sample)} sample, {len(md)} all-Markdown): highest score "
          f"{scores[worst][0]:.1f} ({worst.name}); rules that fired: "
          + ", ".join(f"{rule} ×{n}" for rule, n in sorted(fired.items())))
    assert gtube > SPAM_ABOVE and "GTUBE" in gtube_rules  # the rule set loaded and scores spam as spam
    assert "MPART_ALT_DIFF" in alt_diff_rules and alt_diff >= HAM_BELOW  # disagreeing parts alone would fail
    high = {p.name: s for p, s in scores.items() if s[0] >= HAM_BELOW}
    assert not high, f"scored {HAM_BELOW} or more: {high}"
    assert "MPART_ALT_DIFF" not in fired and "MPART_ALT_DIFF_COUNT" not in fired
    assert len(sample) == 181 and len(md) >= 13
