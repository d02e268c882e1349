"""Waiting for a file descriptor to become readable or writable, at any fd number.

``select.select`` refuses fds of 1024 and above (FD_SETSIZE), which a long test process
reaches; ``poll`` has no such limit, so every test waits through here.
"""

from __future__ import annotations

import select


def readable(fd: int, timeout_s: float | None) -> bool:
    return _ready(fd, select.POLLIN, timeout_s)


def writable(fd: int, timeout_s: float | None) -> bool:
    return _ready(fd, select.POLLOUT, timeout_s)


def _ready(fd: int, events: int, timeout_s: float | None) -> bool:
    poller = select.poll()
    poller.register(fd, events | select.POLLHUP | select.POLLERR)
    ms = None if timeout_s is None else max(0, int(timeout_s * 1000))
    return bool(poller.poll(ms))
