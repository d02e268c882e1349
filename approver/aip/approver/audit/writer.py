"""The single writer of the central audit log (DESIGN §8): chain, rotation, group commit.

One ``write()`` per record on the event loop (strict order keeps the chain); fsync runs in a
thread. ``append(durable=True)`` returns once the record is on disk (an ask's allow is sent
only after that). Any write/fsync failure makes the log unavailable until a probe reopens it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections import deque
from pathlib import Path
from typing import Any, Final

from aip.approver.audit import files as audit_file
from aip.approver.audit import proxy_batch
from aip.approver.audit.chain import chain_anchor, line_hash
from aip.approver.audit.dedup import SeenPairs
from aip.approver.audit.resume import resume
from aip.shared.audit.install_key import load_or_create_key
from aip.shared.audit.record import Event, meta_record
from aip.shared.audit.stamp import user_name
from aip.shared.paths import HMAC_KEY_NAME
from aip.shared.safe_write import fsync_dir

log = logging.getLogger(__name__)

MAX_BYTES: Final = 64 << 20  # rotate the current file beyond this size
COMMIT_INTERVAL_S: Final = 0.05  # group commit: fsync at most this long after a write ...
COMMIT_RECORDS: Final = 64  # ... or once this many records are unsynced
PROBE_INTERVAL_S: Final = 1.0  # while unavailable, try to reopen this often
BACKLOG_MAX: Final = 10000  # own records kept in memory while the log is unavailable
GIL_SWITCH_S: Final = 0.0005


class AuditUnavailable(Exception):
    """The log cannot be written now: asks are denied ``audit_unavailable``."""


class AuditLog:
    """``async with AuditLog(path) as audit: await audit.append(record, durable=...)``."""

    def __init__(
        self,
        path: Path,
        *,
        key: bytes | None = None,
        max_bytes: int = MAX_BYTES,
        commit_interval_s: float = COMMIT_INTERVAL_S,
        commit_records: int = COMMIT_RECORDS,
        probe_interval_s: float = PROBE_INTERVAL_S,
        ops: audit_file.FileOps | None = None,
        user: str | None = None,
    ) -> None:
        self.path = path
        self._user = user or user_name()  # peers are checked to be our uid
        self._key = key
        self._max_bytes = max_bytes
        self._commit_interval_s = commit_interval_s
        self._commit_records = commit_records
        self._probe_interval_s = probe_interval_s
        self._ops = ops or audit_file.FileOps()
        self._fd = -1
        self._size = 0
        self._seq = 0
        self._last_hash = ""
        self._chain_id = ""
        self._seen = SeenPairs()
        self._unsynced = 0
        self._synced_seq = 0  # every record up to this seq is on disk
        self._sync_task: asyncio.Future[None] | None = None
        self._file_id = 0  # bumped on every (re)open and rotation: stale fsyncs are ignored
        self._wake = asyncio.Event()
        self._backlog: deque[dict[str, Any]] = deque(maxlen=BACKLOG_MAX)
        self._tasks: list[asyncio.Task[None]] = []
        self.error: str | None = "not opened"

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> AuditLog:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open (or fail into unavailable and keep probing); never raises for I/O."""
        # The fsync thread must get the GIL back quickly to release an ask's allow; with the
        # default 5 ms switch interval a busy loop adds ~5 ms per fsync round under load
        # (measured: durable p50 12 ms -> see scripts/bench_audit.py). Only matters when a
        # second thread waits for the GIL, so the cost elsewhere is nil.
        if sys.getswitchinterval() > GIL_SWITCH_S:
            sys.setswitchinterval(GIL_SWITCH_S)
        self._tasks.append(asyncio.create_task(self._committer(), name="audit-commit"))
        if not self._try_open():
            self._start_probe()

    async def close(self) -> None:
        """Flush and fsync what is written, stop the tasks, close the file."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self._ops.sync(self._fd)
            os.close(self._fd)
            self._fd = -1

    @property
    def available(self) -> bool:
        return self._fd >= 0

    @property
    def seq(self) -> int:
        return self._seq

    # --- appending ----------------------------------------------------------------------

    async def append(self, record: dict[str, Any], *, durable: bool = False) -> int:
        """Write one record; its ``seq``. ``durable``: return only after fsync, raise
        AuditUnavailable if it cannot be made durable. Not durable while unavailable: the
        record waits in a bounded in-memory backlog, written when the log is back."""
        if not self.available:
            if durable:
                raise AuditUnavailable(self.error)
            if len(self._backlog) == self._backlog.maxlen:
                log.warning("audit backlog full; dropping the oldest waiting record")
            self._backlog.append(record)
            return 0
        seq = self._write(record)
        if durable:
            await self._make_durable(seq)
        return seq

    def seen(self, session: str, rseq: int) -> bool:
        return (session, rseq) in self._seen

    @property
    def user(self) -> str:
        """Our user name: what every record's ``user`` says (peers are checked to be our uid)."""
        return self._user

    def append_proxy_records(self, records: list[dict[str, Any]]) -> tuple[int, int]:
        """Records sent by a proxy, each with ``session`` and ``rseq``: pairs already in the
        log are dropped. Returns (written, duplicates) once every record is ``write()``-n; on
        AuditUnavailable the caller must not ack (the proxy keeps them in its spool).
        One ``write()`` for the batch (aip.approver.audit.proxy_batch): all of it or none of
        it; a rotation due inside the batch splits it there. Synchronous (it never waits:
        fsync is the committer's), so a message is written where it is received."""
        written = dropped = 0
        start = 0
        while start < len(records):
            room = self._max_bytes - self._size  # then the file rotates, as in ``_write``
            batch = proxy_batch.build(
                records, start, seq=self._seq, prev=self._last_hash, user=self._user,
                key=self._key, seen=self._seen, room=room, empty=self._size == 0,
            )  # fmt: skip
            dropped += batch.duplicates
            if batch.lines:
                if not self.available:
                    raise AuditUnavailable(self.error)
                self._write_lines(b"\n".join([*batch.lines, b""]), batch)  # each + "\n"
                written += len(batch.lines)
            start = batch.stop
            if start < len(records):  # it needs a new file first: the one-record path rotates
                if not self.available:
                    raise AuditUnavailable(self.error)
                self._write(records[start])
                written += 1
                start += 1
        return written, dropped

    def _write(self, record: dict[str, Any]) -> int:
        record, line = proxy_batch.record_line(
            record, self._seq + 1, self._last_hash, self._user, self._key
        )
        if self._size + len(line) + 1 > self._max_bytes and self._size > 0:
            self._rotate()
            line = self._line(record, self._seq + 1, self._last_hash)
        self._write_line(line)
        session, rseq = record.get("session"), record.get("rseq")
        if isinstance(session, str) and isinstance(rseq, int):
            self._seen.add(session, rseq)
        return self._seq

    _line = staticmethod(proxy_batch.chained_line)

    def _write_line(self, line: bytes) -> None:
        """One record, one write(); see ``_write_lines``."""
        self._write_lines(line + b"\n", None, line)

    def _write_lines(self, data: bytes, batch: proxy_batch.Batch | None, line: bytes = b"") -> None:
        """One write() of one line or a batch's; on any failure the file is cut back to
        before it and the log goes unavailable: none of it is taken as written."""
        try:
            n = self._ops.write(self._fd, data)
            if n != len(data):
                raise OSError(f"short write: {n} of {len(data)} bytes")
        except OSError as exc:
            with contextlib.suppress(OSError):  # else the next open repairs the torn tail
                self._ops.truncate(self._fd, self._size)
            self._fail(f"write failed: {exc}")
            raise AuditUnavailable(self.error) from exc
        self._size += len(data)
        if batch is None:
            count, self._last_hash = 1, line_hash(line)
        else:
            count, self._last_hash = len(batch.lines), batch.last_hash
            if batch.run is not None:
                self._seen.add_run(*batch.run)
            else:
                for session, rseq in batch.pairs:
                    self._seen.add(session, rseq)
        self._seq += count
        was = self._unsynced
        self._unsynced += count
        if self._unsynced >= self._commit_records or was == 0:
            self._wake.set()  # commit now, or start the interval clock

    # --- group commit and durability ----------------------------------------------------

    async def _committer(self) -> None:
        """fsync off the request path: ``commit_interval_s`` after the first unsynced write,
        or as soon as ``commit_records`` are unsynced."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._unsynced < self._commit_records:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._commit_interval_s):
                        while self._unsynced < self._commit_records:
                            await self._wake.wait()
                            self._wake.clear()
            if self._fd < 0 or self._synced_seq >= self._seq:
                continue
            with contextlib.suppress(AuditUnavailable):
                await self._make_durable(self._seq)

    async def _make_durable(self, seq: int) -> None:
        """Return once record ``seq`` is on disk. One fsync at a time; whoever arrives while
        one runs shares the next (the running one may have started before their write)."""
        while self._synced_seq < seq:
            if self._fd < 0:
                raise AuditUnavailable(self.error)
            task = self._sync_task
            if task is None or task.done():
                task = self._sync_task = asyncio.ensure_future(self._sync_now())
            await asyncio.shield(task)

    async def _sync_now(self) -> None:
        target, file_id = self._seq, self._file_id
        self._unsynced = 0
        fd = os.dup(self._fd)  # rotation may close the original while we sync
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._ops.sync, fd)
        except OSError as exc:
            # fsyncgate: a failed fsync is never retried as if it had worked.
            if file_id == self._file_id:
                self._fail(f"fsync failed: {exc}")
            raise AuditUnavailable(f"fsync failed: {exc}") from exc
        finally:
            os.close(fd)
        if file_id == self._file_id:
            self._synced_seq = max(self._synced_seq, target)

    async def flush(self) -> None:
        """fsync everything written so far (used at shutdown and by tests)."""
        if self.available:
            await self._make_durable(self._seq)

    # --- opening, repair, rotation ------------------------------------------------------

    def _try_open(self) -> bool:
        try:
            self._open_and_repair()
        except OSError as exc:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self.error = f"cannot open {self.path}: {exc}"
            log.warning("audit log unavailable: %s", self.error)
            return False
        self.error = None
        self._file_id += 1
        self._synced_seq = self._seq  # _open_and_repair synced what the file holds
        self._drain_backlog()
        return True

    def _open_and_repair(self) -> None:
        audit_file.prepare_dir(self.path.parent)
        if self._key is None:
            try:
                self._key = load_or_create_key(self.path.parent / HMAC_KEY_NAME)
            except ValueError as exc:
                raise OSError(str(exc)) from exc
        self._fd = audit_file.open_log(self.path)
        state = resume(self._fd, self.path, self._ops)
        self._size = state.size
        if state.seen is not None:
            self._seq, self._last_hash, self._chain_id = state.seq, state.last_hash, state.chain_id
            self._seen = state.seen
        if state.rotate_to:  # we crashed between the rotate record and the rename: finish
            self._finish_rotation(self.path.with_name(state.rotate_to))
        elif state.prev_file or state.seen is None:
            self._start_file(prev_file=state.prev_file or None)
        if state.discarded:
            self._write(
                meta_record(
                    Event.RECOVERED_TAIL,
                    discarded_bytes=len(state.discarded),
                    discarded_sha256=line_hash(state.discarded),
                    side_file=state.side_file,
                )
            )
            log.warning("audit log: discarded a torn tail of %d bytes", len(state.discarded))

    def _start_file(self, prev_file: str | None) -> None:
        """Write the genesis of the (empty) current file and make its creation durable."""
        if prev_file is None:  # a file without a predecessor starts a fresh chain
            self._chain_id = secrets.token_hex(32)
            self._last_hash = chain_anchor(self._chain_id)
            self._seq = 0
        genesis = meta_record(Event.GENESIS, chain_id=self._chain_id, prev_file=prev_file, format=1)
        self._write_line(self._line(genesis, self._seq + 1, self._last_hash))
        self._ops.sync(self._fd)
        fsync_dir(self.path.parent)
        self._unsynced = 0
        self._synced_seq = self._seq

    def _rotate(self) -> None:
        """rotate record -> fsync -> rename -> new file -> genesis (synchronous: rare)."""
        target = audit_file.rotated_path(self.path, self._seq + 1)
        rotate = meta_record(Event.ROTATE, next_file=self.path.name, rotated_to=target.name)
        self._write_line(self._line(rotate, self._seq + 1, self._last_hash))
        try:
            self._finish_rotation(target)
        except OSError as exc:
            self._fail(f"rotation failed: {exc}")
            raise AuditUnavailable(self.error) from exc
        log.info("audit log rotated to %s", target)

    def _finish_rotation(self, target: Path) -> None:
        """After the rotate record: fsync, rename, new file, genesis. Each step survives a
        crash: the next start finishes the rename or links the new file (audit_resume)."""
        self._ops.sync(self._fd)
        if target.exists():
            raise OSError(f"{target} already exists")
        os.rename(self.path, target)
        old = self._fd
        self._fd = audit_file.open_log(self.path)
        self._file_id += 1
        os.close(old)
        self._size = 0
        self._start_file(prev_file=target.name)

    # --- failure and recovery -----------------------------------------------------------

    def _fail(self, why: str) -> None:
        if self._fd < 0:
            return
        self.error = why
        log.warning("audit log unavailable, asks will be denied: %s", why)
        os.close(self._fd)
        self._fd = -1
        self._unsynced = 0
        self._file_id += 1
        self._start_probe()

    def _start_probe(self) -> None:
        self._tasks = [t for t in self._tasks if not t.done()]
        if not any(t.get_name() == "audit-probe" for t in self._tasks):
            self._tasks.append(asyncio.create_task(self._probe(), name="audit-probe"))

    async def _probe(self) -> None:
        while not self.available:
            await asyncio.sleep(self._probe_interval_s)
            if self._try_open():
                log.info("audit log writable again: %s", self.path)

    def _drain_backlog(self) -> None:
        while self._backlog and self.available:
            record = self._backlog.popleft()
            try:
                self._write(record)
            except AuditUnavailable:
                self._backlog.appendleft(record)
