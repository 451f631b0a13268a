"""Owner-only, atomic files for what mentor-mailer exports (the report page, invitation files).

Exports hold participants' names and addresses, and they may go into a shared folder: each is written
to a fresh temporary file in the target folder (O_CREAT|O_EXCL|O_NOFOLLOW, 0600), fsynced and renamed
over the target, so a reader never sees half a file and a symbolic link planted at the name, or at a
predictable temporary name, is never followed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from mailer.errors import MailerError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class FileWriteError(MailerError):
    """A file mentor-mailer was asked to write cannot be written safely; the message names it."""


def private_dir(path: Path) -> Path:
    """The folder `path`, created owner-only (0700, with any missing parents) if it does not exist.

    An existing folder is used as it is (its mode is the owner's business). A symbolic link to a
    folder is accepted only from its owner or root: a link that another user planted in a shared
    folder could send the files anywhere.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            _makedirs(path)
        except OSError as exc:
            raise FileWriteError(f"{path}: cannot create the folder: {exc.strerror}") from None
        return path
    except OSError as exc:
        raise FileWriteError(f"{path}: cannot use the folder: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        if st.st_uid not in (os.geteuid(), 0):
            raise FileWriteError(f"{path} is a symbolic link owned by another user; refusing to write "
                                 "through it (give a folder of your own)")
        if not path.is_dir():
            raise FileWriteError(f"{path} is a symbolic link to no folder; give a folder")
    elif not stat.S_ISDIR(st.st_mode):
        raise FileWriteError(f"{path} exists and is not a folder; give a folder")
    return path


def _makedirs(path: Path) -> None:
    if path.parent != path and not path.parent.exists():
        _makedirs(path.parent)
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; an owner-only folder is meant


def write_private(path: Path, data: bytes, *, make_parent: bool = False) -> Path:
    """Write `data` to `path` atomically, readable by its owner only (0600).

    Refuses when `path` is a symbolic link or a folder. The parent folder must exist unless
    `make_parent`, which creates it with private_dir (0700).
    """
    path = Path(path)
    if make_parent:
        private_dir(path.parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise FileWriteError(f"{path}: cannot write it: {exc.strerror}") from None
    else:
        if stat.S_ISLNK(st.st_mode):
            raise FileWriteError(f"{path} is a symbolic link; refusing to write through it (remove the link "
                                 "or choose another name)")
        if stat.S_ISDIR(st.st_mode):
            raise FileWriteError(f"{path} is a folder; give a file name")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, _CREATE, 0o600)
    except FileNotFoundError:
        if path.parent.is_dir():  # /proc and its kind: a folder that holds no files of ours
            raise FileWriteError(f"{path}: files cannot be created in {path.parent}; choose another folder") \
                from None
        raise FileWriteError(f"{path}: the folder {path.parent} does not exist") from None
    except OSError as exc:
        raise FileWriteError(f"{path}: cannot write it: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # whatever the umask: owner-only is the point
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # rename replaces whatever is at `path` now, a link planted since the check included,
        # and never follows it
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FileWriteError(f"{path}: cannot write it: {exc.strerror}") from None
    _sync_dir(path.parent)
    return path


def _sync_dir(folder: Path) -> None:
    """Make the rename durable; some file systems cannot open a folder for this, which is no error."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
