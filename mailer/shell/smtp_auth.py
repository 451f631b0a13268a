"""SMTP AUTH: log in with the first mechanism both sides know (or XOAUTH2 with a token), keeping none of the
server's words, and the forms in which a secret comes back from a server that echoes the AUTH argument."""

from __future__ import annotations

import base64
import shlex
import smtplib
import subprocess
from collections.abc import Iterable

from mailer.errors import ConfigError, TransportError

# in order of preference: smtplib can do these with a user name and password (CRAM-MD5 last: it
# needs the server to keep the password in the clear). XOAUTH2 takes a token instead: login_xoauth2().
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
TOKEN_SETTING = "MENTOR_MAILER_OAUTH2_TOKEN_COMMAND"  # noqa: S105 (a setting's name, not a secret)


def oauth2_token(command: str) -> str:
    """The access token the coordinator's command prints (XOAUTH2, for IMAP and SMTP); errors name the
    setting, never the token."""
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, timeout=120, check=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{TOKEN_SETTING}: cannot run {command!r}: {getattr(exc, 'strerror', None) or exc}") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{TOKEN_SETTING}: {command!r} printed no token within 120 seconds") from None
    if done.returncode != 0:
        raise ConfigError(f"{TOKEN_SETTING}: {command!r} failed with exit status {done.returncode}")
    token = done.stdout.decode("utf-8", "replace").strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"{TOKEN_SETTING}: {command!r} must print the access token alone on one line")
    return token


def login_xoauth2(conn: smtplib.SMTP, *, where: str, username: str, token: str) -> None:
    """AUTH XOAUTH2 (Google, Microsoft 365): the user name and a bearer token, no password. A refused token
    comes with a base64 JSON challenge; the empty answer RFC 7628 asks for then gets the final refusal."""
    offered = conn.esmtp_features.get("auth", "").upper().split() if conn.has_extn("auth") else []
    if "XOAUTH2" not in offered:
        raise TransportError(f"SMTP server {where} does not offer AUTH XOAUTH2 (it offers "
                             f"{' '.join(offered) or 'no AUTH'}); unset {TOKEN_SETTING} to log in with a password")
    argument = f"user={username}\x01auth=Bearer {token}\x01\x01"
    answers = iter((argument, ""))

    def answer(challenge: bytes | None = None) -> str:
        return next(answers, "")

    try:
        conn.auth("XOAUTH2", answer, initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as exc:
        if 400 <= exc.smtp_code < 500:
            raise TransportError(f"SMTP server {where} could not check the token for {username} just now: "
                                 f"{exc.smtp_code}; the next run tries again", deferred=True) from None
        raise TransportError(f"SMTP server {where} refused the OAuth2 token for {username}: {exc.smtp_code} "
                             f"(check the account, the app's SMTP.Send or mail scope, and {TOKEN_SETTING})") from None
    except smtplib.SMTPResponseException as exc:
        raise smtplib.SMTPServerDisconnected(f"unexpected reply to AUTH (code {exc.smtp_code})") from None


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
