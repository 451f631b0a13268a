"""The coordinator's mailbox, read without a trace: MENTOR_MAILER_INBOX, a Maildir here or an IMAP folder (imap.py).

Reading never changes a message: IMAP fetches with BODY.PEEK[] (no \\Seen), a Maildir file is only
read. `move_processed` is the one change, and the use case calls it only for the program's own mail,
after the ledger has committed its effect. Every message has a stable identity: the mailbox's name,
UIDVALIDITY and UID (for a Maildir, 0 and the file's unique name).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from mailer.errors import ConfigError
from mailer.shell.inbox_spec import InboxSpec as InboxSpec  # the names callers import from here
from mailer.shell.inbox_spec import Mailbox as Mailbox
from mailer.shell.inbox_spec import MailboxError as MailboxError
from mailer.shell.inbox_spec import MessageRef as MessageRef
from mailer.shell.inbox_spec import parse_inbox as parse_inbox
from mailer.shell.settings import Settings


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
