"""libzmq lets a second binder silently take an ipc path over: notice it and stop serving."""

from __future__ import annotations

import asyncio
import logging

from aip.shared.paths import socket_path

log = logging.getLogger(__name__)


async def watch_endpoint(endpoint: str, inode: int, interval_s: float) -> None:
    """Returns once the socket file of ``endpoint`` is no longer the one we bound (inode)."""
    path = socket_path(endpoint)
    while True:
        await asyncio.sleep(interval_s)
        try:
            now = path.stat().st_ino
        except FileNotFoundError:
            now = -1
        if now != inode:
            log.error("endpoint %s was replaced by another process; exiting", path)
            return
