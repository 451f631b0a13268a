"""Where messages go: an outbox folder in Maildir layout (the default); SMTP lives in smtp.py."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
import time
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
    """A Maildir (tmp/, new/, cur/): each message is written to a fresh file in tmp/, fsynced, renamed into new/.

    The file in tmp/ is created O_CREAT|O_EXCL|O_NOFOLLOW under a name nobody can guess, so a link
    planted in tmp/ is never written through; the rename into new/ replaces whatever is at the final
    name without following it. Opening the outbox removes what earlier runs left in tmp/.
    """

    channel = "outbox"  # a trial: nothing written here has reached anyone

    def __init__(self, root: Path, *, now: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        try:
            for sub in ("tmp", "new", "cur"):
                (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.root, 0o700)
        except OSError as exc:
            raise TransportError(f"outbox {self.root}: cannot create it: {exc.strerror}") from None
        for sub in ("tmp", "new", "cur"):
            if not stat.S_ISDIR(os.lstat(self.root / sub).st_mode):
                raise TransportError(f"outbox {self.root}: {sub}/ is not a folder of its own (a symbolic link?); "
                                     "remove it and run again")
        self.removed = clean_tmp(self.root / "tmp", now=now())

    def send(self, out: Outgoing, before_body: Callable[[], None] | None = None) -> Delivery:
        # no before_body: the file name is fixed per key, so an interrupted write is simply redone
        name = maildir_name(out.key, out.due_at)
        tmp = self.root / "tmp" / f"{name}.{os.getpid()}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
        final = self.root / "new" / name
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise TransportError(f"outbox {self.root}: cannot write {name}: {exc.strerror}", deferred=True) from None
        try:
            with os.fdopen(fd, "wb") as f:
                # Maildir files use the local line ending; the SMTP form (CRLF) is for the wire
                f.write(out.data.replace(b"\r\n", b"\n"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # a full disk must not leave half a message behind
            raise TransportError(f"outbox {self.root}: cannot write {name}: {exc.strerror}", deferred=True) from None
        return Delivery("sent", tuple(out.recipients), detail=f"new/{name}")

    def close(self) -> None:
        pass


_TMP_SUFFIX = ".tmp"
_OURS = re.compile(r"\.eml\.(\d+)\.[0-9a-f]{12}" + re.escape(_TMP_SUFFIX) + r"\Z")
STALE_OURS = 24 * 3600  # a writer that is still alive but this old is not writing any more
STALE_FOREIGN = 36 * 3600  # the Maildir convention for anybody's files in tmp/


def clean_tmp(tmp: Path, *, now: float) -> list[str]:
    """Remove what no writer owns any more from a Maildir's tmp/: our files whose process is gone
    (or older than a day), anyone's older than 36 hours. A sending run holds the run lock, so no
    other run is writing here; the process check also keeps a rehearsal's files alive. Links are
    removed, never followed; folders are left alone."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(tmp))
    except OSError:
        return removed
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            continue
        age = now - st.st_mtime
        ours = _OURS.search(entry.name)
        if (age > STALE_OURS or not _writing(int(ours.group(1)))) if ours else age > STALE_FOREIGN:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed


def _writing(pid: int) -> bool:
    """Can the process that made a tmp/ file still be writing it? Not this one: nothing of ours is
    in flight while an outbox opens (a daemon's earlier runs ran in this same process)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
