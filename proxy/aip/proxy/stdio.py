"""Byte-level stdio: bounded line reading and lock-serialized line writing.

Both relay threads and the ask callbacks write to the host; each ``Wire.write`` puts whole
lines on the pipe under one lock, so messages never interleave. Reads use 1 MiB buffers
(perf-limits.md §1: fewer syscalls on large lines) and never buffer more than the line limit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import IO, Final

log = logging.getLogger(__name__)

READ_BUFFER_BYTES: Final = 1 << 20
_DISCARD_CHUNK: Final = 1 << 20
CLOSE_WAIT_S: Final = 0.2


def claim_stdout() -> int:
    """Take fd 1 for the JSON-RPC wire and point fd 1 at stderr, so a stray print from any
    library lands in the log instead of corrupting the protocol (the MCP SDK's trick)."""
    wire = os.dup(1)
    os.dup2(2, 1)
    return wire


def open_reader(fd: int) -> IO[bytes]:
    return open(fd, "rb", buffering=READ_BUFFER_BYTES, closefd=False)


def read_lines(stream: IO[bytes], max_bytes: int) -> Iterator[bytes | None]:
    """Yield each line (newline included when present); ``None`` for a line longer than
    ``max_bytes``, whose rest is read and dropped in chunks instead of being buffered."""
    while True:
        try:
            line = stream.readline(max_bytes + 1)
        except (OSError, ValueError):  # closed under us during shutdown
            return
        if not line:
            return
        if len(line) > max_bytes and not (len(line) == max_bytes + 1 and line.endswith(b"\n")):
            while not line.endswith(b"\n"):
                try:
                    line = stream.readline(_DISCARD_CHUNK)
                except (OSError, ValueError):
                    return
                if not line:
                    break
            yield None
            continue
        yield line


class Wire:
    """One side's output pipe; whole lines, one writer at a time. After the first failed
    write (the reader went away) the wire is ``broken`` and ``on_broken`` has been called."""

    def __init__(
        self,
        fd: int,
        name: str,
        on_broken: Callable[[], None] | None = None,
        closer: Callable[[], None] | None = None,
    ) -> None:
        self._fd = fd
        self.name = name
        self._lock = threading.Lock()
        self.broken = False
        self._on_broken = on_broken
        self._closer = closer  # the owner of the fd closes it (e.g. Popen's stdin file object)

    def write(self, data: bytes) -> bool:
        with self._lock:
            if self.broken:
                return False
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                log.info("%s closed (%s)", self.name, exc.__class__.__name__)
                self.broken = True
        if self.broken:
            if self._on_broken is not None:
                self._on_broken()
            return False
        return True

    def close(self) -> None:
        """Mark broken and close the fd (e.g. the server's stdin at shutdown).

        A writer blocked on a full pipe (a server that stopped reading) holds the lock; then
        the fd is left to the kill that follows, which makes that write fail and returns."""
        if not self._lock.acquire(timeout=CLOSE_WAIT_S):
            log.info("%s: a write is blocked; not closing it under the writer", self.name)
            self.broken = True
            return
        try:
            if self.broken:
                return
            self.broken = True
            with contextlib.suppress(OSError):
                if self._closer is not None:
                    self._closer()
                else:
                    os.close(self._fd)
        finally:
            self._lock.release()
