"""Files written so that a planted link is never followed and no reader sees half a file.

Folders aip writes to are reachable by other programs of the user (an agent's MCP server
among them), so any name may already exist as a symlink, dangling or not. A file is created
with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a fresh name, its mode set by ``fchmod`` (the
umask neither narrows nor widens it), fsynced, and renamed over its target: ``rename``
replaces a link itself, never what it points to. Used by aipctl (ctl/safe_files) and by the
approver's remote folder (remote/keyfile); the daemon never imports aipctl.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Final

_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (it must not exist in any form) with exactly ``data``, fsynced;
    FileExistsError when it does."""
    fd = os.open(path, _CREATE, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Put ``data`` at ``path`` with ``mode`` in one rename from a fresh name beside it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    write_new(tmp, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
