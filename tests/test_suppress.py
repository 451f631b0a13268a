"""Plans honour suppressions: a suppressed address gets no more prompts, its partner still does."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

from mailer.app import inbox
from mailer.app.send import run as send
from mailer.core.compose import envelope
from mailer.core.plan import build_plan, honour
from mailer.core.records import LedgerView, Suppressed
from mailer.core.year import year_schedule
from mailer.load.program import load_program
from mailer.shell.ledger import Ledger
from mailer.shell.settings import Settings
from tests.conftest import utc
from tests.test_inbox import NOW, Sent, bounce, maildir, replace_settings, sent, unsubscribe  # noqa: F401

GONE = Suppressed("lukasz.wojcik@example.com", "unsubscribed", "2020-01-21T15:00:00+00:00", "unsubscribe link")


def test_a_pair_email_goes_to_the_partner_alone_with_the_same_key(program_dir: Path) -> None:
    program = load_program(program_dir)
    occ = next(o for o in year_schedule(program) if o.pair.id == "p03" and o.role is None and o.change is None)
    kept = honour(occ, {GONE.address: GONE})
    assert kept.key == occ.key and kept.skip_reason is None
    assert [kept.pair.person(r).email for r in kept.addressed()] == [occ.pair.mentor.email]
    assert envelope(kept)[1] == [occ.pair.mentor.ascii_email]
    assert "lukasz.wojcik@example.com: it unsubscribed (since 2020-01-21)" in kept.left_out_note
    assert occ.recipients() == kept.recipients()  # an invitation still lists both as attendees


def test_both_partners_suppressed_skips_with_the_reason(program_dir: Path) -> None:
    program = load_program(program_dir)
    occ = next(o for o in year_schedule(program) if o.pair.id == "p03" and o.role is None)
    other = Suppressed(occ.pair.mentor.ascii_email.lower(), "hard-bounce", "2020-01-22T00:00:00+00:00", "550")
    both = honour(occ, {GONE.address: GONE, other.address: other})
    assert both.skip_reason is not None and "its mail bounces" in both.skip_reason
    assert "it unsubscribed" in both.skip_reason


def test_a_plan_leaves_the_address_out_of_every_later_prompt(program_dir: Path) -> None:
    program = load_program(program_dir)
    later = utc(2020, 3, 1)
    plan = build_plan(program, LedgerView(suppressed={GONE.address: GONE}), now=later, window=None,
                      horizon=timedelta(days=400))
    mine = [o for o in plan.send + plan.upcoming if o.pair.id == "p03"]
    assert mine and all("lukasz.wojcik@example.com" not in envelope(o)[1] for o in mine)
    assert any(o.pair.mentor.ascii_email in envelope(o)[1] for o in mine)
    assert not [o for o in plan.send + plan.upcoming if o.pair.id != "p03" and o.left_out]


def test_runs_read_the_inbox_first_and_leave_the_addresses_out(settings: Settings, sent: Sent,  # noqa: F811
                                                                tmp_path: Path) -> None:
    box = maildir(tmp_path / "Maildir", [bounce(sent), unsubscribe(sent)])
    settings = replace_settings(settings, inbox=f"maildir:{box}")
    with Ledger.open(settings.database_path) as ledger:
        before = {r[0] for r in ledger.conn.execute("SELECT key FROM messages")}
    later = utc(2020, 6, 20, 15)
    dry = send(settings, now=later, catch_up=True, dry_run=True)
    assert dry.inbox is None and len(list((box / "new").iterdir())) == 2  # a dry run reads nothing
    report = send(settings, now=later, catch_up=True)
    assert report.inbox is not None and report.inbox.outcomes == {"acted": 2}
    assert list((box / "new").iterdir()) == []
    with Ledger.open(settings.database_path) as ledger:
        rows = [r for r in ledger.conn.execute("SELECT key, recipients, state, reason FROM messages")
                if r["key"] not in before]
    assert len(rows) > 10
    for r in rows:
        assert "zoe.ng@example.com" not in (r["recipients"] or "")
        assert "lukasz.wojcik@example.com" not in (r["recipients"] or "")
    p03 = [r for r in rows if "/p03/" in r["key"] and r["state"] == "sent"]
    assert p03 and all("@" in r["recipients"] for r in p03)  # the partner still gets them
    seen = 0
    for path in (settings.outbox_path / "new").iterdir():
        msg = message_from_bytes(path.read_bytes())
        if str(msg["X-Mentor-Mailer-Key"]) in {r["key"] for r in p03}:
            assert "wojcik" not in str(msg["To"]).lower()
            seen += 1
    assert seen == len(p03)


def test_a_dry_run_and_plan_say_who_is_left_out_and_why(settings: Settings, sent: Sent,  # noqa: F811
                                                         tmp_path: Path) -> None:
    box = maildir(tmp_path / "Maildir", [unsubscribe(sent)])
    inbox.run(replace_settings(settings, inbox=f"maildir:{box}"), now=NOW)
    later = utc(2020, 6, 20, 15)
    dry = send(settings, now=later, catch_up=True, dry_run=True)
    p03 = [o for o in dry.planned if o.pair.id == "p03" and o.change is None]
    assert p03 and all("left out: lukasz.wojcik@example.com: it unsubscribed" in o.left_out_note
                       for o in p03 if o.role is None)
    from mailer.app.queries import upcoming
    from mailer.core.status import plan_rows

    rows = [r for r in plan_rows(upcoming(settings, now=utc(2020, 2, 1))) if r["pair"] == "p03"]
    assert rows and all(r["to"] == ["margaret.okafor@example.org"] for r in rows)
    assert all(r["left_out"] == ["lukasz.wojcik@example.com: it unsubscribed (since 2020-01-21)"] for r in rows
               if "mentor" not in str(r["key"]))


def test_an_invitation_already_held_still_gets_its_update(settings: Settings, sent: Sent,  # noqa: F811
                                                           tmp_path: Path) -> None:
    box = maildir(tmp_path / "Maildir", [unsubscribe(sent)])
    inbox.run(replace_settings(settings, inbox=f"maildir:{box}"), now=NOW)
    cohort = settings.program_dir / "cohorts/2019-2020/cohort.toml"
    cohort.write_text(cohort.read_text(encoding="utf-8").replace("time = 12:30:00", "time = 13:00:00"),
                      encoding="utf-8")
    report = send(settings, now=utc(2020, 1, 22, 15))
    assert report.invites["UPDATE"] > 0
    with Ledger.open(settings.database_path) as ledger:
        update = ledger.conn.execute("SELECT recipients FROM messages WHERE key LIKE '2019-2020/p03/%update%'"
                                     ).fetchone()
    assert update is not None and "lukasz.wojcik@example.com" in update[0]  # he holds it: he hears of the change
