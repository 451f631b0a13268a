"""An IMAP folder as the inbox (IMAPClient): TLS verified, BODY.PEEK[] only, XOAUTH2 via a token command."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mailer.errors import ConfigError
from mailer.shell.inbox_spec import InboxSpec, MailboxError, MessageRef
from mailer.shell.settings import Settings
from mailer.shell.smtp_auth import oauth2_token
from mailer.shell.smtp_replies import is_loopback

if TYPE_CHECKING:
    from imapclient import IMAPClient

_FETCH_BATCH = 25  # messages per FETCH: bounded memory with large attachments, few round trips


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
        from imapclient.exceptions import IMAPClientError  # imported here: only `inbox` needs IMAPClient

        try:
            info = self._client.select_folder(self.spec.folder)
        except (OSError, IMAPClientError) as exc:
            self.close()
            raise MailboxError(f"IMAP server {self.where}: folder {self.spec.folder!r} cannot be opened: "
                               f"{_describe(exc)}") from None
        return int(info.get(b"UIDVALIDITY", 0))

    def _call(self, what: str, func: object, *args: object) -> object:
        from imapclient.exceptions import IMAPClientError  # imported here: only `inbox` needs IMAPClient

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
