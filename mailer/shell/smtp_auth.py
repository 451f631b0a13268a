"""SMTP AUTH: log in with the first mechanism both sides know, keeping none of the server's words,
and the forms in which a password comes back from a server that echoes the AUTH argument."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Iterable

from mailer.errors import TransportError

# in order of preference: smtplib can do these with a user name and password (CRAM-MD5 last: it
# needs the server to keep the password in the clear). XOAUTH2 (a token, not a password) goes here
# once there is a token source, with its own authobject in login().
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")


def login(conn: smtplib.SMTP, *, where: str, username: str, password: str) -> None:
    """AUTH with the first mechanism both sides know. Nothing the server says in reply to AUTH is
    kept: a server may echo the argument, which is the password in base64."""
    if not conn.has_extn("auth"):
        raise TransportError(f"SMTP server {where} does not offer AUTH; unset "
                             "MENTOR_MAILER_SMTP_USERNAME or use another server")
    offered = conn.esmtp_features["auth"].upper().split()
    usable = [m for m in MECHANISMS if m in offered]
    if not usable:
        raise TransportError(
            f"SMTP server {where} offers AUTH {' '.join(offered) or '(no mechanism)'} only, and "
            f"mentor-mailer logs in with {', '.join(MECHANISMS[:-1])} or {MECHANISMS[-1]}; ask the provider "
            "to enable one of them (over TLS), or use another server")
    conn.user, conn.password = username, password
    mechanism = usable[0]
    answer = getattr(conn, f"auth_{mechanism.lower().replace('-', '_')}")  # smtplib's auth_plain, ...
    try:
        conn.auth(mechanism, answer)
    except smtplib.SMTPAuthenticationError as exc:
        code = exc.smtp_code
        if 400 <= code < 500:
            raise TransportError(f"SMTP server {where} could not check the login for {username} "
                                 f"just now: {code}; the next run tries again",
                                 deferred=True) from None
        raise TransportError(f"SMTP server {where} refused the login for {username}: {code} "
                             "(its words are not kept: they may echo the password); check "
                             "MENTOR_MAILER_SMTP_USERNAME and MENTOR_MAILER_SMTP_PASSWORD") from None
    except smtplib.SMTPResponseException as exc:
        raise smtplib.SMTPServerDisconnected(f"unexpected reply to AUTH (code {exc.smtp_code})") from None


def secret_forms(username: str | None, password: str | None) -> list[str]:
    """The password as it can come back from a server that echoes AUTH: plain, and base64 of the
    PLAIN, LOGIN and XOAUTH2 arguments, padded and not, longest first so none is left half-replaced."""
    if not password:
        return []
    user = (username or "").encode("utf-8")
    secret = password.encode("utf-8")
    raw: Iterable[bytes] = (
        secret,
        b"\0" + user + b"\0" + secret,  # PLAIN, as smtplib sends it
        user + b"\0" + user + b"\0" + secret,  # PLAIN with an authorisation identity
        b"user=" + user + b"\x01auth=Bearer " + secret + b"\x01\x01",  # XOAUTH2
    )
    forms = {password}
    for value in (*raw, user):  # LOGIN sends the user name and the password on their own lines
        if value:
            encoded = base64.b64encode(value).decode("ascii")
            forms |= {encoded, encoded.rstrip("=")}
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)
