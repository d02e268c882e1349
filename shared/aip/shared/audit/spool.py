"""The proxy's spool: audit records it could not hand to the approver, kept in order.

``<audit log dir>/spool/<session>.jsonl``, 0600 in a 0700 directory, one line per record
(each keeps its ``session`` + ``rseq``), authenticated with the session key
(aip.shared.audit.spool_line). The proxy holds an flock on it while alive, so the approver
ingests only spools of proxies that are gone; a live proxy re-sends its own, and like the
approver it takes back only lines whose MAC holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import orjson

from aip.shared import logs, paths
from aip.shared.audit import spool_compact
from aip.shared.audit.rseqs import RseqSet
from aip.shared.audit.spool_line import LineKey

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

log = logs.get(__name__)

SPOOL_DIR_NAME: Final = "spool"
MAX_SPOOL_BYTES: Final = 256 << 20  # beyond this, new records are dropped (and logged)
READ_CHUNK_BYTES: Final = 1 << 20
# Acknowledged records tolerated in the file before a compaction, or bytes of file: each
# compaction copies and fsyncs the unacknowledged tail (~a window, 256 records, at 64 in
# flight), so fewer of them cost less per record (approval thread 7.3 -> 3.7-4.0 us per call
# at 64 in flight with an approver, 1,024 -> 8,192), and a re-read skips the acknowledged
# lines unread (spool_compact.unacked_tail). The byte bound keeps big records (up to 64 KB
# each) from filling MAX_SPOOL_BYTES with acknowledged ones.
COMPACT_MIN_RECORDS: Final = 8192
COMPACT_BYTES: Final = 8 << 20
KEY_BYTES: Final = 32


def spool_dir(audit_log: Path | None = None) -> Path:
    """``spool/`` beside the audit log (default: DESIGN §3's, ``$AIP_AUDIT_LOG`` honoured):
    proxies spool there and the approver writing that log ingests from there."""
    return (audit_log or paths.default_audit_log()).parent / SPOOL_DIR_NAME


def read_lines(data: bytes) -> list[bytes]:
    """The complete lines of spool data, without newlines; a torn last line (crash
    mid-write) is left out."""
    return data.split(b"\n")[:-1]  # the part after the last newline is torn or empty


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    st = os.fstat(fd)
    if not paths.private_file(st):
        os.close(fd)
        raise PermissionError(f"{path}: not a private regular file of ours")
    return fd


class Spool:
    """Append, read back in order, drop what the approver acknowledged. Thread-safe."""

    def __init__(
        self, session: str, directory: Path | None = None, key: bytes | None = None
    ) -> None:
        """``key``: the session key (default: 32 fresh random bytes), sent in hello."""
        self.session = session
        self.key = key or os.urandom(KEY_BYTES)  # = secrets.token_bytes, without its import
        self._line_key = LineKey(self.key, session)
        self.directory = directory or spool_dir()
        self.path = self.directory / f"{session}.jsonl"
        self._lock = threading.Lock()
        self._fd = -1
        self._unacked = RseqSet()  # rseqs in the file not yet acknowledged (as ranges)
        self._acked = 0  # acknowledged records still in the file (dropped by compaction)
        self._size = 0
        self._compacting = False  # a compaction's copy runs (without the lock)
        self.dropped = 0

    def _ensure_open(self) -> int:
        if self._fd < 0:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            problem = paths.dir_problem(self.directory)
            if problem is not None:
                raise PermissionError(f"spool directory unsafe: {problem}")
            fd = _open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live
            except OSError:
                os.close(fd)  # held elsewhere: never keep (or leak) it; the next use tries again
                raise
            self._fd = fd
            self._size = os.fstat(fd).st_size
        return self._fd

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """One write() for the batch. OSError if the spool cannot be written."""
        records = list(records)
        data = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)
        self.append_lines(data, [r["rseq"] for r in records])

    def append_line(self, rseq: int, line: bytes) -> None:
        """One serialized record (a newline-terminated line): what ``append_lines(line,
        [rseq])`` writes, without its lists (a lone call's record takes this path)."""
        if not line:
            return
        if line.find(b"\n") != len(line) - 1:  # not exactly one line: the general checks
            self.append_lines(line, [rseq])
            return
        self._write(self._line_key.sign(rseq, line[:-1]), rseq, None)

    def sign_with_mac2(self, on: bool) -> None:
        """Sign the lines written from now on with BLAKE2b (an approver that checks either MAC
        welcomed us) or with the HMAC (aip.shared.audit.spool_line); earlier lines stay."""
        self._line_key.sign_mac2 = on

    def append_lines(self, data: bytes, rseqs: Iterable[int]) -> None:
        """Already serialized records (newline-terminated lines) with their rseqs, in order;
        each is written with its MAC."""
        if not data:
            return
        rseqs = list(rseqs)
        if len(rseqs) == 1 and data.find(b"\n") == len(data) - 1:
            self._write(self._line_key.sign(rseqs[0], data[:-1]), rseqs[0], None)
            return
        bodies = read_lines(data)
        if len(bodies) != len(rseqs):
            raise ValueError(f"spool: {len(bodies)} lines but {len(rseqs)} rseqs")
        sign = self._line_key.sign
        data = b"".join(sign(r, b) for r, b in zip(rseqs, bodies, strict=True))
        self._write(data, None, rseqs)

    def _write(self, data: bytes, rseq: int | None, rseqs: list[int] | None) -> None:
        """Append signed lines in one write(): one record's ``rseq``, or several ``rseqs``."""
        with self._lock:
            fd = self._fd if self._fd >= 0 else self._ensure_open()
            if self._size + len(data) > MAX_SPOOL_BYTES:  # size kept here: no fstat per record
                self.dropped += data.count(b"\n")
                log.warning("spool %s is full; %d audit records dropped", self.path, self.dropped)
                return
            written = os.write(fd, data)  # raises on failure: never negative
            self._size += written
            if written != len(data):
                raise OSError(f"spool: short write ({written} of {len(data)} bytes)")
            if rseq is not None:
                self._unacked.add(rseq)
            else:
                self._unacked.update(rseqs or ())

    def pending(self, limit: int | None = None, *, raw: bool = False) -> list[Any]:
        """Spooled records not yet acknowledged, oldest first (at most ``limit``). When they
        are the file's last lines (the usual case), only those are read
        (``spool_compact.unacked_tail``); else the file is read in chunks from the start,
        so a big spool is not parsed whole for the first few.

        ``raw``: from the tail, each record as the bytes it was spooled as (authentic for
        its rseq, so never parsed): what the outbox sends. A re-read of 1,025 records as
        dicts took ~4 MB of the proxy's RSS for good (issue 16), as bytes ~0.7 MB. The
        whole-file read still gives dicts."""
        with self._lock:
            if self._fd < 0 and not self.path.exists():
                return []
            fd = self._ensure_open()
            foreign = not self._unacked and not self._acked  # a file we did not write
            if self._unacked:
                size, key = os.fstat(fd).st_size, self._line_key
                tail = spool_compact.unacked_tail(fd, size, self._unacked, limit, key, raw=raw)
                if tail is not None:
                    return tail
            out: list[dict[str, Any]] = []
            offset, rest = 0, b""
            while limit is None or len(out) < limit:
                chunk = os.pread(fd, READ_CHUNK_BYTES, offset)
                if not chunk:
                    break
                offset += len(chunk)
                data = rest + chunk
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
                for _, record in self._authentic(data):
                    rseq = record.get("rseq")
                    if foreign and isinstance(rseq, int):
                        self._unacked.add(rseq)
                    if rseq in self._unacked:
                        out.append(record)
            return out if limit is None else out[:limit]

    def __len__(self) -> int:
        return len(self.pending())

    def ack(self, rseqs: Iterable[int]) -> None:
        """Forget the records the approver has written (by ``rseq``). Cheap in the steady
        state: once every record in the file is acknowledged the file is cut to zero; a big
        file that is mostly acknowledged is compacted."""
        with self._lock:
            if self._fd < 0:
                return
            rseqs = rseqs if isinstance(rseqs, list) else list(rseqs)
            first = rseqs[0] if rseqs and type(rseqs[0]) is int else 0
            # A batch acked in order: one range operation, not one per record. From 2 on, as
            # only 0 and 1 could be equal to a bool (which the loop below never discards).
            if (
                first >= 2
                and rseqs == list(range(first, first + len(rseqs)))
                and self._unacked.discard_run(first, first + len(rseqs))
            ):
                self._acked += len(rseqs)
            else:
                for rseq in rseqs:
                    if rseq in self._unacked:
                        self._unacked.discard(rseq)
                        self._acked += 1
            if not self._acked:
                return
            if not self._unacked:
                os.ftruncate(self._fd, 0)  # atomic, and nothing is left to lose
                self._acked = 0
                self._size = 0
                return
            many = self._acked > COMPACT_MIN_RECORDS or self._size > COMPACT_BYTES
            if self._compacting or not (many and self._acked > len(self._unacked)):
                return
            # The copy runs without the lock (aip.shared.audit.spool_compact): on a dup of
            # the fd, so a close meanwhile cannot hand its number to another file.
            self._compacting = True
            fd, size = os.dup(self._fd), os.fstat(self._fd).st_size
            unacked = self._unacked.copy()
        try:
            self._compact(fd, size, unacked)
        finally:
            os.close(fd)
            with self._lock:
                self._compacting = False

    def _compact(self, fd: int, size: int, unacked: RseqSet) -> None:
        """Write the unacknowledged rest to a new locked file and rename it over: a crash
        never loses a record; someone ingesting the old inode finds only duplicates."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        new = _open_private(tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL)
        try:
            fcntl.flock(new, fcntl.LOCK_EX | fcntl.LOCK_NB)
            copied = spool_compact.copy(fd, new, size, unacked, self._line_key, str(self.path))
        except BaseException:
            spool_compact.abandon(new, tmp)
            raise
        with self._lock:  # what came meanwhile, then the switch: appends wait only for this
            try:
                if self._fd < 0 or not os.path.samestat(os.fstat(self._fd), os.fstat(fd)):
                    spool_compact.abandon(new, tmp)  # closed (or reopened) meanwhile
                    return
                end = os.fstat(self._fd).st_size
                copied += spool_compact.finish(fd, new, size, end)
                os.rename(tmp, self.path)
            except BaseException:
                spool_compact.abandon(new, tmp)
                raise
            os.close(self._fd)
            self._fd = new
            # Every unacknowledged record is in the new file once; the rest of its lines
            # were acknowledged while the copy ran.
            self._acked = copied - len(self._unacked)
            self._size = os.fstat(new).st_size

    def _authentic(self, data: bytes) -> list[tuple[bytes, dict[str, Any]]]:
        """(line, record) of each line whose MAC holds; the others are skipped and logged:
        nobody but this process had the key, so someone else wrote them."""
        out = []
        for number, line in enumerate(read_lines(data), 1):
            record, why = self._line_key.open(line)
            if record is None:
                log.warning("spool %s: line %d skipped: %s", self.path, number, why)
            else:
                out.append((line, record))
        return out

    def close(self) -> None:
        """Release the lock; an empty spool file is removed, a non-empty one stays for the
        approver to ingest."""
        with self._lock:
            if self._fd < 0:
                return
            if os.fstat(self._fd).st_size == 0:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            os.close(self._fd)
            self._fd = -1


def claim_orphans(directory: Path | None = None) -> list[tuple[Path, int]]:
    """Spool files whose proxy is gone (their flock is free): (path, locked fd) pairs for the
    approver, which ingests each in order, then calls ``release_orphan``."""
    found: list[tuple[Path, int]] = []
    folder = directory or spool_dir()
    try:
        names = sorted(p for p in folder.iterdir() if p.suffix == ".jsonl")
    except FileNotFoundError:
        return found
    for path in names:
        try:
            fd = _open_private(path, os.O_RDWR)
        except OSError as exc:
            log.warning("spool %s skipped: %s", path, exc)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a live proxy: it re-sends its own spool
            continue
        if not _same_file(path, fd):  # compacted (renamed over) since we opened it
            os.close(fd)
            continue
        found.append((path, fd))
    return found


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def read_orphan(fd: int) -> list[bytes]:
    """An orphan spool's complete lines, for the approver to open with the session key."""
    return read_lines(os.pread(fd, os.fstat(fd).st_size, 0))


def release_orphan(path: Path, fd: int, *, ingested: bool) -> None:
    """After a successful ingest the file is removed (still under our lock)."""
    try:
        if ingested and _same_file(path, fd):
            path.unlink()
    finally:
        os.close(fd)
