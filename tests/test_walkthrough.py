"""The README's walkthrough for a new program, run line by line as it stands: init, check, rehearse,
check --smtp, run, status, report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.smtpd import SMTP_PASSWORD, SMTP_USER, SmtpServer

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def walkthrough() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", readme, flags=re.S) if "mentor-mailer init" in b
                and "report --out" in b]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_walkthrough_works_as_written(tmp_path: Path, smtp_server: SmtpServer, smtp_ca_file: Path) -> None:
    lines = walkthrough()
    assert [ln.split("mentor-mailer ", 1)[1].split()[0] for ln in lines if "bin/mentor-mailer " in ln] == \
        ["init", "check", "rehearse", "check", "run", "run", "status", "report"]
    assert lines[0].startswith("python3 -m venv /srv/mentoring/.venv")  # the venv the units and cron use
    program = tmp_path / "srv-mentoring"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    # the test server stands in for smtp.example.org: the environment wins over .env, as the README says
    env |= {"MENTOR_MAILER_SMTP_HOST": smtp_server.host, "MENTOR_MAILER_SMTP_PORT": str(smtp_server.port),
            "MENTOR_MAILER_SMTP_CA_FILE": str(smtp_ca_file), "MENTOR_MAILER_SMTP_USERNAME": SMTP_USER,
            "MENTOR_MAILER_SMTP_PASSWORD": SMTP_PASSWORD, "MENTOR_MAILER_DIGEST": "false"}
    cwd = tmp_path
    transcript = []
    for line in lines[1:]:  # this venv stands in for the one the first line makes
        command = re.sub(r"(?:/srv/mentoring/)?\.venv/bin/", f"{VENV_BIN}/", line)
        command = command.replace("/srv/mentoring", str(program))
        if command.startswith("cd "):
            cwd = Path(command[3:])
            continue
        done = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              check=False, timeout=300)
        transcript.append(f"$ {line}\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, "\n".join(transcript)
    out = "\n".join(transcript)
    assert "ok: 1 cohort(s), 1 pair(s)" in out
    assert "nothing was sent" in out and smtp_server.logins
    assert (program / "report.html").is_file()
    assert (program / "rehearsal/new").is_dir()
    assert "Riverside Nurses Mentoring Circle" in (program / "cohorts/program.toml").read_text(encoding="utf-8")
    print("\n".join(transcript))  # the walkthrough as a coordinator sees it (pytest -s)
