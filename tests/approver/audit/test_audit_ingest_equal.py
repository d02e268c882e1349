"""The approver's path for proxy records (sink.ingest: checked, completed, named, chained)
writes byte for byte what the path before it wrote, and refuses the same records.

The reference below is that earlier path, kept verbatim in spirit: ``complete_record`` as a
copy, ``user`` set to None by the check, then filled with the writer's name by a second copy,
then serialized with ``seq``/``prev`` spliced in (capped when long). Any faster path must keep
these lines identical (issue 16: nothing bought by changing what the log says).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from aip.approver.audit.chain import verify_files
from aip.approver.audit.files import FileOps, chain_files
from aip.approver.audit.ingest import PROXY_EVENTS
from aip.approver.audit.sink import AuditSink
from aip.approver.audit.writer import AuditUnavailable
from aip.shared.audit.record import (
    CAP_CHARS,
    Event,
    ascii_json,
    cap_record,
    decision_record,
    meta_record,
    not_forwarded_record,
)
from aip.shared.outcomes import Outcome

SESSION = "0123456789abcdef"
_DEFAULTS = (
    ("rseq", None), ("method", None), ("dlp", []), ("monitor", None), ("queue_wait_ms", None),
    ("policy", None), ("server", None), ("pid", None), ("rule", None), ("request_id", None),
    ("mode", "enforce"),
)  # fmt: skip


def reference_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "not an object"
    event = record.get("event")
    if not isinstance(event, str) or event not in PROXY_EVENTS:  # a list failed the message
        return "event"
    session, rseq = record.get("session"), record.get("rseq")
    if not isinstance(session, str) or len(session) != 16 or session.strip("0123456789abcdef"):
        return "session"
    if type(rseq) is not int or rseq < 0:
        return "rseq"
    return None


def reference_body(record: dict[str, Any], user: str, key: bytes) -> bytes:
    """The record's line as the earlier path wrote it, without the spliced seq/prev."""
    out = dict(record)
    if record.get("event") in ("decision", "dropped_notification"):
        out.setdefault("user", None)
        if out.get("tool") is not None:
            out.setdefault("method", "tools/call")
        for k, v in _DEFAULTS:
            out.setdefault(k, v)
    if "user" in out:
        out["user"] = None
    if "user" in out and not out["user"]:
        out = {**out, "user": user}
    out = {k: v for k, v in out.items() if k not in ("seq", "prev")}
    body = ascii_json(orjson.dumps(out))
    if len(body) + 90 > CAP_CHARS:  # the line with seq/prev is over the cap: capped
        body = ascii_json(orjson.dumps(cap_record(out, key)))
    return body


def proxy_records() -> list[Any]:
    def rec(rseq: int, **kw: Any) -> dict[str, Any]:
        return decision_record(
            outcome=kw.pop("outcome", Outcome.POLICY_ALLOWED),
            session=SESSION,
            agent_id="agent",
            tool=kw.pop("tool", "read_file"),
            arguments=kw.pop("arguments", {"path": f"/tmp/{rseq}"}),
            rseq=rseq,
            **kw,
        )

    minimal = rec(3)
    for key, _ in _DEFAULTS[1:]:  # every default filled in again, in its order
        del minimal[key]
    del minimal["user"]
    policy = {"name": "p", "sha256": "0" * 64}
    return [
        rec(1),
        rec(2, user="root!"),  # a proxy's user is never written
        minimal,
        rec(4) | {"seq": 9, "prev": "y"},  # ours to say: taken out, then spliced in
        not_forwarded_record(session=SESSION, request_id=1, why="late", agent_id="a", rseq=5),
        meta_record(
            Event.POLICY_RELOAD,
            policy=policy,
            previous_policy=None,
            session=SESSION,
            agent_id="a",
            server="s",
            pid=1,
            detail="ok",
            rseq=7,
        ),
        rec(8, method="notifications/progress", tool=None, arguments=None)
        | {"event": "dropped_notification"},
        rec(9, arguments={"text": "caf\u00e9 \u202e \U0001f600 \x7f \u0000"}),
        rec(10, arguments={"text": "A" * (CAP_CHARS + 500)}),  # capped: head + tail + HMAC
        rec(11, outcome=Outcome.DLP),
        # refused, and acked all the same (they can never be written):
        "not an object",
        {"event": "genesis", "session": SESSION, "rseq": 12},
        {"event": "decision", "session": "XYZ", "rseq": 13},
        {"event": "decision", "session": SESSION, "rseq": -1},
        {"event": "decision", "session": SESSION, "rseq": "14"},
        {"event": "decision", "session": SESSION, "rseq": True},
        {"event": ["decision"], "session": SESSION, "rseq": 15},  # was a TypeError: no ack
        rec(1),  # a duplicate: acked, not written again
    ]


async def test_ingest_writes_what_the_earlier_path_wrote(tmp_path: Path) -> None:
    log = tmp_path / "aip-audit.jsonl"
    records = proxy_records()
    given = orjson.loads(orjson.dumps(records))  # what the approver decodes from a frame
    async with AuditSink(log, spool_dir=tmp_path / "spool") as sink:
        acked = sink.ingest(given)
        user = sink.log.user
    key = (tmp_path / "audit-hmac.key").read_bytes()
    want_acked = [r["rseq"] for r in records if isinstance(r, dict) and type(r["rseq"]) is int]
    assert acked == want_acked
    good = [r for r in records if reference_problem(r) is None][:-1]  # the duplicate is not
    want = [reference_body(r, user, key) for r in good]
    got = log.read_bytes().splitlines()[1:]  # after the genesis
    assert len(got) == len(want)
    for line, body in zip(got, want, strict=True):
        cut = line.rindex(b',"seq":')
        assert line[:cut] + b"}" == body
    assert sum(b"[capped: " in line for line in got) == 1
    assert sum(b'"event":"dropped_notification"' in line for line in got) == 1
    assert verify_files(chain_files(log)).ok


def _rec(rseq: int) -> dict[str, Any]:
    return decision_record(
        outcome=Outcome.POLICY_ALLOWED, session=SESSION, agent_id="agent", tool="read_file",
        arguments={"path": f"/tmp/{rseq}"}, rseq=rseq,
    )  # fmt: skip


def _bodies(log: Path) -> list[bytes]:
    """Every record line of the chain's files without its seq/prev (they differ by chain)."""
    out = []
    for path in chain_files(log):
        for line in path.read_bytes().splitlines():
            if b'"event":"decision"' in line:
                out.append(line[: line.rindex(b',"seq":')])
    return out


async def test_a_batch_splits_where_the_file_rotates(tmp_path: Path) -> None:
    """One message of 40 records across rotations: the same files' worth of lines as one
    record at a time, each record once, the chain whole."""
    records = [_rec(i) for i in range(1, 41)]
    one, batch = tmp_path / "one" / "aip-audit.jsonl", tmp_path / "batch" / "aip-audit.jsonl"
    async with AuditSink(one, spool_dir=tmp_path / "s1", max_bytes=6000) as sink:
        for record in records:
            assert sink.ingest([record]) == [record["rseq"]]
    async with AuditSink(batch, spool_dir=tmp_path / "s2", max_bytes=6000) as sink:
        assert sink.ingest(records + records[:5]) == [r["rseq"] for r in records + records[:5]]
        written = sink.log.seq
    assert len(chain_files(batch)) == len(chain_files(one)) > 3
    assert _bodies(batch) == _bodies(one)
    assert len(_bodies(batch)) == 40
    assert written == orjson.loads(one.read_bytes().splitlines()[-1])["seq"]  # same rotations
    assert verify_files(chain_files(batch)).ok


class ShortWrite(FileOps):
    short = False

    def write(self, fd: int, data: bytes) -> int:
        if self.short:
            return super().write(fd, data[: len(data) // 2])
        return super().write(fd, data)


async def test_a_failed_batch_write_leaves_none_of_it(tmp_path: Path) -> None:
    """A short write: the file is cut back to before the batch, nothing of it is acked or
    taken as seen; the proxy's re-send after the log is back writes every record once."""
    log = tmp_path / "aip-audit.jsonl"
    ops = ShortWrite()
    records = [_rec(i) for i in range(1, 11)]
    async with AuditSink(log, spool_dir=tmp_path / "s", ops=ops, probe_interval_s=0.01) as sink:
        sink.ingest(records[:3])
        size = log.stat().st_size
        ops.short = True
        with pytest.raises(AuditUnavailable):
            sink.ingest(records[3:])
        assert log.stat().st_size == size
        assert not any(sink.log.seen(SESSION, r) for r in range(4, 11))
        ops.short = False
        async with asyncio.timeout(5):  # the probe reopens within ~10 ms
            while not sink.available():  # noqa: ASYNC110 - polls writer state, bounded
                await asyncio.sleep(0.01)
        assert sink.ingest(records) == list(range(1, 11))  # 1-3 are dropped as duplicates
    rseqs = [orjson.loads(line)["rseq"] for line in log.read_bytes().splitlines()[1:]]
    assert rseqs == list(range(1, 11))
    assert verify_files(chain_files(log)).ok
