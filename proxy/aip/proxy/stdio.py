"""Byte-level stdio: bounded line reading in bursts, lock-serialized line writing.

Both relay threads and the ask callbacks write to the host; each ``Wire.write`` puts whole
lines on the pipe under one lock, so messages never interleave. A pump reads whatever one
``read()`` returns (up to 1 MiB), handles every complete line of that burst while its own
writes are held, then flushes them with one ``write()`` per pipe: with many calls in flight
this saves a syscall and a wake-up per message. A burst of one line is not held (nothing to
batch; the pumps say why its order is the same).
Partial lines never grow beyond the line limit: the rest of an oversized line is dropped
(its head is kept to answer it).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import threading
from collections.abc import Callable, Iterator

from aip.shared import logs, slotclass
from aip.shared.slotclass import FrozenSlotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

log = logs.get(__name__)

READ_BUFFER_BYTES: Final = 1 << 20
OVERSIZE_HEAD_BYTES: Final = 64 * 1024  # what is kept of an over-long line to find its id
# 256 KiB: a 100 KB result fits; 64 pages a pipe keeps a user with many proxies far from
# /proc/sys/fs/pipe-user-pages-soft (16384 pages), past which the kernel shrinks new pipes.
PIPE_BYTES: Final = 256 * 1024
CLOSE_WAIT_S: Final = 0.2


def widen_pipe(fd: int, size: int = PIPE_BYTES) -> None:
    """Linux: grow a pipe's buffer (64 KiB by default) so a large result moves in one write
    and one read instead of a ping-pong of 64 KiB pieces. Not a pipe, or not allowed: ignored."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, setsize, size)


def claim_stdout() -> int:
    """Take fd 1 for the JSON-RPC wire and point fd 1 at stderr, so a stray print from any
    library lands in the log instead of corrupting the protocol (the MCP SDK's trick)."""
    wire = os.dup(1)
    os.dup2(2, 1)
    return wire


class Oversize(FrozenSlotted):
    """Stands for a line longer than the limit: only its head is kept, so the refusal can
    still name the message's id (aip.shared.jsontext.scan_id)."""

    __slots__ = ("head",)
    head: bytes

    def __init__(self, head: bytes) -> None:
        slotclass.init(self, "head", head)


def _oversize(spill: list[bytes], tail: memoryview) -> Oversize:
    first = spill[0] if spill else tail
    return Oversize(bytes(first[:OVERSIZE_HEAD_BYTES]))


def read_bursts(fd: int, max_bytes: int) -> Iterator[list[bytes | Oversize]]:
    """Yield the complete lines of each ``read()`` (newline included); an ``Oversize`` stands
    for a line longer than ``max_bytes``, as soon as it is known to be (the rest of it is
    then skipped). A last line without a newline comes at EOF.

    Reads go into one reused 1 MiB buffer (a fresh 1 MiB ``bytes`` per read would cost an
    mmap/munmap pair each time). An unfinished line stays at the front of the buffer and the
    next read appends to it, so a line is copied out once; only a line longer than the
    buffer spills into a list of pieces. The buffer is an anonymous mapping, not a
    ``bytearray`` (which zero-fills, so all of it is resident from the start: 2 MiB of the
    proxy's RSS for two pumps): a page only becomes resident when a read first writes to it,
    so small messages keep a few KiB of it in memory, and a 100 KB result still arrives in
    one read."""
    buf = mmap.mmap(-1, READ_BUFFER_BYTES)
    view = memoryview(buf)
    whole = [view]  # the iovec of a read into the empty buffer (most reads): made once
    filled = 0  # valid bytes in buf; an unfinished line starts at 0
    spill: list[bytes] = []  # the earlier parts of an unfinished line longer than buf
    spilled = 0
    discarding = False
    while True:
        try:
            n = os.readv(fd, whole if filled == 0 else [view[filled:]])
        except OSError:  # closed under us during shutdown
            return
        if n == 0:
            if (filled or spill) and not discarding:
                yield [b"".join([*spill, buf[:filled]])]
            return
        end = filled + n
        burst: list[bytes | Oversize] = []
        start = 0
        search = filled  # no newline before the new bytes
        if discarding:
            nl = buf.find(b"\n", search, end)
            if nl < 0:
                filled = 0
                continue
            discarding = False
            start = search = nl + 1
        while (nl := buf.find(b"\n", search, end)) >= 0:
            if spilled + nl + 1 - start > max_bytes + 1:
                burst.append(_oversize(spill, view[start : nl + 1]))
            elif spill:
                burst.append(b"".join([*spill, view[start : nl + 1]]))
            else:
                burst.append(buf[start : nl + 1])  # bytes: one copy, no memoryview
            spill.clear()
            spilled = 0
            start = search = nl + 1
        rest = end - start
        if spilled + rest > max_bytes:
            burst.append(_oversize(spill, view[start:end]))
            spill.clear()
            spilled = 0
            discarding = True
            filled = 0
        elif rest == 0:
            filled = 0
        elif start > 0:
            buf[:rest] = buf[start:end]  # the unfinished line moves to the front
            filled = rest
        elif end == len(buf):
            spill.append(bytes(buf))
            spilled += end
            filled = 0
        else:
            filled = end
        if burst:
            yield burst


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
        self._held: dict[int, list[bytes]] = {}  # per holding thread: both pumps may hold
        self._close_pending = False  # close() gave up waiting for a blocked write

    def hold(self) -> None:
        """Hold this thread's writes until ``flush()`` (other threads write through)."""
        self._held[threading.get_ident()] = []

    def flush(self) -> bool:
        """Write what this thread held, in one syscall, and stop holding."""
        held = self._held.pop(threading.get_ident(), None)
        if not held:
            return not self.broken
        return self._write(held[0] if len(held) == 1 else b"".join(held))

    def write(self, data: bytes) -> bool:
        held = self._held.get(threading.get_ident()) if self._held else None
        if held is not None:
            held.append(data)
            return not self.broken
        return self._write(data)

    def _write(self, data: bytes) -> bool:
        with self._lock:
            if self.broken:
                return False
            try:
                n = os.write(self._fd, data) if data else 0
                if n < len(data):  # a pipe took part of it: write the rest (rare)
                    view = memoryview(data)[n:]
                    while view:
                        view = view[os.write(self._fd, view) :]
            except OSError as exc:
                log.info("%s closed (%s)", self.name, exc.__class__.__name__)
                self.broken = True
            if self._close_pending:  # a slow server that read again now also sees EOF
                self._close_fd()
        if self.broken:
            if self._on_broken is not None:
                self._on_broken()
            return False
        return True

    def close(self) -> None:
        """Mark broken and close the fd (e.g. the server's stdin at shutdown).

        A writer blocked on a full pipe (a server that stopped reading) holds the lock; the
        fd is never closed under it (the number could be reused while it writes): the writer
        closes it when its write returns, when the server reads again or the kill that
        follows makes the write fail."""
        if not self._lock.acquire(timeout=CLOSE_WAIT_S):
            log.info("%s: a write is blocked; its writer closes it when it returns", self.name)
            self._close_pending = True
            self.broken = True
            if not self._lock.acquire(blocking=False):
                return
            # The writer returned just before it could see the flag: close it here.
            try:
                self._close_fd()
            finally:
                self._lock.release()
            return
        try:
            if self.broken:
                return
            self.broken = True
            self._close_fd()
        finally:
            self._lock.release()

    def _close_fd(self) -> None:
        """Under the lock. Once only: the owner's closer, or the fd itself."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            if self._closer is not None:
                self._closer()
            else:
                os.close(fd)
