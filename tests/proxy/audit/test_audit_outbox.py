"""The proxy's audit outbox: spool first, batches of <= 64, ack trims, re-send from the spool."""

from __future__ import annotations

import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.proxy.audit import outbox as audit_outbox
from aip.proxy.audit.outbox import WINDOW, AuditOutbox
from aip.shared.audit import spool, spool_compact
from aip.shared.audit.spool import Spool
from aip.shared.audit.spool_line import LineKey

SESSION = "0123456789abcdef"


def line(rseq: int, size: int = 10) -> bytes:
    record = {"event": "decision", "session": SESSION, "rseq": rseq, "pad": "x" * size}
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def fill(outbox: AuditOutbox, n: int, size: int = 10) -> None:
    for rseq in range(1, n + 1):
        outbox.submit(rseq, line(rseq, size))


def rseqs(batch: list[bytes]) -> list[int]:
    """The rseqs of a batch's records (each one JSON object on one line, newline included)."""
    assert all(r.startswith(b"{") and r.endswith(b"}\n") and r.count(b"\n") == 1 for r in batch)
    return [orjson.loads(r)["rseq"] for r in batch]


def test_records_are_spooled_then_batched_by_64(tmp_path: Path) -> None:
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    wakes: list[int] = []
    fill(outbox, 3)
    outbox.attach(lambda: wakes.append(1))
    fill_more = [line(r) for r in range(4, 151)]
    for rseq, data in zip(range(4, 151), fill_more, strict=True):
        outbox.submit(rseq, data)
    assert len(outbox.spool.pending()) == 150  # on disk before anything is sent
    batches = outbox.take_batches(now=0.0)
    assert [len(b) for _, b in batches] == [64, 64, 22]  # earlier records come from the spool
    assert rseqs([r for _, b in batches for r in b]) == list(range(1, 151))
    assert not wakes
    outbox.submit(151, line(151))
    assert wakes == [1]  # a record arriving on an empty queue wakes the client thread


def test_window_and_ack_trim_the_spool(tmp_path: Path) -> None:
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    outbox.attach(lambda: None)
    fill(outbox, 64 * 6)
    first = outbox.take_batches(now=0.0)
    assert len(first) == audit_outbox.WINDOW
    assert outbox.take_batches(now=0.0) == []  # window full
    for batch, records in first:
        outbox.on_ack(batch, rseqs(records))
    second = outbox.take_batches(now=0.0)
    assert [len(b) for _, b in second] == [64, 64]
    for batch, records in second:
        outbox.on_ack(batch, rseqs(records))
    assert outbox.spool.pending() == []
    assert outbox.spool.path.stat().st_size == 0  # everything acknowledged: cut to zero


def test_big_records_split_batches_by_bytes(tmp_path: Path) -> None:
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    outbox.attach(lambda: None)
    fill(outbox, 10, size=200 * 1024)
    sent: list[int] = []
    while len(sent) < 10:
        batches = outbox.take_batches(now=0.0)
        assert all(sum(len(r) for r in b) <= 512 * 1024 for _, b in batches)
        for batch, records in batches:
            sent += rseqs(records)
            outbox.on_ack(batch, rseqs(records))
    assert sent == list(range(1, 11))


def test_reconnect_or_overdue_ack_resends_everything_unacked(tmp_path: Path) -> None:
    outbox = AuditOutbox(Spool(SESSION, tmp_path), resend_s=5.0, flush_s=0)
    outbox.attach(lambda: None)
    fill(outbox, 100)
    (b1, r1), (_b2, _r2) = outbox.take_batches(now=0.0)
    outbox.on_ack(b1, rseqs(r1))
    assert outbox.next_deadline() == 5.0
    outbox.expire(now=4.9)
    assert outbox.take_batches(now=4.9) == []
    outbox.expire(now=5.0)  # batch 2 was never acknowledged: send it (and the rest) again
    again = outbox.take_batches(now=5.0)
    assert rseqs([r for _, b in again for r in b]) == list(range(65, 101))
    outbox.resend_all()  # e.g. a reconnect
    assert rseqs([r for _, b in outbox.take_batches(now=6.0) for r in b]) == list(range(65, 101))


def test_a_batch_that_can_never_be_sent_is_dropped_not_retried(tmp_path: Path) -> None:
    """What the approval client does when ``audit_frame`` refuses a batch: the records that
    can be read are forgotten as if acked (re-sending them forever would only fail again)."""
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    outbox.attach(lambda: None)
    fill(outbox, 3)
    [(batch, records)] = outbox.take_batches(now=0.0)
    outbox.drop(batch, [records[0], b"not json", b"[1]", records[2]])
    assert [r["rseq"] for r in outbox.spool.pending()] == [2]  # 1 and 3 are forgotten
    assert outbox.next_deadline() is None  # nothing in flight: no re-send deadline
    outbox.resend_all()  # e.g. a reconnect: what is left goes again
    assert rseqs(outbox.take_batches(now=0.0)[0][1]) == [2]


def test_compaction_keeps_only_unacked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "COMPACT_MIN_RECORDS", 10)
    store = Spool(SESSION, tmp_path)
    store.append([{"session": SESSION, "rseq": r} for r in range(1, 41)])
    inode = store.path.stat().st_ino
    store.ack(range(1, 31))
    assert store.path.stat().st_ino != inode  # rewritten and renamed over
    lines = spool.read_lines(store.path.read_bytes())
    opened = [LineKey(store.key, SESSION).open(line)[0] for line in lines]  # MACs kept
    assert [r["rseq"] for r in opened if r is not None] == list(range(31, 41))
    assert [r["rseq"] for r in store.pending()] == list(range(31, 41))
    store.close()


def _compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, acked: list[int], tamper: int = 0
) -> tuple[list[int], int]:
    """40 records, then ``acked`` acknowledged (compaction at 10): the rseqs the rewritten
    file holds and the bytes compaction read minus the file's size."""
    monkeypatch.setattr(spool, "COMPACT_MIN_RECORDS", 10)
    monkeypatch.setattr(spool_compact, "TAIL_CHUNK_BYTES", 256)  # a few lines per read
    store = Spool(SESSION, tmp_path)
    store.append([{"session": SESSION, "rseq": r, "pad": "x" * 50} for r in range(1, 41)])
    if tamper:  # one line's record changed after it was signed: its MAC no longer holds
        data = store.path.read_bytes().replace(b'"rseq":%d,' % tamper, b'"rseq":%d,' % 99)
        with store.path.open("r+b") as f:  # not the spool's own fd: it appends (O_APPEND)
            f.write(data)
    reads: list[int] = [-store.path.stat().st_size]  # read less than the file: negative sum
    real = spool.os.pread
    monkeypatch.setattr(spool.os, "pread", lambda fd, n, at: reads.append(n) or real(fd, n, at))
    inode = store.path.stat().st_ino
    store.ack(acked)
    assert store.path.stat().st_ino != inode  # rewritten and renamed over
    monkeypatch.setattr(spool.os, "pread", real)
    lines = spool.read_lines(store.path.read_bytes())
    opened = [LineKey(store.key, SESSION).open(line)[0] for line in lines]  # MACs kept
    assert all(r is not None for r in opened)
    store.close()
    return [r["rseq"] for r in opened if r is not None], sum(reads)


def test_compaction_reads_only_the_unacked_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, read_minus_size = _compacted(tmp_path, monkeypatch, list(range(1, 31)))
    assert kept == list(range(31, 41))
    # The tail (a quarter of the file) twice: once backwards to find where it starts, once
    # forwards to copy it, a chunk at a time; never the whole file.
    assert read_minus_size < 0


@pytest.mark.parametrize(
    ("acked", "tamper", "kept"),
    [
        pytest.param([r for r in range(1, 32) if r != 5], 0, [5, *range(32, 41)], id="gap"),
        pytest.param(list(range(1, 31)), 35, [r for r in range(31, 41) if r != 35], id="forged"),
    ],
)
def test_compaction_reads_it_all_when_the_tail_is_not_the_unacked_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, acked: list[int], tamper: int, kept: list[int]
) -> None:
    """An rseq acknowledged out of order, or a line whose MAC fails in the tail: the whole
    file is read and verified, as before (a forged line is dropped, the rest kept)."""
    assert _compacted(tmp_path, monkeypatch, acked, tamper)[0] == kept


def test_a_huge_record_is_capped_before_it_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIP_AUDIT_LOG", str(tmp_path / "log" / "aip-audit.jsonl"))
    monkeypatch.setattr(audit_outbox, "_key", [])
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    outbox.attach(lambda: None)
    record = {"event": "decision", "session": SESSION, "rseq": 1, "arguments": {"c": "x" * 2**21}}
    outbox.submit(1, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    [(_, [sent])] = outbox.take_batches(now=0.0)
    assert len(sent) < 20000
    assert "hmac-sha256:" in orjson.loads(sent)["arguments"]["c"]
    assert (tmp_path / "log" / "audit-hmac.key").stat().st_mode & 0o777 == 0o600


def test_overflow_waits_in_the_spool_and_is_read_back_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_outbox, "MAX_QUEUED", 100)
    monkeypatch.setattr(spool, "READ_CHUNK_BYTES", 512)  # several chunks per read-back
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    outbox.attach(lambda: None)
    outbox.take_batches(now=0.0)  # the attach re-read: nothing yet
    fill(outbox, 1000)  # the approver is slow: only 100 fit in memory
    sent: list[int] = []
    while outbox.has_work():
        for batch, records in outbox.take_batches(now=0.0):
            sent += rseqs(records)
            outbox.on_ack(batch, rseqs(records))
    assert sent == list(range(1, 1001))
    assert outbox.spool.pending() == []


def test_after_an_overflow_newer_records_wait_behind_the_spooled_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records that overflowed the queue wait in the spool; newer ones must not pass them in
    the queue once it has room again. They did: the approver acked around the gap, and every
    re-read and compaction after that read and parsed the whole spool (issue 16: ~115 ms of
    the approval thread each, and 4-10 MB of the proxy's RSS for good)."""
    monkeypatch.setattr(audit_outbox, "MAX_QUEUED", 100)
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    outbox.attach(lambda: None)
    outbox.take_batches(now=0.0)  # the attach re-read: nothing yet
    opened: list[bytes] = []
    real = LineKey.open
    monkeypatch.setattr(LineKey, "open", lambda self, ln: opened.append(ln) or real(self, ln))
    sent: list[int] = []
    rseq = 0
    for _ in range(8):  # the relay makes 300 records while the client sends a window
        for _ in range(300):
            rseq += 1
            outbox.submit(rseq, line(rseq))
        for batch, records in outbox.take_batches(now=0.0):
            sent += rseqs(records)
            outbox.on_ack(batch, rseqs(records))
    while outbox.has_work():
        for batch, records in outbox.take_batches(now=0.0):
            sent += rseqs(records)
            outbox.on_ack(batch, rseqs(records))
    assert sent == list(range(1, rseq + 1))
    assert opened == []  # every re-read took the tail: no line before it was parsed
    assert outbox.spool.pending() == []


def test_a_few_records_wait_briefly_for_company(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = [1000.0]  # the outbox's own (real) clock, moved by the test
    monkeypatch.setattr(audit_outbox.time, "monotonic", lambda: real[0])
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0.01)
    outbox.attach(lambda: None)
    outbox.take_batches(now=5.0)  # the attach re-read: nothing yet
    fill(outbox, 3)
    assert outbox.take_batches(now=5.0) == []  # not yet: more may come
    assert outbox.next_deadline() == pytest.approx(5.01)  # in the client's clock
    real[0] += 0.011  # the client's clock may stand still (a fake one): real time decides
    [(number, batch)] = outbox.take_batches(now=5.0)
    assert rseqs(batch) == [1, 2, 3]
    outbox.on_ack(number, [1, 2, 3])
    for rseq in range(4, 4 + 64 * WINDOW - 1):
        outbox.submit(rseq, line(rseq))
    assert outbox.take_batches(now=5.0) == []  # a window's worth but one: still waiting
    outbox.submit(3 + 64 * WINDOW, line(3 + 64 * WINDOW))
    assert len(outbox.take_batches(now=5.0)) == WINDOW  # a full window goes at once


def test_no_deadline_while_disconnected(tmp_path: Path) -> None:
    """A client that cannot send must not be woken again and again (no busy loop)."""
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0.01, resend_s=5.0)
    outbox.attach(lambda: None)
    fill(outbox, 64 * WINDOW + 36)
    assert outbox.take_batches(now=1.0)  # a full window is sent, 36 wait
    assert outbox.next_deadline() is not None
    outbox.expire(now=7.0)  # overdue: everything unacknowledged goes again, once connected
    assert outbox.next_deadline() is None
    outbox.resend_all()  # e.g. the connection dropped
    last = 64 * WINDOW + 37
    outbox.submit(last, line(last))
    assert outbox.next_deadline() is None  # nothing to do until take_batches (connected)
    sent = [r for _, b in outbox.take_batches(now=8.0) for r in b]
    assert rseqs(sent) == list(range(1, 64 * WINDOW + 1))  # a window, from the spool
    assert outbox.next_deadline() is not None  # the rest wait for acks (or the re-send)


@pytest.mark.parametrize("gap", [False, True], ids=["tail", "whole-file"])
def test_compaction_holds_a_chunk_not_the_unacked_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gap: bool
) -> None:
    """An approver far behind leaves thousands of unacknowledged records: compaction streams
    them to the new file (it held them all, and the RSS stayed at that high-water mark)."""
    monkeypatch.setattr(spool, "COMPACT_MIN_RECORDS", 1000)
    store = Spool(SESSION, tmp_path)
    n = 12_000
    store.append([{"session": SESSION, "rseq": r, "pad": "x" * 300} for r in range(1, n + 1)])
    rest = store.path.stat().st_size // 2  # about what compaction keeps: ~2.5 MB
    last = 6_002 if gap else 6_001  # more acknowledged than not: compaction runs
    acked = [r for r in range(1, last + 1) if not (gap and r == 7)]
    tracemalloc.start()
    try:
        store.ack(acked)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < rest / 4
    kept = [r["rseq"] for r in store.pending()]
    assert kept == ([7] if gap else []) + list(range(last + 1, n + 1))
    assert store.path.stat().st_size < rest * 1.1  # compacted: the acknowledged half is gone
    store.close()


def test_without_an_approver_records_wait_only_in_the_spool(tmp_path: Path) -> None:
    """No approver has taken a batch yet (none runs, or it never welcomed us): records are
    spooled, not also kept in memory (issue 16: ~0.6 MB at MAX_QUEUED lines); the welcome's
    re-read sends every one of them, in order."""
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    wakes: list[int] = []
    outbox.attach(lambda: wakes.append(1))
    fill(outbox, 2000)
    assert len(outbox._queue) == 0
    assert not wakes  # nothing a client without an approver could send
    assert outbox.has_work()
    sent: list[int] = []
    while outbox.has_work():
        for batch, records in outbox.take_batches(now=0.0):
            sent += rseqs(records)
            outbox.on_ack(batch, rseqs(records))
    assert sent == list(range(1, 2001))
    outbox.submit(2001, line(2001))
    assert wakes == [1]  # welcomed: records are queued and the client woken again


def test_a_lost_connection_lets_the_queue_go_and_resends_from_the_spool(tmp_path: Path) -> None:
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    outbox.attach(lambda: None)
    outbox.take_batches(now=0.0)  # welcomed: the attach re-read, nothing yet
    fill(outbox, 300)
    outbox.take_batches(now=0.0)  # 4 batches of 64 in flight (never acked), 44 queued
    assert len(outbox._queue) == 300 - 64 * audit_outbox.WINDOW
    outbox.offline()
    assert len(outbox._queue) == 0
    for rseq in range(301, 311):
        outbox.submit(rseq, line(rseq))
    assert len(outbox._queue) == 0
    sent: list[int] = []
    while outbox.has_work():  # the next welcome: everything unacknowledged, from the spool
        for batch, records in outbox.take_batches(now=1.0):
            sent += rseqs(records)
            outbox.on_ack(batch, rseqs(records))
    assert sent == list(range(1, 311))


# A queued item: a recorder's line (with or without its newline, of some size: over
# MAX_RECORD_BYTES it is capped, several big ones pass MAX_BATCH_BYTES) or a record re-read
# from the spool as a dict.
_ITEMS = st.one_of(
    st.builds(line, st.integers(1, 10**6), st.sampled_from([0, 10, 300, 70_000, 200_000])),
    st.builds(lambda r: line(r)[:-1], st.integers(1, 10**6)),
    st.builds(lambda r: orjson.loads(line(r)), st.integers(1, 10**6)),
)


@settings(max_examples=150, deadline=None)
@given(items=st.lists(_ITEMS, max_size=80), most=st.sampled_from([1, 3, 64]))
def test_the_usual_batch_is_the_record_loops(items: list[Any], most: int) -> None:
    """``_lines_batch`` (checks in C) answers only when ``_record_batch`` would take the same
    records and send the same bytes; it leaves the queue as that loop would."""
    fast_queue, slow_queue = deque(items), deque(items)
    fast = audit_outbox._lines_batch(fast_queue, most)
    slow = audit_outbox._record_batch(slow_queue, most)
    if fast is not None:
        assert fast == slow
        assert fast_queue == slow_queue
    else:
        assert list(fast_queue) == items  # nothing taken
    usual = items[:most]
    if usual and all(type(i) is bytes and i.endswith(b"\n") and len(i) < 60_000 for i in usual):
        assert fast is not None  # the usual case does take the fast way
