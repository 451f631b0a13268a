"""Where messages go: an outbox folder in Maildir layout (the default); SMTP lives in smtp.py."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from mailer.errors import TransportError


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One built message and its envelope."""

    key: str
    due_at: datetime
    sender: str
    recipients: list[str]
    data: bytes  # wire form, CRLF line ends


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one message ended: a ledger state, the recipients that took it, those that refused it
    for good (with the server's reply), and the last reply or where the file went."""

    state: str  # sent | deferred | failed | uncertain
    delivered: tuple[str, ...] = ()
    refused: dict[str, str] = field(default_factory=dict)
    detail: str | None = None
    attempts: int = 1


class Transport(Protocol):
    """Takes built messages; each call returns how that one message ended.

    A transport raises TransportError only when it cannot go on at all (no server, bad TLS,
    failed login); a problem with one message or recipient is a Delivery. `channel` says whether what it
    takes reaches people ("smtp") or a folder ("outbox").
    """

    channel: str

    def send(self, out: Outgoing, before_body: Callable[[], None] | None = None) -> Delivery:
        """Deliver `out`; call `before_body` just before the body goes out (the ledger's mark)."""
        ...

    def close(self) -> None: ...


def maildir_name(key: str, due_at: datetime) -> str:
    """A deterministic Maildir file name: a rerun rewrites the same file instead of adding one."""
    stamp = due_at.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    readable = re.sub(r"[^A-Za-z0-9._-]+", ".", key)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    return f"{stamp}.{readable}.{digest}.eml"


class Outbox:
    """A Maildir (tmp/, new/, cur/): each message is written to tmp/, fsynced, renamed into new/."""

    channel = "outbox"  # a trial: nothing written here has reached anyone

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            for sub in ("tmp", "new", "cur"):
                (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.root, 0o700)
        except OSError as exc:
            raise TransportError(f"outbox {self.root}: cannot create it: {exc.strerror}") from None

    def send(self, out: Outgoing, before_body: Callable[[], None] | None = None) -> Delivery:
        # no before_body: the file name is fixed per key, so an interrupted write is simply redone
        name = maildir_name(out.key, out.due_at)
        data = out.data
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
            raise TransportError(f"outbox {self.root}: cannot write {name}: {exc.strerror}", deferred=True) from None
        return Delivery("sent", tuple(out.recipients), detail=f"new/{name}")

    def close(self) -> None:
        pass
