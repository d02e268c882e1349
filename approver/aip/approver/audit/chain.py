"""The audit hash chain: line hashes, reading the tail of a log, verifying files in order.

``prev`` of a record is the SHA-256 (hex) of the previous line's bytes WITHOUT its newline;
a fresh chain's genesis has ``prev`` = SHA-256 of its random ``chain_id``. A rotated-to file
starts with a genesis whose ``prev`` is the hash of the old file's last line (its ``rotate``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

TAIL_CHUNK_BYTES = 65536
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
MAX_LINE_BYTES = 16 << 20


def line_hash(line: bytes) -> str:
    """SHA-256 hex of one line's bytes, the newline excluded."""
    return hashlib.sha256(line).hexdigest()


def chain_anchor(chain_id: str) -> str:
    """``prev`` of the genesis that starts a fresh chain."""
    return hashlib.sha256(bytes.fromhex(chain_id)).hexdigest()


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A record, or None when the line is not a JSON object with an int ``seq``."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("seq"), int):
        return None
    return obj


@dataclass(slots=True)
class Tail:
    """What start-up needs from the end of the current file."""

    good_size: int  # the file is sound up to here (ends after a newline, or 0)
    last_line: bytes | None  # the last sound line, newline excluded
    last: dict[str, Any] | None  # ... parsed
    discarded: bytes = b""  # torn bytes after good_size


def read_tail(fd: int, size: int) -> Tail:
    """Find the last sound line. Bytes after the last newline are torn (a crash mid-write);
    one final complete line that is not a record is discarded too (storage corruption).
    Anything worse is not a torn tail: OSError, the caller refuses the file."""
    end, window, bad_lines = size, TAIL_CHUNK_BYTES, 0
    discarded = b""
    while end > 0:
        if window > MAX_LINE_BYTES:
            raise OSError(f"audit log tail: no line end within {MAX_LINE_BYTES} bytes")
        start = max(0, end - window)
        chunk = os.pread(fd, end - start, start)
        if not chunk.endswith(b"\n"):  # torn: everything after the last newline goes
            cut = chunk.rfind(b"\n")
            if cut < 0 and start > 0:
                window *= 2
                continue
            discarded = chunk[cut + 1 :] + discarded
            end = start + cut + 1
            continue
        nl = chunk.rfind(b"\n", 0, len(chunk) - 1)
        if nl < 0 and start > 0:
            window *= 2  # the last line starts before this window
            continue
        line = chunk[nl + 1 : -1]
        record = parse_line(line)
        if record is not None:
            return Tail(end, line, record, discarded)
        bad_lines += 1
        if bad_lines > 1:
            raise OSError("audit log tail: several lines are not records (not an audit log?)")
        discarded = chunk[nl + 1 :] + discarded
        end = start + nl + 1
    return Tail(0, None, None, discarded)


def iter_lines_backwards(fd: int, size: int, limit_bytes: int) -> Iterator[bytes]:
    """Complete lines of the last ``limit_bytes`` of the file, newest first."""
    start = max(0, size - limit_bytes)
    data = os.pread(fd, size - start, start)
    if start > 0:
        data = data[data.find(b"\n") + 1 :]  # the first line is probably partial
    yield from reversed(data.splitlines())


# --- verification --------------------------------------------------------------------------


@dataclass(slots=True)
class Broken:
    file: str
    line: int  # 1-based
    why: str


@dataclass(slots=True)
class VerifyReport:
    files: list[str]
    records: int = 0
    broken: Broken | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken is None


def _why_prev(seq: int, want_seq: int, lineno: int) -> tuple[int, str]:
    """Where the chain breaks and why: (line to report, reason)."""
    if seq > want_seq:
        return lineno, f"seq jumps from {want_seq - 1} to {seq}: line(s) deleted or moved"
    if seq < want_seq:
        return lineno, f"seq goes back from {want_seq - 1} to {seq}: lines reordered or repeated"
    if lineno > 1:
        return lineno - 1, (
            f"line {lineno - 1} was edited: its SHA-256 is not the prev of line {lineno}"
            f" (or line {lineno}'s prev was edited)"
        )
    return lineno, "prev is not the SHA-256 of the previous file's last line (edited)"


class _Verifier:
    def __init__(self) -> None:
        self.prev_hash: str | None = None  # hash of the last line seen
        self.prev_seq = 0
        self.chain_id: str | None = None
        self.after_rotate = False

    def check(
        self, rec: dict[str, Any], lineno: int, first_in_file: bool
    ) -> tuple[int, str] | str | None:
        event, seq, prev = rec.get("event"), rec.get("seq"), rec.get("prev")
        if not isinstance(prev, str) or not isinstance(seq, int):
            return "record without seq/prev"
        if first_in_file:
            if event != "genesis":
                return "the first line of a file is not a genesis record"
            if self.prev_hash is None:  # start of what we were given
                return self._check_anchor(rec)
            if not self.after_rotate:
                return "previous file did not end with a rotate record"
            if rec.get("chain_id") != self.chain_id:
                return "genesis belongs to another chain (chain_id differs)"
        elif self.after_rotate:
            return "record after a rotate record in the same file"
        elif event == "genesis":
            return "genesis record in the middle of a file"
        if prev != self.prev_hash:
            return _why_prev(seq, self.prev_seq + 1, lineno)
        if seq != self.prev_seq + 1:
            return f"seq {seq} follows {self.prev_seq}"
        return None

    def _check_anchor(self, rec: dict[str, Any]) -> str | None:
        chain_id = rec.get("chain_id")
        if not isinstance(chain_id, str) or len(chain_id) != 64:
            return "genesis without a chain_id"
        self.chain_id = chain_id
        if rec.get("prev_file") is None and rec["prev"] != chain_anchor(chain_id):
            return "genesis prev is not the anchor of its chain_id"
        return None

    def accept(self, line: bytes, rec: dict[str, Any]) -> None:
        self.prev_hash = line_hash(line)
        self.prev_seq = rec["seq"]
        self.after_rotate = rec.get("event") == "rotate"


def verify_files(
    paths: Iterable[Path], *, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Check the chain across files given oldest first; stop at the first broken line.
    ``progress(done_bytes, total_bytes)`` is called about every 4 MiB."""
    files = list(paths)
    report = VerifyReport([str(p) for p in files])
    total = sum(p.stat().st_size for p in files)
    done = next_report = 0
    v = _Verifier()
    for index, path in enumerate(files):
        with path.open("rb") as fh:
            lineno = 0
            for raw in fh:
                lineno += 1
                done += len(raw)
                if progress is not None and done >= next_report:
                    progress(done, total)
                    next_report = done + (4 << 20)
                if not raw.endswith(b"\n"):
                    report.broken = Broken(str(path), lineno, "incomplete last line (torn)")
                    return report
                line = raw[:-1]
                if _NOT_PRINTABLE.search(line):
                    report.broken = Broken(str(path), lineno, "byte outside printable ASCII")
                    return report
                rec = parse_line(line)
                if rec is None:
                    report.broken = Broken(str(path), lineno, "not a JSON record with seq")
                    return report
                if index == 0 and lineno == 1 and rec.get("prev_file") is not None:
                    report.notes.append(
                        f"{path}: chain starts after file {rec['prev_file']} (not checked)"
                    )
                why = v.check(rec, lineno, lineno == 1)
                if why is not None:
                    at, text = why if isinstance(why, tuple) else (lineno, why)
                    report.broken = Broken(str(path), at, text)
                    return report
                v.accept(line, rec)
                report.records += 1
            if lineno == 0:
                report.broken = Broken(str(path), 1, "empty file")
                return report
    if v.after_rotate and files:
        # The newest file ends with its rotate record, so a newer file must follow: the current
        # log is missing (deleted, or not given), and "intact" would hide everything after it.
        report.broken = Broken(
            str(files[-1]), lineno, "ends with a rotate record but the newer file is missing"
        )
    if progress is not None:
        progress(done, total)
    return report
