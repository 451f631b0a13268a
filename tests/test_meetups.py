"""Meetup invitations end to end: in the rehearsed year, on update, on cancellation, by hand."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest
import vobject

from mailer.app import queries, rehearse, send
from mailer.shell.settings import Settings

INVITED = datetime(2019, 12, 20, 17, tzinfo=UTC)  # the Midwinter meetup step's day
ANNUAL_INVITED = datetime(2020, 5, 21, 17, tzinfo=UTC)


def messages(outbox: Path) -> dict[str, EmailMessage]:
    out = {}
    for path in (outbox / "new").iterdir():
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        out[str(msg["X-Mentor-Mailer-Key"])] = msg  # type: ignore[assignment]
    return out


def calendar_of(msg: EmailMessage) -> tuple[bytes, icalendar.Calendar]:
    """The text/calendar part's bytes, checked against the attachment, parsed."""
    assert msg.get_content_type() == "multipart/mixed"
    alternative, attachment = msg.get_payload()  # type: ignore[misc]
    assert alternative.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in alternative.get_payload()]
    assert kinds == ["text/plain", "text/html", "text/calendar"]
    part = alternative.get_payload()[2]
    ics = part.get_payload(decode=True)
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_payload(decode=True) == ics  # the same bytes
    cal = icalendar.Calendar.from_ical(ics)
    assert part.get_param("method") == str(cal["METHOD"])  # the MIME method is the calendar's
    return ics, cal


def event(cal: icalendar.Calendar) -> icalendar.Event:
    events = list(cal.walk("VEVENT"))
    assert len(events) == 1
    return events[0]


def test_rehearsal_every_meetup_email_carries_a_valid_invitation(settings: Settings, tmp_path: Path) -> None:
    result = rehearse.rehearse(settings, outbox=tmp_path / "year")
    msgs = messages(tmp_path / "year")
    meetups = {k: m for k, m in msgs.items() if "/meetup-" in k and "/cancel-" not in k}
    # 12 pairs; p06 was paused until after Midwinter; p08 withdrew before Annual's invitation
    assert len([k for k in meetups if "midwinter" in k]) == 11
    assert len([k for k in meetups if k.startswith("2019-2020/") and "annual" in k]) == 11
    assert "2019-2020/p12/meetup-annual-2020/cancel-1" in msgs  # p12 withdrew after being invited
    assert len([k for k in meetups if k.startswith("2020-january/")]) == 4
    for key, msg in meetups.items():
        ics, cal = calendar_of(msg)
        ev = event(cal)
        assert str(cal["METHOD"]) == "REQUEST" and int(ev["SEQUENCE"]) == 0
        to = {a.addr_spec for a in msg["To"].addresses}
        attendees = {str(a).removeprefix("mailto:") for a in ev.get("ATTENDEE")}
        assert to == attendees, key  # every recipient is an attendee ...
        organizer = str(ev["ORGANIZER"]).removeprefix("mailto:")
        assert organizer == msg["From"].addresses[0].addr_spec and organizer not in to  # ... not the organizer
        other = vobject.readOne(ics.decode("utf-8"))
        assert other.vevent.dtstart.value.astimezone(UTC) == ev.decoded("DTSTART").astimezone(UTC)
    assert result.messages == len(msgs)


def _edit(path: Path, old: str, new: str, *, after: str | None = None) -> None:
    text = path.read_text(encoding="utf-8")
    start = text.index(after) if after else 0
    assert old in text[start:]
    path.write_text(text[:start] + text[start:].replace(old, new, 1), encoding="utf-8")


def test_meetup_change_sends_updates_with_same_uid_and_next_sequence(settings: Settings) -> None:
    first = send.run(settings, now=INVITED)
    assert first.invites["REQUEST"] == 11
    original = {k: event(calendar_of(m)[1]) for k, m in messages(settings.outbox_path).items() if "midwinter" in k}
    _edit(settings.program_dir / "cohorts/2019-2020/cohort.toml", "time = 12:30:00", "time = 13:00:00")
    plan = queries.upcoming(settings, now=INVITED + timedelta(days=1), start=INVITED + timedelta(days=1))
    assert {o.key for o in plan if o.change} == {k + "/update-1" for k in original}  # plan shows them
    second = send.run(settings, now=INVITED + timedelta(days=1))
    assert second.sent == 11 and second.invites["UPDATE"] == 11
    updates = {k: m for k, m in messages(settings.outbox_path).items() if k.endswith("/update-1")}
    assert len(updates) == 11
    for key, msg in updates.items():
        _, cal = calendar_of(msg)
        ev = event(cal)
        old = original[key.removesuffix("/update-1")]
        assert ev["UID"] == old["UID"] and int(ev["SEQUENCE"]) == 1 and str(cal["METHOD"]) == "REQUEST"
        assert ev.decoded("DTSTART") - old.decoded("DTSTART") == timedelta(minutes=30)
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "now starts at 1:00 PM EST instead of 12:30 PM" in text
        assert msg["Subject"].startswith("Updated:")
    assert send.run(settings, now=INVITED + timedelta(days=2)).sent == 0  # once


def test_annual_cancelled_sends_cancels_only_to_pairs_holding_it(settings: Settings) -> None:
    send.run(settings, now=ANNUAL_INVITED, catch_up=True, new_ledger=True)
    holders = {k.split("/")[1] for k in messages(settings.outbox_path) if k.startswith("2019-2020/") and "annual" in k}
    assert "p08" not in holders  # withdrew in March: never invited
    _edit(settings.program_dir / "cohorts/2019-2020/cohort.toml", 'status = "confirmed"', 'status = "cancelled"',
          after='key = "annual-2020"')
    report = send.run(settings, now=ANNUAL_INVITED + timedelta(days=3))
    assert report.invites["CANCEL"] == len(holders)
    cancels = {k: m for k, m in messages(settings.outbox_path).items() if "/cancel-" in k}
    assert {k.split("/")[1] for k in cancels} == holders
    for msg in cancels.values():
        _, cal = calendar_of(msg)
        ev = event(cal)
        assert str(cal["METHOD"]) == "CANCEL" and str(ev["STATUS"]) == "CANCELLED"
        assert int(ev["SEQUENCE"]) == 1 and len(ev.get("ATTENDEE")) == 2
        assert msg["Subject"].startswith("Cancelled:")
        assert "ALA Annual 2020 has been cancelled" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert send.run(settings, now=ANNUAL_INVITED + timedelta(days=4)).sent == 0


def test_withdrawn_pair_gets_a_cancel_late_pair_without_invite_gets_nothing(settings: Settings) -> None:
    roster = settings.program_dir / "cohorts/2019-2020/roster.csv"
    with roster.open("a", encoding="utf-8") as f:  # matched after Midwinter's invitations went out
        f.write("p13,Ann Late,ann.late@example.org,Bo Late,bo.late@example.org,2020-01-27,active,,,,,\n")
    send.run(settings, now=INVITED)
    _edit(roster, "p01,Renée Côté,renee.cote@example.org,José Muñoz,jose.munoz@example.org,,active,,",
          "p01,Renée Côté,renee.cote@example.org,José Muñoz,jose.munoz@example.org,,withdrawn,2020-01-10,")
    send.run(settings, now=datetime(2020, 1, 10, 17, tzinfo=UTC), catch_up=True)
    keys = set(messages(settings.outbox_path))
    assert "2019-2020/p01/meetup-midwinter-2020/cancel-1" in keys
    assert not any(k.startswith("2019-2020/p13/meetup-midwinter") for k in keys)
    cancels = [k for k in keys if "/cancel-" in k]
    assert cancels == ["2019-2020/p01/meetup-midwinter-2020/cancel-1"]


def test_an_in_person_meetup_gives_the_time_where_it_is_and_what_the_invitation_does(settings: Settings) -> None:
    """People attending need the local time: no home-zone line for a meetup at a place (Zoë lives in PST)."""
    send.run(settings, now=INVITED)
    msg = messages(settings.outbox_path)["2019-2020/p02/meetup-midwinter-2020"]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Zoë: 9:30 AM PST" not in text and "home time zones" not in text
    assert "12:30 PM EST" in text
    assert "calendar invitation attached to this email" in " ".join(text.split())
    assert "Yes, Maybe and No buttons" in " ".join(text.split())


def test_invites_command_writes_each_pairs_current_ics(settings: Settings, tmp_path: Path) -> None:
    send.run(settings, now=INVITED)
    _edit(settings.program_dir / "cohorts/2019-2020/cohort.toml", "minutes = 60", "minutes = 45")
    written = queries.export_invites(settings, cohort="2019-2020", out=tmp_path / "ics", now=INVITED)
    names = {p.name for p in written}
    assert "p01-midwinter-2020.ics" in names and "p01-annual-2020.ics" in names
    assert "p08-annual-2020.ics" not in names  # withdrawn before it: never invited
    cal = icalendar.Calendar.from_ical((tmp_path / "ics/p01-midwinter-2020.ics").read_bytes())
    ev = event(cal)
    assert int(ev["SEQUENCE"]) == 1  # what the pending update will carry
    assert ev.decoded("DTEND") - ev.decoded("DTSTART") == timedelta(minutes=45)


@pytest.mark.parametrize("kind", ["request", "update", "cancel"])
def test_expected_invitation_files_exist(kind: str) -> None:
    path = Path(__file__).parent / "data" / f"invite_{kind}.ics"
    assert b"\r\n" in path.read_bytes() and b"BEGIN:VCALENDAR" in path.read_bytes()
