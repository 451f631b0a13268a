"""What an inbox is, before it is opened: MENTOR_MAILER_INBOX parsed, a message's place in it, its errors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

from mailer.errors import ConfigError, MailerError


class MailboxError(MailerError):
    """The mailbox cannot be reached, logged into or read; the message names the server, never the password."""


@dataclass(frozen=True, slots=True, order=True)
class MessageRef:
    """Where one message is: mailbox name, UIDVALIDITY and UID, as the ledger keys processed mail."""

    mailbox: str
    uidvalidity: int
    uid: str  # the IMAP UID in decimal, or the Maildir file's unique name (flags left out)


class Mailbox(Protocol):
    """What the inbox use case needs from a mailbox."""

    name: str

    def refs(self) -> list[MessageRef]: ...

    def fetch(self, refs: Sequence[MessageRef]) -> Iterator[tuple[MessageRef, bytes]]: ...

    def move_processed(self, refs: Sequence[MessageRef]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class InboxSpec:
    """MENTOR_MAILER_INBOX, read: a Maildir path, or an IMAP server, user and folder."""

    scheme: Literal["maildir", "imaps", "imap"]
    path: Path | None = None
    user: str = ""
    host: str = ""
    port: int = 0
    folder: str = "INBOX"

    @property
    def name(self) -> str:
        """The mailbox's identity in the ledger (no password, ever)."""
        if self.scheme == "maildir":
            return f"maildir:{self.path}"
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


def parse_inbox(value: str) -> InboxSpec:
    """maildir:PATH, imaps://USER@HOST[:PORT]/FOLDER or imap://... (STARTTLS); a ConfigError names the setting."""
    where = f"MENTOR_MAILER_INBOX {value!r}"
    if value.startswith("maildir:"):
        path = value[len("maildir:"):]
        if not path:
            raise ConfigError(f"{where}: give the Maildir's folder, e.g. maildir:/var/mail/mentoring")
        return InboxSpec("maildir", path=Path(path).expanduser().absolute())
    parts = urlsplit(value)
    if parts.scheme not in ("imaps", "imap"):
        raise ConfigError(f"{where}: expected maildir:PATH, imaps://USER@HOST[:PORT]/FOLDER or imap://...")
    if parts.password is not None:
        raise ConfigError("MENTOR_MAILER_INBOX: put the password in MENTOR_MAILER_IMAP_PASSWORD, not in the URL")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: the port is not a number from 1 to 65535") from None
    if not parts.hostname or not parts.username:
        raise ConfigError(f"{where}: name the user and the server, e.g. imaps://coordinator@imap.example.org/INBOX")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    scheme: Literal["imaps", "imap"] = "imaps" if parts.scheme == "imaps" else "imap"
    return InboxSpec(scheme, user=unquote(parts.username), host=parts.hostname,
                     port=port or (993 if scheme == "imaps" else 143), folder=folder)
