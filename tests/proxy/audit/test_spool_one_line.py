"""A lone call's record takes the one-record path (``AuditOutbox._put_one`` ->
``Spool.append_line``): the spool file, the queue and the rseqs it leaves are exactly those of
the general path (``append_lines``), record for record, in the same order."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from aip.proxy.audit.outbox import AuditOutbox
from aip.shared.audit.spool import Spool

SESSION = "0123456789abcdef"
KEY = bytes(range(32))


def line(rseq: int, text: str = "t") -> bytes:
    record = {"event": "decision", "session": SESSION, "rseq": rseq, "tool": text}
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def test_append_line_writes_the_bytes_append_lines_writes(tmp_path: Path) -> None:
    one, general = Spool(SESSION, tmp_path / "a", KEY), Spool(SESSION, tmp_path / "b", KEY)
    for rseq in range(1, 40):
        text = "\u202e" * (rseq % 3) + "x" * rseq  # escapes and lengths vary
        one.append_line(rseq, line(rseq, text))
        general.append_lines(line(rseq, text), [rseq])
    assert one.path.read_bytes() == general.path.read_bytes()
    assert [r["rseq"] for r in one.pending()] == list(range(1, 40))
    one.ack(range(1, 20))
    general.ack(range(1, 20))
    assert one.pending() == general.pending()
    one.close()
    general.close()


def test_append_line_refuses_what_append_lines_refuses(tmp_path: Path) -> None:
    spool = Spool(SESSION, tmp_path, KEY)
    spool.append_line(1, b"")  # nothing: no write, no rseq
    assert not spool.path.exists()
    with pytest.raises(ValueError, match="2 lines but 1 rseqs"):
        spool.append_line(2, line(2) + line(3))  # never one MAC over two lines
    with pytest.raises(ValueError, match="0 lines but 1 rseqs"):
        spool.append_line(4, line(4)[:-1])  # no newline: not a line
    other = Spool(SESSION, tmp_path / "b", KEY)
    for bad in (line(2) + line(3), line(4)[:-1]):
        with pytest.raises(ValueError, match="lines but 1 rseqs"):
            other.append_lines(bad, [2])
    assert not spool.path.exists() or spool.path.read_bytes() == b""
    spool.close()
    other.close()


@pytest.mark.parametrize("live", [False, True])
def test_outbox_one_record_path_equals_held_path(tmp_path: Path, live: bool) -> None:
    """Records submitted one at a time and the same records held and flushed as a burst:
    the same spool bytes and the same batches for the approver, before an approver welcomed
    the proxy (records only spooled) and after (also queued)."""
    lone = AuditOutbox(Spool(SESSION, tmp_path / "a", KEY), flush_s=0)
    burst = AuditOutbox(Spool(SESSION, tmp_path / "b", KEY), flush_s=0)
    if live:
        assert lone.take_batches(now=0.0) == burst.take_batches(now=0.0) == []
    burst.hold()
    for rseq in range(1, 11):
        lone.submit(rseq, line(rseq))
        burst.submit(rseq, line(rseq))
    burst.flush()
    assert lone.spool.path.read_bytes() == burst.spool.path.read_bytes()
    assert (lone._more, len(lone._queue)) == (burst._more, len(burst._queue))
    assert len(lone._queue) == (10 if live else 0)
    sent = [b for _, b in lone.take_batches(now=float("inf"))]
    assert sent == [b for _, b in burst.take_batches(now=float("inf"))]
    assert [orjson.loads(r)["rseq"] for b in sent for r in b] == list(range(1, 11))
    lone.spool.close()
    burst.spool.close()


@pytest.mark.parametrize("live", [False, True])
def test_outbox_one_record_path_when_the_queue_is_full(tmp_path: Path, live: bool) -> None:
    """Past MAX_QUEUED a record waits only in the spool, as on the general path."""
    from aip.proxy.audit import outbox as module

    lone = AuditOutbox(Spool(SESSION, tmp_path / "a", KEY), flush_s=0)
    general = AuditOutbox(Spool(SESSION, tmp_path / "b", KEY), flush_s=0)
    if live:
        assert lone.take_batches(now=0.0) == general.take_batches(now=0.0) == []
    n = module.MAX_QUEUED + 3
    for rseq in range(1, n + 1):
        lone.submit(rseq, line(rseq))
        general._put([(rseq, line(rseq))])
    assert lone.spool.path.read_bytes() == general.spool.path.read_bytes()
    assert (lone._more, len(lone._queue)) == (general._more, len(general._queue))
    assert (lone._more, len(lone._queue)) == (True, n - 3 if live else 0)
    lone.spool.close()
    general.spool.close()


def test_outbox_one_record_path_spool_failure_still_queues(tmp_path: Path) -> None:
    """A spool that cannot be written: the record is still queued for the approver (even
    before a welcome), as on the general path."""
    lone = AuditOutbox(Spool(SESSION, tmp_path / "a", KEY), flush_s=0)
    general = AuditOutbox(Spool(SESSION, tmp_path / "b", KEY), flush_s=0)
    for box in (lone, general):
        box.spool.directory.parent.mkdir(parents=True, exist_ok=True)
        box.spool.directory.write_text("not a folder")  # mkdir of the spool dir fails
    lone.submit(1, line(1))
    general._put([(1, line(1))])
    assert list(lone._queue) == list(general._queue) == [line(1)]
