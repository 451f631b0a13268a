"""The pure decisions: corpus messages against a view of what a program with an all-zero secret sent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mailer.core import listen
from mailer.core.listen import (
    CheckinAnswer,
    Contact,
    OutOfOffice,
    Rsvp,
    SentInvitation,
    SentMessage,
    SentView,
    SoftBounce,
    Suppression,
    Unmatched,
)
from mailer.load.inbound import recognise

OURS = Path(__file__).resolve().parent / "data" / "inbound" / "ours"
C = "2026-2027"
UID1 = "2985c0222f47fb94f326dd96e0b5ad37@mentors.example.org"
UID2 = "b604b8ef4cddd02a5a3549601d837527@mentors.example.org"
WELCOME = SentMessage("2026-2027/p01/welcome", C, "p01", "welcome", ("ann@example.org", "bo@example.net"))
READINGS1 = SentMessage("2026-2027/p01/readings", C, "p01", "readings", ("ann@example.org", "bo@example.net"))
READINGS2 = SentMessage("2026-2027/p02/readings", C, "p02", "readings", ("cy@example.com", "dee@example.com"))


@pytest.fixture
def view() -> SentView:
    """Two pairs, their welcome and readings messages, and one invitation each (p02's at SEQUENCE 2)."""
    return SentView(
        secret=bytes(32),
        by_message_id={"<9d9a3ba342b9d59fb4e3545c57b99716.mm@mentors.example.org>": WELCOME,
                       "<0ab8a3ecc996e63b48b0b200c749a767.mm@mentors.example.org>": READINGS1},
        by_key={m.key: m for m in (WELCOME, READINGS1, READINGS2)},
        invitations={UID1: SentInvitation(UID1, C, "p01", "vis-2026", ("ann@example.org", "bo@example.net"), 1),
                     UID2: SentInvitation(UID2, C, "p02", "vis-2026", ("cy@example.com", "dee@example.com"), 2)},
        pairs={(C, "p01"): {"mentor": "ann@example.org", "mentee": "bo@example.net"},
               (C, "p02"): {"mentor": "cy@example.com", "mentee": "dee@example.com"}},
        coordinators=frozenset({"mentoring@mentors.example.org"}),
    )


def decide(name: str, view: SentView) -> tuple[listen.Effect, ...]:
    return listen.decide(recognise((OURS / name).read_bytes()), view)


def test_google_accept_is_an_rsvp_for_the_invited_attendee(view: SentView) -> None:
    (rsvp,) = decide("google-reply-accepted.eml", view)
    assert rsvp == Rsvp(UID1, C, "p01", "vis-2026", "bo@example.net", "ACCEPTED", 1, False, None)


def test_apple_reply_from_another_account_counts_for_the_attendee(view: SentView) -> None:
    (rsvp,) = decide("apple-reply-tentative.eml", view)
    assert isinstance(rsvp, Rsvp) and (rsvp.address, rsvp.partstat) == ("bo@example.net", "TENTATIVE")


def test_a_reply_to_an_older_sequence_is_stale(view: SentView) -> None:
    (rsvp,) = decide("outlook-reply-declined.eml", view)
    assert isinstance(rsvp, Rsvp) and rsvp.stale and rsvp.comment == "Sorry, I fly back that morning."
    (current,) = decide("thunderbird-reply-accepted.eml", view)
    assert isinstance(current, Rsvp) and not current.stale


def test_only_invited_attendees_answer(view: SentView) -> None:
    uninvited = replace(view, invitations={UID1: replace(view.invitations[UID1], attendees=("ann@example.org",))})
    assert decide("google-reply-accepted.eml", uninvited) == (Unmatched("a calendar reply from no one we invited"),)
    assert isinstance(decide("google-reply-accepted.eml", replace(view, invitations={}))[0], Unmatched)


def test_hard_bounce_suppresses_only_the_failed_partner(view: SentView) -> None:
    (effect,) = decide("dsn-our-message-hard.eml", view)
    assert isinstance(effect, Suppression)
    assert (effect.address, effect.reason, effect.message_key) == ("bo@example.net", "hard-bounce",
                                                                   "2026-2027/p01/readings")
    assert effect.detail is not None and "User unknown" in effect.detail


@pytest.mark.parametrize(("before", "expected"), [(0, SoftBounce), (1, SoftBounce), (2, Suppression)])
def test_three_soft_bounces_in_a_row_count_as_permanent(view: SentView, before: int, expected: type) -> None:
    earlier = frozenset(f"2026-2027/p02/step{n}" for n in range(before))
    (effect,) = decide("dsn-our-message-soft.eml", replace(view, soft_bounces={"cy@example.com": earlier}))
    assert isinstance(effect, expected) and effect.message_key == "2026-2027/p02/readings"
    if isinstance(effect, Suppression):
        assert effect.reason == "soft-bounces"
    else:
        assert effect.count == before + 1


def test_another_report_about_the_same_message_counts_once(view: SentView) -> None:
    already = replace(view, soft_bounces={"cy@example.com": frozenset({"2026-2027/p02/readings", "x"})})
    (effect,) = decide("dsn-our-message-soft.eml", already)
    assert isinstance(effect, SoftBounce) and effect.count == 2


def test_plain_text_bounce_is_attributed_by_the_quoted_key(view: SentView) -> None:
    (effect,) = decide("qmail-our-message.eml", view)
    assert isinstance(effect, Suppression)
    assert (effect.address, effect.reason, effect.message_key) == ("dee@example.com", "hard-bounce",
                                                                   "2026-2027/p02/readings")
    assert effect.detail is not None and "550 5.1.1 No such user" in effect.detail


def test_complaint_suppresses_the_complainant(view: SentView) -> None:
    assert decide("arf-our-message.eml", view) == (
        Suppression("ann@example.org", "complaint", "abuse", "2026-2027/p01/readings"),)


def test_human_reply_is_contact_with_the_step(view: SentView) -> None:
    (effect,) = decide("human-reply-references.eml", view)
    assert isinstance(effect, Contact)
    assert (effect.pair, effect.step, effect.address, effect.partner_addressed) == (
        "p01", "welcome", "ann@example.org", True)


def test_a_reply_without_references_is_matched_by_its_sender(view: SentView) -> None:
    (effect,) = decide("human-reply-no-references.eml", view)
    assert isinstance(effect, Contact) and (effect.pair, effect.step, effect.partner_addressed) == ("p01", None, False)


def test_stop_and_the_unsubscribe_link_suppress_that_person(view: SentView) -> None:
    assert decide("human-stop.eml", view) == (Suppression("bo@example.net", "unsubscribed", "replied 'STOP'", None),)
    assert decide("unsubscribe-mailto.eml", view) == (
        Suppression("bo@example.net", "unsubscribed", "unsubscribe link", None),)


def test_checkin_answer(view: SentView) -> None:
    assert decide("checkin-help.eml", view) == (CheckinAnswer(C, "p01", "midyear", "help", "ann@example.org"),)


def test_a_forged_token_is_no_answer(view: SentView) -> None:
    (effect,) = decide("checkin-help.eml", replace(view, secret=b"another installation"))
    assert isinstance(effect, Contact)  # still a message from a participant, but not a check-in


def test_auto_replies_are_out_of_office_not_contact(view: SentView) -> None:
    (effect,) = decide("outlook-automatic-reply-de.eml", view)
    assert isinstance(effect, OutOfOffice) and effect.subject.startswith("Abwesenheitsnotiz")
    assert decide("icloud-vacation.eml", view) == (
        Unmatched("an automatic reply from someone outside the program"),)  # ann@icloud.example is not on the roster


@pytest.mark.parametrize("name", ["empty.eml", "no-headers.eml", "calendar-not-icalendar.eml"])
def test_mail_that_is_not_the_programs_is_left_alone(view: SentView, name: str) -> None:
    other = replace(view, pairs={})
    assert not listen.acts(decide(name, other))


@pytest.mark.parametrize(("line", "stop"), [("STOP", True), ("Unsubscribe.", True), ("please stop!", True),
                                           ("Stop by my office on Tuesday", False), ("", False)])
def test_is_stop(line: str, stop: bool) -> None:
    assert listen.is_stop(line) is stop
