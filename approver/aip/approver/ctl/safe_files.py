"""How ``aipctl`` writes files: never through a planted link, atomically, modes kept.

Config and start-up folders are reachable by other programs of the user (an agent's MCP
server among them), so any name aipctl writes to may already exist as a symlink, dangling
or not. Every file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a fresh name and
renamed over its target; ``rename`` replaces a link itself, never what it points to.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from aip.shared.safe_write import replace_file, write_new


def atomic_replace(path: Path, data: bytes, mode: int | None = None) -> None:
    """Put ``data`` at ``path`` in one rename. ``mode``: that mode; None keeps the mode of the
    file there (0600 for a new one). A symlink at ``path`` is replaced, not followed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o600
        except FileNotFoundError:
            mode = 0o600
    replace_file(path, data, mode)


def backup_copy(path: Path) -> Path:
    """A copy of the regular file ``path`` beside it (``<name>.aip-backup-<UTC time>``), with
    its mode, under a name that did not exist in any form (a planted dangling link included)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        data = src.read()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1000):
        backup = path.with_name(f"{path.name}.aip-backup-{stamp}" + (f"-{n}" if n else ""))
        try:
            write_new(backup, data, stat.S_IMODE(st.st_mode))
        except FileExistsError:
            continue
        return backup
    raise FileExistsError(f"{path}: no free backup name")
