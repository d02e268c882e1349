"""``Spool.pending`` reads only the unacknowledged tail when the unacknowledged records are the
file's last lines (``spool_compact.unacked_tail``): the same records as the whole-file read,
for any spool state (hypothesis), also as the bytes the outbox re-sends (``raw``), and no
acknowledged line opened in the usual case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aip.shared.audit import spool as spool_mod
from aip.shared.audit import spool_compact
from aip.shared.audit.spool import Spool
from aip.shared.audit.spool_line import LineKey

SESSION = "0123456789abcdef"


def rec(rseq: int) -> dict[str, Any]:
    return {"event": "decision", "session": SESSION, "rseq": rseq, "pad": "p" * (rseq % 7)}


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 12)),
        st.tuples(st.just("ack_first"), st.integers(1, 10)),  # in order, as the approver acks
        st.tuples(st.just("ack_one"), st.integers(0, 60)),  # out of order: a gap
        st.tuples(st.just("tamper"), st.integers(0, 60)),  # a line's record changed
        st.tuples(st.just("forge"), st.integers(0, 60)),  # a line appended by someone else
    ),
    max_size=25,
)


def _whole_file(store: Spool, limit: int | None, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    with monkeypatch.context() as m:
        m.setattr(spool_compact, "unacked_tail", lambda *a, **k: None)
        return store.pending(limit)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS, limit=st.none() | st.integers(1, 8))
def test_the_tail_read_is_the_whole_file_read(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    steps: list[tuple[str, int]],
    limit: int | None,
) -> None:
    monkeypatch.setattr(spool_mod, "COMPACT_MIN_RECORDS", 8)  # compactions happen too
    store = Spool(SESSION, tmp_path_factory.mktemp("spool"))
    next_rseq = 1
    for op, n in steps:
        if op == "append":
            store.append([rec(r) for r in range(next_rseq, next_rseq + n)])
            next_rseq += n
        elif op == "ack_first":
            store.ack(list(range(1, next_rseq))[:n] if n else [])
            store.ack([r["rseq"] for r in _whole_file(store, n, monkeypatch)])
        elif op == "ack_one":
            store.ack([n])
        elif op in ("tamper", "forge") and store.path.exists():
            data = store.path.read_bytes()
            if op == "tamper":
                data = data.replace(b'"rseq":%d,' % n, b'"rseq":%d,' % (n + 100), 1)
                with store.path.open("r+b") as f:  # not the spool's fd: it appends
                    f.write(data)
            else:
                forged = LineKey(b"x" * 32, SESSION).sign(
                    n, b'{"session":"%s","rseq":%d}' % (SESSION.encode(), n)
                )
                with store.path.open("ab") as f:
                    f.write(forged)
        whole = _whole_file(store, limit, monkeypatch)
        assert store.pending(limit) == whole
        # what the outbox re-sends: the tail's records as their spooled bytes
        raw = store.pending(limit, raw=True)
        assert [orjson.loads(r) if isinstance(r, bytes) else r for r in raw] == whole
    store.close()


def test_the_usual_reread_opens_no_acknowledged_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged in order with new records coming (an approver's steady state), a re-read
    (a reconnect, a re-send) opens none of the acknowledged lines before the tail."""
    store = Spool(SESSION, tmp_path)
    store.append([rec(r) for r in range(1, 601)])
    store.ack(list(range(1, 501)))  # 500 acknowledged lines stay (below the compaction)
    opened: list[bytes] = []
    real = LineKey.open
    monkeypatch.setattr(LineKey, "open", lambda self, line: opened.append(line) or real(self, line))
    assert [r["rseq"] for r in store.pending(50)] == list(range(501, 551))
    assert [r["rseq"] for r in store.pending()] == list(range(501, 601))
    assert store.pending(3, raw=True) == [orjson.dumps(rec(r)) for r in range(501, 504)]
    assert opened == []
    store.close()
