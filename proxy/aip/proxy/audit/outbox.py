"""The proxy's audit records on their way to the approver: spool first, then ``audit`` batches.

``submit`` (any thread) writes the record to the spool (so a crash loses nothing) and queues
it; the approval client's thread sends batches of up to 64 records (and at most
MAX_BATCH_BYTES) while connected, and drops them from the spool on ``audit_ack``. After a
reconnect, or when an ack is overdue, everything unacknowledged is re-sent from the spool;
the approver drops ``(session, rseq)`` pairs it already has.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice, repeat

import orjson

from aip.shared import logs, paths
from aip.shared.audit.install_key import HMAC_KEY_BYTES, load_or_create_key
from aip.shared.audit.record import cap_record
from aip.shared.audit.spool import Spool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

log = logs.get(__name__)

MAX_BATCH_BYTES: Final = 512 * 1024  # well under the approver's frame limit
WINDOW: Final = 4  # batches in flight
RESEND_S: Final = 5.0  # an unacknowledged batch is re-sent (with the rest) after this
# A record waits at most this long for others to share its messages, and records are held
# until a window's worth (WINDOW full messages) is queued: the approver then takes them in one
# wake-up. Each wake-up is a burst the call in flight waits for when everything shares one CPU
# (bench_proxy --pin), so fewer, larger bursts delay fewer calls (issue 16: p99). Measured
# (scripts/bench_audit_client.py, one record every 0.2 ms, load ~10, approver CPU per record):
# flush 10 ms 52-58 us, 25 ms 38-40, 50 ms 40-45, 100 ms 25-28 (the approver's cost per
# message: ~460 us after the approver's own cuts, ~790 before). At a busy proxy's rate a full
# window fills in well under FLUSH_S; the time bound matters for slow trickles.
FLUSH_S: Final = 0.05
MAX_RECORD_BYTES: Final = 64 * 1024  # bigger records are capped (head + tail + HMAC) first
MAX_QUEUED: Final = 1024  # beyond this, records wait only in the spool (read back later)


class AuditOutbox:
    def __init__(
        self, spool: Spool, *, resend_s: float = RESEND_S, flush_s: float = FLUSH_S
    ) -> None:
        self.spool = spool
        self._resend_s = resend_s
        self._flush_s = flush_s
        # The flush delay runs on the real monotonic clock, whatever clock the client uses
        # (tests give it a fake one): records are never held back by a clock that stands.
        self._waiting_since: float | None = None  # time.monotonic() of the first take
        self._last_now = 0.0  # the client's clock at the last take (for next_deadline)
        self._lock = threading.Lock()
        self._queue: deque[bytes | dict[str, Any]] = deque()  # lines, or records re-read
        self._inflight: dict[int, float] = {}  # batch -> sent at (client's clock)
        self._batch = 0
        self._reload = False  # re-send everything unacknowledged, from the spool
        # The spool holds records the queue does not (it was full): newer ones join them
        # there, in order, until the queue drained and they are read back.
        self._more = False
        # An approver welcomed us and takes batches (``take_batches`` ran since ``offline``).
        # Until then records are only spooled: the welcome re-reads every unacknowledged one
        # from the spool (``resend_all``), so a copy in the queue would only hold memory (up
        # to MAX_QUEUED lines, ~0.6 MB, for a proxy whose approver is not running).
        self._live = False
        self._wake: Callable[[], None] | None = None
        # Records of a relay burst are spooled with one write() (see ``hold``). This lock
        # keeps spool and queue in submit (rseq) order across threads.
        self._order = threading.Lock()
        self._holders: set[int] = set()  # threads holding their records until ``flush``
        self._held: list[tuple[int, bytes]] = []

    # --- any thread -----------------------------------------------------------------------

    def submit(self, rseq: int, line: bytes) -> None:
        """One serialized record (``line`` ends with a newline), in rseq order. Cheap: one
        write() to the spool (or none while this thread holds: ``hold``); parsing and
        batching happen on the client's thread."""
        with self._order:
            if self._holders and threading.get_ident() in self._holders:
                self._held.append((rseq, line))
                return
            if self._held:  # another thread's held records are older: first, in one write
                records = [*self._held, (rseq, line)]
                self._held = []
                wake = self._put(records)
            else:
                wake = self._put_one(rseq, line)
        if wake is not None:
            wake()

    def hold(self) -> None:
        """Keep this thread's records until ``flush``: a relay burst's records take one
        spool write. The relay flushes before it writes to the server or the client, so a
        decision is still spooled before anyone acts on it."""
        with self._order:
            self._holders.add(threading.get_ident())

    def flush(self) -> None:
        """Spool and queue what was held (one write), and stop holding."""
        with self._order:
            self._holders.discard(threading.get_ident())
            records, self._held = self._held, []
            wake = self._put(records) if records else None
        if wake is not None:
            wake()

    def _put(self, records: list[tuple[int, bytes]]) -> Callable[[], None] | None:
        """Spool then queue ``records`` (called with ``_order`` held); the wake to call."""
        lines = [line for _, line in records]
        spooled = False
        try:
            data = lines[0] if len(lines) == 1 else b"".join(lines)
            self.spool.append_lines(data, [rseq for rseq, _ in records])
            spooled = True
        except OSError as exc:  # still try to hand them over directly
            log.warning("cannot spool %d audit record(s): %s", len(records), exc)
        with self._lock:
            if spooled and (self._more or not self._live):
                # Read back from the spool: at the welcome, or (after an overflow) once the
                # queue drained, so these stay behind the older records waiting there.
                self._more = True
                return None  # nothing the client could send now: no wake
            was_empty = not self._queue
            room = max(MAX_QUEUED - len(self._queue), 0)
            if room < len(lines):
                self._more = True  # they are in the spool: read back once the queue drained
            self._queue.extend(lines[:room])
            return self._wake if was_empty else None

    def _put_one(self, rseq: int, line: bytes) -> Callable[[], None] | None:
        """``_put`` of one record, without its lists: a lone call's record (the same spool
        bytes and queue; 1.8-2.8 us less per record in hot loops here)."""
        spooled = False
        try:
            self.spool.append_line(rseq, line)
            spooled = True
        except OSError as exc:  # still try to hand it over directly
            log.warning("cannot spool 1 audit record(s): %s", exc)
        with self._lock:
            if spooled and (self._more or not self._live):  # as in ``_put``
                self._more = True
                return None  # nothing the client could send now: no wake
            queue = self._queue
            was_empty = not queue
            if len(queue) < MAX_QUEUED:
                queue.append(line)
            else:
                self._more = True  # it is in the spool: read back once the queue drained
            return self._wake if was_empty else None

    def attach(self, wake: Callable[[], None]) -> None:
        """The approval client: ``wake`` makes its thread call ``take_batches`` soon."""
        with self._lock:
            self._wake = wake
            self._reload = True  # records made before it was attached: sent after welcome

    # --- the approval client's thread -----------------------------------------------------

    def take_batches(self, now: float) -> list[tuple[int, list[bytes]]]:
        """Batches to send now (call only while connected and welcomed): each record as one
        line of JSON (its newline included), ready for ``protocol.messages.audit_frame``. The
        lines the recorder made are sent as they are: parsing every record again here only to
        serialize it again cost this thread ~6 us per record, and its GIL time delays the relay.
        """
        # Here, not at the top: the protocol's messages load with the approval client only,
        # never on the relay's start-up path (tests/proxy/test_startup_imports.py).
        from aip.shared.protocol.messages import MAX_AUDIT_RECORDS

        out: list[tuple[int, list[bytes]]] = []
        with self._lock:
            self._live = True  # before the spool is read: see ``_put``
            if self._reload or (self._more and not self._queue and not self._inflight):
                self._reload = False
                self._inflight.clear()
                pending = self.spool.pending(limit=MAX_QUEUED + 1, raw=True)  # bounded memory
                self._more = len(pending) > MAX_QUEUED
                self._queue = deque(pending[:MAX_QUEUED])
            self._last_now = now
            real = time.monotonic()
            if not self._queue:
                self._waiting_since = None
                return out
            if self._waiting_since is None:
                self._waiting_since = real
            due = now == math.inf or real - self._waiting_since >= self._flush_s
            if not due and len(self._queue) < MAX_AUDIT_RECORDS * WINDOW:
                return out  # wait a moment for more (next_deadline wakes us)
            while self._queue and len(self._inflight) < WINDOW:
                batch = _lines_batch(self._queue, MAX_AUDIT_RECORDS)
                if batch is None:
                    batch = _record_batch(self._queue, MAX_AUDIT_RECORDS)
                self._batch += 1
                self._inflight[self._batch] = now
                out.append((self._batch, batch))
            self._waiting_since = real if self._queue else None
        return out

    def on_ack(self, batch: int, rseqs: list[int]) -> None:
        with self._lock:
            self._inflight.pop(batch, None)
        try:
            self.spool.ack(rseqs)
        except OSError as exc:
            log.warning("cannot trim the audit spool: %s", exc)

    def drop(self, batch: int, records: list[bytes]) -> None:
        """A batch that can never be sent: forget what of it can be read (as if acked).
        ``records``: its lines, as ``take_batches`` gave them."""
        rseqs = []
        for body in records:
            try:
                rseq = orjson.loads(body).get("rseq")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if type(rseq) is int:
                rseqs.append(rseq)
        self.on_ack(batch, rseqs)

    def offline(self) -> None:
        """The approver connection is lost: ``resend_all``, and keep no records in memory
        until an approver welcomes us again (the welcome re-reads them from the spool)."""
        with self._lock:
            self._live = False
            self._queue.clear()  # each is in the spool, or would be dropped by the re-read
            self._more = True
        self.resend_all()

    def resend_all(self) -> None:
        """A (re)connect or a lost send: the approver may have missed batches in flight."""
        with self._lock:
            self._reload = True
            self._inflight.clear()  # no re-send deadline while we wait for a connection
            self._waiting_since = None

    def next_deadline(self) -> float | None:
        """When the client thread should look at us again (flush or re-send)."""
        resend = self._resend_deadline()
        with self._lock:
            flush = None
            if self._queue and self._waiting_since is not None:  # in the client's clock
                left = self._waiting_since + self._flush_s - time.monotonic()
                flush = self._last_now + max(left, 0.0)
        times = [t for t in (resend, flush) if t is not None]
        return min(times) if times else None

    def _resend_deadline(self) -> float | None:
        with self._lock:
            oldest = min(self._inflight.values(), default=None)
        return None if oldest is None else oldest + self._resend_s

    def expire(self, now: float) -> None:
        deadline = self._resend_deadline()
        if deadline is not None and now >= deadline:
            log.warning("audit records not acknowledged in time; re-sending from the spool")
            self.resend_all()

    def has_work(self) -> bool:
        with self._lock:
            return self._reload or self._more or bool(self._queue)


def _lines_batch(queue: deque[bytes | dict[str, Any]], most: int) -> list[bytes] | None:
    """The next batch when it is the usual one: up to ``most`` lines the recorder made, none
    capped, all within MAX_BATCH_BYTES. Each check is one pass in C (the approval thread took
    ~1.1 us per record in the per-record loop, holding the GIL the relay waits for, issue 16);
    the batch is ``_record_batch``'s, byte for byte, and the very lines that were queued (no
    copy). None: that loop decides."""
    head = list(islice(queue, most))
    if set(map(type, head)) != {bytes}:  # then ``lines`` below is what it says
        return None
    lines: list[bytes] = head  # type: ignore[assignment]
    if not all(map(bytes.endswith, lines, repeat(b"\n"))):
        return None
    count = len(lines)  # the limits count the records without their newlines
    if sum(map(len, lines)) - count > MAX_BATCH_BYTES or max(map(len, lines)) > _MAX_LINE:
        return None
    _drain(islice(iter(queue.popleft, None), count))  # a queued line is never None
    return lines


_MAX_LINE: Final = MAX_RECORD_BYTES + 1
_drain: Final[Callable[[Iterable[Any]], None]] = deque(maxlen=0).extend  # an iterator run in C


def _record_batch(queue: deque[bytes | dict[str, Any]], most: int) -> list[bytes]:
    """The next batch, record by record: up to ``most`` and MAX_BATCH_BYTES (one record at
    least), each one capped if it is over MAX_RECORD_BYTES; each record one line."""
    batch: list[bytes] = []
    size = 0
    while queue and len(batch) < most:
        body = _body(queue[0])
        if batch and size + len(body) > MAX_BATCH_BYTES:
            break
        queue.popleft()
        if len(body) > MAX_RECORD_BYTES:  # never a frame the approver refuses
            body = orjson.dumps(cap_record(orjson.loads(body), _cap_key()))
        batch.append(body + b"\n")
        size += len(body)
    return batch


def _body(item: bytes | dict[str, Any]) -> bytes:
    """A queued record as one JSON object without its newline (a record re-read from the
    spool is a dict: serialized again, as orjson made it the first time)."""
    if isinstance(item, dict):
        return orjson.dumps(item)
    return item[:-1] if item.endswith(b"\n") else item


_key: list[bytes] = []


def _cap_key() -> bytes:
    """The per-install HMAC key beside the audit log (as the approver uses); a random one for
    this process if it cannot be read (the capped value is then only comparable within it)."""
    if not _key:
        try:
            path = paths.default_audit_log().parent / paths.HMAC_KEY_NAME
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _key.append(load_or_create_key(path))
        except (OSError, ValueError) as exc:
            log.warning("audit HMAC key unusable (%s); capping with a per-process key", exc)
            _key.append(os.urandom(HMAC_KEY_BYTES))
    return _key[0]
