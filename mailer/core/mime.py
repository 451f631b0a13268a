"""MIME bytes built directly: headers encoded per RFC 2047/5322, parts in quoted-printable or base64.

Why not `email.message.EmailMessage`: Python 3.11.7's header folder encodes the comma between two
addresses when a display name is non-ASCII (CPython gh-100884, CVE-2025-1795), so a message to
"Renée Côté, José Muñoz" reaches only Renée; it is also several times slower than this. And Python
3.11.7 lacks the fix for CVE-2024-6923 (a CR or LF in a header value passes through `email`'s folder and
adds a header), so every value is cleaned by `header_safe` before it is written here. The module can go
when the oldest supported Python has both fixes (3.12.9 / 3.13.2 for gh-100884; 3.11.10 / 3.12.5 for
CVE-2024-6923); tests/test_compose.py reports when the running interpreter has both. Parsing the output
back with `email` is what the tests do.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence

CRLF = "\r\n"
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPECIALS = re.compile(r'[()<>@,;:\\".\[\]]')


def header_safe(value: str) -> str:
    """Fold any control character to a space: no roster or cohort text can add a header."""
    return " ".join(_HEADER_UNSAFE.sub(" ", value).split())


def display_name(name: str) -> str:
    """A phrase for an address: as is, quoted, or as RFC 2047 encoded words.

    A name that merely looks like an encoded word ("=?utf-8?q?...=0D=0A...?=") is encoded itself:
    some parsers decode encoded words even inside quotes, and the CR LF would come back.
    """
    if not name:
        return ""
    if name.isascii() and "=?" not in name:
        if _SPECIALS.search(name):
            return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return name
    return encoded_words(name)


def encoded_words(text: str) -> str:
    """RFC 2047 B-encoded words of at most 75 characters, split between characters, never inside one,
    and joined by folding white space (which decoders drop between encoded words)."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        n = len(char.encode("utf-8"))
        if size + n > 45:  # 45 bytes -> 60 base64 characters -> a 72-character word
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += n
    words.append("".join(chunk))
    return (CRLF + " ").join(
        "=?utf-8?b?" + binascii.b2a_base64(w.encode("utf-8"), newline=False).decode("ascii") + "?=" for w in words)


def address(name: str, addr: str) -> str:
    phrase = display_name(name)
    return f"{phrase} <{addr}>" if phrase else addr


def address_list(items: Sequence[tuple[str, str]]) -> str:
    """Addresses joined one per folded line, so no folding algorithm ever splits one."""
    return ("," + CRLF + " ").join(address(n, a) for n, a in items)


def unstructured(name: str, value: str) -> str:
    """A Subject-like header value, folded at 78 and encoded only when it needs to be."""
    # text that merely looks like an encoded word is encoded itself, so no client decodes it
    # a word too long for any line (RFC 5322: 998) can only be split as encoded words
    if not value.isascii() or "=?" in value or max(map(len, value.split(" ")), default=0) > 990 - len(name):
        return encoded_words(value)
    return _fold_words(value, first=78 - len(name) - 2)


def _fold_words(value: str, *, first: int) -> str:
    """Fold plain ASCII at spaces so lines stay near 78; a word longer than that stays whole on its
    line (RFC 5322 allows 998), and the first word always stays on the header's own line."""
    lines: list[str] = []
    current = ""
    limit = first
    for word in value.split(" "):
        if current and len(current) + 1 + len(word) > limit:
            lines.append(current)
            current, limit = word, 77
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return (CRLF + " ").join(lines)


def qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends: readable in any client, safe for 7-bit relays."""
    body = text.replace("\r\n", "\n").encode("utf-8")
    return binascii.b2a_qp(body, istext=True).replace(b"\n", b"\r\n")


def b64(data: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76)) + b"\r\n"


def leaf(content_type: str, body: bytes, *, encoding: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """One non-multipart part: its headers and its already-encoded body."""
    head = [f"Content-Type: {content_type}", f"Content-Transfer-Encoding: {encoding}"]
    head += [f"{k}: {v}" for k, v in extra]
    return (CRLF.join(head) + CRLF + CRLF).encode("ascii") + body


def text(subtype: str, content: str) -> bytes:
    return leaf(f'text/{subtype}; charset="utf-8"', qp(content), encoding="quoted-printable")


def multipart(subtype: str, boundary: str, parts: Sequence[bytes]) -> bytes:
    sep = f"--{boundary}".encode("ascii")
    out = [f'Content-Type: multipart/{subtype};{CRLF} boundary="{boundary}"{CRLF}{CRLF}'.encode("ascii")]
    for part in parts:
        out += [sep, b"\r\n", part if part.endswith(b"\r\n") else part + b"\r\n"]
    out += [sep, b"--\r\n"]
    return b"".join(out)


def message(headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    """A whole message: the given header fields, MIME-Version, then the body part (with its headers)."""
    head = "".join(f"{k}: {v}{CRLF}" for k, v in headers) + "MIME-Version: 1.0" + CRLF
    return head.encode("ascii") + body
