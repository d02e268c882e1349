"""The approver's own safe writes in the remote folder (the daemon never imports aipctl's
ctl/safe_files): a new file with O_EXCL and its mode set by fchmod, renamed into place, so
a planted link is replaced, never followed, and no reader sees half a file."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from aip.shared.errors import ConfigError
from aip.shared.paths import ensure_private_dir
from aip.shared.remote.files import SERVER_KEY, KeyPair, load_keypair, new_keypair

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (absent in every form) with ``data``, fsynced; FileExistsError else."""
    fd = os.open(path, _CREATE, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    write_new(tmp, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def server_keypair(folder: Path) -> KeyPair:
    """The remote listener's key pair: made once (0600, O_EXCL), then always the same, so
    pairing codes already given out stay valid across restarts."""
    ensure_private_dir(folder)
    path = folder / SERVER_KEY
    try:
        return load_keypair(path)
    except ConfigError:
        if os.path.lexists(path):
            raise
    pair = new_keypair()
    try:
        write_new(path, pair.encode(), 0o600)
    except FileExistsError:  # made by a concurrent aipctl: theirs counts
        return load_keypair(path)
    return pair
