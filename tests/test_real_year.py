"""The year as coordinators live it: trial runs, going live, lost ledgers, wrong clocks, broken files.

Each case drives the real command line (`mailer.cli.main`, settings from the environment and the program's
`.env`, exactly as a coordinator's shell gives them) on a copy of the sample program, with the outbox and the
aiosmtpd fixture on 127.0.0.1.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mailer.cli import main
from tests.smtpd import SmtpServer

WELCOME = "2019-08-01T17:00:00Z"  # the sample's first send time has passed (09:00 New York)
DAY_IN_THE_LIFE = "2019-09-01T17:00:00Z"


@pytest.fixture
def program(program_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample program, with its ledger and outbox in the program folder (the defaults), no digest."""
    monkeypatch.setenv("MENTOR_MAILER_DIGEST", "false")
    return program_dir


def cli(program: Path, *args: str) -> int:
    return main(["-C", str(program), *args])


def go_live(monkeypatch: pytest.MonkeyPatch, server: SmtpServer) -> None:
    """README "Going live": the SMTP settings a coordinator adds (plaintext allowed on loopback only)."""
    for name, value in {"TRANSPORT": "smtp", "SMTP_HOST": server.host, "SMTP_PORT": str(server.port),
                        "SMTP_SECURITY": "none", "SMTP_TIMEOUT": "5", "SMTP_BACKOFF": "0"}.items():
        monkeypatch.setenv(f"MENTOR_MAILER_{name}", value)


def ledger(program: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(program / "mentor-mailer.sqlite3")
    conn.row_factory = sqlite3.Row
    return conn


def recipients(server: SmtpServer) -> list[tuple[str, str | None]]:
    """(recipient, Message-ID) for every copy the server accepted."""
    return [(r, m.message_id) for m in server.accepted() for r in m.rcpt_tos]


# --- going live after trying it -------------------------------------------------------------------------

def test_a_trial_in_the_outbox_does_not_swallow_the_real_send(
        program: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(program, "run", "--now", WELCOME) == 0
    assert capsys.readouterr().out.strip() == "sent 11, skipped 0, failed 0"
    assert len(list((program / "outbox" / "new").iterdir())) == 11
    assert cli(program, "status", "--json") == 0
    welcome = next(s for s in json.loads(capsys.readouterr().out)[0]["steps"] if s["step"] == "welcome")
    assert welcome["counts"]["outbox only"] == 11 and welcome["counts"]["sent"] == 0

    go_live(monkeypatch, smtp_server)
    later = "2019-08-02T17:00:00Z"
    assert cli(program, "run", "--dry-run", "--now", later) == 0
    assert "dry run: would send 11, would skip 0" in capsys.readouterr().out
    assert cli(program, "run", "--now", later) == 0
    out = capsys.readouterr().out
    assert "sent 11" in out and "11 of them had only gone to the outbox before" in out
    assert len(smtp_server.accepted()) == 11 and len(set(recipients(smtp_server))) == 22
    # the same Message-IDs as the trial's files: one message each, delivered now
    trial_ids = {line.split(b": ", 1)[1].strip().decode() for f in (program / "outbox" / "new").iterdir()
                 for line in f.read_bytes().splitlines() if line.startswith(b"Message-ID: ")}
    assert trial_ids == {m.message_id for m in smtp_server.accepted()}
    with ledger(program) as conn:
        states = {r["state"] + "/" + r["channel"] for r in conn.execute("SELECT state, channel FROM messages")}
    assert states == {"sent/smtp"}
    assert cli(program, "status", "--json") == 0
    welcome = next(s for s in json.loads(capsys.readouterr().out)[0]["steps"] if s["step"] == "welcome")
    assert welcome["counts"]["sent"] == 11 and welcome["counts"].get("outbox only", 0) == 0
    assert cli(program, "run", "--now", later) == 0
    assert len(smtp_server.accepted()) == 11  # never twice


def test_a_trial_older_than_the_late_window_is_skipped_with_its_reason_when_going_live(
        program: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(program, "run", "--now", WELCOME) == 0
    go_live(monkeypatch, smtp_server)
    late = "2019-08-25T17:00:00Z"
    # 11 is more than a few: held back and said, in case the clock is wrong; nothing recorded
    assert cli(program, "run", "--now", late) == 1
    captured = capsys.readouterr()
    assert "11 message(s) past the late window held back" in captured.out
    assert captured.err.count("held back: 2019-2020/") == 11 and "reached only the outbox" in captured.err
    assert cli(program, "run", "--now", late, "--skip-late") == 0
    assert "sent 0, skipped 11" in capsys.readouterr().out
    assert smtp_server.accepted() == []
    with ledger(program) as conn:
        reasons = {r[0] for r in conn.execute("SELECT reason FROM messages")}
    assert len(reasons) == 1 and "reached only the outbox (a trial run)" in reasons.pop()
    assert cli(program, "run", "--catch-up", "--now", late) == 0
    assert len(smtp_server.accepted()) == 11  # the coordinator can still decide to send them


def test_switching_from_one_smtp_server_to_another_never_resends(
        program: Path, smtp_server: SmtpServer, make_smtp_server: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    go_live(monkeypatch, smtp_server)
    assert cli(program, "run", "--now", WELCOME) == 0
    assert len(smtp_server.accepted()) == 11
    other = make_smtp_server()  # type: ignore[operator]
    go_live(monkeypatch, other)
    assert cli(program, "run", "--now", "2019-08-02T17:00:00Z") == 0
    assert other.accepted() == []


# --- the ledger and the clock ---------------------------------------------------------------------------

def outbox_count(program: Path) -> int:
    return len(list((program / "outbox" / "new").iterdir()))


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_a_lost_ledger_does_not_resend_the_last_weeks(
        program: Path, loss: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(program, "run", "--now", WELCOME) == 0
    db = program / "mentor-mailer.sqlite3"
    for f in program.glob("mentor-mailer.sqlite3*"):
        if loss == "deleted" or f != db:
            f.unlink()
    if loss == "emptied":
        db.write_bytes(b"")
    capsys.readouterr()
    assert cli(program, "run", "--now", "2019-08-05T17:00:00Z") == 2
    err = capsys.readouterr().err
    assert "knows nothing of this program, but its year is under way" in err and "--new-ledger" in err
    assert "Traceback" not in err
    assert outbox_count(program) == 11  # nothing went out again
    # the coordinator decides: a fresh start sends what is due within the window, once
    assert cli(program, "run", "--now", "2019-08-05T17:00:00Z", "--new-ledger") == 0
    assert cli(program, "run", "--now", "2019-08-05T18:00:00Z") == 0


def test_relative_paths_in_the_programs_env_are_the_program_folders(
        program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (program / ".env").write_text("# the ledger and outbox live in the program folder\n"
                                  "MENTOR_MAILER_DATABASE=state/ledger.sqlite3\nMENTOR_MAILER_OUTBOX_DIR=state/outbox\n")
    elsewhere = tmp_path / "cron-home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # cron starts in the user's home, not the program folder
    assert cli(program, "run", "--now", WELCOME) == 0
    assert (program / "state" / "ledger.sqlite3").is_file()
    assert len(list((program / "state" / "outbox" / "new").iterdir())) == 11
    assert list(elsewhere.iterdir()) == []
    monkeypatch.chdir(program)
    assert cli(program, "run", "--now", "2019-08-02T17:00:00Z") == 0  # the same ledger from here
    assert len(list((program / "state" / "outbox" / "new").iterdir())) == 11


def test_a_clock_months_ahead_holds_the_year_back_instead_of_skipping_it(
        program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(program, "run", "--now", WELCOME) == 0
    capsys.readouterr()
    assert cli(program, "run", "-q", "--now", "2020-04-01T17:00:00Z") == 1  # a wrong clock, 8 months ahead
    out = capsys.readouterr()
    assert "held back, not skipped" in out.out  # -q prints when something needs the coordinator
    with ledger(program) as conn:
        late = conn.execute("SELECT count(*) FROM messages WHERE reason LIKE '%days late%'").fetchone()[0]
    assert late == 0  # (the rules' own skips, such as a late joiner's old steps, are recorded as ever)
    # the clock is put right: the run says so, and the year goes on as if nothing happened
    assert cli(program, "run", "--now", "2019-08-02T17:00:00Z") == 0
    assert "earlier than the last run at 2020-04-01" in capsys.readouterr().err
    assert cli(program, "run", "--now", DAY_IN_THE_LIFE) == 0
    assert "sent 11" in capsys.readouterr().out  # the step of September 1 arrives on its day


def test_an_edit_saved_during_a_run_is_seen_by_the_next_run(program: Path) -> None:
    from mailer.app import send
    from mailer.shell.settings import load_settings

    settings = load_settings(program_dir=program)
    roster = program / "cohorts" / "2019-2020" / "roster.csv"

    def edit_once(done: int, total: int) -> None:
        if done == 1:  # the coordinator saves a new pair while the run is at work
            with roster.open("a", encoding="utf-8") as f:
                f.write("p40,Late Addition,late.addition@example.org,New Mentee,new.mentee@example.org,,,,,,,\n")

    assert send.run(settings, now=datetime.fromisoformat(WELCOME), progress=edit_once).sent == 11
    again = send.run(settings, now=datetime.fromisoformat(WELCOME) + timedelta(hours=1))
    assert not again.idle and again.sent == 1  # the new pair's welcome, not lost to the fast path


# --- a broken file stops only what it breaks ------------------------------------------------------------

def digests_to(server: SmtpServer) -> list[tuple[list[str], str]]:
    """(recipients, plain text) of every digest the server took."""
    import email
    import email.policy

    out = []
    for m in server.accepted():
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        if str(msg["X-Mentor-Mailer-Key"]).startswith("digest/"):
            out.append((m.rcpt_tos, msg.get_body(("plain",)).get_content()))  # type: ignore[union-attr]
    return out


def test_a_broken_roster_stops_only_its_cohort_and_its_coordinator_hears_each_day(
        program: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    go_live(monkeypatch, smtp_server)
    monkeypatch.setenv("MENTOR_MAILER_DIGEST", "true")
    # a good load the day before (a fresh start mid-year): the ledger learns both cohorts' coordinators
    assert cli(program, "run", "--now", "2020-01-05T15:00:00Z", "--new-ledger") == 0
    roster = program / "cohorts" / "2020-january" / "roster.csv"
    good = roster.read_text(encoding="utf-8")
    roster.write_text(good.replace("mentee_email", "Mentee E-mail", 1), encoding="utf-8")  # a spreadsheet edit
    smtp_server.clear()
    capsys.readouterr()
    # the January cohort's first day: it is held back, the other cohort's step still goes
    assert cli(program, "run", "--now", "2020-01-06T15:00:00Z") == 1
    captured = capsys.readouterr()
    assert "cohorts/2020-january/roster.csv:1: mentee_email column missing" in captured.err
    assert "1 cohort(s) held back" in captured.out
    [(to, text)] = digests_to(smtp_server)
    assert to == ["mentoring@example.org"] and "Needs you" in text and "cohort 2020-january" in text
    assert "roster.csv:1: mentee_email column missing" in text
    # later the same day: no second digest about it; the next day, one
    assert cli(program, "run", "--now", "2020-01-06T18:00:00Z") == 1
    assert len(digests_to(smtp_server)) == 1
    assert cli(program, "run", "--now", "2020-01-07T15:00:00Z") == 1
    assert len(digests_to(smtp_server)) == 2
    # put right three weeks on: the welcome is past the window, skipped with why, and shown to the coordinator
    roster.write_text(good, encoding="utf-8")
    assert cli(program, "run", "--now", "2020-01-27T15:00:00Z") == 0
    with ledger(program) as conn:
        reasons = {r[0] for r in conn.execute("SELECT reason FROM messages WHERE cohort = '2020-january'")}
    assert any(r.startswith("held back by a problem in the cohort's files since 2020-01-06") for r in reasons)
    capsys.readouterr()
    assert cli(program, "status", "--json", "--cohort", "2020-january") == 0
    [january] = json.loads(capsys.readouterr().out)
    assert any("held back" in a["detail"] for a in january["attention"])


# --- ids, steps and addresses change ---------------------------------------------------------------------

def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    if path.is_symlink():
        path.unlink()  # cohorts/program.toml links into the package's defaults: never write through it
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("rename", ["case", "pair id", "cohort folder", "moved cohort"])
def test_a_rename_never_sends_a_step_again(program: Path, rename: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(program, "run", "--now", WELCOME) == 0
    roster = program / "cohorts" / "2019-2020" / "roster.csv"
    if rename == "case":
        edit(roster, "p02,", "P02,")  # what spreadsheet autocorrect does
    elif rename == "pair id":
        edit(roster, "p03,", "p03b,")
    elif rename == "cohort folder":
        (program / "cohorts" / "2019-2020").rename(program / "cohorts" / "2019-20")
    else:  # p04's row moves to the January cohort (same people, another cohort of the same year)
        lines = roster.read_text(encoding="utf-8").splitlines(keepends=True)
        row = next(line for line in lines if line.startswith("p04,"))
        roster.write_text("".join(line for line in lines if line is not row), encoding="utf-8")
        with (program / "cohorts" / "2020-january" / "roster.csv").open("a", encoding="utf-8") as f:
            f.write(row)
    before = outbox_count(program)
    capsys.readouterr()
    assert cli(program, "run", "--now", "2019-08-02T17:00:00Z") == 0
    assert outbox_count(program) == before  # nobody got the welcome twice
    with ledger(program) as conn:
        reasons = [r[0] for r in conn.execute("SELECT reason FROM messages WHERE reason LIKE 'already received%'")]
    if rename == "case":
        assert reasons == []  # the same key: ids compare without case
    elif rename == "moved cohort":
        assert reasons == []  # the January cohort's welcome is not due yet; its year has its own steps
    else:
        assert reasons and all("(a rename)" in r for r in reasons)


def test_a_renamed_step_is_held_until_the_coordinator_says_which_it_is(
        program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readings = "2019-10-01T17:00:00Z"
    assert cli(program, "run", "--now", readings, "--new-ledger") == 0
    before = outbox_count(program)
    steps = program / "cohorts" / "program.toml"
    edit(steps, 'key = "readings"', 'key = "reading-list"')
    capsys.readouterr()
    assert cli(program, "run", "--now", "2019-10-01T18:00:00Z") == 1
    err = capsys.readouterr().err
    assert "step 'reading-list' of cohort 2019-2020 is new to the ledger, and step 'readings'" in err
    assert 'renamed_from = "readings"' in err and "new = true" in err
    assert outbox_count(program) == before
    edit(steps, 'key = "reading-list"', 'key = "reading-list"\nrenamed_from = "readings"')
    assert cli(program, "run", "--now", "2019-10-01T19:00:00Z") == 0
    assert outbox_count(program) == before  # they have it: recorded as received, not sent again


def test_a_step_switched_from_pair_to_each_is_not_sent_again(program: Path) -> None:
    assert cli(program, "run", "--now", "2019-10-01T17:00:00Z", "--new-ledger") == 0
    before = outbox_count(program)
    steps = program / "cohorts" / "program.toml"
    text = steps.read_text(encoding="utf-8")
    block = text[text.index('key = "readings"'):]
    block = block[:block.index("[[steps]]")] if "[[steps]]" in block else block
    edit(steps, block, block.replace('to = "pair"', 'to = "each"'))
    assert cli(program, "run", "--now", "2019-10-01T18:00:00Z") == 0
    assert outbox_count(program) == before  # 22 duplicates before this fix


# --- invitations follow their people ---------------------------------------------------------------------

INVITED = "2019-12-20T17:00:00Z"  # the Midwinter meetup step's day


def ics_of(path: Path) -> dict[str, str]:
    import email
    import email.policy

    import icalendar

    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    event = next(iter(cal.walk("VEVENT")))
    attendees = event.get("attendee")
    attendees = attendees if isinstance(attendees, list) else [attendees]
    return {"method": str(cal["METHOD"]), "uid": str(event["UID"]), "sequence": str(event.get("SEQUENCE", 0)),
            "attendees": ",".join(sorted(str(a).removeprefix("mailto:") for a in attendees)),
            "location": str(event.get("LOCATION")), "tzid": str(event["DTSTART"].params.get("TZID"))}


def new_files(program: Path, seen: set[str]) -> list[Path]:
    return sorted(p for p in (program / "outbox" / "new").iterdir() if p.name not in seen)


def test_a_changed_address_gets_the_update_and_the_old_one_a_cancel(program: Path) -> None:
    assert cli(program, "run", "--now", INVITED, "--new-ledger") == 0
    seen = {p.name for p in (program / "outbox" / "new").iterdir()}
    [invite] = [p for p in new_files(program, set()) if ".p01.meetup-midwinter" in p.name]
    first = ics_of(invite)
    edit(program / "cohorts" / "2019-2020" / "roster.csv", "jose.munoz@example.org", "jose@newjob.example")
    assert cli(program, "run", "--now", "2019-12-21T17:00:00Z") == 0
    update, drop = (ics_of(p) for p in new_files(program, seen) if ".p01." in p.name)
    if update["method"] == "CANCEL":
        update, drop = drop, update
    assert update["uid"] == drop["uid"] == first["uid"]
    assert update["method"] == "REQUEST" and update["sequence"] == "1"
    assert "jose@newjob.example" in update["attendees"] and "jose.munoz@example.org" not in update["attendees"]
    assert drop["method"] == "CANCEL" and drop["attendees"] == "jose.munoz@example.org"


def test_a_deleted_row_keeps_its_invitation_and_still_hears_of_changes(
        program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(program, "run", "--now", INVITED, "--new-ledger") == 0
    seen = {p.name for p in (program / "outbox" / "new").iterdir()}
    [invite] = [p for p in new_files(program, set()) if ".p01.meetup-midwinter" in p.name]
    roster = program / "cohorts" / "2019-2020" / "roster.csv"
    roster.write_text("".join(line for line in roster.read_text(encoding="utf-8").splitlines(keepends=True)
                              if not line.startswith("p01,")), encoding="utf-8")
    capsys.readouterr()
    assert cli(program, "check", "--now", "2019-12-21T17:00:00Z") == 0
    assert "pair p01 of cohort 2019-2020 holds the invitation" in capsys.readouterr().err
    assert cli(program, "run", "--now", "2019-12-21T17:00:00Z") == 0  # every run says so too (once a day)
    assert "pair p01 of cohort 2019-2020 holds the invitation" in capsys.readouterr().err
    edit(program / "cohorts" / "2019-2020" / "cohort.toml", 'status = "confirmed"', 'status = "cancelled"')
    assert cli(program, "run", "--now", "2019-12-22T17:00:00Z") == 0
    cancels = [ics_of(p) for p in new_files(program, seen) if ".p01." in p.name]
    assert [c["method"] for c in cancels] == ["CANCEL"] and cancels[0]["uid"] == ics_of(invite)["uid"]


def test_a_corrected_time_zone_sends_an_update_that_says_so(program: Path) -> None:
    assert cli(program, "run", "--now", INVITED, "--new-ledger") == 0
    seen = {p.name for p in (program / "outbox" / "new").iterdir()}
    edit(program / "cohorts" / "2019-2020" / "cohort.toml", 'timezone = "America/New_York"\nstatus',
         'timezone = "America/Chicago"\nstatus')
    assert cli(program, "run", "--now", "2019-12-21T17:00:00Z") == 0
    updates = [p for p in new_files(program, seen) if "meetup-midwinter" in p.name]
    assert len(updates) == 11  # every pair holding it (p12 withdrew later; p05 joined before it)
    facts = ics_of(updates[0])
    assert facts["method"] == "REQUEST" and facts["sequence"] == "1" and facts["tzid"] == "America/Chicago"
    assert "is now in the America/Chicago time zone" in updates[0].read_text(encoding="utf-8")


def test_a_step_removed_after_it_went_out_stays_visible_in_status(
        program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(program, "run", "--now", WELCOME) == 0
    steps = program / "cohorts" / "program.toml"
    text = steps.read_text(encoding="utf-8")
    start = text.index("[[steps]]\nkey = \"welcome\"")
    end = text.index("[[steps]]", start + 1)
    steps.unlink()
    steps.write_text(text[:start] + text[end:], encoding="utf-8")
    capsys.readouterr()
    assert cli(program, "status", "--json", "--cohort", "2019-2020") == 0
    [cohort] = json.loads(capsys.readouterr().out)
    [welcome] = [s for s in cohort["steps"] if s["step"] == "welcome"]
    assert welcome["description"] == "(no longer in the program)" and welcome["counts"]["outbox only"] == 11
    assert cli(program, "report", "--out", str(program / "report.html")) == 0
    page = (program / "report.html").read_text(encoding="utf-8")
    row = page[page.index('<tr data-step="welcome">'):]
    assert "no longer in the program" in row[:row.index("</tr>")]


def test_the_readmes_backup_command_works_as_written(program: Path, tmp_path: Path) -> None:
    import re
    import subprocess

    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    [line] = [m for m in re.findall(r"^sqlite3 .*$", readme, flags=re.M) if ".backup" in m]
    assert cli(program, "run", "--now", WELCOME) == 0
    backups = tmp_path / "backups"
    backups.mkdir()
    command = line.replace("/srv/mentoring", str(program)).replace("/srv/backups", str(backups))
    subprocess.run(["bash", "-c", command], check=True, timeout=60)
    [copy] = list(backups.iterdir())
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("SELECT count(*) FROM messages WHERE state = 'sent'").fetchone()[0] == 11
    finally:
        conn.close()


def test_status_lists_every_pair_left_out_by_a_bad_row(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (program / "cohorts" / "2019-2020" / "roster.csv").open("a", encoding="utf-8") as f:
        f.write("p30,Ann Example,ann@@example.org,Bo Example,bo@example.org,,,,,,,\n")
    assert cli(program, "status", "--json", "--cohort", "2019-2020") == 0
    [cohort] = json.loads(capsys.readouterr().out)
    assert len(cohort["left_out"]) == 1 and "mentor_email 'ann@@example.org' is not a valid address" in \
        cohort["left_out"][0]


def test_dates_read_in_the_programs_own_time(program: Path) -> None:
    assert cli(program, "run", "--now", WELCOME) == 0
    [first] = [p for p in (program / "outbox" / "new").iterdir() if ".p01.welcome" in p.name]
    date = next(line for line in first.read_text(encoding="utf-8").splitlines() if line.startswith("Date: "))
    assert date == "Date: Thu, 01 Aug 2019 13:00:00 -0400"  # the run at 17:00 UTC, in New York's time
