"""The per-install HMAC key beside the audit log (``audit-hmac.key``): what capped values are
signed with (aip.shared.audit.record.cap_record), by the approver and by proxies alike.

It is made on first use by whoever comes first, and it must never be seen half made: the file
name is only ever given to a whole, synced key (aip.shared.safe_write.write_new: written under a
fresh name, then hard-linked to its own; ``link`` never replaces, so of two first uses at once
one key wins and both read it). A crash at any point leaves no key file (the next use makes
one) or a whole one. Before, the file was created empty and then written: a process killed in
between (an approver killed during its first start) left an empty key that refused every later
open of the audit log, and a concurrent reader could read it empty.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from aip.shared import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

HMAC_KEY_BYTES: Final = 32


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``, made first if there is none. A key file that is not a regular
    file of ours with mode 0600, or not exactly HMAC_KEY_BYTES long, is refused (ValueError,
    saying what to do); a symlink there fails to open (OSError)."""
    if not os.path.lexists(path):
        _create(path)
    try:
        key, _ = paths.read_private_file(path, HMAC_KEY_BYTES)
    except paths.NotPrivateError:
        raise ValueError(f"{path}: HMAC key must be a 0600 regular file owned by us") from None
    if len(key) != HMAC_KEY_BYTES:
        raise ValueError(
            f"{path}: HMAC key has {len(key)} bytes, expected {HMAC_KEY_BYTES} (an older "
            "version killed while making it leaves it short: remove it if no record was "
            "capped with it, and a new one is made)"
        )
    return key


def _create(path: Path) -> None:
    """A whole, synced key at ``path`` unless someone was first (then theirs is the key)."""
    # Here, not at the top: a proxy loads this module at start, and the key is made once per
    # install; the rest of the time no start pays for safe_write's import.
    from aip.shared.safe_write import write_new

    with contextlib.suppress(FileExistsError):
        write_new(path, os.urandom(HMAC_KEY_BYTES), 0o600)
