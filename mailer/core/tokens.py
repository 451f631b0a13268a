"""Check-in and unsubscribe tokens: what a link means, signed with the installation's secret.

A token carries its own meaning (purpose, cohort, pair, and the step and answer or the role), so
recognising one needs no table of every token ever sent; the HMAC makes it unguessable and
unforgeable, and it is compared in constant time. The shape, ``mm1.<payload>.<mac>``, uses only
characters that survive a mailto: subject, a URL path and a mail client's line wrapping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Literal

CheckinAnswer = Literal["met", "not-yet", "help"]
CHECKIN_ANSWERS: tuple[CheckinAnswer, ...] = ("met", "not-yet", "help")

_PREFIX = "mm1"
_MAC_BYTES = 16  # 128 bits: guessing is hopeless, and the subject stays short
_CONTEXT = b"mentor-mailer token v1\x00"  # keeps these MACs apart from the Message-ID ones made with the same secret

# a token inside a subject or a URL: "unsubscribe-mm1.eyJ...Q.3kA...w"
TOKEN_RE = re.compile(r"mm1\.([A-Za-z0-9_-]{4,400})\.([A-Za-z0-9_-]{22})(?![A-Za-z0-9_-])")


@dataclass(frozen=True, slots=True)
class Checkin:
    """A check-in answer: this pair, at this step, says this."""

    cohort: str
    pair: str
    step: str
    answer: CheckinAnswer


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """A request to stop prompts to one person of a pair (the partner keeps getting them)."""

    cohort: str
    pair: str
    role: str  # "mentor" or "mentee"


Token = Checkin | Unsubscribe


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES]


def _make(secret: bytes, fields: list[str]) -> str:
    payload = _b64(json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii"))
    return f"{_PREFIX}.{payload}.{_b64(_mac(secret, payload))}"


def make_checkin(secret: bytes, cohort: str, pair: str, step: str, answer: CheckinAnswer) -> str:
    """The token for one check-in link (one per answer offered)."""
    if answer not in CHECKIN_ANSWERS:
        raise ValueError(f"check-in answer must be one of {CHECKIN_ANSWERS}, not {answer!r}")
    return _make(secret, ["c", cohort, pair, step, answer])


def make_unsubscribe(secret: bytes, cohort: str, pair: str, role: str) -> str:
    """The token for one person's List-Unsubscribe links (mailto subject and, if set, the URL)."""
    return _make(secret, ["u", cohort, pair, role])


def find(text: str) -> str | None:
    """The first thing in `text` (a subject, a URL) shaped like a token, unchecked."""
    match = TOKEN_RE.search(text)
    return match.group(0) if match else None


def parse(secret: bytes, token: str) -> Token | None:
    """What a token means, or None when it is not one of ours (bad shape, bad MAC, unknown purpose)."""
    match = TOKEN_RE.fullmatch(token.strip())
    if match is None:
        return None
    payload, mac = match.groups()
    try:
        given = _unb64(mac)
        fields = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _mac(secret, payload)):
        return None
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        return None
    match fields:
        case ["c", cohort, pair, step, answer] if answer in CHECKIN_ANSWERS:
            return Checkin(cohort, pair, step, answer)
        case ["u", cohort, pair, role]:
            return Unsubscribe(cohort, pair, role)
    return None
