"""Where messages go: an outbox folder in Maildir layout (the default); SMTP lives in smtp.py."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from mailer.errors import TransportError


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one message ended: `state` is a ledger state, `detail` the server's words or the file."""

    state: str
    detail: str | None = None


class Transport(Protocol):
    """Takes built messages; each call returns how that one message ended."""

    def send(self, key: str, due_at: datetime, sender: str, recipients: list[str], data: bytes) -> Delivery: ...

    def close(self) -> None: ...


def maildir_name(key: str, due_at: datetime) -> str:
    """A deterministic Maildir file name: a rerun rewrites the same file instead of adding one."""
    stamp = due_at.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    readable = re.sub(r"[^A-Za-z0-9._-]+", ".", key)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    return f"{stamp}.{readable}.{digest}.eml"


class Outbox:
    """A Maildir (tmp/, new/, cur/): each message is written to tmp/, fsynced, renamed into new/."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            for sub in ("tmp", "new", "cur"):
                (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.root, 0o700)
        except OSError as exc:
            raise TransportError(f"outbox {self.root}: cannot create it: {exc.strerror}") from None

    def send(self, key: str, due_at: datetime, sender: str, recipients: list[str], data: bytes) -> Delivery:
        name = maildir_name(key, due_at)
        tmp, final = self.root / "tmp" / name, self.root / "new" / name
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                # Maildir files use the local line ending; the SMTP form (CRLF) is for the wire
                f.write(data.replace(b"\r\n", b"\n"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            raise TransportError(f"outbox {self.root}: cannot write {name}: {exc.strerror}") from None
        return Delivery("sent", f"new/{name}")

    def close(self) -> None:
        pass
