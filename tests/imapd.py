"""A real IMAP server for tests, as a pytest plugin: Debian's Dovecot on 127.0.0.1 from a private config.

Load it with ``pytest_plugins = ["tests.imapd"]``. Fixtures:

- ``imapd`` (session): one Dovecot, with a STARTTLS port and an implicit-TLS port, a certificate
  from a test CA (``imapd.ca_file``) for "localhost" and "127.0.0.1"; any user name logs in with
  ``IMAP_PASSWORD`` (PLAIN, LOGIN) or with ``imapd.oauth2_token(user)`` (XOAUTH2, OAUTHBEARER: a
  JWT Dovecot checks locally), and each name has its own empty Maildir, so tests never share mail;
- ``imapd_private``: a Dovecot of one test's own, for failed logins (see its docstring);
- ``imapd_plain``: a Dovecot of one test's own that speaks no TLS;
- ``imap_user``: a fresh user name for one test.

Dovecot refuses to run its login processes as root, so when the tests run as root (CI) the login,
internal and mail users are nobody/nogroup and the login and anvil services run without a chroot;
otherwise they are the current user. Every path lives under a short /tmp folder (socket paths
have a length limit); the server is stopped, and the folder removed, in a ``finally``.

PYTEST_DONT_REWRITE: its asserts are internal checks.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import hashlib
import hmac
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from imapclient import IMAPClient

__all__ = ["IMAP_HOST", "IMAP_PASSWORD", "OAUTH2_KEY", "Imapd", "imap_user", "imapd", "imapd_plain", "imapd_private",
           "serve"]

IMAP_HOST = "127.0.0.1"
IMAP_PASSWORD = "imap-test-password-7f3c"  # distinctive, so tests can look for it in output; no spaces (passdb args)
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
_START_SECONDS = 60.0  # generous: the machine may be loaded; the wait ends as soon as the server greets
_users = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((IMAP_HOST, 0))
        return int(s.getsockname()[1])


def _accounts() -> tuple[str, str]:
    if os.geteuid() == 0:
        return "nobody", "nogroup" if _group_exists("nogroup") else "nobody"
    return pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = mm-imapd-{port}
protocols = imap
listen = 127.0.0.1
log_path = {root}/log
ssl = {ssl}
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
first_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}
passdb {{
  driver = static
  mechanisms = plain login
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


_OAUTH2 = """\
introspection_mode = local
local_validation_key_dict = fs:posix:prefix={root}/keys/
username_attribute = sub
"""
OAUTH2_KEY = b"test-oauth2-signing-key-0123456789abcdef"  # HS256; Dovecot validates tokens locally with it


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Imapd:
    """A running Dovecot; see the module docstring."""

    root: Path
    port: int
    tls_port: int
    ca_file: Path
    host: str = IMAP_HOST
    password: str = IMAP_PASSWORD
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def connect(self, user: str) -> IMAPClient:
        """A logged-in client (STARTTLS, verified against the test CA) for setting a test up or checking it."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        client = IMAPClient(self.host, self.port, ssl=False, timeout=30)
        try:
            client.starttls(ctx)
            client.login(user, self.password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def append(self, user: str, messages: Sequence[bytes], folder: str = "INBOX",
               flags: Sequence[bytes] = ()) -> None:
        """Puts messages into a folder by IMAP APPEND, as a mail server would deliver them."""
        client = self.connect(user)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for data in messages:
                client.append(folder, data, flags=flags)
        finally:
            client.logout()

    def oauth2_token(self, user: str, *, key: bytes = OAUTH2_KEY, lifetime: int = 600) -> str:
        """An access token (a JWT signed with HS256) this server accepts for `user` over XOAUTH2."""
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        now = int(time.time())
        claims = _b64url(json.dumps({"sub": user, "iat": now, "nbf": now, "exp": now + lifetime}).encode())
        signature = _b64url(hmac.new(key, f"{header}.{claims}".encode(), hashlib.sha256).digest())
        return f"{header}.{claims}.{signature}"

    def log(self) -> str:
        try:
            return (self.root / "log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def _wait_for_greeting(server: Imapd) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while True:
        assert server.process is not None
        if server.process.poll() is not None:
            raise RuntimeError(f"dovecot exited with {server.process.returncode}:\n{server.log()}")
        try:
            with socket.create_connection((server.host, server.port), timeout=5) as conn:
                if conn.recv(64).startswith(b"* OK"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"dovecot did not greet within {_START_SECONDS:.0f} s:\n{server.log()}")
        time.sleep(0.05)  # polling a condition (the greeting), not waiting for luck


def _start(root: Path, ca_file: Path, tls: bool) -> Imapd:
    user, group = _accounts()
    for attempt in range(5):  # a free port can be taken by another process before dovecot binds it
        server = Imapd(root, _free_port(), _free_port() if tls else 0, ca_file)  # port 0: no TLS listener
        (root / "dovecot.conf").write_text(_CONFIG.format(
            root=root, port=server.port, tls_port=server.tls_port, user=user, group=group,
            password=IMAP_PASSWORD, ssl="yes" if tls else "no"), encoding="utf-8")
        (root / "log").unlink(missing_ok=True)
        server.process = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_for_greeting(server)
            return server
        except RuntimeError:
            _stop(server)
            if "in use" not in server.log() or attempt == 4:
                raise
    raise AssertionError("unreachable")


def _stop(server: Imapd) -> None:
    process = server.process
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the master and all its children
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@contextlib.contextmanager
def serve(*, tls: bool = True) -> Iterator[Imapd]:
    """Starts a Dovecot in its own /tmp folder; stops it and removes the folder on the way out. Without
    `tls` it speaks plaintext only: no STARTTLS, no implicit-TLS port."""
    if not os.path.exists(DOVECOT):
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd; .ci/run does it)")
    root = Path(tempfile.mkdtemp(prefix="mmimap-", dir="/tmp"))  # short: unix socket paths are limited
    server: Imapd | None = None
    try:
        os.chmod(root, 0o755)  # noqa: S103 -- the mail user (nobody) must reach its Maildir below
        user, group = _accounts()
        (root / "mail").mkdir()
        shutil.chown(root / "mail", user, group)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", IMAP_HOST)
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(root / "cert.pem"), append=True)
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        (root / "oauth2.conf.ext").write_text(_OAUTH2.format(root=root), encoding="utf-8")
        # looked up as <azp>/<alg>/<kid>, "default" for the missing ones; the key base64-encoded
        (root / "keys" / "default" / "HS256").mkdir(parents=True)
        (root / "keys" / "default" / "HS256" / "default").write_bytes(base64.b64encode(OAUTH2_KEY))
        server = _start(root, root / "ca.pem", tls)
        yield server
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def imapd() -> Iterator[Imapd]:
    """One Dovecot for the session; each test takes its own user (and so its own Maildir)."""
    with serve() as server:
        yield server


@pytest.fixture
def imapd_private() -> Iterator[Imapd]:
    """A Dovecot of this test's own: for failed logins, after which Dovecot delays the next logins from
    that address by seconds (its auth penalty), which would slow every later test."""
    with serve() as server:
        yield server


@pytest.fixture
def imapd_plain() -> Iterator[Imapd]:
    """A Dovecot without TLS at all, as a local bridge (Proton Bridge, DavMail) would be."""
    with serve(tls=False) as server:
        yield server


@pytest.fixture
def imap_user(imapd: Imapd) -> str:
    """A user name no other test has used: an empty mailbox."""
    return f"coordinator{os.getpid()}x{next(_users)}"
