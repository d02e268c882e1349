"""Files written so that a planted link is never followed and no reader sees half a file.

Folders aip writes to are reachable by other programs of the user (an agent's MCP server
among them), so any name may already exist as a symlink, dangling or not. A file is created
with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a fresh name, its mode set by ``fchmod`` (the
umask neither narrows nor widens it), fsynced, and only then given its name: ``rename``
(replace_file) replaces a link itself, never what it points to; ``link`` (write_new) never
replaces anything. A process killed at any point leaves the target as it was, or whole, never
empty or cut short (before, write_new created its target and then wrote it: a kill in between
left an empty key that refused every later start). Used by aipctl (ctl/safe_files), the
approver's remote folder (remote/keyfile) and the per-install HMAC key (audit/install_key);
the daemon never imports aipctl.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# A filesystem without hard links (some FUSE and network ones): the target is then written in
# place under O_EXCL, as before (no half file for a reader is then promised).
_NO_LINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK})


def write_new(path: Path, data: bytes, mode: int, *, sync: bool = True) -> None:
    """Create ``path`` (it must not exist in any form) with exactly ``data``, all of it or
    nothing; FileExistsError when it exists (of two makers at once, one wins). ``sync``:
    fsynced, its folder too (without: whole or absent still, except after a power cut)."""
    tmp = _fresh_name(path)
    _write_fresh(tmp, data, mode, sync=sync)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        _write_fresh(path, data, mode, sync=sync)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    if sync:
        with contextlib.suppress(OSError):  # best effort: not every filesystem can
            fsync_dir(path.parent)


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Put ``data`` at ``path`` with ``mode`` in one rename from a fresh name beside it."""
    tmp = _fresh_name(path)
    _write_fresh(tmp, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _fresh_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")


def _write_fresh(path: Path, data: bytes, mode: int, *, sync: bool = True) -> None:
    fd = os.open(path, _CREATE, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a create, link or rename in ``directory`` durable (its entry survives a power cut)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
