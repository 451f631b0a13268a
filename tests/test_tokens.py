"""Check-in and unsubscribe tokens: they round-trip, resist tampering and survive a subject line."""

from __future__ import annotations

import pytest

from mailer.core import tokens

SECRET = b"k" * 32


def test_round_trip() -> None:
    checkin = tokens.make_checkin(SECRET, "2026-2027", "p01", "midyear", "met")
    unsubscribe = tokens.make_unsubscribe(SECRET, "2026-2027", "p01", "mentee")
    assert tokens.parse(SECRET, checkin) == tokens.Checkin("2026-2027", "p01", "midyear", "met")
    assert tokens.parse(SECRET, unsubscribe) == tokens.Unsubscribe("2026-2027", "p01", "mentee")
    assert tokens.find(f"unsubscribe-{unsubscribe}") == unsubscribe
    assert tokens.find(f"Re: We met this month [{checkin}]") == checkin


def test_another_secret_or_a_changed_character_is_refused() -> None:
    token = tokens.make_checkin(SECRET, "c", "p", "s", "help")
    assert tokens.parse(b"other", token) is None
    payload, mac = token.rsplit(".", 1)
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    assert tokens.parse(SECRET, f"{flipped}.{mac}") is None
    assert tokens.parse(SECRET, "mm1.xxxx.yyyyyyyyyyyyyyyyyyyyyy") is None
    assert tokens.parse(SECRET, "nonsense") is None


def test_unknown_answers_are_not_made() -> None:
    with pytest.raises(ValueError, match="check-in answer"):
        tokens.make_checkin(SECRET, "c", "p", "s", "maybe")  # type: ignore[arg-type]


def test_tokens_differ_per_pair_and_answer() -> None:
    made = {tokens.make_checkin(SECRET, "c", p, "s", a) for p in ("p1", "p2") for a in tokens.CHECKIN_ANSWERS}
    assert len(made) == 6
