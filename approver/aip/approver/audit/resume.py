"""Picking up an existing audit file at start (or after a failure): torn-tail repair, where
the chain stands, and which proxy records it already holds.

A torn tail is cut back to the last sound line, kept in a 0600 side file, and reported to
the caller, who writes the ``recovered_tail`` record once the chain is set up.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aip.approver.audit import files as audit_file
from aip.approver.audit.chain import iter_lines_backwards, line_hash, parse_line, read_tail
from aip.approver.audit.dedup import SeenPairs, rebuild

DEDUP_WINDOW_BYTES: Final = 8 << 20  # tail scanned at start for (session, rseq) pairs
MAX_FIRST_LINE_BYTES: Final = 65536


@dataclass(slots=True)
class Resume:
    size: int  # the sound size of the file (after any cut)
    seq: int = 0  # last seq in the file; 0: the file is empty, start a chain
    last_hash: str = ""
    chain_id: str = ""
    seen: SeenPairs | None = None
    discarded: bytes = b""  # the torn tail that was cut
    side_file: str = ""  # where it was kept
    rotate_to: str = ""  # the file ends with a rotate record: the rename did not happen yet
    prev_file: str = ""  # the file is empty and continues the chain of this rotated file


def resume(fd: int, path: Path, ops: audit_file.FileOps) -> Resume:
    """Repair and read the open file ``fd`` (OSError: not a log we can continue).
    A crash during rotation is picked up: a file ending with its ``rotate`` record says where
    it was to go; an empty file continues the newest rotated file if that ended rotating."""
    tail = read_tail(fd, os.fstat(fd).st_size)
    state = Resume(size=tail.good_size, discarded=tail.discarded)
    if tail.discarded:
        side = path.with_name(f"{path.name}.torn-{int(time.time() * 1000)}")
        audit_file.write_side_file(side, tail.discarded)
        ops.truncate(fd, tail.good_size)
        ops.sync(fd)
        state.side_file = side.name
    if tail.last is None or tail.last_line is None:
        _link_to_predecessor(path, state)
        return state
    _read_chain(fd, state, path, tail.last, tail.last_line)
    if tail.last.get("event") == "rotate":
        state.rotate_to = str(tail.last.get("rotated_to", ""))
    ops.sync(fd)  # what the file holds is durable before we build on it
    return state


def _read_chain(
    fd: int, state: Resume, path: Path, last: dict[str, object], last_line: bytes
) -> None:
    first = parse_line(os.pread(fd, MAX_FIRST_LINE_BYTES, 0).split(b"\n", 1)[0])
    if first is None or first.get("event") != "genesis":
        raise OSError(f"{path}: does not start with a genesis record")
    size = os.fstat(fd).st_size
    seq = last.get("seq")
    state.seq = seq if isinstance(seq, int) else 0
    state.last_hash = line_hash(last_line)
    state.chain_id = str(first.get("chain_id", ""))
    complete = size <= DEDUP_WINDOW_BYTES and first.get("prev_file") is None
    state.seen = rebuild(
        iter_lines_backwards(fd, size, DEDUP_WINDOW_BYTES), window_complete=complete
    )


def _link_to_predecessor(path: Path, state: Resume) -> None:
    """An empty current file next to a rotated file that ends with its rotate record: the
    crash came between the rename and the new genesis. Continue that chain."""
    rotated = [p for p in audit_file.chain_files(path) if p != path]
    if not rotated:
        return
    newest = rotated[-1]
    fd = os.open(newest, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        tail = read_tail(fd, os.fstat(fd).st_size)
        if tail.last is None or tail.last_line is None or tail.last.get("event") != "rotate":
            return
        _read_chain(fd, state, newest, tail.last, tail.last_line)
    finally:
        os.close(fd)
    state.prev_file = newest.name
