"""Makes docs/report.png: the sample year's report page as of 2020-03-15, rendered by headless Chromium.

Run from anywhere: `python docs/make_screenshot.py`. It copies the sample program into a temporary folder,
runs the year at every due time up to 2020-03-15 (outbox transport, a throwaway ledger), renders the
report and has Chromium (`apt-get install chromium`) take a 1400x1800 screenshot.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2020, 3, 15, 17, tzinfo=UTC)
SIZE = (1400, 1800)


def main(out: Path = REPO / "docs" / "report.png", size: tuple[int, int] = SIZE) -> int:
    sys.path.insert(0, str(REPO))
    from mailer.app import queries, send
    from mailer.core.year import year_schedule
    from mailer.load.program import load_program
    from mailer.shell.settings import Settings

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("Chromium is missing: apt-get update -qq && apt-get install -y -qq chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mentor-mailer-shot-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "cohorts", root / "program" / "cohorts")
        shutil.copytree(REPO / "templates", root / "program" / "templates")
        settings = Settings(program_dir=root / "program", database=root / "ledger.sqlite3",  # type: ignore[call-arg]
                            outbox_dir=root / "outbox", _env_file=None)
        program = load_program(settings.program_dir)
        instants = sorted({o.due_at for o in year_schedule(program) if o.due_at <= NOW} | {NOW})
        for now in instants:
            send.run(settings, now=now)
        page = queries.html_report(settings, root / "report.html", now=NOW)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--hide-scrollbars", f"--user-data-dir={root / 'profile'}",
                        f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", page.as_uri()],
                       check=True, capture_output=True, timeout=60)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
