"""The proxies' session keys, as each first hello carried them: what binds a session id to its
proxy (a later hello must carry the same key) and authenticates its spool (DESIGN §6, §8).

Kept in memory and, when the approver has a state dir, one 0600 file per session in
``<audit log dir>/session-keys/`` (0700): the spool of a proxy that died while the approver was
down is verified with the key learnt before. A key file goes once its spool is ingested, or
after KEY_MAX_AGE_S. Only the approver reads it; the proxy holds its key in memory only.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import time
from pathlib import Path
from typing import Final

from aip.shared import paths
from aip.shared.safe_write import write_new

log = logging.getLogger(__name__)

KEYS_DIR_NAME: Final = "session-keys"
KEY_MAX_AGE_S: Final = 30 * 86400
MAX_IN_MEMORY: Final = 65536
_SESSION: Final = re.compile(r"[0-9a-f]{16}")
_KEY: Final = re.compile(r"[0-9a-f]{64}")


def keys_dir(audit_log: Path) -> Path:
    return audit_log.parent / KEYS_DIR_NAME


class SessionKeys:
    def __init__(self, directory: Path | None) -> None:
        """``directory`` None: memory only (nothing survives a restart)."""
        self.directory = directory
        self._known: dict[str, str] = {}

    def bind(self, session: str, key: str) -> bool:
        """True when ``key`` is the session's key: the first one seen is stored (in memory,
        then on disk; a key that cannot be stored is still bound for this run)."""
        known = self.key_for(session)
        if known is not None:
            return hmac.compare_digest(known, key)
        self._remember(session, key)
        if self.directory is not None:
            try:
                self._write(session, key)
            except OSError as exc:
                log.warning("session key of %s kept in memory only: %s", session, exc)
        return True

    def key_for(self, session: str) -> str | None:
        """The stored key (hex), or None when this session never said hello with one."""
        key = self._known.get(session)
        if key is None and self.directory is not None and _SESSION.fullmatch(session):
            key = self._read(self.directory / f"{session}.key")
            if key is not None:
                self._remember(session, key)
        return key

    def forget(self, session: str) -> None:
        """The session's spool is ingested: nothing will need the key again."""
        self._known.pop(session, None)
        if self.directory is not None and _SESSION.fullmatch(session):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{session}.key").unlink()

    def prune(self, now: float | None = None) -> int:
        """Remove key files older than KEY_MAX_AGE_S (their proxies are long gone)."""
        if self.directory is None or paths.dir_problem(self.directory) is not None:
            return 0
        limit = (time.time() if now is None else now) - KEY_MAX_AGE_S
        removed = 0
        for path in self.directory.glob("*.key"):
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime < limit:
                    path.unlink()
                    self._known.pop(path.stem, None)
                    removed += 1
        return removed

    def _remember(self, session: str, key: str) -> None:
        if len(self._known) >= MAX_IN_MEMORY:
            del self._known[next(iter(self._known))]  # the oldest; its file still holds it
        self._known[session] = key

    def _write(self, session: str, key: str) -> None:
        assert self.directory is not None
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = paths.dir_problem(self.directory)
        if problem is not None:
            raise OSError(f"session key dir unsafe: {problem}")
        # Whole or absent (a kill between create and write left an empty key: that session's
        # spool would have been rejected). No fsync: this runs on the approver's loop at each
        # new hello, and a key lost to a power cut only means that spool is recorded as rejected.
        write_new(self.directory / f"{session}.key", key.encode("ascii"), 0o600, sync=False)

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            data, _ = paths.read_private_file(path, 127)
        except paths.NotPrivateError:
            log.warning("session key %s ignored: not a private file of ours", path)
            return None
        except OSError:
            return None
        key = data.decode("ascii", "replace")
        return key if _KEY.fullmatch(key) else None
