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

from aip.approver import audit_file
from aip.approver.audit_chain import iter_lines_backwards, line_hash, parse_line, read_tail
from aip.approver.audit_dedup import SeenPairs, rebuild

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


def resume(fd: int, path: Path, ops: audit_file.FileOps) -> Resume:
    """Repair and read the open file ``fd`` (OSError: not a log we can continue)."""
    tail = read_tail(fd, os.fstat(fd).st_size)
    state = Resume(size=tail.good_size, discarded=tail.discarded)
    if tail.discarded:
        side = path.with_name(f"{path.name}.torn-{int(time.time() * 1000)}")
        audit_file.write_side_file(side, tail.discarded)
        ops.truncate(fd, tail.good_size)
        ops.sync(fd)
        state.side_file = side.name
    if tail.last is None or tail.last_line is None:
        return state
    first = parse_line(os.pread(fd, MAX_FIRST_LINE_BYTES, 0).split(b"\n", 1)[0])
    if first is None or first.get("event") != "genesis":
        raise OSError(f"{path}: does not start with a genesis record")
    state.seq = tail.last["seq"]
    state.last_hash = line_hash(tail.last_line)
    state.chain_id = str(first.get("chain_id", ""))
    complete = state.size <= DEDUP_WINDOW_BYTES and first.get("prev_file") is None
    lines = iter_lines_backwards(fd, state.size, DEDUP_WINDOW_BYTES)
    state.seen = rebuild(lines, window_complete=complete)
    ops.sync(fd)  # what the file holds is durable before we build on it
    return state
