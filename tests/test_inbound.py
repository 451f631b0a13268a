"""The inbound parser: every corpus file is recognised as expected.toml says, and nothing makes it raise."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.core import listen, tokens
from mailer.core.inbound import KINDS, Inbound
from mailer.load.inbound import recognise

CORPUS = Path(__file__).resolve().parent / "data" / "inbound"
EXPECTED: dict[str, dict[str, object]] = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))


def _read(name: str) -> Inbound:
    return recognise((CORPUS / name).read_bytes())


def test_every_corpus_file_has_an_expectation_and_a_source() -> None:
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.eml")}
    assert files == set(EXPECTED)
    licenses = (CORPUS / "LICENSES.md").read_text(encoding="utf-8")
    assert all(Path(name).name in licenses or name.startswith("ours/") for name in files)
    assert (CORPUS / "sisimai" / "LICENSE").is_file() and (CORPUS / "flufl" / "LICENSE").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_is_recognised(name: str) -> None:
    want = EXPECTED[name]
    got = _read(name)
    assert got.kind == want["kind"], got
    if got.bounce is not None or "failures" in want:
        assert got.bounce is not None
        failures = sorted(f"{f.address}:{5 if f.permanent else 4}" for f in got.bounce.failures)
        assert failures == want["failures"]
    if "complained" in want:
        assert got.complaint is not None and sorted(got.complaint.addresses) == want["complained"]
    if "uid" in want:
        assert got.calendar is not None
        answers = [f"{a.address}:{a.partstat}" for a in got.calendar.attendees]
        assert (got.calendar.uid, got.calendar.sequence, answers) == (want["uid"], want["sequence"], want["answers"])
    if "references_ours" in want:
        assert want["references_ours"] in got.referenced
    if "mailer_key" in want:
        assert want["mailer_key"] in got.mailer_keys
    if "first_line" in want:
        assert got.first_line == want["first_line"]
    assert (got.token is not None) == bool(want.get("token", False))


def test_the_corpus_covers_every_kind() -> None:
    assert {str(w["kind"]) for w in EXPECTED.values()} == set(KINDS)


@pytest.mark.parametrize(("name", "reason"), [
    ("ours/icloud-vacation.eml", "X-Apple-Action: VACATION"),
    ("ours/outlook-automatic-reply-de.eml", "subject begins 'abwesenheitsnotiz'"),
    ("ours/automatic-reply-fr.eml", "subject begins 'réponse automatique'"),
])
def test_auto_replies_say_why(name: str, reason: str) -> None:
    assert _read(name).auto_reason == reason


def test_google_reply_is_a_reply_despite_auto_submitted() -> None:
    got = _read("ours/google-reply-accepted.eml")
    assert got.kind == "calendar_reply" and got.calendar is not None and got.calendar.method == "REPLY"


def test_outlook_reply_keeps_its_comment_without_organizer_and_with_a_windows_zone() -> None:
    got = _read("ours/outlook-reply-declined.eml")
    assert got.calendar is not None and got.calendar.comment == "Sorry, I fly back that morning."


def test_bounce_carries_the_servers_words_and_status() -> None:
    got = _read("ours/dsn-our-message-hard.eml")
    assert got.bounce is not None and got.bounce.structured
    (failure,) = got.bounce.failures  # ann@example.org was delivered: not a failure
    assert failure.status == "5.1.1" and failure.diagnostic is not None and "User unknown" in failure.diagnostic


def test_a_human_reply_keeps_in_reply_to_and_references_apart() -> None:
    got = _read("ours/human-reply-references.eml")
    assert got.from_address == "ann@example.org" and got.in_reply_to == (
        "<9d9a3ba342b9d59fb4e3545c57b99716.mm@mentors.example.org>",)
    assert len(got.references) == 2 and "bo@example.net" in got.to_addresses


def test_tokens_in_subjects_parse_back() -> None:
    token = _read("ours/checkin-help.eml").token
    assert token is not None
    assert tokens.parse(bytes(32), token) == tokens.Checkin("2026-2027", "p01", "midyear", "help")


def test_a_10_mb_attachment_is_read_without_trouble() -> None:
    blob = base64.encodebytes(bytes(range(256)) * (10 * 1024 * 1024 // 256)).replace(b"\n", b"\r\n")
    data = (b"From: Ann <ann@example.org>\r\nTo: m@mentors.example.org\r\nSubject: slides\r\n"
            b"Message-ID: <big@example.org>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n"
            b"Slides attached.\r\n--x\r\nContent-Type: application/pdf; name=s.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + blob + b"--x--\r\n")
    got = recognise(data)
    assert (got.kind, got.first_line) == ("human", "Slides attached.")


@pytest.mark.parametrize("name", sorted(EXPECTED)[::7])
def test_every_truncation_is_recognised_without_raising(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    for cut in range(0, len(data), max(1, len(data) // 40)):
        assert recognise(data[:cut]).kind in KINDS


_SAMPLES = sorted(EXPECTED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SAMPLES), st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=8)), max_size=6))
def test_corrupted_corpus_files_never_raise(name: str, edits: list[tuple[int, bytes]]) -> None:
    """Bytes spliced into real messages at random places: a kind always comes back, never an exception."""
    data = bytearray((CORPUS / name).read_bytes())
    for where, junk in edits:
        at = where % (len(data) + 1)
        data[at:at + len(junk)] = junk
    got = recognise(bytes(data))
    assert got.kind in KINDS
    decided = listen.decide(got, listen.SentView(secret=b"s"))
    assert decided and all(isinstance(e, listen.Unmatched) for e in decided)  # an empty view matches nothing


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert recognise(data).kind in KINDS
