"""Tolerant reading of a message's headers and parts: bad charsets, broken encodings and odd folding never raise."""

from __future__ import annotations

import email.header
import email.utils
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message

MAX_TEXT = 1_000_000  # a text part larger than this is read only this far: replies, reports and ICS are small

_ID_RE = re.compile(r"<[^<>\s]{1,250}@[^<>\s]{1,250}>")
_QUOTED_ID_RE = re.compile(r"^[ \t>]*(?:Message-ID|Original-Message-ID)[ \t]*:[ \t]*(<[^<>\s]+>)",
                           re.IGNORECASE | re.MULTILINE)
_QUOTED_KEY_RE = re.compile(r"^[ \t>]*X-Mentor-Mailer-Key[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def header(msg: Message, name: str) -> str:
    """A header's value decoded to one line ('' when absent); RFC 2047 words in unknown charsets become U+FFFD."""
    raw = msg.get(name)
    return decode(raw) if raw is not None else ""


def headers(msg: Message, name: str) -> list[str]:
    return [decode(v) for v in msg.get_all(name) or []]


def decode(raw: object) -> str:
    """One header value as text, unfolded; never raises."""
    if isinstance(raw, email.header.Header):
        raw = str(raw)
    text = str(raw)
    try:
        chunks = email.header.decode_header(text)
    except Exception:  # a malformed encoded word: keep the raw text
        return _one_line(text)
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            out.append(_bytes_to_text(chunk, charset))
        else:
            out.append(chunk)
    return _one_line("".join(out))


def _one_line(text: str) -> str:
    return " ".join(text.replace("\x00", "").split())


def _bytes_to_text(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if candidate:
            try:
                return data.decode(candidate)
            except (LookupError, UnicodeDecodeError):
                continue
    return data.decode("latin-1")  # every byte is a latin-1 character: the last resort cannot fail


def ids(text: str) -> list[str]:
    """Every <local@domain> id in a header such as References or In-Reply-To, in order."""
    return _ID_RE.findall(text)


def quoted_ids(text: str) -> list[str]:
    """Message-ID header lines quoted in a text body (a plain-text bounce returning the headers)."""
    return _QUOTED_ID_RE.findall(text)


def quoted_keys(text: str) -> list[str]:
    return _QUOTED_KEY_RE.findall(text)


def addresses(msg: Message, *names: str) -> list[tuple[str, str]]:
    """(display name, lower-case address) for each address in the named headers; unparsable ones left out."""
    values = [decode(v) for name in names for v in msg.get_all(name) or []]
    try:
        pairs = email.utils.getaddresses(values)
    except Exception:
        return []
    return [(name, addr.lower()) for name, addr in pairs if "@" in addr]


def date(msg: Message) -> datetime | None:
    raw = header(msg, "Date")
    if not raw:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, value)
        value = email.utils.collapse_rfc2231_value(value)
    return str(value)


def filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        return ""
    return decode(name) if name else ""


def walk(msg: Message) -> Iterator[Message]:
    """Every part, depth first, into attached messages too; a broken structure stops the walk, never raises."""
    try:
        yield from msg.walk()
    except Exception:
        return


def payload_bytes(part: Message, limit: int = MAX_TEXT) -> bytes:
    """A leaf part's content, transfer-decoded when the encoding is readable; at most `limit` bytes."""
    if part.is_multipart():
        return b""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        raw = part.get_payload()
        data = raw.encode("utf-8", "replace") if isinstance(raw, str) else b""
    return data[:limit]


def payload_text(part: Message, limit: int = MAX_TEXT) -> str:
    """A leaf part's content as text, in its declared charset when that charset exists, else UTF-8 or latin-1."""
    data = payload_bytes(part, limit)
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return _bytes_to_text(data, charset).replace("\x00", "")


def subparts(part: Message) -> list[Message]:
    """The direct children of a multipart or message/* part (an attached message is one child)."""
    try:
        payload = part.get_payload()
    except Exception:
        return []
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return []
