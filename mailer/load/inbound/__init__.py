"""Recognising one inbound message (bytes) as a core `Inbound` value; never raises, whatever arrives.

The order is the issue's and it matters: a calendar REPLY first (Google's carry Auto-Submitted), then
abuse reports, then bounces (half of them carry Auto-Submitted too), then auto-replies, then people.
"""

from __future__ import annotations

import email.parser
import email.policy
import html
import re
from dataclasses import replace
from email.message import Message

from mailer.core import tokens
from mailer.core.inbound import Inbound
from mailer.load.inbound import _mime, auto, calendar, reports

__all__ = ["recognise"]

_MAX_FIRST_LINE = 200
_TAG_RE = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_BLOCK_RE = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d)\b[^>]*>", re.IGNORECASE)


def recognise(data: bytes) -> Inbound:
    """What `data` is and what it points to. Broken mail is `unreadable` with the reason, never an exception."""
    try:
        return _recognise(data)
    except RecursionError:
        return Inbound(kind="unreadable", problem="the message nests parts too deeply to read")
    except Exception as exc:  # the last guard: a message must never stop a run
        return Inbound(kind="unreadable", problem=f"the message could not be read ({type(exc).__name__})")


def _recognise(data: bytes) -> Inbound:
    if not data.strip():
        return Inbound(kind="unreadable", problem="the message is empty")
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
    if not msg.keys():
        return Inbound(kind="unreadable", problem="the message has no header fields")
    base = _envelope(msg)
    notes: list[str] = [type(d).__name__ for d in msg.defects][:5]

    reply, calendar_notes = calendar.find_reply(msg)
    notes += calendar_notes
    if reply is not None:
        return _with(base, kind="calendar_reply", calendar=reply, notes=notes)

    found = reports.complaint(msg)
    if found is not None:
        back = reports.returned(msg, scan_text=True)
        return _with(base, kind="complaint", complaint=found, notes=notes, **_ids(base, back))

    if reports.looks_like_bounce(msg):
        failed = reports.bounce(msg)
        if failed is not None:
            back = reports.returned(msg, scan_text=True)
            return _with(base, kind="bounce", bounce=failed, notes=notes, **_ids(base, back))

    reason = auto.auto_reason(msg)
    if reason is not None:
        return _with(base, kind="auto_reply", auto_reason=reason, notes=notes)
    return _with(base, kind="human", notes=notes)


def _envelope(msg: Message) -> Inbound:
    sender = _mime.addresses(msg, "From")
    in_reply_to = tuple(_mime.ids(_mime.header(msg, "In-Reply-To")))
    references = tuple(_mime.ids(" ".join(_mime.headers(msg, "References"))))
    own = _mime.ids(_mime.header(msg, "Message-ID"))
    subject = _mime.header(msg, "Subject")
    back = reports.returned(msg, scan_text=False)  # a forwarded or attached message of ours counts too
    return Inbound(
        kind="human",
        message_id=own[0] if own else None,
        from_address=sender[0][1] if sender else None,
        from_name=sender[0][0] or None if sender else None,
        to_addresses=tuple(dict.fromkeys(a for _, a in _mime.addresses(msg, "To", "Cc"))),
        subject=subject,
        date=_mime.date(msg),
        in_reply_to=in_reply_to,
        references=references,
        referenced=tuple(dict.fromkeys([*in_reply_to, *references, *back.message_ids])),
        mailer_keys=tuple(k for k in dict.fromkeys(back.keys) if k),
        first_line=_first_line(msg),
        token=tokens.find(subject),
    )


def _ids(base: Inbound, back: reports.Returned) -> dict[str, tuple[str, ...]]:
    own = {base.message_id}
    return {
        "referenced": tuple(i for i in dict.fromkeys([*base.referenced, *back.message_ids]) if i not in own),
        "mailer_keys": tuple(k for k in dict.fromkeys([*base.mailer_keys, *back.keys]) if k),
    }


def _with(base: Inbound, *, notes: list[str], **changes: object) -> Inbound:
    return replace(base, notes=tuple(dict.fromkeys(notes)), **changes)  # type: ignore[arg-type]


def _first_line(msg: Message) -> str:
    """The first line the sender wrote: the first text/plain (else text/html) part that is not an
    attachment and not inside an attached message, quotes left out."""
    for wanted in ("text/plain", "text/html"):
        part = _body_part(msg, wanted)
        if part is None:
            continue
        text = _mime.payload_text(part, 100_000)
        if wanted == "text/html":
            text = html.unescape(_TAG_RE.sub(" ", _BLOCK_RE.sub("\n", text)))
        for line in text.splitlines():
            line = " ".join(line.split())
            if line and not line.startswith(">"):
                return line[:_MAX_FIRST_LINE]
        return ""
    return ""


def _body_part(part: Message, wanted: str) -> Message | None:
    ctype = _mime.content_type(part)
    if ctype.startswith("message/"):
        return None
    if part.is_multipart():
        for child in _mime.subparts(part):
            found = _body_part(child, wanted)
            if found is not None:
                return found
        return None
    disposition = str(part.get("Content-Disposition", "")).lower()
    return part if ctype == wanted and not disposition.startswith("attachment") else None
