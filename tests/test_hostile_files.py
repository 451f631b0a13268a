"""Files against a hostile folder: planted symbolic links, a full disk, leftovers, loose modes.

Covers mailer/shell/files.py (the writer for report and invitation exports) and the outbox Maildir.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailer.errors import MailerError, TransportError
from mailer.shell.files import FileWriteError, private_dir, write_private
from mailer.shell.transport import Outbox, Outgoing, clean_tmp, maildir_name

DUE = datetime(2020, 1, 1, 14, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """umask 0: whatever the file gets, it gets from the code, not from the shell."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file another user's link points at; it must come out untouched."""
    target = tmp_path / "victim.txt"
    target.write_bytes(b"precious")
    return target


def test_write_private_is_owner_only_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    out = tmp_path / "report.html"
    out.write_bytes(b"old")
    os.chmod(out, 0o644)  # before: report.html and invites/*.ics were 0644
    write_private(out, b"<html>names and addresses</html>")
    assert out.read_bytes() == b"<html>names and addresses</html>" and mode(out) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary file left


def test_write_private_makes_the_folder_owner_only_when_asked(tmp_path: Path, loose_umask: None) -> None:
    out = tmp_path / "exports" / "invites" / "p01-annual.ics"
    with pytest.raises(FileWriteError, match="does not exist"):
        write_private(out, b"x")
    write_private(out, b"BEGIN:VCALENDAR", make_parent=True)
    assert mode(out) == 0o600 and mode(out.parent) == 0o700 and mode(out.parent.parent) == 0o700


def test_private_dir_leaves_an_existing_folder_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o1777)  # noqa: S103 -- a shared folder, as /tmp is: the point of the test
    assert private_dir(shared) == shared and mode(shared) == 0o1777


@pytest.mark.parametrize("name", ["report.html", "p01-annual.ics"])
def test_write_private_refuses_a_link_at_the_name(tmp_path: Path, victim: Path, name: str) -> None:
    """Before: `report --out` and `invites --out` in a shared folder wrote through another user's link."""
    link = tmp_path / "shared" / name
    link.parent.mkdir()
    link.symlink_to(victim)
    with pytest.raises(FileWriteError) as info:
        write_private(link, b"overwritten")
    assert isinstance(info.value, MailerError) and str(link) in str(info.value) and "symbolic link" in str(info.value)
    assert victim.read_bytes() == b"precious" and link.is_symlink()
    assert sorted(p.name for p in link.parent.iterdir()) == [name]


def test_write_private_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "report.html").mkdir()
    with pytest.raises(FileWriteError, match="is a folder"):
        write_private(tmp_path / "report.html", b"x")


@pytest.mark.skipif(os.geteuid() != 0, reason="a link owned by another user needs root to make (lchown)")
def test_private_dir_refuses_a_folder_link_planted_by_another_user(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "invites"
    link.symlink_to(elsewhere)
    os.lchown(link, 54321, 54321)
    with pytest.raises(FileWriteError, match="owned by another user"):
        private_dir(link)
    os.lchown(link, os.geteuid(), os.getegid())
    assert private_dir(link) == link  # the owner's own link is fine


FULL_DISK = """
import os, resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from datetime import UTC, datetime
from mailer.errors import MailerError
from mailer.shell.files import write_private
from mailer.shell.transport import Outbox, Outgoing
root = Path(sys.argv[1])
try:
    write_private(root / "report.html", b"x" * 100_000)
except MailerError as exc:
    print("report:", exc)
box = Outbox(root / "outbox")
try:
    box.send(Outgoing("c/p01/welcome", datetime(2020, 1, 1, tzinfo=UTC), "a@b.org", ["c@d.org"], b"x" * 100_000))
except MailerError as exc:
    print("outbox:", exc, exc.deferred)
"""


def test_a_full_disk_leaves_no_partial_file(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "report: " in r.stdout and "report.html: cannot write it" in r.stdout
    assert "outbox: " in r.stdout and "True" in r.stdout  # deferred: the message stays due
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == []
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == [] and list((tmp_path / "outbox" / "new").iterdir()) == []


def message(key: str = "2019-2020/p01/welcome") -> Outgoing:
    return Outgoing(key, DUE, "a@example.org", ["b@example.org"], b"Subject: hi\r\n\r\nhello\r\n")


def test_outbox_never_writes_through_a_planted_link(tmp_path: Path, victim: Path) -> None:
    """Before: a link at tmp/<the message's file name>, a name anyone can work out, was followed."""
    box = Outbox(tmp_path / "outbox")
    name = maildir_name("2019-2020/p01/welcome", DUE)
    (tmp_path / "outbox" / "tmp" / name).symlink_to(victim)
    (tmp_path / "outbox" / "new" / name).symlink_to(victim)
    result = box.send(message())
    assert result.state == "sent"
    final = tmp_path / "outbox" / "new" / name
    assert not final.is_symlink() and final.read_bytes() == b"Subject: hi\n\nhello\n" and mode(final) == 0o600
    assert victim.read_bytes() == b"precious"


def test_outbox_refuses_a_linked_subfolder(tmp_path: Path) -> None:
    (tmp_path / "outbox").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "outbox" / "tmp").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(TransportError, match="tmp/ is not a folder of its own"):
        Outbox(tmp_path / "outbox")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_opening_the_outbox_removes_what_no_writer_owns(tmp_path: Path, victim: Path) -> None:
    tmp = tmp_path / "outbox" / "tmp"
    tmp.mkdir(parents=True)
    name = maildir_name("2019-2020/p01/welcome", DUE)
    gone, live = dead_pid(), os.getppid()  # the process that started pytest outlives this test
    planted = {
        f"{name}.{gone}.0123456789ab.tmp": True,  # its writer died (a full disk, a SIGKILL): removed
        f"{name}.{live}.0123456789ab.tmp": False,  # its writer may still be at work: kept
        "1577836800.M1P2.host": False,  # another program's, fresh: kept
        "1577836800.M3P4.host": True,  # another program's, two days old: removed
    }
    for file in planted:
        (tmp / file).write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 86400
    os.utime(tmp / "1577836800.M3P4.host", (two_days_ago, two_days_ago))
    (tmp / "old-link").symlink_to(victim)
    os.utime(tmp / "old-link", (two_days_ago, two_days_ago), follow_symlinks=False)
    (tmp / "a-folder").mkdir()
    box = Outbox(tmp_path / "outbox")
    left = {p.name for p in tmp.iterdir()}
    assert left == {f for f, removed in planted.items() if not removed} | {"a-folder"}
    assert "old-link" in box.removed and victim.read_bytes() == b"precious"


def test_an_old_file_of_a_live_writer_is_removed_after_a_day(tmp_path: Path) -> None:
    name = f"{maildir_name('k', DUE)}.{os.getppid()}.0123456789ab.tmp"
    (tmp_path / name).write_bytes(b"partial")
    assert clean_tmp(tmp_path, now=time.time()) == []
    assert clean_tmp(tmp_path, now=time.time() + 25 * 3600) == [name]
