"""The remote listener's own key pair, made once in the remote folder with the shared safe
writes (aip.shared.safe_write: O_EXCL, mode by fchmod, never through a planted link)."""

from __future__ import annotations

import os
from pathlib import Path

from aip.shared.errors import ConfigError
from aip.shared.paths import ensure_private_dir
from aip.shared.remote.files import SERVER_KEY, KeyPair, load_keypair, new_keypair
from aip.shared.safe_write import write_new


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
