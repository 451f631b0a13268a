"""The coordinator's mailbox, read without a trace: a Maildir or an IMAP folder (IMAPClient), moved from on request.

Reading never changes a message: IMAP fetches with BODY.PEEK[] (no \\Seen), a Maildir file is only
read. `move_processed` is the one change, and the use case calls it only for the program's own mail,
after the ledger has committed its effect. Every message has a stable identity: the mailbox's name,
UIDVALIDITY and UID (for a Maildir, 0 and the file's unique name).
"""

from __future__ import annotations

import os
import shlex
import socket
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit

from mailer.errors import ConfigError, MailerError
from mailer.shell.settings import Settings
from mailer.shell.smtp import is_loopback

if TYPE_CHECKING:
    from imapclient import IMAPClient

_FETCH_BATCH = 25  # messages per FETCH: bounded memory with large attachments, few round trips


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


# --- IMAP ------------------------------------------------------------------------------------------------

class ImapMailbox:
    """One IMAP folder over TLS (imaps, or imap with STARTTLS; plaintext only on a loopback address)."""

    def __init__(self, spec: InboxSpec, settings: Settings) -> None:
        self.spec = spec
        self.name = spec.name
        self.where = f"{spec.host}:{spec.port}"
        self.processed = settings.inbox_processed
        self._password = settings.imap_password.get_secret_value() if settings.imap_password else None
        self._token: str | None = None
        self._client = self._connect(settings)
        self.uidvalidity = self._select()

    def _scrub(self, text: str) -> str:
        """No error that leaves here carries the password or the token, whatever a server echoes."""
        for secret in (self._password, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _tls_context(self, ca_file: Path | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()  # verifies the certificate and the host name
        if ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"MENTOR_MAILER_IMAP_CA_FILE {ca_file}: cannot load it: {exc}") from None
        return ctx

    def _connect(self, settings: Settings) -> IMAPClient:
        from imapclient import IMAPClient  # imported here: only `inbox` needs it
        from imapclient.exceptions import IMAPClientError, LoginError

        spec = self.spec
        ctx = self._tls_context(settings.imap_ca_file)
        try:
            client = IMAPClient(spec.host, spec.port, ssl=spec.scheme == "imaps", ssl_context=ctx,
                                timeout=settings.imap_timeout)
        except ssl.SSLError as exc:
            raise MailboxError(f"TLS with IMAP server {self.where} failed: {exc.reason or exc}") from None
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(f"IMAP server {self.where} cannot be reached: {_describe(exc)}") from None
        try:
            if spec.scheme == "imap":
                if client.has_capability("STARTTLS"):
                    client.starttls(ctx)
                elif not is_loopback(spec.host):
                    raise MailboxError(f"IMAP server {self.where} does not offer STARTTLS; refusing to log in in "
                                       "plaintext (use imaps:// if it speaks TLS from the start)")
            if settings.oauth2_token_command:
                self._token = oauth2_token(settings.oauth2_token_command)
                client.oauth2_login(spec.user, self._token)
            elif self._password is None:
                raise ConfigError(f"MENTOR_MAILER_IMAP_PASSWORD is not set for {spec.user} at {self.where} "
                                  "(or set MENTOR_MAILER_OAUTH2_TOKEN_COMMAND for XOAUTH2)")
            else:
                client.login(spec.user, self._password)
        except LoginError as exc:
            _quietly_close(client)
            raise MailboxError(self._scrub(
                f"IMAP server {self.where} refused the login for {spec.user}: {_text(exc)}")) from None
        except ssl.SSLError as exc:
            _quietly_close(client)
            raise MailboxError(f"TLS with IMAP server {self.where} failed: {exc.reason or exc}") from None
        except (OSError, IMAPClientError) as exc:
            _quietly_close(client)
            raise MailboxError(self._scrub(f"IMAP server {self.where}: {_describe(exc)}")) from None
        except BaseException:
            _quietly_close(client)
            raise
        return client

    def _select(self) -> int:
        from imapclient.exceptions import IMAPClientError

        try:
            info = self._client.select_folder(self.spec.folder)
        except (OSError, IMAPClientError) as exc:
            self.close()
            raise MailboxError(f"IMAP server {self.where}: folder {self.spec.folder!r} cannot be opened: "
                               f"{_describe(exc)}") from None
        return int(info.get(b"UIDVALIDITY", 0))

    def _call(self, what: str, func: object, *args: object) -> object:
        from imapclient.exceptions import IMAPClientError

        try:
            return func(*args)  # type: ignore[operator]
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(self._scrub(f"IMAP server {self.where}: {what} failed: {_describe(exc)}")) from None

    def refs(self) -> list[MessageRef]:
        uids = self._call("SEARCH", self._client.search, ["NOT", "DELETED"])
        assert isinstance(uids, list)
        return [MessageRef(self.name, self.uidvalidity, str(uid)) for uid in sorted(uids)]

    def fetch(self, refs: Sequence[MessageRef]) -> Iterator[tuple[MessageRef, bytes]]:
        mine = [r for r in refs if r.uidvalidity == self.uidvalidity]  # a stale UID may name another message now
        for start in range(0, len(mine), _FETCH_BATCH):
            batch = mine[start:start + _FETCH_BATCH]
            # BODY.PEEK[]: RFC 3501 says it never sets \Seen, unlike BODY[] and RFC822
            answer = self._call("FETCH", self._client.fetch, [int(r.uid) for r in batch], ["BODY.PEEK[]"])
            assert isinstance(answer, dict)
            for ref in batch:
                data = answer.get(int(ref.uid), {}).get(b"BODY[]")
                if isinstance(data, bytes):
                    yield ref, data

    def target_folder(self) -> str:
        delimiter = "/"
        listed = self._call("LIST", self._client.list_folders, "", "")
        if isinstance(listed, list) and listed and listed[0][1]:
            found = listed[0][1]
            delimiter = found.decode() if isinstance(found, bytes) else str(found)
        return delimiter.join(p for p in self.processed.split("/") if p)

    def move_processed(self, refs: Sequence[MessageRef]) -> None:
        uids = [int(r.uid) for r in refs if r.uidvalidity == self.uidvalidity]
        if not uids:
            return
        target = self.target_folder()
        if not self._call("LIST", self._client.folder_exists, target):
            self._call("CREATE", self._client.create_folder, target)
        if self._client.has_capability("MOVE"):
            self._call("MOVE", self._client.move, uids, target)
            return
        # without MOVE (RFC 6851): copy, mark, and expunge only these UIDs, never others marked \Deleted
        self._call("COPY", self._client.copy, uids, target)
        if self._client.has_capability("UIDPLUS"):
            self._call("STORE", self._client.delete_messages, uids)
            self._call("UID EXPUNGE", self._client.uid_expunge, uids)

    def close(self) -> None:
        _quietly_close(self._client)


def oauth2_token(command: str) -> str:
    """The access token the coordinator's command prints (XOAUTH2); errors name the setting, never the token."""
    where = "MENTOR_MAILER_OAUTH2_TOKEN_COMMAND"
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, timeout=120, check=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot run {command!r}: {getattr(exc, 'strerror', None) or exc}") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where}: {command!r} printed no token within 120 seconds") from None
    if done.returncode != 0:
        raise ConfigError(f"{where}: {command!r} failed with exit status {done.returncode}")
    token = done.stdout.decode("utf-8", "replace").strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"{where}: {command!r} must print the access token alone on one line")
    return token


def _text(exc: BaseException) -> str:
    text = str(exc)
    return text.removeprefix("b'").removesuffix("'") or type(exc).__name__


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out waiting for the server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return _text(exc)


def _quietly_close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the connection may be gone already; closing is best effort
        try:
            client.shutdown()
        except Exception:  # nothing more to do with a dead socket
            return
