"""One approver per endpoint: an exclusive flock beside the socket, taken before bind.

libzmq unlinks and rebinds an ipc path without complaint, so a second approver would silently
steal the endpoint (security.md §2.2); the lock makes it exit with a clear message instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from aip.shared.errors import AipError


class AlreadyRunning(AipError):
    """Another approver holds the lock."""


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"another aip-approver (pid {holder}) is already serving this endpoint "
                f"(lock {self.path}); not starting a second one"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
