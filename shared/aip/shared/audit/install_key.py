"""The per-install HMAC key beside the audit log (``audit-hmac.key``): what capped values are
signed with (aip.shared.audit.record.cap_record), by the approver and by proxies alike.

It is made on first use by whoever comes first, and it must never be seen half made: the file
name is only ever given to a whole, synced key. The key is written under a temporary name of
this process's own, synced, then hard-linked to its name: ``link`` never replaces, so of two
first uses at once one key wins and both read it, and a crash at any point leaves either no
key file (the next use makes one) or a whole one (and at most its own small temporary file). Before, the file was created empty and then
written: a process killed in between (an approver killed during its first start) left an
empty key that refused every later open of the audit log, and a concurrent reader could read
it empty.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

HMAC_KEY_BYTES: Final = 32
_NO_LINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV})


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``, made first if there is none. A key file that is not a regular
    file of ours with mode 0600, or not exactly HMAC_KEY_BYTES long, is refused (ValueError,
    saying what to do); a symlink there fails to open (OSError)."""
    if not os.path.lexists(path):
        _create(path)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise ValueError(f"{path}: HMAC key must be a 0600 regular file owned by us")
        key = os.read(fd, HMAC_KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != HMAC_KEY_BYTES:
        raise ValueError(
            f"{path}: HMAC key has {len(key)} bytes, expected {HMAC_KEY_BYTES} (an older "
            "version killed while making it leaves it short: remove it if no record was "
            "capped with it, and a new one is made)"
        )
    return key


def _create(path: Path) -> None:
    """A whole, synced key under a name of our own, then linked to ``path`` (if nobody was
    first). A filesystem without hard links gets the key the old way: created, then written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            key = os.urandom(HMAC_KEY_BYTES)
            if os.write(fd, key) != len(key):
                raise OSError(errno.EIO, f"short write of {tmp}")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another process made it first: theirs is the key
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            _create_in_place(path, key)
            return
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _sync_dir(path.parent)  # the name survives a crash too


def _create_in_place(path: Path, key: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot sync a folder: best effort
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
