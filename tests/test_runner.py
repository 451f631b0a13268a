"""Runs over the sample year against a real ledger file and a real Maildir outbox."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from mailer.app import outcome, rehearse, send
from mailer.errors import InputError, LockBusy
from mailer.shell.lock import run_lock
from mailer.shell.settings import Settings


def days(start: date, end: date) -> list[datetime]:
    """17:00 UTC each day: after 09:00 in New York, Chicago and Los Angeles (p02's Zoë) all year round."""
    out, d = [], start
    while d <= end:
        out.append(datetime(d.year, d.month, d.day, 17, tzinfo=UTC))
        d += timedelta(days=1)
    return out


YEAR = days(date(2019, 7, 30), date(2020, 12, 20))


def ledger_rows(settings: Settings) -> dict[str, str]:
    conn = sqlite3.connect(settings.database_path)
    try:
        return dict(conn.execute("SELECT key, state FROM messages"))
    finally:
        conn.close()


def outbox_keys(settings: Settings) -> Counter[str]:
    keys: Counter[str] = Counter()
    for path in (settings.outbox_path / "new").iterdir():
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        keys[str(msg["X-Mentor-Mailer-Key"])] += 1
    return keys


@pytest.fixture(scope="module")
def daily_year(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[outcome.RunReport]]:
    """The sample year run every day in order (shared: it is the slowest thing here)."""
    import shutil

    from tests.conftest import REPO

    root = tmp_path_factory.mktemp("daily")
    shutil.copytree(REPO / "cohorts", root / "program/cohorts")
    shutil.copytree(REPO / "templates", root / "program/templates")
    s = Settings(program_dir=root / "program", database=root / "ledger.sqlite3",
                 outbox_dir=root / "outbox", digest=False, _env_file=None)  # type: ignore[call-arg]
    reports = [send.run(s, now=now) for now in YEAR]
    return s, reports


def test_every_day_sends_each_message_exactly_once(daily_year: tuple[Settings, list[outcome.RunReport]]) -> None:
    s, reports = daily_year
    sent = {k for k, state in ledger_rows(s).items() if state == "sent"}
    files = outbox_keys(s)
    assert set(files) == sent
    assert max(files.values()) == 1  # one file per message, never two
    assert sum(r.sent for r in reports) == len(sent)
    assert all(r.failed == 0 for r in reports)
    # every active pair's every step; derived from the sample roster, not from the planner
    assert "2019-2020/p01/welcome" in sent and "2019-2020/p01/midyear/mentee" in sent
    assert "2019-2020/p05/readings" not in sent and "2019-2020/p05/resumes" in sent  # joined late
    assert "2019-2020/p06/project-plan" not in sent and "2019-2020/p06/midyear/mentor" in sent  # paused
    assert not any(k.startswith("2019-2020/p08/") and k.endswith("webinar") for k in sent)  # withdrew
    assert "2020-january/j01/wrap-up" in sent  # the second, overlapping cohort


def test_every_message_is_parsable_with_text_and_html(daily_year: tuple[Settings, list[outcome.RunReport]]) -> None:
    s, _ = daily_year
    for path in (s.outbox_path / "new").iterdir():
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        meetup = ".meetup-" in path.name
        assert msg.get_content_type() == ("multipart/mixed" if meetup else "multipart/alternative")
        assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
        assert msg["From"].addresses[0].addr_spec.endswith("@example.org")
        assert len(msg["To"].addresses) in (1, 2)


def test_skipped_and_repeated_runs_give_the_same_set(
    daily_year: tuple[Settings, list[outcome.RunReport]], settings: Settings
) -> None:
    daily, _ = daily_year
    # every third day, and each of those twice: still within the 14-day window
    for now in YEAR[::3]:
        send.run(settings, now=now)
        again = send.run(settings, now=now + timedelta(minutes=5))
        assert again.sent == 0
    assert ledger_rows(settings) == ledger_rows(daily)
    assert outbox_keys(settings) == outbox_keys(daily)


def test_rehearsal_writes_what_the_daily_runs_send(
    daily_year: tuple[Settings, list[outcome.RunReport]], settings: Settings, tmp_path: Path
) -> None:
    daily, _ = daily_year
    result = rehearse.rehearse(settings, outbox=tmp_path / "rehearsal")
    assert result.messages == sum(1 for v in ledger_rows(daily).values() if v == "sent")
    rehearsed = Settings(program_dir=settings.program_dir, outbox_dir=tmp_path / "rehearsal",
                         _env_file=None)  # type: ignore[call-arg]
    assert outbox_keys(rehearsed) == outbox_keys(daily)
    # a withdrawal after the Annual invitation went out cancels it, on the day of the withdrawal
    cancel = next(t for t in result.timeline if t[2].startswith("meetup-annual-2020 (cancel"))
    assert cancel[0] == date(2020, 6, 8) and cancel[1:3] == ("2019-2020", "meetup-annual-2020 (cancel 1)")
    welcome = [t for t in result.timeline if t[1:3] == ("2019-2020", "welcome")]
    assert welcome[0] == (date(2019, 8, 1), "2019-2020", "welcome", 11, 11)
    midyear = next(t for t in result.timeline if t[1:3] == ("2019-2020", "midyear"))
    assert midyear[3:] == (11, 22)  # one email to each partner


def test_rehearsal_refuses_a_foreign_folder(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not made by a rehearsal"):
        rehearse.rehearse(settings, outbox=tmp_path / "mine")
    assert (tmp_path / "mine/notes.txt").exists()


def test_run_mid_year_skips_old_steps_and_catch_up_sends_them(settings: Settings) -> None:
    now = datetime(2019, 10, 20, 17, tzinfo=UTC)
    first = send.run(settings, now=now, new_ledger=True)
    assert first.sent == 0 and first.skipped > 0
    rows = ledger_rows(settings)
    assert rows["2019-2020/p01/readings"] == "skipped"
    # skipped for lateness alone is not lost: a later catch-up sends it, once
    conn = sqlite3.connect(settings.database_path)
    try:
        late = conn.execute("SELECT count(*) FROM messages WHERE reason LIKE '%days late%'").fetchone()[0]
    finally:
        conn.close()
    caught = send.run(settings, now=now, catch_up=True)
    assert late > 0 and caught.sent == late  # the rules' own skips (a late joiner's old steps) stay skipped
    assert ledger_rows(settings)["2019-2020/p01/readings"] == "sent"
    assert send.run(settings, now=now, catch_up=True).sent == 0


def test_catch_up_on_a_fresh_ledger_sends_the_backlog(settings: Settings) -> None:
    report = send.run(settings, now=datetime(2019, 10, 20, 17, tzinfo=UTC), catch_up=True, new_ledger=True)
    assert report.sent == 3 * 11 and report.skipped == 0  # welcome, day-in-the-life, readings for 11 pairs


def test_dry_run_records_and_writes_nothing(settings: Settings) -> None:
    report = send.run(settings, now=datetime(2019, 8, 1, 17, tzinfo=UTC), dry_run=True)
    assert len(report.planned) == 11 and report.sent == 0
    assert not settings.database_path.exists()
    assert not settings.outbox_path.exists()


def test_limit_sends_only_that_many(settings: Settings) -> None:
    now = datetime(2019, 8, 1, 17, tzinfo=UTC)
    assert send.run(settings, now=now, limit=1).sent == 1
    assert send.run(settings, now=now).sent == 10


def test_second_run_while_locked_sends_nothing(settings: Settings) -> None:
    now = datetime(2019, 8, 1, 17, tzinfo=UTC)
    with run_lock(settings.database_path), pytest.raises(LockBusy, match="this run sent nothing"):
        send.run(settings, now=now)
    assert not settings.outbox_path.exists() or not any((settings.outbox_path / "new").iterdir())


def test_broken_template_stops_before_the_first_send(settings: Settings) -> None:
    tpl = settings.program_dir / "templates/email/welcome.html.j2"
    tpl.write_text(tpl.read_text(encoding="utf-8").replace("{% block body %}", "{% block body %}{{ nope }}", 1),
                   encoding="utf-8")
    with pytest.raises(InputError, match=r"welcome.html.j2:\d+: undefined variable nope$"):
        send.run(settings, now=datetime(2019, 8, 1, 17, tzinfo=UTC))
    assert not settings.database_path.exists() or ledger_rows(settings) == {}


def test_bad_rows_are_reported_good_pairs_served_exit_1(settings: Settings) -> None:
    roster = settings.program_dir / "cohorts/2019-2020/roster.csv"
    with roster.open("a", encoding="utf-8") as f:
        f.write("p13,Ann Example,ann@@example.org,Bo Example,bo@example.org,,active,,,,,\n")
    report = send.run(settings, now=datetime(2019, 8, 1, 17, tzinfo=UTC))
    assert report.sent == 11 and report.exit_code == 1
    assert "roster.csv:14: mentor_email" in str(report.bad_rows[0])


def test_ledger_and_outbox_are_owner_only(settings: Settings) -> None:
    send.run(settings, now=datetime(2019, 8, 1, 17, tzinfo=UTC))
    assert settings.database_path.stat().st_mode & 0o777 == 0o600
    assert settings.outbox_path.stat().st_mode & 0o777 == 0o700
    lock = settings.database_path.with_name(settings.database_path.name + ".lock")
    assert lock.stat().st_mode & 0o777 == 0o600
    for f in (settings.outbox_path / "new").iterdir():
        assert f.stat().st_mode & 0o777 == 0o600


def test_a_run_with_nothing_due_takes_the_fast_path(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    send.run(settings, now=datetime(2019, 8, 1, 17, tzinfo=UTC))

    def no_loading(*_a: object, **_k: object) -> None:
        raise AssertionError("the year was loaded")

    with monkeypatch.context() as m:
        m.setattr(send, "load_program", no_loading)
        idle = send.run(settings, now=datetime(2019, 8, 20, 17, tzinfo=UTC))
    assert idle.idle and idle.sent == 0 and idle.exit_code == 0
    # the next step's day is not idle
    assert send.run(settings, now=datetime(2019, 9, 1, 17, tzinfo=UTC)).sent == 11


def test_an_edited_roster_ends_the_fast_path(settings: Settings) -> None:
    send.run(settings, now=datetime(2019, 8, 1, 17, tzinfo=UTC))
    roster = settings.program_dir / "cohorts/2019-2020/roster.csv"
    with roster.open("a", encoding="utf-8") as f:
        f.write("p13,Ann New,ann.new@example.org,Bo New,bo.new@example.org,,active,,,,,\n")
    report = send.run(settings, now=datetime(2019, 8, 2, 17, tzinfo=UTC))
    assert not report.idle and report.sent == 1  # the new pair's welcome, within the window


def test_a_withdrawal_date_wakes_the_run_for_its_cancellation(settings: Settings) -> None:
    send.run(settings, now=datetime(2020, 5, 21, 17, tzinfo=UTC), catch_up=True, new_ledger=True)
    send.run(settings, now=datetime(2020, 5, 22, 17, tzinfo=UTC))  # records the wake time
    report = send.run(settings, now=datetime(2020, 6, 8, 17, tzinfo=UTC))
    assert not report.idle and report.invites["CANCEL"] == 1


def _set_status(settings: Settings, pair: str, status: str) -> None:
    roster = settings.program_dir / "cohorts/2019-2020/roster.csv"
    lines = roster.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        cells = line.split(",")
        if cells[0] == pair:
            cells[6] = status
            lines[i] = ",".join(cells)
    roster.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_an_undated_pause_resumes_with_the_current_step(settings: Settings) -> None:
    """The coordinator just types `paused`, later `active`, in the roster: runs date the change."""
    def p01(report_keys: set[str]) -> set[str]:
        return {k.split("/", 2)[2] for k in report_keys if k.startswith("2019-2020/p01/")}

    for day in (date(2019, 8, 1), date(2019, 11, 1)):
        send.run(settings, now=datetime(day.year, day.month, day.day, 17, tzinfo=UTC))
    _set_status(settings, "p01", "paused")
    send.run(settings, now=datetime(2019, 11, 25, 17, tzinfo=UTC))
    for day in (date(2019, 12, 1), date(2019, 12, 20)):
        send.run(settings, now=datetime(day.year, day.month, day.day, 17, tzinfo=UTC))
    sent_before = {k for k, v in ledger_rows(settings).items() if v == "sent"}
    assert p01(sent_before) == {"welcome", "resumes"}  # nothing while paused (Aug-Oct runs were missed)
    _set_status(settings, "p01", "active")
    send.run(settings, now=datetime(2019, 12, 22, 17, tzinfo=UTC))
    rows = ledger_rows(settings)
    sent_now = {k for k, v in rows.items() if v == "sent"} - sent_before
    # back: the current activity (project-plan, 21 days old, past the window) and the meetup invitation
    assert p01(sent_now) == {"project-plan", "meetup-midwinter-2020"}
    assert rows["2019-2020/p01/project-plan"] == "sent"


def test_an_undated_withdrawal_cancels_from_the_day_it_is_seen(settings: Settings) -> None:
    send.run(settings, now=datetime(2019, 12, 20, 17, tzinfo=UTC), catch_up=True, new_ledger=True)
    _set_status(settings, "p04", "withdrawn")
    report = send.run(settings, now=datetime(2020, 1, 5, 17, tzinfo=UTC))
    assert report.invites["CANCEL"] == 1
    assert "2019-2020/p04/meetup-midwinter-2020/cancel-1" in ledger_rows(settings)
    assert send.run(settings, now=datetime(2020, 2, 1, 17, tzinfo=UTC), catch_up=True).by_step[
        ("2019-2020", "midyear", "sent")] == 20  # p04's pair is gone; p06 paused (dated): 10 pairs x 2
