"""The coordinator's mailbox, read without a trace: MENTOR_MAILER_INBOX, a Maildir here or an IMAP folder (imap.py).

Reading never changes a message: IMAP fetches with BODY.PEEK[] (no \\Seen), a Maildir file is only
read. `move_processed` is the one change, and the use case calls it only for the program's own mail,
after the ledger has committed its effect. Every message has a stable identity: the mailbox's name,
UIDVALIDITY and UID (for a Maildir, 0 and the file's unique name).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

from mailer.errors import ConfigError, MailerError
from mailer.shell.settings import Settings


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


def open_mailbox(settings: Settings) -> Mailbox:
    """The mailbox MENTOR_MAILER_INBOX names, connected and ready."""
    if not settings.inbox:
        raise ConfigError("MENTOR_MAILER_INBOX is not set: name a Maildir (maildir:PATH) or an IMAP folder "
                          "(imaps://USER@HOST/INBOX)")
    spec = parse_inbox(settings.inbox)
    if spec.scheme == "maildir":
        return MaildirMailbox(spec, processed=settings.inbox_processed)
    from mailer.shell.imap import ImapMailbox  # imported here: IMAPClient loads only for an IMAP inbox

    return ImapMailbox(spec, settings)


# --- Maildir ---------------------------------------------------------------------------------------------

class MaildirMailbox:
    """A Maildir; processed mail goes to a Maildir++ subfolder (".mentor-mailer.processed")."""

    def __init__(self, spec: InboxSpec, *, processed: str) -> None:
        assert spec.path is not None
        self.path = spec.path
        self.name = spec.name
        if not all((self.path / d).is_dir() for d in ("cur", "new", "tmp")):
            raise ConfigError(f"MENTOR_MAILER_INBOX maildir:{self.path}: not a Maildir (it needs cur/, new/ and tmp/)")
        self.target = self.path / ("." + ".".join(p for p in processed.split("/") if p))
        self._files: dict[str, Path] = {}

    def refs(self) -> list[MessageRef]:
        self._files = {}
        for sub in ("new", "cur"):
            with os.scandir(self.path / sub) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_file():
                        continue
                    self._files[entry.name.split(":", 1)[0]] = Path(entry.path)
        return sorted(MessageRef(self.name, 0, uid) for uid in self._files)

    def fetch(self, refs: Sequence[MessageRef]) -> Iterator[tuple[MessageRef, bytes]]:
        for ref in refs:
            path = self._files.get(ref.uid)
            try:
                data = path.read_bytes() if path is not None else None
            except FileNotFoundError:  # another reader moved it meanwhile: nothing to do with it now
                data = None
            if data is not None:
                yield ref, data

    def move_processed(self, refs: Sequence[MessageRef]) -> None:
        for sub in ("cur", "new", "tmp"):
            (self.target / sub).mkdir(parents=True, exist_ok=True)
        (self.target / "maildirfolder").touch()  # Maildir++ marks a subfolder so
        for ref in refs:
            path = self._files.get(ref.uid)
            if path is None:
                continue
            # same subdirectory and the same file name: flags and \Seen state stay as they were
            try:
                os.replace(path, self.target / path.parent.name / path.name)
            except FileNotFoundError:
                continue

    def close(self) -> None:
        self._files = {}
