"""A spool's compaction runs off the append path (aip.shared.audit.spool_compact): while it
copies and fsyncs the unacknowledged rest, the relay's appends go on into the old file, and
the switch takes them along. Before, every append waited for the whole compaction, its fsync
included (0.3-5 ms here), under the spool's lock: a call's p99 with an approver."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aip.shared.audit import spool as spool_mod
from aip.shared.audit.spool import Spool, read_lines
from aip.shared.audit.spool_line import LineKey

SESSION = "0123456789abcdef"
WAIT_S = 10.0  # a deadline for what must happen, never a pause


def rec(rseq: int) -> dict[str, Any]:
    return {"event": "decision", "session": SESSION, "rseq": rseq, "pad": "x" * 40}


class HeldSync:
    """``os.fsync`` that, once armed, holds the first caller until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.armed = False
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            assert self.release.wait(3 * WAIT_S)  # longer than the test waits for an append
        self._real(fd)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldSync]:
    monkeypatch.setattr(spool_mod, "COMPACT_MIN_RECORDS", 10)
    sync = HeldSync()
    monkeypatch.setattr(os, "fsync", sync)
    yield sync
    sync.release.set()  # never leave a thread held, whatever failed


def _file_rseqs(store: Spool) -> list[int]:
    key = LineKey(store.key, SESSION)
    opened = [key.open(line)[0] for line in read_lines(store.path.read_bytes())]
    assert all(r is not None for r in opened)  # every line keeps its MAC
    return [r["rseq"] for r in opened if r is not None]


def test_appends_go_on_while_a_compaction_syncs_and_come_along(
    tmp_path: Path, held: HeldSync
) -> None:
    store = Spool(SESSION, tmp_path)
    store.append([rec(r) for r in range(1, 41)])
    inode = store.path.stat().st_ino
    held.armed = True
    acker = threading.Thread(target=store.ack, args=(list(range(1, 31)),))
    acker.start()
    assert held.entered.wait(WAIT_S)  # the compaction's fsync holds
    appender = threading.Thread(target=store.append, args=([rec(r) for r in range(41, 46)],))
    appender.start()
    appender.join(WAIT_S)
    blocked = appender.is_alive()
    held.release.set()
    appender.join(WAIT_S)
    acker.join(WAIT_S)
    assert not blocked, "an append waited for the compaction's fsync"
    assert store.path.stat().st_ino != inode  # rewritten and renamed over
    assert _file_rseqs(store) == list(range(31, 46))  # the rest, and what came meanwhile
    assert [r["rseq"] for r in store.pending()] == list(range(31, 46))
    store.ack(list(range(31, 46)))
    assert store.path.stat().st_size == 0  # all acknowledged: the file is cut
    assert not store.path.with_name(store.path.name + ".tmp").exists()
    store.close()


def test_a_spool_closed_during_its_compaction_keeps_its_file(
    tmp_path: Path, held: HeldSync
) -> None:
    """The session ended while the copy ran: the copy is dropped, the spool's own file stays
    as it was for the approver to ingest, and no temporary file is left."""
    store = Spool(SESSION, tmp_path)
    store.append([rec(r) for r in range(1, 41)])
    before = store.path.read_bytes()
    held.armed = True
    acker = threading.Thread(target=store.ack, args=(list(range(1, 31)),))
    acker.start()
    assert held.entered.wait(WAIT_S)
    store.close()
    held.release.set()
    acker.join(WAIT_S)
    assert not acker.is_alive()
    assert store.path.read_bytes() == before
    assert not store.path.with_name(store.path.name + ".tmp").exists()


@pytest.mark.parametrize(("limit", "compacted"), [(1 << 30, False), (2048, True)])
def test_a_big_file_is_compacted_before_the_record_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int, compacted: bool
) -> None:
    """Big records would fill the spool's byte limit with acknowledged ones long before
    COMPACT_MIN_RECORDS of them: past COMPACT_BYTES a compaction runs all the same."""
    monkeypatch.setattr(spool_mod, "COMPACT_BYTES", limit)
    store = Spool(SESSION, tmp_path)
    store.append([rec(r) for r in range(1, 41)])  # ~5 KB
    inode = store.path.stat().st_ino
    store.ack(list(range(1, 31)))
    assert (store.path.stat().st_ino != inode) is compacted
    assert _file_rseqs(store) == (list(range(31, 41)) if compacted else list(range(1, 41)))
    assert [r["rseq"] for r in store.pending()] == list(range(31, 41))
    store.close()


def test_a_compaction_and_a_read_back_keep_lines_of_both_macs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unacknowledged tail holds HMAC lines (before a welcome) and BLAKE2b lines (after):
    the tail's checks take both, so it is copied and read back without the whole-file path."""
    monkeypatch.setattr(spool_mod, "COMPACT_MIN_RECORDS", 10)
    whole_file: list[int] = []
    real = spool_mod.spool_compact._copy_unacked
    monkeypatch.setattr(
        spool_mod.spool_compact,
        "_copy_unacked",
        lambda *a: whole_file.append(1) or real(*a),  # type: ignore[func-returns-value]
    )
    store = Spool(SESSION, tmp_path)
    store.append([rec(i) for i in range(1, 31)])
    store.sign_with_mac2(True)
    store.append([rec(i) for i in range(31, 41)])
    store.ack(list(range(1, 26)))  # 25 acked > 15 left, > 10: compacted
    assert _file_rseqs(store) == list(range(26, 41))
    assert whole_file == []
    assert [r["rseq"] for r in store.pending()] == list(range(26, 41))
    raw = store.pending(raw=True)
    assert [spool_mod.orjson.loads(r)["rseq"] for r in raw] == list(range(26, 41))
