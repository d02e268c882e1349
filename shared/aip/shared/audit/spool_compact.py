"""A spool's compaction: the unacknowledged records copied to a new file, off the append path.

The spool (aip.shared.audit.spool) drops acknowledged records by writing the rest to
``<spool>.tmp`` (locked, fsynced) and renaming it over. The copy and its fsync run without the
spool's lock, so the relay's appends go on meanwhile (into the old file); ``Spool.ack`` then
takes the lock, copies what was appended since (``finish``), renames and switches. Measured
before this split (py-spy of a pinned chain with an approver): the compaction, fsync included,
was nearly all of the approval thread's busy time, and every append waited for it under the
lock: 0.3-5 ms fsyncs on this virtual disk, every ~1,000 records, a call's p99.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Container, Iterator
from pathlib import Path

from aip.shared import logs
from aip.shared.audit.rseqs import RseqSet
from aip.shared.audit.spool_line import MAC_CHARS, LineKey

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

log = logs.get("aip.shared.audit.spool")  # the spool's own log, as before the split

TAIL_CHUNK_BYTES: Final = 64 << 10  # compaction reads the unacknowledged tail in these


def copy(fd: int, new: int, size: int, unacked: RseqSet, key: LineKey, name: str) -> int:
    """The authentic lines of ``fd``'s first ``size`` bytes whose rseq is in ``unacked`` into
    ``new``, fsynced; how many were copied. When they are exactly the file's last lines, in
    rising rseq order (the steady state with an approver: it acks in order while new records
    keep coming), only that tail is read.

    Streamed in chunks (``_lines``, ``_Out``), never the rest at once: with an approver far
    behind, the rest is tens of thousands of records, and holding them (and their parsed
    records) at once left the proxy's RSS at its high-water mark (116-143 MB after 100,000
    calls at load 10-15, a helper measured); now a chunk and one line at most."""
    copied = _copy_tail(fd, new, size, unacked, key)
    if copied is None:
        os.ftruncate(new, 0)  # what the tail copy wrote before it gave up
        copied = _copy_unacked(fd, new, size, unacked, key, name)
    os.fsync(new)
    return copied


def finish(fd: int, new: int, start: int, end: int) -> int:
    """Append what ``fd`` got from ``start`` to ``end`` (written while the copy ran: records
    newer than any acknowledged one) to ``new`` as it is; how many lines that was."""
    lines = 0
    out = _Out(new)
    for line in _lines(fd, start, end):
        out.add(line)
        lines += 1
    out.flush()
    return lines


def abandon(new: int, tmp: Path) -> None:
    os.close(new)
    with contextlib.suppress(OSError):
        tmp.unlink()


def _tail(fd: int, size: int, unacked: RseqSet) -> Iterator[tuple[bytes, int]] | None:
    """The file's last ``len(unacked)`` lines, each with the unacknowledged rseq it holds if
    they are the unacknowledged records in rising rseq order; None when the file has fewer.
    The caller checks each line against its rseq (``LineKey.holds``): its MAC binds session,
    rseq and the record's bytes, so a match needs no parse of the record (measured: the open
    and parse of each tail line was most of a compaction, ~6 us per record at 64 in flight
    with an approver). Only the tail is read: a compaction every ~1,500 records read and
    verified the whole file, 20-29 ms of CPU, where the tail is a few lines."""
    begin = _tail_start(fd, size, len(unacked))
    # Not strict: fewer lines than rseqs (the file cut meanwhile) is the callers' count check.
    return None if begin is None else zip(_lines(fd, begin, size), unacked, strict=False)


def _copy_tail(fd: int, new: int, size: int, unacked: RseqSet, key: LineKey) -> int | None:
    """The unacknowledged tail (``_tail``) copied to ``new``, each line authentic for its
    rseq; None otherwise (what was written is then cut by the caller)."""
    tail = _tail(fd, size, unacked)
    if tail is None:
        return None
    count, out = 0, _Out(new)
    for line, rseq in tail:
        if not key.holds(line, rseq):
            return None
        count += 1
        out.add(line)
    out.flush()
    return count if count == len(unacked) else None


def unacked_tail(
    fd: int, size: int, unacked: RseqSet, limit: int | None, key: LineKey, *, raw: bool = False
) -> list[Any] | None:
    """``Spool.pending`` when the unacknowledged records are the file's last lines in rising
    rseq order (the first ``limit`` of them, parsed; with ``raw``, each record's bytes as the
    recorder made them); None when that is not so (the caller reads the whole file). Each
    line is checked against the rseq it must hold (``_tail``), so the acknowledged lines
    before them are never opened: a re-read (a reconnect, a re-send) held every relay's
    record for the whole file's parse before."""
    tail = _tail(fd, size, unacked)
    if tail is None:
        return None
    want = len(unacked) if limit is None else min(len(unacked), limit)
    out: list[Any] = []
    for line, rseq in tail:
        if len(out) >= want:
            break
        if raw:  # the MAC binds session, rseq and these bytes: only we could have written them
            if not key.holds(line, rseq):
                return None
            out.append(line[MAC_CHARS + 1 :])
            continue
        record = key.opened_as(line, rseq)
        if record is None:
            return None
        out.append(record)
    return out if len(out) == want else None


def _copy_unacked(
    fd: int, new: int, size: int, unacked: Container[int], key: LineKey, name: str
) -> int:
    """Every authentic line of an unacknowledged record, in file order (a forged line is
    left out: nobody but this process had the key)."""
    out, count = _Out(new), 0
    for number, line in enumerate(_lines(fd, 0, size), 1):
        record, why = key.open(line)
        if record is None:
            log.warning("spool %s: line %d skipped: %s", name, number, why)
        elif record.get("rseq") in unacked:
            out.add(line)
            count += 1
    out.flush()
    return count


class _Out:
    """Lines to a file in writes of about a chunk."""

    def __init__(self, fd: int) -> None:
        self._fd, self._parts, self._size = fd, list[bytes](), 0

    def add(self, line: bytes) -> None:
        self._parts.append(line + b"\n")
        self._size += len(line) + 1
        if self._size >= TAIL_CHUNK_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            data = b"".join(self._parts)
            self._parts, self._size = [], 0
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]


def _lines(fd: int, start: int, size: int) -> Iterator[bytes]:
    """The complete lines (without newlines) of ``fd`` from ``start`` to ``size``, read a
    chunk at a time; a torn last line (crash mid-write) is left out, as always."""
    rest = b""
    offset = start
    while offset < size:
        chunk = os.pread(fd, min(TAIL_CHUNK_BYTES, size - offset), offset)
        if not chunk:
            break
        offset += len(chunk)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines


def _tail_start(fd: int, size: int, want: int) -> int | None:
    """Where the last ``want`` complete lines of ``fd`` begin (read backwards a chunk at a
    time), None when it has fewer."""
    need = want + 1  # newlines from the end: the first ends the last complete line
    seen, pos = 0, size
    while pos > 0:
        step = min(TAIL_CHUNK_BYTES, pos)
        pos -= step
        chunk = os.pread(fd, step, pos)
        found = chunk.count(b"\n")
        if seen + found >= need:
            end = len(chunk)
            for _ in range(need - seen):
                end = chunk.rfind(b"\n", 0, end)
            return pos + end + 1
        seen += found
    return 0 if seen == want else None
