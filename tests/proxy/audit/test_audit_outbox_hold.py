"""A relay burst's audit records take one spool write (``AuditOutbox.hold``/``flush``), in
rseq order even when another thread records meanwhile; the relay spools them before it
writes to the server."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
import pytest

from aip.proxy.audit import outbox as audit_outbox
from aip.proxy.audit.outbox import AuditOutbox
from aip.proxy.audit.recorder import Recorder
from aip.proxy.relay import upstream
from aip.proxy.relay.session import Session
from aip.proxy.stdio import Wire
from aip.shared.audit.spool import Spool
from aip.shared.policy.decision import Context
from aip.shared.policy.ratelimit import RateLimiter
from tests.shared.enginekit import policy

SESSION = "0123456789abcdef"


def line(rseq: int) -> bytes:
    record = {"event": "decision", "session": SESSION, "rseq": rseq}
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


class CountingSpool(Spool):
    def __init__(self, directory: Path) -> None:
        super().__init__(SESSION, directory)
        self.writes: list[list[int]] = []

    def append_lines(self, data: bytes, rseqs: object) -> None:
        rseqs = list(rseqs)  # type: ignore[call-overload]
        self.writes.append(rseqs)
        super().append_lines(data, rseqs)

    def append_line(self, rseq: int, line: bytes) -> None:  # one record: one write too
        self.writes.append([rseq])
        super()._write(self._line_key.sign(rseq, line[:-1]), rseq, None)


def spooled(outbox: AuditOutbox) -> list[int]:
    return [r["rseq"] for r in outbox.spool.pending()]


def test_held_records_take_one_write_at_flush(tmp_path: Path) -> None:
    sp = CountingSpool(tmp_path)
    outbox = AuditOutbox(sp, flush_s=0)
    outbox.hold()
    for rseq in range(1, 6):
        outbox.submit(rseq, line(rseq))
    assert sp.writes == []
    assert outbox.take_batches(now=0.0) == []  # nothing queued before it is spooled
    outbox.flush()
    assert sp.writes == [[1, 2, 3, 4, 5]]
    assert spooled(outbox) == [1, 2, 3, 4, 5]
    outbox.flush()  # nothing held: no write
    outbox.submit(6, line(6))  # not holding any more: written at once
    assert sp.writes == [[1, 2, 3, 4, 5], [6]]
    batches = outbox.take_batches(now=float("inf"))
    assert [orjson.loads(r)["rseq"] for _, b in batches for r in b] == [1, 2, 3, 4, 5, 6]


def test_another_threads_record_goes_after_the_held_ones(tmp_path: Path) -> None:
    """A thread that does not hold writes at once, taking the held (older) records along."""
    sp = CountingSpool(tmp_path)
    outbox = AuditOutbox(sp, flush_s=0)
    outbox.hold()
    outbox.submit(1, line(1))
    outbox.submit(2, line(2))
    other = threading.Thread(target=outbox.submit, args=(3, line(3)))
    other.start()
    other.join(5)
    assert sp.writes == [[1, 2, 3]]
    outbox.submit(4, line(4))
    outbox.flush()
    assert sp.writes == [[1, 2, 3], [4]]
    assert spooled(outbox) == [1, 2, 3, 4]


def test_a_failed_spool_write_still_queues_the_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sp = Spool(SESSION, tmp_path / "file")
    (tmp_path / "file").write_text("a file where the spool directory should be")
    outbox = AuditOutbox(sp, flush_s=0)
    outbox.hold()
    outbox.submit(1, line(1))
    outbox.submit(2, line(2))
    outbox.flush()
    assert "cannot spool 2 audit record(s)" in caplog.text
    batches = outbox.take_batches(now=float("inf"))
    assert [orjson.loads(r)["rseq"] for _, b in batches for r in b] == [1, 2]


class TracingWire(Wire):
    def __init__(self, fd: int, name: str, events: list[str]) -> None:
        super().__init__(fd, name)
        self.events = events

    def _write(self, data: bytes) -> bool:
        self.events.append(f"{self.name} {data.decode()}")
        return super()._write(data)


def test_the_relay_spools_a_bursts_records_before_writing_to_the_server(tmp_path: Path) -> None:
    """Three calls in one read: one spool write, and it comes before the server write."""
    events: list[str] = []

    class TracingSpool(Spool):
        def append_lines(self, data: bytes, rseqs: object) -> None:
            events.append("spool " + ",".join(map(str, rseqs)))  # type: ignore[call-overload]
            super().append_lines(data, rseqs)  # type: ignore[arg-type]

    outbox = AuditOutbox(TracingSpool(SESSION, tmp_path), flush_s=0)
    null = os.open(os.devnull, os.O_WRONLY)
    pol = policy("allowed_tools: [echo]")
    session = Session(
        policy=pol,
        limiter=RateLimiter(),
        context=Context(cwd=str(tmp_path)),
        recorder=Recorder(
            SESSION, "srv", pol.name, pol.sha256, "enforce", "test", null, audit=outbox
        ),
        host=TracingWire(null, "host", events),
        server=TracingWire(null, "server", events),
        agent_id_fixed=True,
    )
    r, w = os.pipe()
    calls = b"".join(
        b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo",'
        b'"arguments":{"text":"hi"}}}\n' % i
        for i in (1, 2, 3)
    )
    os.write(w, calls)
    os.close(w)
    try:
        upstream.pump(session, r, 1 << 20)
    finally:
        os.close(r)
        os.close(null)
    assert events[0] == "spool 1,2,3"
    assert events[1].startswith("server ")
    assert events[1].count("tools/call") == 3
    assert spooled(outbox) == [1, 2, 3]


def test_a_held_burst_beyond_the_queue_bound_is_read_back_from_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_outbox, "MAX_QUEUED", 2)
    outbox = AuditOutbox(Spool(SESSION, tmp_path), flush_s=0)
    outbox.attach(lambda: None)
    outbox.take_batches(now=0.0)  # the attach's reload: nothing spooled yet
    outbox.hold()
    for rseq in range(1, 6):
        outbox.submit(rseq, line(rseq))
    outbox.flush()
    first = outbox.take_batches(now=float("inf"))
    assert [orjson.loads(r)["rseq"] for _, b in first for r in b] == [1, 2]
    for batch, records in first:
        outbox.on_ack(batch, [orjson.loads(r)["rseq"] for r in records])
    rest = outbox.take_batches(now=float("inf"))
    assert [orjson.loads(r)["rseq"] for _, b in rest for r in b] == [3, 4]
