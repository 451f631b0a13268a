"""The mailbox against real parts: a Maildir in tmp_path and Dovecot on 127.0.0.1 (IMAPS, STARTTLS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.errors import ConfigError
from mailer.shell.imap import ImapMailbox, oauth2_token
from mailer.shell.mailbox import InboxSpec, MailboxError, MaildirMailbox, open_mailbox, parse_inbox
from mailer.shell.settings import Settings
from tests.imapd import IMAP_PASSWORD, Imapd


def mail(n: int) -> bytes:
    return (f"From: someone{n}@example.org\r\nTo: coordinator@example.org\r\nSubject: message {n}\r\n"
            f"Message-ID: <m{n}@example.org>\r\n\r\nbody {n}\r\n").encode()


def imap_settings(imapd: Imapd, user: str, *, scheme: str = "imaps", password: str = IMAP_PASSWORD,
                  ca: bool = True, **extra: object) -> Settings:
    port = imapd.tls_port if scheme == "imaps" else imapd.port
    return Settings(inbox=f"{scheme}://{user}@{imapd.host}:{port}/INBOX", imap_password=password,  # type: ignore[arg-type]
                    imap_ca_file=imapd.ca_file if ca else None, _env_file=None, **extra)  # type: ignore[call-arg]


@pytest.mark.parametrize(("value", "spec"), [
    ("maildir:/var/mail/m", InboxSpec("maildir", path=Path("/var/mail/m"))),
    ("imaps://coord@imap.example.org/INBOX", InboxSpec("imaps", user="coord", host="imap.example.org", port=993)),
    ("imap://c%40example.org@imap.example.org:1143/Lists%2FMentoring",
     InboxSpec("imap", user="c@example.org", host="imap.example.org", port=1143, folder="Lists/Mentoring")),
    ("imaps://coord@example.org@imap.example.org", InboxSpec("imaps", user="coord@example.org",
                                                              host="imap.example.org", port=993)),
])
def test_parse_inbox(value: str, spec: InboxSpec) -> None:
    assert parse_inbox(value) == spec


@pytest.mark.parametrize(("value", "words"), [
    ("pop3://a@b/INBOX", "expected maildir:PATH"),
    ("imaps://imap.example.org/INBOX", "name the user"),
    ("imaps://a:hunter2@imap.example.org/INBOX", "MENTOR_MAILER_IMAP_PASSWORD"),
    ("imaps://a@imap.example.org:99999/INBOX", "port"),
    ("maildir:", "Maildir's folder"),
])
def test_parse_inbox_refuses(value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        parse_inbox(value)
    assert "hunter2" not in str(info.value)


def make_maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    return root


def test_maildir_reads_without_changing_and_moves_to_a_maildirpp_subfolder(tmp_path: Path) -> None:
    box = make_maildir(tmp_path / "Maildir")
    (box / "new" / "1700000000.a.host").write_bytes(mail(1))
    (box / "cur" / "1700000001.b.host:2,S").write_bytes(mail(2))
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in box.rglob("*") if p.is_file()}
    mailbox = open_mailbox(Settings(inbox=f"maildir:{box}", _env_file=None))  # type: ignore[call-arg]
    refs = mailbox.refs()
    assert [r.uid for r in refs] == ["1700000000.a.host", "1700000001.b.host"]
    assert dict(mailbox.fetch(refs)) == {refs[0]: mail(1), refs[1]: mail(2)}
    assert before == {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in box.rglob("*") if p.is_file()}
    mailbox.move_processed([refs[1]])
    assert (box / ".mentor-mailer.processed" / "cur" / "1700000001.b.host:2,S").read_bytes() == mail(2)
    assert (box / ".mentor-mailer.processed" / "maildirfolder").exists()
    assert (box / "new" / "1700000000.a.host").read_bytes() == mail(1)  # the other one stays, as it was
    assert [r.uid for r in mailbox.refs()] == ["1700000000.a.host"]


def test_a_folder_that_is_not_a_maildir_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a Maildir"):
        MaildirMailbox(parse_inbox(f"maildir:{tmp_path}"), processed="p")


def flags(imapd: Imapd, user: str, folder: str = "INBOX") -> dict[bytes, tuple[bytes, ...]]:
    client = imapd.connect(user)
    try:
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        answer = client.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]) if uids else {}
        # \Recent belongs to the session, not the message
        return {v[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip(): tuple(f for f in v[b"FLAGS"] if f != b"\\Recent")
                for v in answer.values()}
    finally:
        client.logout()


def test_imaps_peeks_and_moves_only_what_it_is_told(imapd: Imapd, imap_user: str) -> None:
    imapd.append(imap_user, [mail(1), mail(2), mail(3)])
    imapd.append(imap_user, [mail(4)], flags=[b"\\Flagged"])
    mailbox = open_mailbox(imap_settings(imapd, imap_user))
    try:
        assert isinstance(mailbox, ImapMailbox)
        refs = mailbox.refs()
        assert len(refs) == 4 and all(r.uidvalidity == mailbox.uidvalidity > 0 for r in refs)
        fetched = dict(mailbox.fetch(refs))
        assert [fetched[r] for r in refs] == [mail(1), mail(2), mail(3), mail(4)]
        mailbox.move_processed([refs[1]])
    finally:
        mailbox.close()
    inbox = flags(imapd, imap_user)
    assert inbox == {b"Subject: message 1": (), b"Subject: message 3": (), b"Subject: message 4": (b"\\Flagged",)}
    assert flags(imapd, imap_user, "mentor-mailer.processed") == {b"Subject: message 2": ()}  # still unseen


def test_starttls_and_a_custom_processed_folder(imapd: Imapd, imap_user: str) -> None:
    imapd.append(imap_user, [mail(1)])
    mailbox = open_mailbox(imap_settings(imapd, imap_user, scheme="imap", inbox_processed="Done"))
    try:
        mailbox.move_processed(mailbox.refs())
        assert mailbox.refs() == []
    finally:
        mailbox.close()
    assert flags(imapd, imap_user, "Done") == {b"Subject: message 1": ()}


def test_uidvalidity_changes_when_the_folder_is_recreated(imapd: Imapd, imap_user: str) -> None:
    imapd.append(imap_user, [mail(1)], folder="Mentoring")
    spec = f"imaps://{imap_user}@{imapd.host}:{imapd.tls_port}/Mentoring"
    settings = Settings(inbox=spec, imap_password=IMAP_PASSWORD, imap_ca_file=imapd.ca_file,  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    first = open_mailbox(settings)
    old = first.refs()
    first.close()
    client = imapd.connect(imap_user)
    client.delete_folder("Mentoring")
    client.logout()
    imapd.append(imap_user, [mail(1)], folder="Mentoring")
    second = open_mailbox(settings)
    try:
        new = second.refs()
        assert [r.uid for r in new] == [r.uid for r in old] and new[0].uidvalidity != old[0].uidvalidity
        assert list(second.fetch(old)) == []  # a UID from the old folder never names a message of the new one
    finally:
        second.close()


def test_a_refused_login_names_user_and_server_but_not_the_password(imapd_private: Imapd) -> None:
    wrong = "wrong-password-d41d8c"
    with pytest.raises(MailboxError) as info:
        open_mailbox(imap_settings(imapd_private, "coordinator", password=wrong))
    text = str(info.value)
    assert "refused the login for coordinator" in text and f"127.0.0.1:{imapd_private.tls_port}" in text
    assert wrong not in text and IMAP_PASSWORD not in text


def test_an_untrusted_certificate_is_refused(imapd: Imapd, imap_user: str) -> None:
    with pytest.raises(MailboxError, match=r"TLS with IMAP server .* failed"):
        open_mailbox(imap_settings(imapd, imap_user, ca=False))


def test_a_missing_password_is_a_config_error(imapd: Imapd, imap_user: str) -> None:
    settings = imap_settings(imapd, imap_user)
    settings.imap_password = None
    with pytest.raises(ConfigError, match="MENTOR_MAILER_IMAP_PASSWORD"):
        open_mailbox(settings)


def test_an_unknown_folder_is_named(imapd: Imapd, imap_user: str) -> None:
    settings = imap_settings(imapd, imap_user)
    settings.inbox = f"imaps://{imap_user}@{imapd.host}:{imapd.tls_port}/NoSuchFolder"
    with pytest.raises(MailboxError, match="'NoSuchFolder' cannot be opened"):
        open_mailbox(settings)


def test_oauth2_token_command(tmp_path: Path) -> None:
    script = tmp_path / "token.sh"
    script.write_text("#!/bin/sh\necho ya29.a0-token\n", encoding="utf-8")
    script.chmod(0o700)
    assert oauth2_token(str(script)) == "ya29.a0-token"
    with pytest.raises(ConfigError, match="exit status 3"):
        oauth2_token("sh -c 'echo ya29.secret; exit 3'")
    with pytest.raises(ConfigError, match="cannot run"):
        oauth2_token(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="alone on one line"):
        oauth2_token("echo two words")


def token_command(tmp_path: Path, token: str) -> str:
    script = tmp_path / "print-token"
    script.write_text(f"#!/bin/sh\necho '{token}'\n", encoding="utf-8")
    script.chmod(0o700)
    return str(script)


def test_xoauth2_login_with_the_token_commands_output(imapd: Imapd, imap_user: str, tmp_path: Path) -> None:
    imapd.append(imap_user, [mail(1)])
    command = token_command(tmp_path, imapd.oauth2_token(imap_user))
    mailbox = open_mailbox(imap_settings(imapd, imap_user, password="not-used", oauth2_token_command=command))
    try:
        assert len(mailbox.refs()) == 1
    finally:
        mailbox.close()
    assert f"user=<{imap_user}>, method=XOAUTH2" in imapd.log()


def test_a_refused_token_is_named_without_the_token(imapd_private: Imapd, tmp_path: Path) -> None:
    token = imapd_private.oauth2_token("coordinator", key=b"the wrong key")
    with pytest.raises(MailboxError, match="refused the login for coordinator") as info:
        open_mailbox(imap_settings(imapd_private, "coordinator",
                                   oauth2_token_command=token_command(tmp_path, token)))
    assert token not in str(info.value) and token.split(".")[2] not in str(info.value)


def test_plaintext_imap_is_allowed_on_loopback_only(imapd_plain: Imapd) -> None:
    settings = Settings(inbox=f"imap://coordinator@{imapd_plain.host}:{imapd_plain.port}/INBOX",
                        imap_password=IMAP_PASSWORD, _env_file=None)  # type: ignore[arg-type,call-arg]
    mailbox = open_mailbox(settings)
    try:
        assert mailbox.refs() == []
    finally:
        mailbox.close()
    assert "user=<coordinator>, method=PLAIN" in imapd_plain.log()
